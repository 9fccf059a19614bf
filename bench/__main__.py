"""``python -m bench``: every server, on each event loop, every workload, side by side.

Each repeat runs the workloads in groups that need the same kind of server (echo, echo with
permessage-deflate, broadcast): all the servers of a group are started (one process each),
pinned, warmed up, then each workload runs against each server in turn, one load generator
process per case (bench/loadgen.c), so that the figures of one workload are seconds apart.
Idle workloads get a fresh server per case (its memory is the measurement). The server order
rotates between repeats. Progress goes to stderr, the Markdown tables to stdout.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.build import BuildError, loadgen_path
from bench.loadgen import (
    WORKLOADS,
    LoadgenError,
    Workload,
    loadgen_command,
    run_case,
    run_idle,
    settled_rss_kib,
)
from bench.machine import describe, pin_cpus, pin_process
from bench.report import Results, Target, summary_table, workload_table
from bench.servers import (
    DEFAULT_SERVERS,
    LOOPS,
    SERVERS,
    RunningServer,
    ServerError,
    ServerSpec,
    running_server,
)

__all__ = ["NOISY_MACHINE", "Settings", "estimate_seconds", "main", "parse_settings", "targets"]

# Above this share of one CPU used by other processes during the cases, the run is flagged.
NOISY_MACHINE = 0.25
# Bound on one load generator run beyond its own duration (connection set-up, close).
_CASE_SLACK = 120.0
# Connections a fresh idle server gets (then closed) before its baseline RSS is taken: the
# first connections allocate what all later ones share (imports, caches, pools).
_IDLE_WARMUP_CONNECTIONS = 20


@dataclass(frozen=True, slots=True)
class Settings:
    """What to run, from the command line."""

    servers: list[str]
    workloads: list[str]
    loops: tuple[str, ...]  # some of LOOPS, in LOOPS order
    repeat: int
    duration: float
    warmup: float
    quick: bool
    cpus: tuple[int, int] | None
    json_path: str | None


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _applicable(spec: ServerSpec, workload: Workload) -> bool:
    if workload.compression and not spec.compression:
        return False
    return not (workload.kind == "bcast" and not spec.broadcast)


def targets(settings: Settings) -> list[Target]:
    """Every (server, loop) row of the run, in table order: each server on each of the
    selected loops it runs on; a server with no loop to choose (Node) once, whatever the
    loops."""
    rows: list[Target] = []
    for name in settings.servers:
        loops = SERVERS[name].loops
        if not loops:
            rows.append(Target(name, None))
            continue
        rows += [Target(name, loop) for loop in settings.loops if loop in loops]
    return rows


def _extra_args(workload: Workload, settings: Settings) -> tuple[str, ...]:
    """Per-workload bounds beyond duration and warm-up."""
    if workload.name == "bcast1k":
        return ("--count", "50")
    if workload.name == "bcast10k":
        # A smoke run need not open 10,000 connections per server.
        return ("--count", "15", *(("--conns", "2000") if settings.quick else ()))
    if workload.kind == "idle" and settings.quick:
        return ("--conns", "1000")
    return ()


def _case_seconds(workload: Workload, settings: Settings) -> float:
    """A rough wall time of one case, for the estimate printed first."""
    base = settings.duration + settings.warmup + 0.1
    if workload.kind == "idle":
        return (2.0 if settings.quick else 3.5) + 0.5  # fresh server, 5,000 handshakes, RSS
    if workload.name == "bcast10k":
        return base + (1.5 if settings.quick else 5.0)  # 10,000 handshakes and closes
    if workload.kind == "bcast":
        return base + 0.8
    return base


def estimate_seconds(settings: Settings) -> float:
    """A rough duration of the whole run: cases, server starts and warm-ups."""
    total = 0.0
    rows = targets(settings)
    groups: dict[tuple[str, bool], list[Workload]] = {}
    for name in settings.workloads:
        workload = WORKLOADS[name]
        for target in rows:
            if _applicable(SERVERS[target.server], workload):
                total += _case_seconds(workload, settings) + 0.2  # + a share of warm-up
        group = _group(workload)
        if group is not None:
            groups.setdefault(group, []).append(workload)
    # A group starts (and stops) only the servers that can run one of its workloads.
    for workloads in groups.values():
        for target in rows:
            if any(_applicable(SERVERS[target.server], w) for w in workloads):
                total += 0.5
    return total * settings.repeat


def _group(workload: Workload) -> tuple[str, bool] | None:
    """The kind of server a workload needs, shared with others; None: a fresh one each."""
    if workload.kind == "idle":
        return None
    return workload.mode, workload.compression


@dataclass
class _Run:
    """State of a run: the compiled load generator, results and what failed."""

    settings: Settings
    binary: Path
    results: Results
    failed: dict[str, str]  # "label / workload" (or "label / group") -> why

    def cpu_for(self, workload: Workload) -> int | None:
        if self.settings.cpus is None:
            return None
        return self.settings.cpus[0 if workload.same_cpu else 1]

    def command(
        self,
        server: RunningServer,
        workload: Workload,
        *,
        duration: float,
        warmup: float,
        extra: tuple[str, ...],
    ) -> list[str]:
        return loadgen_command(
            self.binary,
            server.url,
            workload.name,
            duration=duration,
            warmup=warmup,
            server_pid=server.pid,
            cpu=self.cpu_for(workload),
            extra=extra,
        )

    def record(self, target: Target, workload: Workload, result: dict[str, Any]) -> None:
        self.results.setdefault(target.label, {}).setdefault(workload.name, []).append(result)
        _log(f"  {workload.name:<10} {target.label:<28} {_summary(result)}")

    def fail(self, key: str, error: str) -> None:
        self.failed[key] = error
        _log(f"  FAILED {key}: {error}")


def _summary(result: dict[str, Any]) -> str:
    if "kib_per_conn" in result:
        text = f"{result['kib_per_conn']:.2f} KiB/conn"
    elif "median_ms" in result:
        text = f"median {result['median_ms']:.2f} ms, p90 {result['p90_ms']:.2f} ms"
    else:
        text = f"{result['rate']:,.0f} {result['unit']}"
        if "p50_us" in result:
            text += f", p50 {result['p50_us']:.0f} us, p99 {result['p99_us']:.0f} us"
    cpu = result.get("server_cpu")
    server = f"{cpu:.0%}" if cpu is not None else "?"
    return text + f" (cpu: loadgen {result['client_cpu']:.0%}, server {server})"


@contextmanager
def _server(run: _Run, target: Target, mode: str, compression: bool) -> Iterator[RunningServer]:
    with running_server(
        target.server, loop=target.loop, mode=mode, compression=compression
    ) as server:
        if run.settings.cpus is not None:
            pin_process(server.pid, run.settings.cpus[0])
        yield server


def _warm_up(run: _Run, target: Target, server: RunningServer, workloads: list[Workload]) -> bool:
    """Untimed traffic to a fresh server, so that no case measures its first second (measured
    on the old Python client: a fresh server ran ~2x slower over its first second). Returns
    False (and records why) if the server fails."""
    preferred = [w for w in workloads if w.name in {"conc100x16", "big1m", "hs", "rr16z"}]
    for workload in preferred or workloads[:1]:
        extra = ("--count", "3") if workload.kind == "bcast" else ()
        command = run.command(server, workload, duration=0.25, warmup=0, extra=extra)
        try:
            run_case(command, bound=_CASE_SLACK)
        except LoadgenError as exc:
            run.fail(f"{target.label} / warm-up {workload.name}", str(exc))
            return False
    return True


def _run_group(run: _Run, order: list[Target], workloads: list[Workload]) -> None:
    """Start every server that can run these workloads, warm them up, run the cases."""
    mode, compression = workloads[0].mode, workloads[0].compression
    with ExitStack() as stack:
        running: dict[Target, RunningServer] = {}
        for target in order:
            spec = SERVERS[target.server]
            key = f"{target.label} / {mode}{' + deflate' if compression else ''}"
            if key in run.failed or not any(_applicable(spec, w) for w in workloads):
                continue
            try:
                running[target] = stack.enter_context(_server(run, target, mode, compression))
            except (ServerError, ValueError) as exc:
                run.fail(key, str(exc))
        for target, server in list(running.items()):
            usable = [w for w in workloads if _applicable(SERVERS[target.server], w)]
            if not _warm_up(run, target, server, usable):
                del running[target]
        for workload in workloads:
            for target, server in running.items():
                key = f"{target.label} / {workload.name}"
                if key in run.failed or not _applicable(SERVERS[target.server], workload):
                    continue
                settings = run.settings
                command = run.command(
                    server,
                    workload,
                    duration=settings.duration,
                    warmup=settings.warmup,
                    extra=_extra_args(workload, settings),
                )
                try:
                    result = run_case(command, bound=settings.duration + _CASE_SLACK)
                except LoadgenError as exc:
                    # It would fail again: later repeats skip it.
                    run.fail(key, str(exc))
                    continue
                run.record(target, workload, result)


def _run_idle(run: _Run, target: Target, workload: Workload) -> None:
    """One idle case on a fresh server: RSS before and after the connections opened."""
    key = f"{target.label} / {workload.name}"
    try:
        with _server(run, target, "echo", workload.compression) as server:
            warm = run.command(
                server,
                workload,
                duration=1,
                warmup=0,
                extra=("--conns", str(_IDLE_WARMUP_CONNECTIONS), "--hold", "0"),
            )
            run_case(warm, bound=_CASE_SLACK)
            before = settled_rss_kib(server.pid, settle=0.3, limit=2.0)
            # --hold bounds the hold if this process dies; normally closing stdin ends it.
            extra = (*_extra_args(workload, run.settings), "--hold", str(_CASE_SLACK))
            command = run.command(server, workload, duration=1, warmup=0, extra=extra)
            result, after = run_idle(
                command, bound=_CASE_SLACK, measure=lambda: settled_rss_kib(server.pid)
            )
    except (ServerError, ValueError, LoadgenError, OSError) as exc:
        run.fail(key, str(exc))
        return
    result["rss_before_kib"] = before
    result["rss_after_kib"] = after
    result["kib_per_conn"] = (after - before) / result["connections"]
    run.record(target, workload, result)


def run_repeat(run: _Run, index: int) -> None:
    """One repeat: every group of workloads on every server, then the idle cases."""
    rows = targets(run.settings)
    shift = index % len(rows)
    order = rows[shift:] + rows[:shift]
    _log(f"repeat {index + 1}/{run.settings.repeat}")
    selected = [WORKLOADS[name] for name in run.settings.workloads]
    groups: dict[tuple[str, bool], list[Workload]] = {}
    for workload in selected:
        group = _group(workload)
        if group is not None:
            groups.setdefault(group, []).append(workload)
    for workloads in groups.values():
        _run_group(run, order, workloads)
    for workload in selected:
        if workload.kind != "idle":
            continue
        for target in order:
            spec = SERVERS[target.server]
            if (
                _applicable(spec, workload)
                and f"{target.label} / {workload.name}" not in run.failed
            ):
                _run_idle(run, target, workload)


def parse_settings(argv: list[str] | None) -> Settings:
    """Parse the command line (exits with a usage message on bad arguments)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="fullduplex vs other WebSocket servers, side by side, on each event loop.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 repeat, 0.3 s cases, 1,000 idle connections, 2,000 broadcast clients",
    )
    parser.add_argument(
        "--servers",
        default=",".join(DEFAULT_SERVERS),
        help=(
            f"comma-separated (default: {','.join(DEFAULT_SERVERS)}; also: "
            f"{','.join(n for n in SERVERS if n not in DEFAULT_SERVERS)})"
        ),
    )
    parser.add_argument(
        "--workloads",
        default=",".join(n for n, w in WORKLOADS.items() if w.default),
        help=(
            "comma-separated (default: "
            f"{','.join(n for n, w in WORKLOADS.items() if w.default)}; also: "
            f"{','.join(n for n, w in WORKLOADS.items() if not w.default)})"
        ),
    )
    parser.add_argument(
        "--loops",
        default=",".join(LOOPS),
        help=(
            "event loops for the Python servers, comma-separated (default and choices: "
            f"{','.join(LOOPS)}; aiofastnet: asyncio's loop patched with aiofastnet.patch_loop)"
        ),
    )
    parser.add_argument("--repeat", type=int, default=None, help="repeats (default 3)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per case (1)")
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="let the OS place the processes (default: pin them, see bench/README.md)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write every raw result there")
    args = parser.parse_args(argv)
    servers = [s for s in args.servers.split(",") if s]
    workloads = [w for w in args.workloads.split(",") if w]
    loops = [loop for loop in args.loops.split(",") if loop]
    for name in servers:
        if name not in SERVERS:
            parser.error(f"unknown server {name!r}; choose from {', '.join(SERVERS)}")
    for name in workloads:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
    for name in loops:
        if name not in LOOPS:
            parser.error(f"unknown loop {name!r}; choose from {', '.join(LOOPS)}")
    if not servers or not workloads or not loops:
        parser.error("need at least one server, one workload and one loop")
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    duration = args.duration if args.duration is not None else (0.3 if args.quick else 1.0)
    if repeat < 1 or duration <= 0:
        parser.error("--repeat and --duration must be positive")
    return Settings(
        servers=servers,
        workloads=workloads,
        loops=tuple(loop for loop in LOOPS if loop in loops),
        repeat=repeat,
        duration=duration,
        warmup=min(0.2, duration / 3),
        quick=args.quick,
        cpus=None if args.no_pin else pin_cpus(),
        json_path=args.json,
    )


def _noise_warning(results: Results) -> str | None:
    others = [
        r["other_cpu"]
        for per_target in results.values()
        for per_workload in per_target.values()
        for r in per_workload
        if r.get("other_cpu") is not None
    ]
    if not others or statistics.median(others) <= NOISY_MACHINE:
        return None
    return (
        f"**Noisy machine**: other processes kept {statistics.median(others):.0%} of a CPU busy "
        "during the cases (median): these numbers are unreliable; rerun on a quiet machine."
    )


def _print_report(run: _Run, facts: str, argv: list[str], elapsed: float) -> None:
    settings = run.settings
    rows = targets(settings)
    command = shlex.join(["python", "-m", "bench", *argv])
    print(f"## fullduplex benchmark: `{command}`")
    print()
    print(facts)
    print(
        f"- {settings.repeat} repeat(s), {settings.duration:g} s per case "
        f"(+ {settings.warmup:g} s warm-up), {_minutes(elapsed)} in all"
        + ("; quick: 1,000 idle connections, bcast10k with 2,000 clients" if settings.quick else "")
    )
    warning = _noise_warning(run.results)
    if warning:
        print(f"\n{warning}")
    print("\n### Summary (medians)\n")
    print(summary_table(run.results, rows, settings.workloads))
    for name in settings.workloads:
        table = workload_table(run.results, rows, name)
        if table:
            print(f"\n### {name}: {WORKLOADS[name].title}\n")
            print(table)
    print(
        "\nMedian (min-max) over the repeats. fullduplex lead: fullduplex on the same event "
        "loop (for Node, the stock loop) against that row, on the first figure, inverted where "
        "lower is better (latency, memory): above 1 (bold) fullduplex is ahead. CPU: shares of "
        "one core during the measured window (load generator: getrusage; server: /proc/PID/stat; "
        "rest of machine: /proc/stat minus both)."
    )
    if run.failed:
        print("\nFailed:\n")
        for key, reason in run.failed.items():
            print(f"- {key}: {reason}")


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables; return the exit status (1 if a case failed)."""
    args = sys.argv[1:] if argv is None else argv
    settings = parse_settings(args)
    # SIGTERM unwinds like Ctrl-C, so that every context manager stops its server.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        binary = loadgen_path()
    except BuildError as exc:
        print(f"cannot build the load generator: {exc}", file=sys.stderr)
        return 2
    estimate = estimate_seconds(settings)
    _log(
        f"{len(targets(settings))} server/loop rows x {len(settings.workloads)} workloads x "
        f"{settings.repeat} repeat(s): about {_minutes(estimate)} (estimate)"
    )
    started = time.monotonic()
    facts = describe(cpus=settings.cpus)
    run = _Run(settings, binary, {}, {})
    for index in range(settings.repeat):
        run_repeat(run, index)
    elapsed = time.monotonic() - started
    _print_report(run, facts, args, elapsed)
    if settings.json_path:
        with open(settings.json_path, "w", encoding="utf-8") as output:
            json.dump({"results": run.results, "failed": run.failed}, output, indent=1)
    _log(f"done in {_minutes(elapsed)} (estimated {_minutes(estimate)})")
    return 1 if run.failed else 0


if __name__ == "__main__":
    sys.exit(main())
