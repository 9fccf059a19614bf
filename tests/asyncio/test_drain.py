"""Tests for Server.drain: the listener closes first, the open connections are closed with the
code given, spread over the duration, and whatever is still open at the timeout is cut."""

from __future__ import annotations

import asyncio

import pytest

from fullduplex.app import App
from fullduplex.asyncio.client import connect
from fullduplex.asyncio.connection import WebSocket
from fullduplex.asyncio.server import serve
from tests.app.utils import http_get
from tests.asyncio.utils import RawClient
from tests.helpers import seconds


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


async def test_closes_spread_over_the_duration() -> None:
    loop = asyncio.get_running_loop()
    async with serve(echo, "127.0.0.1", 0) as server:
        port = server.port
        clients = [await connect(f"ws://127.0.0.1:{port}/") for _ in range(20)]
        closed_at: list[float] = []

        async def watch(ws: WebSocket) -> None:
            await ws.wait_closed()
            closed_at.append(loop.time())

        watchers = [asyncio.create_task(watch(ws)) for ws in clients]
        started = loop.time()
        drained = server.drain(2.0, code=1012, reason="restarting")
        await asyncio.sleep(0.3)
        assert server.closing
        with pytest.raises(OSError):  # the listener is closed: siblings take new clients
            await connect(f"ws://127.0.0.1:{port}/", open_timeout=seconds(2))
        assert len(closed_at) < 20  # not all at once
        await asyncio.wait_for(drained, seconds(10))
        await asyncio.gather(*watchers)
    assert all((ws.close_code, ws.close_reason) == (1012, "restarting") for ws in clients)
    assert max(closed_at) - started >= 1.0  # the last batch near the end of the 2 s


async def test_what_is_still_open_at_the_timeout_is_cut() -> None:
    async with serve(echo, "127.0.0.1", 0, close_timeout=60) as server:
        raw = await RawClient.open(server.port)
        await raw.handshake()
        # This client never answers the close frame; the close timeout (60 s) would wait.
        await asyncio.wait_for(server.drain(0, timeout=0.5), seconds(5))
        assert await asyncio.wait_for(raw.reader.read(), seconds(5)) is not None
        await raw.close()


async def test_an_app_is_not_ready_while_draining() -> None:
    app = App()
    app.health_routes()

    @app.on_message("/echo")
    def reply(session: object, message: str | bytes) -> str | bytes:
        return message

    server = app.serve("127.0.0.1", 0)
    async with server:
        port = server.port
        client = await connect(f"ws://127.0.0.1:{port}/echo")
        assert (await http_get(port, "/readyz"))[0] == 200
        assert app.not_ready() is None
        drained = server.drain(1.0)
        await asyncio.sleep(0)
        assert app.not_ready() == "draining"
        await asyncio.wait_for(drained, seconds(10))
        assert client.close_code == 1001
