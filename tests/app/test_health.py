"""Tests for App.health_routes and App.not_ready with the in-process broker (a Redis broker's
readiness is tested in tests/brokers/test_redis_health.py)."""

from __future__ import annotations

import pytest

from fullduplex.app import App
from tests.app.utils import http_get, serving


async def test_live_and_ready_while_serving() -> None:
    app = App()
    app.health_routes()
    assert app.not_ready() == "not serving"
    async with serving(app) as server:
        assert app.not_ready() is None
        for path, body in (("/livez", b"ok\n"), ("/readyz", b"ready\n")):
            status, headers, answer = await http_get(server, path)
            assert (status, answer) == (200, body)
            assert headers["cache-control"] == "no-store"
    assert app.not_ready() == "not serving"


async def test_paths_of_ones_choice() -> None:
    app = App()
    app.health_routes(live="/health/live", ready="/health/ready")
    async with serving(app) as server:
        assert (await http_get(server, "/health/ready"))[0] == 200
        assert (await http_get(server, "/readyz"))[0] == 404


def test_routes_taken_twice() -> None:
    app = App()
    app.health_routes()
    with pytest.raises(ValueError):
        app.health_routes()


async def test_ready_between_the_asgi_lifespan_events() -> None:
    app = App()
    asgi = app.asgi()
    events = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []
    seen: list[str | None] = []

    async def receive() -> dict[str, str]:
        event = events.pop(0)
        if event["type"] == "lifespan.shutdown":
            seen.append(app.not_ready())
        return event

    async def send(message: dict[str, object]) -> None:
        sent.append(str(message["type"]))

    await asgi({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert seen == [None]
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert app.not_ready() == "not serving"
