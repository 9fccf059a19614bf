"""``python -m bench.targets RESULTS.json``: issue 4's targets, met or not, from a run's JSON.

Reads what ``python -m bench --json RESULTS.json`` wrote and prints one Markdown table: the
compiled fullduplex (``fullduplex-cb``, the callback style) against picows on workloads a, b, c
and e, its idle memory, its broadcast to 10,000 clients against websockets, and the
pure-Python build (``fullduplex-py``) against websockets on a, b and e; one column per event
loop (stock loop, aiofastnet, uvloop: see bench/README.md).

A target is met when every column measured meets it; a column without both figures shows
"-" and counts neither way, and a row with no column measured is "not measured". The
pure-Python rows are judged on the stock loop and uvloop only: aiofastnet's transports are
compiled code, so their aiofastnet column shows "-" even when the run measured it.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.report import Target
from bench.server_cli import LOOPS

__all__ = [
    "ASGI_UVICORN",
    "MEMORY_LOOPS",
    "PURE_PYTHON_LOOPS",
    "asgi_targets_table",
    "main",
    "median",
    "targets_table",
]

# The figure each workload is judged on; every other workload is judged on its rate.
_FIGURE = {
    "idle5000": "kib_per_conn",
    "idle5000z": "kib_per_conn",
    "bcast1k": "median_ms",
    "bcast10k": "median_ms",
}
#: The loops the pure-Python build is judged on: not aiofastnet, whose transports are compiled.
PURE_PYTHON_LOOPS = ("asyncio", "uvloop")
#: The loops idle memory is judged on: fullduplex's default transports. aiofastnet's transport
#: object alone is ~4.3 KiB per connection (an opt-in that trades memory for speed); its
#: figure is shown, marked, and not judged.
MEMORY_LOOPS = ("asyncio", "uvloop")


def median(results: dict[str, Any], label: str, workload: str) -> float | None:
    """The median figure of a row's successful runs of a workload, or None.

    ``label`` is the row's name in the results: ``fullduplex-cb``, ``picows (uvloop)``...
    """
    rows = results.get(label, {}).get(workload, [])
    values = [row[_FIGURE.get(workload, "rate")] for row in rows if row.get("ok")]
    return statistics.median(values) if values else None


def _shown(value: float) -> str:
    return f"{value:,.0f}" if value > 100 else f"{value:.3g}"


def _verdict(checks: Sequence[bool]) -> str:
    """Met when every measured column meets the target; nothing measured, no verdict."""
    if not checks:
        return "not measured"
    return "yes" if all(checks) else "**no**"


def _row(label: str, cells: Sequence[str], checks: Sequence[bool]) -> str:
    return f"| {label} | {' | '.join(cells)} | {_verdict(checks)} |"


def _ratio_row(
    results: dict[str, Any],
    label: str,
    ours: str,
    theirs: str,
    workload: str,
    *,
    at_least: float,
    loops: Sequence[str] = LOOPS,
) -> str:
    cells: list[str] = []
    checks: list[bool] = []
    for loop in LOOPS:
        mine = median(results, Target(ours, loop).label, workload)
        other = median(results, Target(theirs, loop).label, workload)
        if loop not in loops or mine is None or other is None:
            cells.append("-")  # not judged here, or not measured: neither met nor missed
            continue
        # Times: lower is better, so the ratio is inverted.
        ratio = other / mine if workload.startswith("bcast") else mine / other
        checks.append(ratio >= at_least)
        cells.append(f"{ratio:.2f}x ({_shown(mine)} vs {_shown(other)})")
    return _row(label, cells, checks)


def targets_table(results: dict[str, Any]) -> str:
    """Return the Markdown table of the targets for these results."""
    lines = [
        "| target | stock loop | aiofastnet | uvloop | met |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
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
    memory = [
        (loop, median(results, Target("fullduplex-cb", loop).label, "idle5000")) for loop in LOOPS
    ]
    lines.append(
        _row(
            "idle5000: fullduplex-cb <= 4 KiB",
            [
                "-"
                if kib is None
                else f"{kib:.2f} KiB" + ("" if loop in MEMORY_LOOPS else " (not judged)")
                for loop, kib in memory
            ],
            [kib <= 4 for loop, kib in memory if kib is not None and loop in MEMORY_LOOPS],
        )
    )
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
                loops=PURE_PYTHON_LOOPS,
            )
        )
    return "\n".join(lines)


#: uvicorn's own WebSocket implementations: issue 13's targets are against the best of them.
ASGI_UVICORN = ("asgi-uvicorn-sansio", "asgi-uvicorn-wsproto")
_ASGI_LOOPS = ("asyncio", "uvloop")


def _best_uvicorn(results: dict[str, Any], loop: str, workload: str) -> tuple[str, float] | None:
    """uvicorn's best implementation on this loop and workload: (name, figure), or None."""
    figures = [
        (name, value)
        for name in ASGI_UVICORN
        if (value := median(results, Target(name, loop).label, workload)) is not None
    ]
    if not figures:
        return None
    # Memory: the smallest is the best; rates: the largest.
    pick = min if workload.startswith("idle") else max
    return pick(figures, key=lambda item: item[1])


def asgi_targets_table(results: dict[str, Any]) -> str:
    """Issue 13's targets: the FastAPI echo on fullduplex's server (``asgi-fullduplex``) and
    on uvicorn with fullduplex's protocol class (``asgi-uvicorn-fd``), against uvicorn's best
    own implementation on the same loop: >= 1.5x on the 100-connection round trips, no more
    memory per idle connection."""
    lines = [
        "| target | stock loop | uvloop | met |",
        "| --- | ---: | ---: | --- |",
    ]
    for ours in ("asgi-fullduplex", "asgi-uvicorn-fd"):
        for workload in ("conc100rr16", "conc100rr1k", "idle5000"):
            memory = workload.startswith("idle")
            cells: list[str] = []
            checks: list[bool] = []
            for loop in _ASGI_LOOPS:
                mine = median(results, Target(ours, loop).label, workload)
                best = _best_uvicorn(results, loop, workload)
                if mine is None or best is None:
                    cells.append("-")
                    continue
                name, other = best
                short = name.removeprefix("asgi-uvicorn-")
                if memory:
                    checks.append(mine <= other)
                    cells.append(f"{mine:.2f} vs {other:.2f} KiB ({short})")
                else:
                    ratio = mine / other
                    checks.append(ratio >= 1.5)
                    cells.append(f"{ratio:.2f}x ({_shown(mine)} vs {_shown(other)}, {short})")
            goal = "<= uvicorn's best KiB/conn" if memory else "/ uvicorn's best >= 1.5"
            lines.append(_row(f"{workload}: {ours} {goal}", cells, checks))
        for workload in ("conc100rr16", "conc100rr1k"):
            lines.append(_cpu_row(results, ours, workload))
    return "\n".join(lines)


def _cpu_row(results: dict[str, Any], ours: str, workload: str) -> str:
    """The same comparison on the server's CPU time per message (lower is better), which
    holds when other processes share the machine and the rates swing with them."""
    cells: list[str] = []
    checks: list[bool] = []
    for loop in _ASGI_LOOPS:
        mine = _median_of(results, Target(ours, loop).label, workload, "server_us_per_op")
        figures = [
            (name, value)
            for name in ASGI_UVICORN
            if (
                value := _median_of(results, Target(name, loop).label, workload, "server_us_per_op")
            )
            is not None
        ]
        if mine is None or not figures or mine <= 0:
            cells.append("-")
            continue
        name, other = min(figures, key=lambda item: item[1])
        ratio = other / mine
        checks.append(ratio >= 1.5)
        short = name.removeprefix("asgi-uvicorn-")
        cells.append(f"{ratio:.2f}x ({mine:.1f} vs {other:.1f} us, {short})")
    return _row(f"{workload} server CPU/msg: uvicorn's best / {ours} >= 1.5", cells, checks)


def _median_of(results: dict[str, Any], label: str, workload: str, key: str) -> float | None:
    rows = results.get(label, {}).get(workload, [])
    values = [row[key] for row in rows if row.get("ok") and row.get(key) is not None]
    return statistics.median(values) if values else None


def main(argv: list[str] | None = None) -> int:
    """Print the targets table for a results file; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench.targets", description=__doc__)
    parser.add_argument("results", type=Path, help="the JSON written by python -m bench --json")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())["results"]
    asgi = any(label.startswith("asgi-") for label in results)
    if not asgi or any(not label.startswith("asgi-") for label in results):
        print(targets_table(results))
    if asgi:
        print(asgi_targets_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
