"""Facts about the machine and the run that a reader needs to compare two benchmark runs."""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

__all__ = ["describe", "load_average", "pin_cpus", "pin_process"]

_WS_PACKAGE = (
    Path(__file__).resolve().parent.parent / "tests/interop/node/node_modules/ws/package.json"
)


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _speedups() -> str:
    """Whether the fullduplex servers will run with the C accelerator (they inherit the env)."""
    if os.environ.get("FULLDUPLEX_NO_EXTENSIONS"):
        return "disabled (FULLDUPLEX_NO_EXTENSIONS)"
    try:
        module = importlib.import_module("fullduplex.protocol._speedups")
    except ImportError:
        return "not built (pure Python)"
    return f"built ({getattr(module, 'simd', '?')})"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _pinning(cpus: tuple[int, int] | None) -> str:
    if cpus is None:
        return "none (the OS places the processes)"
    server, other = cpus
    return (
        f"server (all its threads) on CPU {server}; load generator on CPU {server} for (a) "
        f"and rr16z, on CPU {other} for the rest"
    )


def _node_versions() -> str:
    """Node's version and the ws package's, as the node-ws server loads them."""
    node = shutil.which("node")
    if node is None:
        return "node not installed"
    try:
        version = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        version = "?"
    try:
        ws = json.loads(_WS_PACKAGE.read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError):
        ws = "not installed (make node-deps)"
    return f"node {version}, ws {ws}"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, or "unknown"."""
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def pin_cpus() -> tuple[int, int] | None:
    """The two CPUs to pin the servers and the load generator to, or None where pinning is
    impossible (no sched_setaffinity, or fewer than two CPUs available)."""
    getaffinity = getattr(os, "sched_getaffinity", None)
    if getaffinity is None:
        return None
    available = sorted(getaffinity(0))
    if len(available) < 2:
        return None
    return available[0], available[1]


def pin_process(pid: int, cpu: int) -> None:
    """Pin every thread of a process to one CPU (a server's helper threads, Node's among them,
    would otherwise run on the load generator's CPU). Threads gone meanwhile are skipped."""
    try:
        threads = [int(name) for name in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        threads = [pid]
    for thread in threads:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.sched_setaffinity(thread, {cpu})


def describe(*, cpus: tuple[int, int] | None) -> str:
    """A Markdown list: machine, Python, pinning, library versions, load average.

    Call it before starting the servers, so the load average shows only the rest of the
    machine.
    """
    return "\n".join(
        [
            f"- machine: {_cpu_model()}, {os.cpu_count()} CPUs, {platform.system()} "
            f"{platform.release()}",
            f"- Python {platform.python_version()}; uvloop {_version('uvloop')}, "
            f"aiofastnet {_version('aiofastnet')}",
            f"- CPU pinning: {_pinning(cpus)}",
            f"- fullduplex {_version('fullduplex')}, C speedups {_speedups()}",
            f"- websockets {_version('websockets')}, aiohttp {_version('aiohttp')}, "
            f"picows {_version('picows')}, {_node_versions()}",
            f"- load average before the run: {load_average()}",
        ]
    )
