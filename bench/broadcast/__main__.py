"""``python -m bench.broadcast``: cross-process broadcast, side by side, one Markdown table.

See :mod:`bench.broadcast.runner` for the method and ``bench/README.md`` for the results.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..machine import describe, load_average
from .redis_server import redis_server
from .runner import Options, Result, median, run_library
from .servers import LIBRARIES

__all__ = ["main", "table"]


def _fmt(value: float, unit: str = "") -> str:
    if value >= 100:
        return f"{value:,.0f}{unit}"
    if value >= 10:
        return f"{value:.1f}{unit}"
    return f"{value:.2f}{unit}"


def table(results: dict[str, list[Result]]) -> str:
    """The Markdown table: medians over the repeats, min-max, ratios against fullduplex."""
    lines = [
        "| library | deliveries/s | vs fullduplex | p50 at half | p99 at half | half rate "
        "msg/s | lost | server CPU/delivery | redis CPU | servers CPU | receivers CPU | "
        "publisher CPU |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    good = {name: [r for r in runs if not r.error] for name, runs in results.items()}
    reference = median([r.saturation.deliveries_per_s for r in good.get("fullduplex", [])])
    for name, runs in good.items():
        if not runs:
            errors = "; ".join(r.error for r in results[name])
            lines.append(f"| {name} | failed: {errors} |" + " |" * 11)
            continue
        rates = [r.saturation.deliveries_per_s for r in runs]
        rate = median(rates)
        spread = f" ({_fmt(min(rates))}-{_fmt(max(rates))})" if len(rates) > 1 else ""
        ratio = f"{reference / rate:.2f}x" if rate and reference else "-"
        p50 = median([r.latency.p50_ms for r in runs])
        p99 = median([r.latency.p99_ms for r in runs])
        half = median([r.latency.rate for r in runs])
        lost = sum(r.saturation.lost + r.latency.lost for r in runs)
        cpu = {k: median([r.cpu.get(k, 0.0) for r in runs]) for k in runs[0].cpu}
        per = median([r.cpu_per_delivery_us("servers") for r in runs])
        lines.append(
            f"| {name} | {_fmt(rate)}{spread} | {ratio} | {_fmt(p50, ' ms')} | "
            f"{_fmt(p99, ' ms')} | {_fmt(half)} | {lost} | {_fmt(per, ' us')} | "
            f"{cpu.get('redis-server', 0):.0%} | "
            f"{cpu.get('servers', 0):.0%} | {cpu.get('receivers', 0):.0%} | "
            f"{cpu.get('publisher', 0):.0%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table (stdout), progress (stderr); 1 if anything failed."""
    parser = argparse.ArgumentParser(prog="python -m bench.broadcast", description=__doc__)
    parser.add_argument(
        "--libraries",
        default=",".join(LIBRARIES),
        help=f"comma-separated, of {', '.join(LIBRARIES)} (default: all)",
    )
    defaults = Options()
    parser.add_argument("--connections", type=int, default=defaults.connections)
    parser.add_argument("--receivers", type=int, default=defaults.receivers)
    parser.add_argument("--warmup", type=int, default=defaults.warmup)
    parser.add_argument("--duration", type=float, default=defaults.duration)
    parser.add_argument("--window", type=int, default=defaults.window)
    parser.add_argument("--sample", type=int, default=defaults.sample)
    parser.add_argument("--max-messages", type=int, default=defaults.max_messages)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", help="write every result to this file")
    parser.add_argument(
        "--profile", default="", help="a directory: cProfile the first server of each library"
    )
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.libraries.split(",") if name.strip()]
    unknown = [name for name in names if name not in LIBRARIES]
    if unknown:
        parser.error(f"unknown libraries: {', '.join(unknown)}")
    options = Options(
        connections=args.connections,
        receivers=args.receivers,
        warmup=args.warmup,
        duration=args.duration,
        window=args.window,
        sample=args.sample,
        max_messages=args.max_messages,
        profile=args.profile,
    )
    print(describe(cpus=None), flush=True)
    results: dict[str, list[Result]] = {name: [] for name in names}
    with redis_server() as redis:
        for repeat in range(args.repeat):
            order = names[repeat % len(names) :] + names[: repeat % len(names)]
            for name in order:
                print(f"repeat {repeat + 1}/{args.repeat}: {name}", file=sys.stderr, flush=True)
                result = run_library(name, redis, options)
                if result.error:
                    print(f"  {name} failed: {result.error}", file=sys.stderr, flush=True)
                else:
                    sat, lat = result.saturation, result.latency
                    print(
                        f"  {sat.deliveries_per_s:,.0f} deliveries/s ({sat.published} msgs, "
                        f"lost {sat.lost}); at {lat.rate:.0f} msg/s p50 {lat.p50_ms:.2f} ms "
                        f"p99 {lat.p99_ms:.2f} ms (lost {lat.lost}); server CPU "
                        f"{result.cpu_per_delivery_us('servers'):.2f} us/delivery; CPU shares "
                        + ", ".join(f"{k} {v:.0%}" for k, v in result.cpu.items()),
                        file=sys.stderr,
                        flush=True,
                    )
                results[name].append(result)
    print(f"- load average after the run: {load_average()}")
    print(
        f"- {options.connections} connections over 2 server processes, {options.receivers} "
        f"receiver processes, {args.repeat} repeat(s), {options.duration} s per phase, "
        f"window {options.window} messages"
    )
    print()
    print(table(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump({k: [r.as_dict() for r in v] for k, v in results.items()}, file)
    failed = any(
        r.error or r.saturation.lost or r.latency.lost for v in results.values() for r in v
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
