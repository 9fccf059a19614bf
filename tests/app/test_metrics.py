"""Tests for fullduplex.app.metrics: /metrics parsed by prometheus_client's own parser, its
counters moving as sessions open, talk, broadcast and close."""

from __future__ import annotations

import asyncio
import time

import pytest
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
    # Pings every 50 ms, so that each session has a round-trip time when it closes.
    async with serving(app, ping_interval=0.05) as server:
        before = await scrape(server.port)
        assert before["fullduplex_messages_received_total"] == 0
        assert before["fullduplex_connections{endpoint=/room/{name}}"] == 0
        assert before["fullduplex_ping_rtt_seconds_count"] == 0
        async with connect(url(server, "/room/a")) as a, connect(url(server, "/room/a")) as b:
            async with connect(url(server, "/echo")) as e:
                await e.send(b"xyz")
                assert await wait_for(e.recv()) == b"xyz"
                await asyncio.sleep(0.2)  # a few pings answered
            for _ in range(3):
                await a.send("hi")
            for ws in (a, b):
                assert [await wait_for(ws.recv()) for _ in range(3)] == ["hi"] * 3
            during = await scrape(server.port)
            assert during["fullduplex_connections{endpoint=/room/{name}}"] == 2
            await asyncio.sleep(0.2)
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
    assert after["fullduplex_messages_received_total"] == 5  # xyz, 3 x hi, leave
    assert after["fullduplex_messages_sent_total"] == 1  # the echo's returned value
    bytes_total = "fullduplex_message_bytes_total"
    assert after[f"{bytes_total}{{dir=in,endpoint=/echo}}"] == 3
    assert after[f"{bytes_total}{{dir=out,endpoint=/echo}}"] == 3
    assert after[f"{bytes_total}{{dir=in,endpoint=/room/{{name}}}}"] == 3 * 2 + 5
    assert after[f"{bytes_total}{{dir=out,endpoint=/room/{{name}}}}"] == 0  # broadcasts only
    assert after["fullduplex_broadcasts_total"] == 3
    assert after["fullduplex_broadcast_deliveries_total"] == 6
    # Six deliveries of the frame of "hi": a 2-byte header and 2 bytes of payload.
    assert after["fullduplex_broadcast_bytes_total"] == 6 * 4
    # Every session measured a round trip on loopback, each well under a second.
    assert after["fullduplex_ping_rtt_seconds_count"] == 3
    assert after["fullduplex_ping_rtt_seconds_bucket{le=1}"] == 3
    assert after["fullduplex_broadcast_fanout_seconds_count"] == 3
    assert after["fullduplex_broadcast_fanout_seconds_bucket{le=+Inf}"] == 3
    assert after["fullduplex_upgrades_refused_total{reason=not_found}"] == 1
    closed = "fullduplex_sessions_closed_total"
    assert after[f"{closed}{{by=peer,code=1000}}"] == 2  # the echo client and a closed
    assert after[f"{closed}{{by=server,code=4xxx}}"] == 1  # b, closed by the server: 4001
    assert f"{closed}{{by=peer,code=4xxx}}" not in after
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


async def raw_request(port: int, head: bytes) -> bytes:
    """Send ``head`` on a fresh connection; return what comes back until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        return await wait_for(reader.read())
    finally:
        writer.close()


async def test_handshakes_the_server_refuses_are_counted_by_reason() -> None:
    """400, 426, 431 and the open timeout are answered by the Server before the app routes
    anything; /metrics counts them by reason."""
    app = chat_app()
    async with serving(app, open_timeout=0.2, max_header_size=1024) as server:
        port = server.port
        assert (await raw_request(port, b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")
        upgrade = (
            b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        )
        assert (await raw_request(port, upgrade + b"Sec-WebSocket-Version: 8\r\n\r\n")).startswith(
            b"HTTP/1.1 426"
        )
        huge = upgrade + b"X-Big: " + b"a" * 2048 + b"\r\n\r\n"
        assert (await raw_request(port, huge)).startswith(b"HTTP/1.1 431")
        assert await raw_request(port, b"GET / HTTP/1.1\r\n") == b""  # then silence: dropped
        after = await scrape(port)
    refused = "fullduplex_handshakes_refused_total"
    assert after[f"{refused}{{reason=bad_request}}"] == 1
    assert after[f"{refused}{{reason=upgrade_required}}"] == 1
    assert after[f"{refused}{{reason=headers_too_large}}"] == 1
    assert after[f"{refused}{{reason=open_timeout}}"] == 1


class Untouchable:
    """A stand-in session that counts every attribute read (a scrape must make none)."""

    reads = 0

    def __getattr__(self, name: str) -> object:
        Untouchable.reads += 1
        raise AttributeError(name)


def test_a_scrape_with_10_000_sessions_reads_none_of_them() -> None:
    """The work of a scrape is counted, not timed: with 10,000 sessions open and counted, a
    render reads no session (the connections gauge is the length of each endpoint's member
    dict) and prints a number of lines that depends on the endpoints, not the sessions. The
    opt-in send-queue gauge reads each session once."""
    app = chat_app()
    members = {Untouchable(): None for _ in range(10_000)}
    app._registry._members[("endpoint", "/room/{name}")] = members  # type: ignore[assignment]
    metrics = app.metrics
    for _ in range(10_000):
        metrics.count(metrics.opened, "/room/{name}")
        metrics.traffic_of("/room/{name}").bytes_in += 10
    Untouchable.reads = 0
    text = metrics.render(app.broker)
    assert Untouchable.reads == 0
    assert 'fullduplex_connections{endpoint="/room/{name}"} 10000' in text
    assert len(text.splitlines()) < 150
    app._send_queue_gauge = True
    # The stand-ins have no connection, so this render fails: the point is that it read them.
    with pytest.raises(AttributeError):
        metrics.render(app.broker)
    assert Untouchable.reads >= 1


async def test_send_queue_gauge_is_opt_in() -> None:
    app = App()
    app.metrics_route("/metrics", send_queue=True)
    app.on_message("/echo")(lambda session, message: message)
    async with serving(app) as server, connect(url(server, "/echo")) as ws:
        await ws.send("x")
        assert await wait_for(ws.recv()) == "x"
        during = await scrape(server.port)
    # An echo client that reads keeps nothing queued.
    assert during["fullduplex_send_queue_bytes{endpoint=/echo}"] == 0
    plain = chat_app()
    async with serving(plain) as server:
        assert not any(
            name.startswith("fullduplex_send_queue") for name in await scrape(server.port)
        )
