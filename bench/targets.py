"""``python -m bench.targets RESULTS.json``: issue 4's targets, met or not, from a run's JSON.

Reads what ``python -m bench --json RESULTS.json`` wrote and prints one Markdown table: the
compiled fullduplex (``fullduplex-cb``, the callback style) against picows on workloads a, b, c
and e, its idle memory, its broadcast to 10,000 clients against websockets, and the
pure-Python build (``fullduplex-py``) against websockets on a, b and e; on both event loops.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

__all__ = ["main", "median", "targets_table"]

# The figure each workload is judged on; every other workload is judged on its rate.
_FIGURE = {
    "idle5000": "kib_per_conn",
    "idle5000z": "kib_per_conn",
    "bcast1k": "median_ms",
    "bcast10k": "median_ms",
}
_LOOPS = ("", " (uvloop)")


def median(results: dict[str, Any], server: str, workload: str) -> float | None:
    """The median figure of a server's successful runs of a workload, or None."""
    rows = results.get(server, {}).get(workload, [])
    values = [row[_FIGURE.get(workload, "rate")] for row in rows if row.get("ok")]
    return statistics.median(values) if values else None


def _shown(value: float) -> str:
    return f"{value:,.0f}" if value > 100 else f"{value:.3g}"


def _ratio_row(
    results: dict[str, Any], label: str, ours: str, theirs: str, workload: str, *, at_least: float
) -> str:
    cells: list[str] = []
    met: bool | None = True
    for loop in _LOOPS:
        mine = median(results, ours + loop, workload)
        other = median(results, theirs + loop, workload)
        if mine is None or other is None:
            cells.append("-")
            met = None  # not measured: neither met nor missed
            continue
        # Times: lower is better, so the ratio is inverted.
        ratio = other / mine if workload.startswith("bcast") else mine / other
        if met is not None:
            met = met and ratio >= at_least
        cells.append(f"{ratio:.2f}x ({_shown(mine)} vs {_shown(other)})")
    verdict = "not measured" if met is None else "yes" if met else "**no**"
    return f"| {label} | {cells[0]} | {cells[1]} | {verdict} |"


def targets_table(results: dict[str, Any]) -> str:
    """Return the Markdown table of the targets for these results."""
    lines = ["| target | stock loop | uvloop | met |", "| --- | ---: | ---: | --- |"]
    for workload in ("rr16", "rr1k", "conc100x1", "conc100x16", "big1m", "big16m", "hs"):
        lines.append(
            _ratio_row(
                results,
                f"{workload}: fullduplex-cb / picows >= 1",
                "fullduplex-cb",
                "picows",
                workload,
                at_least=1.0,
            )
        )
    memory = [median(results, "fullduplex-cb" + loop, "idle5000") for loop in _LOOPS]
    shown = [f"{kib:.2f} KiB" if kib is not None else "-" for kib in memory]
    if any(kib is None for kib in memory):
        verdict = "not measured"
    else:
        verdict = "yes" if all(kib is not None and kib <= 4 for kib in memory) else "**no**"
    lines.append(f"| idle5000: fullduplex-cb <= 4 KiB | {shown[0]} | {shown[1]} | {verdict} |")
    lines.append(
        _ratio_row(
            results,
            "bcast10k: websockets / fullduplex-cb time >= 5",
            "fullduplex-cb",
            "websockets",
            "bcast10k",
            at_least=5.0,
        )
    )
    for workload in ("rr16", "rr1k", "conc100x1", "conc100x16", "hs"):
        lines.append(
            _ratio_row(
                results,
                f"{workload}: fullduplex-py / websockets >= 1.2",
                "fullduplex-py",
                "websockets",
                workload,
                at_least=1.2,
            )
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the targets table for a results file; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench.targets", description=__doc__)
    parser.add_argument("results", type=Path, help="the JSON written by python -m bench --json")
    args = parser.parse_args(argv)
    print(targets_table(json.loads(args.results.read_text())["results"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
