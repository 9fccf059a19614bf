"""``python -m bench``: run the side-by-side benchmark and print the tables.

Each repeat starts every server (each in its own process), then runs every workload against each
server in turn, one load generator process per case, then stops the servers. Progress goes to
stderr, the tables to stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any

from bench.loadgen import WORKLOADS
from bench.machine import describe, pin_cpus
from bench.report import Results, cpu_table, results_table
from bench.servers import ROOT, SERVERS, RunningServer, ServerError, running_server

__all__ = [
    "NOISY_MACHINE",
    "WARMUP_SECONDS",
    "Settings",
    "main",
    "parse_settings",
    "run_loadgen",
    "run_repeat",
]

# Above this share of one CPU used by other processes during the cases, the run is flagged.
NOISY_MACHINE = 0.25
# Untimed traffic per workload sent to each freshly started server before measuring.
WARMUP_SECONDS = 0.4


@dataclass(frozen=True, slots=True)
class Settings:
    """What to run, from the command line."""

    servers: list[str]
    workloads: list[str]
    uvloop: bool
    repeat: int
    duration: float
    warmup: float
    cpus: tuple[int, int] | None
    json_path: str | None


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_loadgen(
    url: str, pid: int, workloads: list[str], settings: Settings
) -> tuple[list[dict[str, Any]], str | None]:
    """Run the load generator process against one server.

    Returns:
        The results of the workloads that completed, and an error message if it failed
        (non-zero exit or past its time bound) or None.
    """
    command = [sys.executable, "-m", "bench.loadgen", "--url", url, "--server-pid", str(pid)]
    command += ["--duration", str(settings.duration), "--warmup", str(settings.warmup)]
    command += ["--workloads", ",".join(workloads)]
    if settings.cpus is not None:
        command += ["--cpus", ",".join(map(str, settings.cpus))]
    # Generous, but bounded: every case plus connection set-up, close handshakes and timeouts.
    bound = len(workloads) * (settings.duration + settings.warmup + 30) + 30
    try:
        proc = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=bound, check=False
        )
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        error: str | None = f"load generator still running after {bound:.0f} s"
    else:
        stdout = proc.stdout
        error = None
        if proc.returncode != 0:
            tail = "\n  ".join(proc.stderr.strip().splitlines()[-3:])
            error = f"load generator failed ({proc.returncode}): {tail}"
    results = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return results, error


def _summary(result: dict[str, Any]) -> str:
    text = f"{result['workload']}: {result['messages_per_s']:,.0f} msg/s"
    if result["workload"] == "big1m":
        text += f", {result['mb_per_s']:,.0f} MB/s"
    if "p50_us" in result:
        text += f", p50 {result['p50_us']:.0f} us, p99 {result['p99_us']:.0f} us"
    server_cpu = result.get("server_cpu")
    server = f"{server_cpu:.0%}" if server_cpu is not None else "?"
    return text + f" (cpu: loadgen {result['client_cpu']:.0%}, server {server})"


def run_repeat(index: int, settings: Settings, results: Results, failed: dict[str, str]) -> None:
    """Run one repeat: start every server, then each workload on each server in turn.

    The servers all run for the whole repeat (an idle asyncio server costs nothing), so the
    two measurements of one workload are seconds apart: on a shared machine whose load drifts,
    that keeps the comparison fair. The order rotates between repeats so that neither server
    always goes first. Results are appended to ``results``; a server that fails is recorded in
    ``failed`` and skipped from then on.
    """
    servers = settings.servers
    order = servers[index % len(servers) :] + servers[: index % len(servers)]
    _log(f"repeat {index + 1}/{settings.repeat}")
    with ExitStack() as stack:
        running: dict[str, RunningServer] = {}
        for server in order:
            if server in failed:
                continue
            try:
                running[server] = stack.enter_context(
                    running_server(server, uvloop=settings.uvloop)
                )
            except ServerError as exc:
                failed[server] = str(exc)
                _log(f"  {server} skipped from now on: {exc}")
        # A fresh server runs ~2x slower for its first second or so of traffic (measured: rr16
        # climbs from ~13k to ~23k round trips/s over 1 s): warm every server up on every
        # workload first, and throw those results away.
        warmup = replace(settings, duration=WARMUP_SECONDS, warmup=0.05)
        for server, process in running.items():
            _, error = run_loadgen(process.url, process.pid, settings.workloads, warmup)
            if error is not None:
                failed[server] = error
                _log(f"  {server} skipped from now on: {error}")
        for workload in settings.workloads:
            for server, process in running.items():
                if server in failed:
                    continue
                done, error = run_loadgen(process.url, process.pid, [workload], settings)
                for result in done:
                    _log(f"  {server:<10} {_summary(result)}")
                    results[server].setdefault(result["workload"], []).append(result)
                if error is not None:
                    # A server that fails once fails again: do not spend more time on it.
                    failed[server] = error
                    _log(f"  {server} skipped from now on: {error}")


def parse_settings(argv: list[str] | None) -> Settings:
    """Parse the command line (exits with a usage message on bad arguments)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="fullduplex vs other WebSocket servers, side by side."
    )
    parser.add_argument("--quick", action="store_true", help="1 repeat, 1 s per case")
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help=f"comma-separated servers to run (default and choices: {','.join(SERVERS)})",
    )
    parser.add_argument("--uvloop", action="store_true", help="run the servers on uvloop")
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated workloads (default: all of {','.join(WORKLOADS)})",
    )
    parser.add_argument("--repeat", type=int, default=None, help="repeats (default 3)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per case (2)")
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="let the OS place the processes (default: pin them, see bench/README.md)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write every raw result there")
    args = parser.parse_args(argv)
    servers = [s for s in args.servers.split(",") if s]
    workloads = [w for w in args.workloads.split(",") if w]
    for name in servers:
        if name not in SERVERS:
            parser.error(f"unknown server {name!r}; choose from {', '.join(SERVERS)}")
    for name in workloads:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    duration = args.duration if args.duration is not None else (1.0 if args.quick else 2.0)
    if repeat < 1 or duration <= 0:
        parser.error("--repeat and --duration must be positive")
    return Settings(
        servers=servers,
        workloads=workloads,
        uvloop=args.uvloop,
        repeat=repeat,
        duration=duration,
        warmup=min(0.2, duration / 5),
        cpus=None if args.no_pin else pin_cpus(),
        json_path=args.json,
    )


def _noise_warning(results: Results) -> str | None:
    others = [
        r["other_cpu"]
        for per_server in results.values()
        for per_workload in per_server.values()
        for r in per_workload
        if r.get("other_cpu") is not None
    ]
    if not others or statistics.median(others) <= NOISY_MACHINE:
        return None
    return (
        f"WARNING: other processes kept {statistics.median(others):.0%} of a CPU busy during "
        "the cases (median): these numbers are noisy; rerun on a quiet machine."
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables; return the exit status (1 if nothing ran)."""
    settings = parse_settings(argv)
    started = time.monotonic()
    facts = describe(uvloop=settings.uvloop, cpus=settings.cpus)
    results: Results = {server: {} for server in settings.servers}
    failed: dict[str, str] = {}
    for index in range(settings.repeat):
        run_repeat(index, settings, results, failed)

    servers, workloads = settings.servers, settings.workloads
    print(f"fullduplex benchmark: {settings.repeat} repeat(s) x {settings.duration:g} s per case")
    print(facts)
    print()
    print(results_table(results, servers, workloads))
    print()
    print("Median (min-max) over the repeats. Ratios > 1 favour fullduplex for rates, < 1 for")
    print("latencies and CPU per message; the better side is in bold.")
    print()
    print(cpu_table(results, servers, workloads))
    print()
    print("CPU use as a share of one core while the workload ran (median); rest of machine =")
    print("other processes and interrupts, from /proc/stat.")
    warning = _noise_warning(results)
    if warning:
        print(f"\n{warning}")
    for server, reason in failed.items():
        print(f"\n{server} did not run: {reason}")
    if settings.json_path:
        with open(settings.json_path, "w", encoding="utf-8") as output:
            json.dump({"results": results, "failed": failed}, output, indent=1)
    _log(f"done in {time.monotonic() - started:.0f} s")
    return 1 if len(failed) == len(servers) else 0


if __name__ == "__main__":
    sys.exit(main())
