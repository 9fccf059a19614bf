"""Each loop of the suite really gives connections its own kind of transport."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable

from fullduplex.asyncio.client import connect
from fullduplex.asyncio.connection import WebSocket
from fullduplex.asyncio.server import serve


def _expected_transport_package(loop: asyncio.AbstractEventLoop) -> str:
    if getattr(loop, "_aiofastnet_patched_methods", None):
        return "aiofastnet"
    return type(loop).__module__.split(".")[0]  # "asyncio" or "uvloop"


def _echo_into(
    opened: list[WebSocket], on_open: Callable[[WebSocket], None] | None = None
) -> Callable[[WebSocket], None]:
    """A callback-style echo handler that keeps each server-side connection in ``opened``."""

    def echo(ws: WebSocket) -> None:
        opened.append(ws)
        if on_open is not None:
            on_open(ws)
        ws.on_message = ws.send_nowait

    return echo


async def test_both_ends_get_the_loops_transports() -> None:
    expected = _expected_transport_package(asyncio.get_running_loop())
    opened: list[WebSocket] = []
    async with (
        serve(_echo_into(opened), "127.0.0.1", 0) as server,
        connect(f"ws://127.0.0.1:{server.port}") as client,
    ):
        await client.send("round trip")
        assert await client.recv() == "round trip"
        (server_side,) = opened
        for ws in (client, server_side):
            package = type(ws._transport).__module__.split(".")[0]
            assert package == expected, (package, expected)


async def test_large_writes_go_as_views_only_where_that_saves_a_copy() -> None:
    loop = asyncio.get_running_loop()
    # asyncio's own transport before 3.12 copies a bytes payload twice, a memoryview once.
    expected = _expected_transport_package(loop) == "asyncio" and sys.version_info < (3, 12)
    opened: list[WebSocket] = []
    written: list[type] = []

    def spy_on_writes(ws: WebSocket) -> None:
        transport = ws._transport
        write = transport.write

        def spy(data: bytes | memoryview) -> None:
            written.append(type(data))
            write(data)

        # An instance attribute: asyncio's and aiofastnet's transports take one; uvloop's does
        # not, and only the flag is checked there.
        with contextlib.suppress(AttributeError):
            transport.write = spy

    payload = bytes(range(256)) * 16384  # 4 MiB, more than one send() takes
    echo = _echo_into(opened, spy_on_writes)
    async with (
        serve(echo, "127.0.0.1", 0, max_message_size=None, compression=None) as server,
        connect(f"ws://127.0.0.1:{server.port}", max_message_size=None) as client,
    ):
        await client.send(payload)
        assert await client.recv() == payload
        (server_side,) = opened
        assert server_side._copies_large_writes is expected
        if written:
            assert (memoryview in written) is expected, written
