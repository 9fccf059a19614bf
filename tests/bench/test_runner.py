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
from bench.servers import ROOT

from tests.helpers import seconds


def _results() -> Results:
    def rr(rate: float, p50: float) -> dict[str, Any]:
        return {"rate": rate, "p50_us": p50, "p99_us": p50 * 2, "client_cpu": 0.3}

    return {
        "fullduplex": {"rr16": [rr(40_000, 20), rr(44_000, 19), rr(42_000, 21)]},
        "websockets": {"rr16": [rr(20_000, 40), rr(21_000, 41), rr(22_000, 39)]},
        "websockets (uvloop)": {"rr16": [rr(30_000, 30)]},
    }


def test_lead_is_fullduplex_on_the_same_loop_over_the_row() -> None:
    results = _results()
    assert lead(results, Target("websockets", False), "rr16") == pytest.approx(2.0)
    # No fullduplex row on uvloop: nothing to compare with.
    assert lead(results, Target("websockets", True), "rr16") is None


def test_workload_table_shows_median_spread_and_lead() -> None:
    rows = [Target("fullduplex", False), Target("websockets", False), Target("picows", False)]
    table = workload_table(_results(), rows, "rr16").splitlines()
    assert table[0].startswith("| server | round trips/s | p50 | p99 |")
    assert table[2].startswith("| fullduplex | 42,000 (40,000-44,000) | 20.0 us (19.0-21.0) |")
    assert "| **2.00x** |" in table[3]
    assert len(table) == 4  # picows has no result: no row


def test_summary_table_has_a_column_per_workload() -> None:
    rows = [Target("fullduplex", False), Target("websockets", True)]
    table = summary_table(_results(), rows, ["rr16", "hs"]).splitlines()
    assert table[0] == "| server | rr16 round trips/s | hs handshakes/s |"
    assert table[3] == "| websockets (uvloop) | 30,000 | - |"


def test_settings_and_estimate() -> None:
    settings = parse_settings(["--servers", "fullduplex,node-ws", "--workloads", "rr16,hs"])
    # node-ws has a single loop: 3 rows, not 4.
    assert [t.label for t in targets(settings)] == [
        "fullduplex",
        "fullduplex (uvloop)",
        "node-ws",
    ]
    assert settings.repeat == 3
    assert 0 < estimate_seconds(settings) < 600


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
