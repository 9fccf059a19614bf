"""The workloads, and how to run the C load generator (bench/loadgen.c) for one of them.

Each case is one process of the compiled load generator (see :mod:`bench.build`), which prints
one JSON line; :func:`run_case` returns it as a dict. Idle workloads print a ``{"ready": true}``
line once every connection is open and hold them until their stdin closes:
:func:`run_idle` measures the server in between.
"""

from __future__ import annotations

import json
import selectors
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "WORKLOADS",
    "LoadgenError",
    "Workload",
    "loadgen_command",
    "run_case",
    "run_idle",
    "settled_rss_kib",
    "vm_rss_kib",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Workload:
    """One benchmark case, as the C load generator names it.

    Attributes:
        name: Its key on every command line, in JSON and in the tables.
        title: What it is, for the table.
        kind: "rr" (1 connection, 1 message in flight), "stream" (messages in flight on
            every connection), "idle", "hs" (handshakes) or "bcast" (broadcast).
        compression: The load generator offers permessage-deflate (the server needs it).
        default: Run when ``--workloads`` is not given (the ASGI rows' workloads are not).
    """

    name: str
    title: str
    kind: str
    compression: bool = False
    default: bool = True

    @property
    def mode(self) -> str:
        """The server mode it needs: "broadcast" or "echo"."""
        return "broadcast" if self.kind == "bcast" else "echo"

    @property
    def same_cpu(self) -> bool:
        """Pinned, the load generator shares the server's CPU (one message in flight: the two
        never run at once, and a wake-up across CPUs costs ~50 us on this VM, most of a round
        trip); otherwise it runs on the other CPU, in parallel with the server."""
        return self.kind == "rr"


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("rr16", "(a) req/resp, 16 B text", "rr"),
        Workload("rr1k", "(a) req/resp, 1 KiB text", "rr"),
        Workload("conc100x1", "(b) 100 conns x 1 in flight, 64 B text", "stream"),
        Workload("conc100x16", "(b) 100 conns x 16 in flight, 64 B text", "stream"),
        Workload("big1m", "(c) 1 MiB binary echo", "stream"),
        Workload("big16m", "(c) 16 MiB binary echo", "stream"),
        Workload("idle5000", "(d) 5,000 idle connections", "idle"),
        Workload("hs", "(e) handshakes, 8 in parallel", "hs"),
        Workload("bcast1k", "(f) broadcast 64 B to 1,000 clients", "bcast"),
        Workload("bcast10k", "(f) broadcast 64 B to 10,000 clients", "bcast"),
        Workload("rr16z", "(g) req/resp, 16 B text, deflate", "rr", compression=True),
        Workload("big1mz", "(g) 1 MiB binary echo, deflate", "stream", compression=True),
        Workload("idle5000z", "(g) 5,000 idle connections, deflate", "idle", compression=True),
        # Issue 13's ASGI echo: 100 connections, each waiting for its echo before the next.
        Workload("conc100rr16", "(h) 100 conns x 1 in flight, 16 B text", "stream", default=False),
        Workload("conc100rr1k", "(h) 100 conns x 1 in flight, 1 KiB text", "stream", default=False),
    )
}


class LoadgenError(Exception):
    """The load generator failed (non-zero exit, no result, or past its time bound)."""


def loadgen_command(
    binary: Path,
    url: str,
    workload: str,
    *,
    duration: float,
    warmup: float,
    server_pid: int | None = None,
    cpu: int | None = None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """The command line of one load generator run."""
    command = [str(binary), "--url", url, "--workload", workload]
    command += ["--duration", f"{duration:g}", "--warmup", f"{warmup:g}"]
    if server_pid is not None:
        command += ["--server-pid", str(server_pid)]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    return command + list(extra)


def _result(stdout: str, returncode: int | None, stderr: str, what: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if returncode != 0 or not lines:
        tail = " / ".join(stderr.strip().splitlines()[-3:]) or "(no stderr)"
        raise LoadgenError(f"{what} failed (exit {returncode}): {tail}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_case(command: list[str], *, bound: float) -> dict[str, Any]:
    """Run one load generator process and return its result line.

    Args:
        command: From :func:`loadgen_command`.
        bound: Seconds after which the process is killed (it has its own bounds too).

    Raises:
        LoadgenError: On a non-zero exit (a server error, a wrong echo), or past ``bound``.
    """
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=bound, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LoadgenError(f"load generator still running after {bound:.0f} s") from exc
    return _result(proc.stdout, proc.returncode, proc.stderr, "load generator")


def run_idle(
    command: list[str], *, bound: float, measure: Callable[[], T]
) -> tuple[dict[str, Any], T]:
    """Run an idle workload: once every connection is open, call ``measure``, then let the load
    generator close them all (by closing its stdin).

    Args:
        command: From :func:`loadgen_command`, with ``--hold`` as a bound in case this process
            dies.
        bound: Seconds to wait for the "ready" line, and then for the result.
        measure: Called once, while the connections are open and idle.

    Returns:
        The result line and what ``measure`` returned.

    Raises:
        LoadgenError: If the load generator fails or exceeds ``bound``.
    """
    # stderr to a file: nobody reads it while the connections are open.
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True
        )
        try:
            assert proc.stdout is not None and proc.stdin is not None
            with selectors.DefaultSelector() as selector:
                selector.register(proc.stdout, selectors.EVENT_READ)
                ready = selector.select(bound)
            line = proc.stdout.readline() if ready else ""
            if '"ready": true' not in line:
                proc.kill()
                proc.wait()
                errors.seek(0)
                _result(line, proc.returncode or 1, errors.read(), "idle load generator")
                raise LoadgenError(f"idle load generator not ready after {bound:.0f} s")
            measured = measure()
            proc.stdin.close()  # the signal to close the connections
            try:
                proc.wait(timeout=bound)
            except subprocess.TimeoutExpired as exc:
                raise LoadgenError(
                    f"idle load generator still running after {bound:.0f} s"
                ) from exc
            # One short line left: it fit in the pipe, so the process could exit.
            stdout = proc.stdout.read()
            errors.seek(0)
            return _result(stdout, proc.returncode, errors.read(), "idle load generator"), measured
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def vm_rss_kib(pid: int) -> int:
    """The resident set size of a process, in KiB (VmRSS in /proc/PID/status)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise LoadgenError(f"no VmRSS for process {pid}")


def settled_rss_kib(pid: int, *, settle: float = 0.5, limit: float = 3.0) -> int:
    """The server's RSS once it stops moving: after ``settle`` seconds, sampled every 0.25 s
    until two samples agree within 1% or ``limit`` seconds have passed."""
    time.sleep(settle)
    previous = vm_rss_kib(pid)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        time.sleep(0.25)
        current = vm_rss_kib(pid)
        if abs(current - previous) <= previous / 100:
            return current
        previous = current
    return previous
