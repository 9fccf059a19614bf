"""Tests for bench/targets.py: medians, inverted ratios for times, met or not."""

from __future__ import annotations

from typing import Any

from bench.targets import median, targets_table

__all__: list[str] = []


def _results(cb_rate: float, picows_rate: float, cb_kib: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for loop in ("", " (uvloop)"):
        results["fullduplex-cb" + loop] = {
            "rr16": [{"ok": True, "rate": cb_rate}, {"ok": False, "rate": 1e9}],
            "idle5000": [{"ok": True, "kib_per_conn": cb_kib}],
            "bcast10k": [{"ok": True, "median_ms": 20.0}],
        }
        results["picows" + loop] = {"rr16": [{"ok": True, "rate": picows_rate}]}
        results["websockets" + loop] = {"bcast10k": [{"ok": True, "median_ms": 100.0}]}
    return results


def test_median_ignores_failed_runs() -> None:
    assert median(_results(50.0, 40.0, 3.0), "fullduplex-cb", "rr16") == 50.0
    assert median(_results(50.0, 40.0, 3.0), "fullduplex-cb", "hs") is None


def test_met_and_not_met() -> None:
    table = targets_table(_results(50.0, 40.0, 3.0)).splitlines()
    rr16 = next(line for line in table if line.startswith("| rr16: fullduplex-cb"))
    assert "1.25x" in rr16 and rr16.endswith("| yes |")
    bcast = next(line for line in table if line.startswith("| bcast10k"))
    assert "5.00x" in bcast and bcast.endswith("| yes |")  # 100 ms / 20 ms: times inverted
    slower = targets_table(_results(30.0, 40.0, 5.0)).splitlines()
    assert next(line for line in slower if line.startswith("| rr16: fullduplex-cb")).endswith(
        "| **no** |"
    )
    assert next(line for line in slower if line.startswith("| idle5000")).endswith("| **no** |")


def test_a_workload_not_run_is_not_counted_as_met() -> None:
    table = targets_table(_results(50.0, 40.0, 3.0)).splitlines()
    assert next(line for line in table if line.startswith("| hs: fullduplex-cb")).endswith(
        "| not measured |"
    )
