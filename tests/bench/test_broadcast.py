"""The cross-process broadcast benchmark (`python -m bench.broadcast`), with tiny parameters."""

from __future__ import annotations

import shutil

import pytest
from bench.broadcast import payload
from bench.broadcast.__main__ import table
from bench.broadcast.redis_server import redis_server
from bench.broadcast.runner import Options, PhaseResult, Result, run_library


def test_payload_carries_time_and_phase() -> None:
    text = payload.make(123_456_789, 2, 7)
    assert len(text) == payload.SIZE
    # Inside another library's envelope, as socket.io sends it.
    assert payload.parse(b'42["m","' + text.encode() + b'"]') == (123_456_789, 2)
    assert payload.parse(b"ready") is None


def test_table_shows_ratios_against_fullduplex() -> None:
    def result(name: str, delivered: int) -> Result:
        return Result(name, 10, saturation=PhaseResult(delivered=delivered, seconds=1.0))

    text = table({"fullduplex": [result("fullduplex", 300)], "other": [result("other", 100)]})
    assert "| other | 100 | 3.00x |" in text
    assert "| fullduplex | 300 | 1.00x |" in text


def test_every_delivery_arrives_for_fullduplex_and_a_competitor() -> None:
    """20 connections over two servers, 50 messages window-bounded, then the half rate."""
    if shutil.which("redis-server") is None:  # a failure, never a skip (as tests/brokers)
        pytest.fail("redis-server not found: `make system-deps` installs it", pytrace=False)
    options = Options(connections=20, warmup=5, duration=0.5, max_messages=50, settle=5.0)
    with redis_server() as redis:
        for name in ("fullduplex", "channels-pubsub"):
            result = run_library(name, redis, options)
            assert not result.error, result.error
            saturation, latency = result.saturation, result.latency
            assert saturation.published == 50
            assert saturation.delivered == 50 * 20
            assert latency.published > 0
            assert latency.delivered == latency.published * 20
            assert latency.samples == latency.published * 2  # every 10th of 20 connections
            assert 0 < latency.p50_ms <= latency.p99_ms
