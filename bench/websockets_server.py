"""The websockets (asyncio API) server the benchmark compares fullduplex with.

``python -m bench.websockets_server [--host H] [--port 0] [--loop asyncio|aiofastnet|uvloop]
[--mode echo|broadcast] [--compression]`` prints ``websockets MODE server listening on
ws://HOST:PORT`` first and stops on SIGINT or SIGTERM (closing every connection with 1001, as
``serve`` does).

Settings: ``max_size`` 64 MiB (default 1 MiB) and ``compression`` "deflate" (the default)
with ``--compression``, None without. Everything else is websockets' default: keepalive ping
every 20 s, closing after 20 s without a pong; ``max_queue`` 16; write limit 32 KiB; open and
close timeouts 10 s.

Broadcast: each handler keeps its connection in one set while it runs; every message goes
to the set with ``websockets.broadcast``, the library's own broadcast (it skips connections
that are not open and those still writing a fragmented message).
"""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import ServerConnection, broadcast, serve

from bench.server_cli import MAX_MESSAGE_SIZE, Options, announce, parse_options, run

__all__ = ["echo", "main", "send_to_all", "serve_until"]

CONNECTIONS: set[ServerConnection] = set()


async def echo(ws: ServerConnection) -> None:
    """Send every message back as it came (text as text, binary as binary)."""
    async for message in ws:
        await ws.send(message)


async def send_to_all(ws: ServerConnection) -> None:
    """Send every message of this connection to every open connection, this one included."""
    CONNECTIONS.add(ws)
    try:
        async for message in ws:
            broadcast(CONNECTIONS, message)
    finally:
        CONNECTIONS.discard(ws)


async def serve_until(options: Options, stop: asyncio.Future[None]) -> None:
    """Serve until ``stop`` is done."""
    handler = echo if options.mode == "echo" else send_to_all
    async with serve(
        handler,
        options.host,
        options.port,
        compression="deflate" if options.compression else None,
        max_size=MAX_MESSAGE_SIZE,
    ) as server:
        announce("websockets", options, server.sockets[0].getsockname()[1])
        await stop


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve; return the exit status."""
    return run(serve_until, parse_options("python -m bench.websockets_server", argv))


if __name__ == "__main__":
    raise SystemExit(main())
