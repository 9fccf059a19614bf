"""Tests for bench/targets.py: medians, inverted ratios for times, met or not, on three loops."""

from __future__ import annotations

from typing import Any

from bench.targets import asgi_targets_table, median, targets_table

__all__: list[str] = []

_LABELS = ("", " (aiofastnet)", " (uvloop)")


def _results(
    cb_rate: float, picows_rate: float, cb_kib: float, labels: tuple[str, ...] = _LABELS
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for loop in labels:
        results["fullduplex-cb" + loop] = {
            "rr16": [{"ok": True, "rate": cb_rate}, {"ok": False, "rate": 1e9}],
            "idle5000": [{"ok": True, "kib_per_conn": cb_kib}],
            "bcast10k": [{"ok": True, "median_ms": 20.0}],
        }
        results["picows" + loop] = {"rr16": [{"ok": True, "rate": picows_rate}]}
        results["websockets" + loop] = {
            "bcast10k": [{"ok": True, "median_ms": 100.0}],
            "rr16": [{"ok": True, "rate": 100.0}],
        }
        results["fullduplex-py" + loop] = {"rr16": [{"ok": True, "rate": 130.0}]}
    return results


def _line(table: str, start: str) -> list[str]:
    """The cells of the row that starts with ``start``: target, three loops, verdict."""
    line = next(line for line in table.splitlines() if line.startswith(f"| {start}"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_median_ignores_failed_runs() -> None:
    assert median(_results(50.0, 40.0, 3.0), "fullduplex-cb", "rr16") == 50.0
    assert median(_results(50.0, 40.0, 3.0), "fullduplex-cb (aiofastnet)", "rr16") == 50.0
    assert median(_results(50.0, 40.0, 3.0), "fullduplex-cb", "hs") is None


def test_three_loop_columns() -> None:
    table = targets_table(_results(50.0, 40.0, 3.0))
    assert table.splitlines()[0] == "| target | stock loop | aiofastnet | uvloop | met |"
    for line in table.splitlines()[2:]:
        assert len(line.strip("|").split("|")) == 5, line
    assert _line(table, "rr16: fullduplex-cb") == [
        "rr16: fullduplex-cb / picows >= 1",
        *["1.25x (50 vs 40)"] * 3,
        "yes",
    ]
    assert _line(table, "idle5000")[1:] == [
        "3.00 KiB",
        "3.00 KiB (not judged)",
        "3.00 KiB",
        "yes",
    ]


def test_memory_on_aiofastnet_is_shown_but_not_judged() -> None:
    results = _results(50.0, 40.0, 3.0)
    results["fullduplex-cb (aiofastnet)"]["idle5000"] = [{"ok": True, "kib_per_conn": 8.5}]
    assert _line(targets_table(results), "idle5000")[1:] == [
        "3.00 KiB",
        "8.50 KiB (not judged)",
        "3.00 KiB",
        "yes",
    ]


def test_met_and_not_met() -> None:
    table = targets_table(_results(50.0, 40.0, 3.0))
    bcast = _line(table, "bcast10k")
    assert bcast[1:] == ["5.00x (20 vs 100)"] * 3 + ["yes"]  # 100 ms / 20 ms: times inverted
    slower = targets_table(_results(30.0, 40.0, 5.0))
    assert _line(slower, "rr16: fullduplex-cb")[-1] == "**no**"
    assert _line(slower, "idle5000")[-1] == "**no**"


def test_one_loop_missing_the_target_misses_it() -> None:
    results = _results(50.0, 40.0, 3.0)
    results["fullduplex-cb (aiofastnet)"]["rr16"] = [{"ok": True, "rate": 39.0}]
    results["fullduplex-cb (uvloop)"]["idle5000"] = [{"ok": True, "kib_per_conn": 4.5}]
    table = targets_table(results)
    rr16 = _line(table, "rr16: fullduplex-cb")
    assert rr16[2:] == ["0.97x (39 vs 40)", "1.25x (50 vs 40)", "**no**"]
    assert _line(table, "idle5000")[3:] == ["4.50 KiB", "**no**"]


def test_a_workload_not_run_is_not_counted_as_met() -> None:
    table = targets_table(_results(50.0, 40.0, 3.0))
    assert _line(table, "hs: fullduplex-cb")[1:] == ["-", "-", "-", "not measured"]


def test_an_older_run_without_aiofastnet_is_judged_on_its_two_loops() -> None:
    """A results file of the two-loop benchmark: "-" in the aiofastnet column, which counts
    neither way."""
    table = targets_table(_results(50.0, 40.0, 3.0, labels=("", " (uvloop)")))
    assert _line(table, "rr16: fullduplex-cb")[1:] == [
        "1.25x (50 vs 40)",
        "-",
        "1.25x (50 vs 40)",
        "yes",
    ]
    assert _line(table, "idle5000")[1:] == ["3.00 KiB", "-", "3.00 KiB", "yes"]
    only_aiofastnet = targets_table(_results(30.0, 40.0, 3.0, labels=(" (aiofastnet)",)))
    assert _line(only_aiofastnet, "rr16: fullduplex-cb")[1:] == [
        "-",
        "0.75x (30 vs 40)",
        "-",
        "**no**",
    ]


def test_pure_python_is_not_judged_on_aiofastnet() -> None:
    """aiofastnet's transports are compiled: the pure-Python rows leave that column out, even
    when it was measured (and would miss)."""
    results = _results(50.0, 40.0, 3.0)
    results["fullduplex-py (aiofastnet)"]["rr16"] = [{"ok": True, "rate": 90.0}]
    row = _line(targets_table(results), "rr16: fullduplex-py")
    assert row[1:] == ["1.30x (130 vs 100)", "-", "1.30x (130 vs 100)", "yes"]
    only_aiofastnet = targets_table(_results(50.0, 40.0, 3.0, labels=(" (aiofastnet)",)))
    assert _line(only_aiofastnet, "rr16: fullduplex-py")[-1] == "not measured"


def _asgi(ours: float, sansio: float, wsproto: float, kib: tuple[float, float, float]) -> Any:
    rows: dict[str, Any] = {}
    for loop in ("", " (uvloop)"):
        for name, rate, memory in (
            ("asgi-fullduplex", ours, kib[0]),
            ("asgi-uvicorn-fd", ours, kib[0]),
            ("asgi-uvicorn-sansio", sansio, kib[1]),
            ("asgi-uvicorn-wsproto", wsproto, kib[2]),
        ):
            rows[name + loop] = {
                "conc100rr16": [{"ok": True, "rate": rate, "server_us_per_op": 1500 / rate}],
                "idle5000": [{"ok": True, "kib_per_conn": memory}],
            }
    return rows


def test_asgi_targets_against_uvicorns_best() -> None:
    """The best of uvicorn's own: the fastest for rates, the smallest for memory."""
    table = asgi_targets_table(_asgi(150.0, 100.0, 60.0, (20.0, 30.0, 25.0)))
    assert _line(table, "conc100rr16: asgi-fullduplex") == [
        "conc100rr16: asgi-fullduplex / uvicorn's best >= 1.5",
        *["1.50x (150 vs 100, sansio)"] * 2,
        "yes",
    ]
    assert _line(table, "idle5000: asgi-uvicorn-fd")[1:] == [
        *["20.00 vs 25.00 KiB (wsproto)"] * 2,
        "yes",
    ]
    # CPU per message: 10 us against sansio's 15 us.
    assert _line(table, "conc100rr16 server CPU/msg: uvicorn's best / asgi-fullduplex")[1:] == [
        *["1.50x (10.0 vs 15.0 us, sansio)"] * 2,
        "yes",
    ]
    # Not measured: neither met nor missed.
    assert _line(table, "conc100rr1k: asgi-fullduplex")[1:] == ["-", "-", "not measured"]


def test_asgi_targets_missed() -> None:
    table = asgi_targets_table(_asgi(140.0, 100.0, 60.0, (26.0, 30.0, 25.0)))
    assert _line(table, "conc100rr16: asgi-fullduplex")[-1] == "**no**"
    assert _line(table, "idle5000: asgi-fullduplex")[-1] == "**no**"
