"""The fullduplex server on its low-level callback API: no coroutine per message at all.

``python -m bench.fullduplex_cb_server [--host H] [--port 0] [--loop asyncio|aiofastnet|uvloop]
[--mode echo|broadcast] [--compression]`` prints ``fullduplex-cb MODE server listening on
ws://HOST:PORT`` first and stops on SIGINT or SIGTERM.

Each handler is a plain function (the callback style: no task per connection): it sets
``ws.on_message``, so that every message is handled inside the transport's read callback, and
returns. Echo: ``on_message = send_nowait``.
Broadcast: each message is framed once (``serialize_frame``) and the same bytes go to every
open connection without permessage-deflate with ``send_prepared_nowait``; a connection that
negotiated deflate gets its own compressed copy with ``send_nowait``.

Settings: ``max_message_size`` 64 MiB and ``compression`` "deflate" with ``--compression``,
None without. Everything else is fullduplex's default: keepalive ping every 20 s, closing
after 20 s without a pong; write limit 32 KiB (``send_nowait`` does not wait on it: with this
API flow control is the application's business); open and close timeouts 10 s.
"""

from __future__ import annotations

import asyncio

from bench.server_cli import MAX_MESSAGE_SIZE, Options, announce, parse_options, run
from fullduplex import ConnectionClosed, WebSocket, serve
from fullduplex.asyncio import Message
from fullduplex.protocol.frames import Opcode, serialize_frame

__all__ = ["broadcast", "echo", "main", "send_to_all", "serve_until"]

CONNECTIONS: set[WebSocket] = set()


def echo(ws: WebSocket) -> None:
    """Send every message back from the read callback."""
    ws.on_message = ws.send_nowait


def send_to_all(message: Message) -> None:
    """Frame ``message`` once and write it to every open connection."""
    if isinstance(message, str):
        frame = serialize_frame(Opcode.TEXT, message.encode())
    else:
        frame = serialize_frame(Opcode.BINARY, message)
    for ws in tuple(CONNECTIONS):
        try:
            if ws.compressed:
                ws.send_nowait(message)
            else:
                ws.send_prepared_nowait(frame)
        except ConnectionClosed:
            pass  # closing: on_close takes it out of the set


def broadcast(ws: WebSocket) -> None:
    """Broadcast every message of this connection from the read callback, until closed."""
    CONNECTIONS.add(ws)
    ws.on_message = send_to_all
    ws.on_close = CONNECTIONS.discard


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
        announce("fullduplex-cb", options, server.port)
        await stop


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve; return the exit status."""
    return run(serve_until, parse_options("python -m bench.fullduplex_cb_server", argv))


if __name__ == "__main__":
    raise SystemExit(main())
