"""The fullduplex server as its users write it: ``serve(handler)`` and ``async for``.

``python -m bench.fullduplex_server [--host H] [--port 0] [--loop asyncio|aiofastnet|uvloop]
[--mode echo|broadcast] [--compression]`` prints ``fullduplex MODE server listening on
ws://HOST:PORT`` first and stops on SIGINT or SIGTERM (closing every connection with 1001, as
``serve`` does).

Settings: ``max_message_size`` 64 MiB and ``compression`` "deflate" with ``--compression``,
None without. Everything else is fullduplex's default: keepalive ping every 20 s, closing
after 20 s without a pong; receive queue of 16 messages; write limit 32 KiB; open and close
timeouts 10 s.

Broadcast: each handler keeps its connection in one set while it runs; every message goes
to each connection of the set with ``send_nowait``, the documented send that never waits (the
frame-once path of the callback API is ``bench.fullduplex_cb_server``).
"""

from __future__ import annotations

import asyncio

from bench.server_cli import MAX_MESSAGE_SIZE, Options, announce, parse_options, run
from fullduplex import ConnectionClosed, WebSocket, serve

__all__ = ["broadcast", "echo", "main", "serve_until"]

CONNECTIONS: set[WebSocket] = set()


async def echo(ws: WebSocket) -> None:
    """Send every message back as it came (text as text, binary as binary)."""
    async for message in ws:
        await ws.send(message)


async def broadcast(ws: WebSocket) -> None:
    """Send every message of this connection to every open connection, this one included."""
    CONNECTIONS.add(ws)
    try:
        async for message in ws:
            for other in tuple(CONNECTIONS):
                # No contextlib.suppress: it would cost a call per member on the hot path.
                try:  # noqa: SIM105
                    other.send_nowait(message)
                except ConnectionClosed:
                    pass  # closing: its handler takes it out of the set
    finally:
        CONNECTIONS.discard(ws)


async def serve_until(options: Options, stop: asyncio.Future[None]) -> None:
    """Serve until ``stop`` is done."""
    handler = echo if options.mode == "echo" else broadcast
    compression = "deflate" if options.compression else None
    async with serve(
        handler,
        options.host,
        options.port,
        compression=compression,
        max_message_size=MAX_MESSAGE_SIZE,
    ) as server:
        announce("fullduplex", options, server.port)
        await stop


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve; return the exit status."""
    return run(serve_until, parse_options("python -m bench.fullduplex_server", argv))


if __name__ == "__main__":
    raise SystemExit(main())
