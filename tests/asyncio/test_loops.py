"""Each loop of the suite really gives connections its own kind of transport."""

from __future__ import annotations

import asyncio
import sys

from fullduplex.asyncio.client import connect
from fullduplex.asyncio.connection import WebSocket
from fullduplex.asyncio.server import serve


def _expected_transport_package(loop: asyncio.AbstractEventLoop) -> str:
    if getattr(loop, "_aiofastnet_patched_methods", None):
        return "aiofastnet"
    return type(loop).__module__.split(".")[0]  # "asyncio" or "uvloop"


async def test_both_ends_get_the_loops_transports() -> None:
    expected = _expected_transport_package(asyncio.get_running_loop())
    opened: list[WebSocket] = []

    def keep(ws: WebSocket) -> None:
        opened.append(ws)
        ws.on_message = ws.send_nowait

    async with (
        serve(keep, "127.0.0.1", 0) as server,
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

    def keep(ws: WebSocket) -> None:
        opened.append(ws)
        transport = ws._transport
        write = transport.write
        try:

            def spy(data: bytes | memoryview) -> None:
                written.append(type(data))
                write(data)

            transport.write = spy  # an instance attribute: asyncio's and aiofastnet's take one
        except AttributeError:
            pass  # uvloop's transport takes none: only the flag is checked there
        ws.on_message = ws.send_nowait

    payload = bytes(range(256)) * 16384  # 4 MiB, more than one send() takes
    async with (
        serve(keep, "127.0.0.1", 0, max_message_size=None, compression=None) as server,
        connect(f"ws://127.0.0.1:{server.port}", max_message_size=None) as client,
    ):
        await client.send(payload)
        assert await client.recv() == payload
        (server_side,) = opened
        assert server_side._copies_large_writes is expected
        if written:
            assert (memoryview in written) is expected, written
