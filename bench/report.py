"""Turns repeated load-generator results into the benchmark tables (Markdown, so the output can
be pasted into bench/README.md as it is)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.loadgen import WORKLOADS, Workload

__all__ = [
    "REFERENCE",
    "Metric",
    "Results",
    "Target",
    "format_value",
    "lead",
    "metrics_for",
    "spread",
    "summary_table",
    "workload_table",
]

Result = dict[str, Any]
# target label -> workload name -> one result per repeat
Results = dict[str, dict[str, list[Result]]]

# The server every other is compared with, on the same event loop; the ASGI rows (a FastAPI
# app on each ASGI server) are compared with the same app on fullduplex's server.
REFERENCE = "fullduplex"
ASGI_REFERENCE = "asgi-fullduplex"


# The loop whose rows carry no label: the stock one (and rows of servers with no loop, Node).
_UNLABELLED = "asyncio"


@dataclass(frozen=True, slots=True)
class Target:
    """One server on one event loop: a row of the tables.

    Attributes:
        server: A key of bench.servers.SERVERS.
        loop: One of bench.server_cli.LOOPS; None for a server with no loop to choose (Node).
    """

    server: str
    loop: str | None

    @property
    def label(self) -> str:
        """How tables and JSON name it: ``websockets``, ``websockets (aiofastnet)`` or
        ``websockets (uvloop)``; a server with no loop goes by its name alone."""
        if self.loop is None or self.loop == _UNLABELLED:
            return self.server
        return f"{self.server} ({self.loop})"

    @property
    def reference(self) -> Target:
        """The fullduplex target on the same loop, that this one is compared with (on the
        stock loop for a server with no loop: Node); for an ASGI row, the ASGI app on
        fullduplex's server."""
        reference = ASGI_REFERENCE if self.server.startswith("asgi-") else REFERENCE
        return Target(reference, self.loop or _UNLABELLED)


@dataclass(frozen=True, slots=True)
class Metric:
    """One column: a key of the load generator's result and how to show it."""

    label: str
    key: str
    unit: str
    higher_is_better: bool
    scale: float = 1.0  # shown value = raw value * scale


_SERVER_US = Metric("server CPU/msg", "server_us_per_op", "us", False)
_SERVER_MS = Metric("server CPU/msg", "server_us_per_op", "ms", False, 1e-3)

# Workload kind -> its columns, the first one being the headline figure (the summary and the
# "fullduplex lead" column use it).
_METRICS: dict[str, tuple[Metric, ...]] = {
    "rr": (
        Metric("round trips/s", "rate", "/s", True),
        Metric("p50", "p50_us", "us", False),
        Metric("p99", "p99_us", "us", False),
        _SERVER_US,
    ),
    "stream": (Metric("messages/s", "rate", "/s", True), _SERVER_US),
    "big": (Metric("MB/s", "rate", "MB/s", True), _SERVER_MS),
    "idle": (
        Metric("KiB/conn", "kib_per_conn", "KiB", False),
        Metric("server RSS", "rss_after_kib", "MiB", False, 1 / 1024),
        Metric("opened/s", "rate", "/s", True),
    ),
    "hs": (
        Metric("handshakes/s", "rate", "/s", True),
        Metric("server CPU/hs", "server_us_per_op", "us", False),
    ),
    "bcast": (
        Metric("median", "median_ms", "ms", False),
        Metric("p90", "p90_ms", "ms", False),
        Metric("server CPU/round", "server_us_per_op", "ms", False, 1e-3),
    ),
}


def metrics_for(workload: Workload) -> tuple[Metric, ...]:
    """The columns shown for a workload, headline first."""
    if workload.kind == "stream" and workload.name.startswith("big"):
        return _METRICS["big"]
    return _METRICS[workload.kind]


def format_value(value: float, unit: str) -> str:
    """Show a number the way a reader compares them: thousands grouped, few digits."""
    if unit == "%":
        return f"{value * 100:.0f}%"
    if value >= 100:
        text = f"{value:,.0f}"
    elif value >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}" if unit in {"us", "ms", "KiB", "MiB"} else text


def spread(values: Sequence[float], unit: str) -> str:
    """The median and, when repeated, the min-max range: ``12,345 (12,001-12,500)``."""
    text = format_value(statistics.median(values), unit)
    if len(values) > 1:
        low = format_value(min(values), unit).split(" ")[0]
        high = format_value(max(values), unit).split(" ")[0]
        text += f" ({low}-{high})"
    return text


def _values(results: Results, label: str, workload: str, metric: Metric) -> list[float]:
    return [
        r[metric.key] * metric.scale
        for r in results.get(label, {}).get(workload, [])
        if r.get(metric.key) is not None
    ]


def lead(results: Results, target: Target, workload: str) -> float | None:
    """How far fullduplex (same loop) is ahead of ``target`` on the workload's headline
    metric, as a factor: > 1 means fullduplex is better (faster, or smaller for latencies and
    memory), whatever the metric's direction. None without both medians."""
    metric = metrics_for(WORKLOADS[workload])[0]
    ours = _values(results, target.reference.label, workload, metric)
    theirs = _values(results, target.label, workload, metric)
    if not ours or not theirs:
        return None
    mine, other = statistics.median(ours), statistics.median(theirs)
    if min(mine, other) <= 0:
        return None
    return mine / other if metric.higher_is_better else other / mine


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _lead_cell(value: float | None, target: Target) -> str:
    if target.server in (REFERENCE, ASGI_REFERENCE):
        return "1"
    if value is None:
        return "n/a"
    text = f"{value:.2f}x"
    # Bold only what reads as ahead once rounded: 1.004 shows as 1.00x, not bold.
    return f"**{text}**" if text > "1.00x" and value > 1 else text


def workload_table(results: Results, targets: Sequence[Target], workload: str) -> str:
    """One workload: a row per target with every metric as median (min-max) over the repeats,
    the fullduplex lead, and the CPU use of the load generator, the server and the rest of the
    machine (shares of one core, medians), so a reader can see who limited the row.

    Returns:
        A Markdown table, or "" if no target has a result for the workload.
    """
    metrics = metrics_for(WORKLOADS[workload])
    rows = [t for t in targets if results.get(t.label, {}).get(workload)]
    if not rows:
        return ""
    header = ["server", *(f"{m.label}" for m in metrics), "fullduplex lead"]
    header += ["loadgen CPU", "server CPU", "rest of machine"]
    lines = [_row(header), _row(["---"] + ["---:"] * (len(header) - 1))]
    for target in rows:
        cells = [target.label]
        for metric in metrics:
            values = _values(results, target.label, workload, metric)
            cells.append(spread(values, metric.unit) if values else "n/a")
        cells.append(_lead_cell(lead(results, target, workload), target))
        for key in ("client_cpu", "server_cpu", "other_cpu"):
            values = _values(results, target.label, workload, Metric(key, key, "%", False))
            cells.append(format_value(statistics.median(values), "%") if values else "n/a")
        lines.append(_row(cells))
    return "\n".join(lines)


def summary_table(results: Results, targets: Sequence[Target], workloads: Sequence[str]) -> str:
    """Every target's headline figure per workload (medians), in one table.

    Returns:
        A Markdown table.
    """
    header = ["server"]
    for name in workloads:
        metric = metrics_for(WORKLOADS[name])[0]
        header.append(f"{name} {metric.label}")
    lines = [_row(header), _row(["---"] + ["---:"] * (len(header) - 1))]
    for target in targets:
        if not results.get(target.label):
            continue
        cells = [target.label]
        for name in workloads:
            metric = metrics_for(WORKLOADS[name])[0]
            values = _values(results, target.label, name, metric)
            cells.append(format_value(statistics.median(values), metric.unit) if values else "-")
        lines.append(_row(cells))
    return "\n".join(lines)
