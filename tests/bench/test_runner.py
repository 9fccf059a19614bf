"""The benchmark runner (`python -m bench`) and its tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bench.__main__ import estimate_seconds, parse_settings, targets
from bench.report import Results, Target, lead, summary_table, workload_table
from bench.servers import LOOPS, ROOT

from tests.helpers import seconds


def _results() -> Results:
    def rr(rate: float, p50: float) -> dict[str, Any]:
        return {"rate": rate, "p50_us": p50, "p99_us": p50 * 2, "client_cpu": 0.3}

    return {
        "fullduplex": {"rr16": [rr(40_000, 20), rr(44_000, 19), rr(42_000, 21)]},
        "websockets": {"rr16": [rr(20_000, 40), rr(21_000, 41), rr(22_000, 39)]},
        "websockets (uvloop)": {"rr16": [rr(30_000, 30)]},
        "fullduplex (aiofastnet)": {"rr16": [rr(50_000, 15)]},
        "websockets (aiofastnet)": {"rr16": [rr(25_000, 30)]},
        "node-ws": {"rr16": [rr(10_000, 80)]},
    }


def test_lead_is_fullduplex_on_the_same_loop_over_the_row() -> None:
    results = _results()
    assert lead(results, Target("websockets", "asyncio"), "rr16") == pytest.approx(2.0)
    assert lead(results, Target("websockets", "aiofastnet"), "rr16") == pytest.approx(2.0)
    # No fullduplex row on uvloop: nothing to compare with.
    assert lead(results, Target("websockets", "uvloop"), "rr16") is None
    # Node has no loop: compared with fullduplex on the stock loop.
    assert lead(results, Target("node-ws", None), "rr16") == pytest.approx(4.2)


@pytest.mark.parametrize(
    ("target", "label"),
    [
        (Target("websockets", "asyncio"), "websockets"),
        (Target("websockets", "aiofastnet"), "websockets (aiofastnet)"),
        (Target("websockets", "uvloop"), "websockets (uvloop)"),
        (Target("node-ws", None), "node-ws"),
    ],
)
def test_labels(target: Target, label: str) -> None:
    """The stock loop's labels (and Node's) are the bare names, as in older JSON files."""
    assert target.label == label
    assert target.reference == Target("fullduplex", target.loop or "asyncio")


def test_workload_table_shows_median_spread_and_lead() -> None:
    rows = [Target("fullduplex", "asyncio"), Target("websockets", "asyncio")]
    rows += [Target("picows", "asyncio")]
    table = workload_table(_results(), rows, "rr16").splitlines()
    assert table[0].startswith("| server | round trips/s | p50 | p99 |")
    assert table[2].startswith("| fullduplex | 42,000 (40,000-44,000) | 20.0 us (19.0-21.0) |")
    assert "| **2.00x** |" in table[3]
    assert len(table) == 4  # picows has no result: no row


def test_summary_table_has_a_column_per_workload() -> None:
    rows = [Target("fullduplex", "asyncio"), Target("websockets", "uvloop")]
    rows += [Target("websockets", "aiofastnet")]
    table = summary_table(_results(), rows, ["rr16", "hs"]).splitlines()
    assert table[0] == "| server | rr16 round trips/s | hs handshakes/s |"
    assert table[3] == "| websockets (uvloop) | 30,000 | - |"
    assert table[4] == "| websockets (aiofastnet) | 25,000 | - |"


def test_settings_and_estimate() -> None:
    settings = parse_settings(["--servers", "fullduplex,node-ws", "--workloads", "rr16,hs"])
    assert settings.loops == LOOPS == ("asyncio", "aiofastnet", "uvloop")
    # node-ws has no loop to choose: one row.
    assert [t.label for t in targets(settings)] == [
        "fullduplex",
        "fullduplex (aiofastnet)",
        "fullduplex (uvloop)",
        "node-ws",
    ]
    assert settings.repeat == 3
    assert 0 < estimate_seconds(settings) < 600


@pytest.mark.parametrize(
    ("loops", "expected"),
    [
        ("asyncio", ("asyncio",)),
        ("aiofastnet", ("aiofastnet",)),
        ("uvloop,aiofastnet", ("aiofastnet", "uvloop")),  # table order, whatever the order given
        ("uvloop,,uvloop", ("uvloop",)),
        ("asyncio,aiofastnet,uvloop", LOOPS),
    ],
)
def test_loops_option(loops: str, expected: tuple[str, ...]) -> None:
    settings = parse_settings(["--servers", "raw-tcp,node-ws", "--loops", loops])
    assert settings.loops == expected
    # Node's row comes whatever the loops: it has none to choose.
    assert [t.loop for t in targets(settings)] == [*expected, None]


@pytest.mark.parametrize("loops", ["trio", "asyncio,uvloop2", ",", "", "asyncio;uvloop"])
def test_bad_loops_are_refused(loops: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_settings(["--loops", loops])
    assert exc.value.code == 2
    assert "loop" in capsys.readouterr().err


def test_estimate_counts_only_rows_that_run() -> None:
    """Each loop adds its rows; a server that can run none of the workloads (picows and
    raw-tcp have no deflate) adds nothing, not even a server start."""

    def estimate(*argv: str) -> float:
        return estimate_seconds(parse_settings(["--workloads", "rr16z,big1mz", *argv]))

    one = estimate("--servers", "fullduplex", "--loops", "asyncio")
    assert one > 0
    assert estimate("--servers", "fullduplex") == pytest.approx(3 * one)
    assert estimate("--servers", "fullduplex,picows,raw-tcp") == pytest.approx(3 * one)
    assert estimate("--servers", "picows,raw-tcp") == 0
    # Node: one row whatever the loops.
    node = estimate("--servers", "node-ws", "--loops", "asyncio")
    assert node == pytest.approx(one)
    assert estimate("--servers", "node-ws") == pytest.approx(one)


def test_quick_run_end_to_end(tmp_path: Path) -> None:
    """A real run: two servers, two workloads, tables on stdout, raw results in JSON."""
    output = tmp_path / "bench.json"
    command = [sys.executable, "-m", "bench", "--quick", "--servers", "fullduplex,raw-tcp"]
    command += ["--workloads", "rr16,idle5000", "--loops", "asyncio", "--json", str(output)]
    proc = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=seconds(120), check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "### rr16:" in proc.stdout
    assert "### idle5000:" in proc.stdout
    data = json.loads(output.read_text())
    assert data["failed"] == {}
    for label in ("fullduplex", "raw-tcp"):
        (rr,) = data["results"][label]["rr16"]
        assert rr["rate"] > 0
        assert rr["server_cpu"] is not None
        (idle,) = data["results"][label]["idle5000"]
        assert idle["connections"] == 1000
        assert idle["rss_after_kib"] > idle["rss_before_kib"]
        assert idle["kib_per_conn"] > 0
