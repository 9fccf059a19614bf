"""Readiness with a Redis broker: /readyz turns 503 when Redis is gone or the pub/sub
connection goes deaf, and 200 again once it is healed."""

from __future__ import annotations

import asyncio

from fullduplex.app import App
from fullduplex.brokers import RedisBroker
from tests.app.utils import http_get, serving
from tests.brokers.redis_servers import RedisServer, Relay
from tests.helpers import seconds


async def ready_status(port: int) -> tuple[int, bytes]:
    status, _, body = await http_get(port, "/readyz")
    return status, body


async def until_status(port: int, wanted: int, timeout: float = 10) -> bytes:
    async with asyncio.timeout(seconds(timeout)):
        while True:
            status, body = await ready_status(port)
            if status == wanted:
                return body
            await asyncio.sleep(0.1)


async def test_ready_follows_redis(redis_server: RedisServer) -> None:
    app = App(broker=RedisBroker(redis_server.url, probe_interval=0.5))
    app.health_routes()
    async with serving(app) as server:
        await until_status(server.port, 200)
        redis_server.kill()
        body = await until_status(server.port, 503)
        assert body.startswith(b"not ready: ")
        assert b"Redis" in body or b"probe" in body
        assert (await http_get(server.port, "/livez"))[0] == 200  # alive all along
        redis_server.restart()
        await until_status(server.port, 200, timeout=15)


async def test_deaf_connection_is_not_ready_within_seconds(redis_server: RedisServer) -> None:
    async with Relay(("127.0.0.1", redis_server.port)) as relay:
        app = App(broker=RedisBroker(relay.url, probe_interval=1.0))
        app.health_routes()
        async with serving(app) as server:
            await until_status(server.port, 200)
            relay.blackhole()  # TCP stays open, nothing passes: only the probe can tell
            loop = asyncio.get_running_loop()
            started = loop.time()
            body = await until_status(server.port, 503, timeout=10)
            assert loop.time() - started < seconds(10)
            assert b"not ready" in body
            relay.heal()
            await until_status(server.port, 200, timeout=15)


async def test_metrics_include_the_broker(redis_server: RedisServer) -> None:
    app = App(broker=RedisBroker(redis_server.url))
    app.metrics_route()
    async with serving(app) as server:
        await app.broker.publish("g", b"x", text=True)
        status, _, body = await http_get(server.port, "/metrics")
    assert status == 200
    text = body.decode()
    assert "fullduplex_broker_published_total 1\n" in text
    assert "# TYPE fullduplex_broker_connections gauge\n" in text
    assert "fullduplex_broker_gaps_total 0\n" in text
