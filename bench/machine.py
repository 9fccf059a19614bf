"""Facts about the machine and the run that a reader needs to compare two benchmark runs."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform

__all__ = ["describe", "load_average", "pin_cpus"]


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
        f"server on CPU {server}; load generator on CPU {server} for (a), on CPU {other} "
        "for (b) and (c)"
    )


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


def describe(*, uvloop: bool, cpus: tuple[int, int] | None) -> str:
    """A Markdown list: machine, Python, event loop, pinning, library versions, load average.

    Call it before starting the servers, so the load average shows only the rest of the
    machine.
    """
    return "\n".join(
        [
            f"- machine: {_cpu_model()}, {os.cpu_count()} CPUs, {platform.system()} "
            f"{platform.release()}",
            f"- Python {platform.python_version()}, "
            f"server event loop: {'uvloop' if uvloop else 'asyncio'}",
            f"- CPU pinning: {_pinning(cpus)}",
            f"- fullduplex {_version('fullduplex')}, C speedups {_speedups()}; "
            f"websockets {_version('websockets')}",
            f"- load average before the run: {load_average()}",
        ]
    )
