"""Tests for fullduplex.app.metrics: /metrics parsed by prometheus_client's own parser, its
counters moving as sessions open, talk, broadcast and close."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from fullduplex.app import App, Endpoint, Session
from fullduplex.app.metrics import Histogram, Metrics, code_label
from fullduplex.asyncio.client import connect
from fullduplex.exceptions import InvalidStatus
from tests.app.utils import http_get, serving, url
from tests.asyncio.utils import wait_for


def chat_app() -> App:
    app = App()
    app.metrics_route()

    @app.endpoint("/room/{name}")
    class Room(Endpoint):
        async def on_open(self, session: Session) -> None:
            session.join("room:" + session.path_params["name"])

        async def on_message(self, session: Session, message: str | bytes) -> None:
            if message == "leave":
                await session.close(4001, "asked to")
                return
            await session.group("room:" + session.path_params["name"]).broadcast(message)

    @app.on_message("/echo")
    def echo(session: Session, message: str | bytes) -> str | bytes:
        return message

    return app


async def scrape(port: int) -> dict[str, float]:
    """GET /metrics; every sample by name and sorted labels."""
    status, headers, body = await http_get(port, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def test_counters_move_with_the_sessions() -> None:
    app = chat_app()
    async with serving(app) as server:
        before = await scrape(server.port)
        assert before["fullduplex_messages_received_total"] == 0
        assert before["fullduplex_connections{endpoint=/room/{name}}"] == 0
        async with connect(url(server, "/room/a")) as a, connect(url(server, "/room/a")) as b:
            async with connect(url(server, "/echo")) as e:
                await e.send("x")
                assert await wait_for(e.recv()) == "x"
            for _ in range(3):
                await a.send("hi")
            for ws in (a, b):
                assert [await wait_for(ws.recv()) for _ in range(3)] == ["hi"] * 3
            during = await scrape(server.port)
            assert during["fullduplex_connections{endpoint=/room/{name}}"] == 2
            await b.send("leave")
            await wait_for(b.wait_closed())
        try:
            async with connect(url(server, "/nowhere")):
                pass
        except InvalidStatus:
            pass
        after = await scrape(server.port)
    opened = "fullduplex_sessions_opened_total"
    assert after[f"{opened}{{endpoint=/room/{{name}}}}"] == 2
    assert after[f"{opened}{{endpoint=/echo}}"] == 1
    assert after["fullduplex_messages_received_total"] == 5  # x, 3 x hi, leave
    assert after["fullduplex_messages_sent_total"] == 1  # the echo's returned value
    assert after["fullduplex_broadcasts_total"] == 3
    assert after["fullduplex_broadcast_deliveries_total"] == 6
    assert after["fullduplex_broadcast_fanout_seconds_count"] == 3
    assert after["fullduplex_broadcast_fanout_seconds_bucket{le=+Inf}"] == 3
    assert after["fullduplex_upgrades_refused_total{reason=not_found}"] == 1
    closed = "fullduplex_sessions_closed_total"
    assert after[f"{closed}{{by=peer,code=1000}}"] == 2  # the echo client and a
    assert after[f"{closed}{{by=peer,code=4xxx}}"] == 1  # b, closed by the server: 4001
    assert after["fullduplex_ready"] == 1
    assert after["fullduplex_connections{endpoint=/room/{name}}"] == 0


def test_histogram_buckets_are_cumulative() -> None:
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.5, 0.5, 5.0):
        histogram.observe(value)
    lines = histogram.lines("h")
    assert lines[:3] == ['h_bucket{le="0.1"} 1', 'h_bucket{le="1"} 3', 'h_bucket{le="+Inf"} 4']
    assert lines[-1] == "h_count 4"


def test_close_codes_are_bounded_labels() -> None:
    assert [code_label(c) for c in (1000, 1015, 3000, 4999, 2000)] == [
        "1000",
        "1015",
        "3xxx",
        "4xxx",
        "2xxx",
    ]


def test_snapshot_and_scrape_cost() -> None:
    """A scrape reads counters and per-endpoint gauges, never the connections: its cost does
    not grow with them (counted here as lines, not timed)."""
    metrics = Metrics()
    for _ in range(10_000):
        metrics.count(metrics.opened, "/chat/{room}")
        metrics.count_close(1000, "peer")
    metrics.timed_broadcast(time.perf_counter(), 10_000)
    text = metrics.render()
    assert len(text.splitlines()) < 80
    snapshot = metrics.snapshot()
    assert snapshot['fullduplex_sessions_opened_total{endpoint="/chat/{room}"}'] == 10_000
    assert snapshot["fullduplex_broadcast_deliveries_total"] == 10_000
