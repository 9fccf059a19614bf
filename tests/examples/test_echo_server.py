"""Tests for examples/echo/server.py over real sockets, with the fullduplex client."""

from __future__ import annotations

import asyncio
import urllib.request

from examples.echo.server import app as echo_app
from examples.echo.server import register

from fullduplex.app import App
from fullduplex.asyncio.client import connect
from tests.helpers import seconds


async def test_echoes_text_and_binary() -> None:
    app = App()
    register(app)
    async with (
        app.serve("127.0.0.1", 0) as server,
        connect(f"ws://127.0.0.1:{server.port}/echo") as ws,
        asyncio.timeout(seconds(5)),
    ):
        await ws.send("hello")
        assert await ws.recv() == "hello"
        await ws.send(b"\x00\xff")
        assert await ws.recv() == b"\x00\xff"
        await ws.send("é" * 100_000)
        assert await ws.recv() == "é" * 100_000


async def test_standalone_app_serves_its_page() -> None:
    """``fullduplex serve examples.echo:app`` alone: / leads to the page, which has its CSS."""

    def get(url: str) -> tuple[str, str, bytes]:
        with urllib.request.urlopen(url, timeout=seconds(5)) as response:
            return response.url, response.headers["Content-Type"], response.read()

    async with echo_app.serve("127.0.0.1", 0) as server:
        base = f"http://127.0.0.1:{server.port}"
        url, content_type, body = await asyncio.to_thread(get, base + "/")
        assert url == base + "/echo.html"
        assert content_type == "text/html; charset=utf-8"
        assert b"<title>Echo" in body
        _, content_type, _ = await asyncio.to_thread(get, base + "/style.css")
        assert content_type == "text/css; charset=utf-8"
