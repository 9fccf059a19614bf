"""Turns repeated load-generator results into the benchmark tables (Markdown, so the output can
be pasted into bench/README.md as it is)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.loadgen import WORKLOADS

__all__ = ["METRICS", "Metric", "Results", "cpu_table", "format_value", "results_table", "spread"]

Result = dict[str, Any]
# server name -> workload name -> one result per repeat
Results = dict[str, dict[str, list[Result]]]


@dataclass(frozen=True, slots=True)
class Metric:
    """One row of the table: a key of the load generator's result and how to show it."""

    label: str
    key: str
    unit: str
    higher_is_better: bool


_RATE = Metric("round trips/s", "messages_per_s", "/s", True)
_P50 = Metric("p50 latency", "p50_us", "us", False)
_P99 = Metric("p99 latency", "p99_us", "us", False)
_SERVER_CPU = Metric("server CPU / message", "server_us_per_message", "us", False)

# Workload name -> the metrics shown for it, in order.
METRICS: dict[str, tuple[Metric, ...]] = {
    "rr16": (_RATE, _P50, _P99, _SERVER_CPU),
    "rr1k": (_RATE, _P50, _P99, _SERVER_CPU),
    "conc64": (Metric("messages/s", "messages_per_s", "/s", True), _SERVER_CPU),
    "big1m": (Metric("MB/s", "mb_per_s", "MB/s", True), _SERVER_CPU),
}


def format_value(value: float, unit: str) -> str:
    """Show a number the way a reader compares them: thousands grouped, few digits."""
    if unit == "us":
        return f"{value:,.0f} us" if value >= 100 else f"{value:.1f} us"
    if unit == "%":
        return f"{value * 100:.0f}%"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def spread(values: Sequence[float], unit: str) -> str:
    """The median and, when repeated, the min-max range: ``12,345 (12,001-12,500)``."""
    median = statistics.median(values)
    text = format_value(median, unit)
    if len(values) > 1:
        low = format_value(min(values), unit).removesuffix(" us").removesuffix("%")
        high = format_value(max(values), unit)
        text += f" ({low}-{high})"
    return text


def _values(results: Results, server: str, workload: str, key: str) -> list[float]:
    return [r[key] for r in results.get(server, {}).get(workload, []) if r.get(key) is not None]


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def results_table(results: Results, servers: Sequence[str], workloads: Sequence[str]) -> str:
    """The main table: one row per workload metric, the median (min-max) per server, and the
    ratio fullduplex / other for every other server.

    Args:
        results: server -> workload -> results of every repeat.
        servers: Column order.
        workloads: Row order (keys of METRICS).

    Returns:
        A Markdown table.
    """
    others = [s for s in servers if s != "fullduplex"] if "fullduplex" in servers else []
    header = ["workload", "metric", *servers, *(f"fullduplex / {other}" for other in others)]
    lines = [_row(header), _row(["---"] * 2 + ["---:"] * (len(header) - 2))]
    for workload in workloads:
        title, metrics = WORKLOADS[workload].title, METRICS[workload]
        for index, metric in enumerate(metrics):
            cells = [title if index == 0 else "", metric.label]
            medians: dict[str, float] = {}
            for server in servers:
                values = _values(results, server, workload, metric.key)
                if values:
                    medians[server] = statistics.median(values)
                    cells.append(spread(values, metric.unit))
                else:
                    cells.append("n/a")
            for other in others:
                if "fullduplex" in medians and medians.get(other):
                    ratio = medians["fullduplex"] / medians[other]
                    better = (ratio > 1) == metric.higher_is_better and ratio != 1
                    cells.append(f"**{ratio:.2f}x**" if better else f"{ratio:.2f}x")
                else:
                    cells.append("n/a")
            lines.append(_row(cells))
    return "\n".join(lines)


def cpu_table(results: Results, servers: Sequence[str], workloads: Sequence[str]) -> str:
    """CPU use during each workload, as a share of one core (median over repeats): the load
    generator's own (getrusage), the server's (/proc/PID/stat) and everything else the machine
    did meanwhile (/proc/stat: other processes, interrupts), per server under test. A load
    generator near 100% means the client, not the server, limits that row; a busy rest of the
    machine means the measurement competed for CPUs.

    Returns:
        A Markdown table.
    """
    header = ["workload"]
    for server in servers:
        header += [f"loadgen CPU ({server})", f"{server} server CPU", "rest of machine"]
    lines = [_row(header), _row(["---"] + ["---:"] * (len(header) - 1))]
    for workload in workloads:
        cells = [WORKLOADS[workload].title]
        for server in servers:
            for key in ("client_cpu", "server_cpu", "other_cpu"):
                values = _values(results, server, workload, key)
                cells.append(format_value(statistics.median(values), "%") if values else "n/a")
        lines.append(_row(cells))
    return "\n".join(lines)
