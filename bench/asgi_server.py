"""A FastAPI WebSocket echo on one of the ASGI servers, for issue 13's rows.

``python -m bench.asgi_server --server NAME [--host H] [--port 0] [--loop asyncio|uvloop]
[--mode echo] [--compression]`` prints ``asgi-NAME echo server listening on ws://HOST:PORT``
first and stops on SIGINT or SIGTERM. NAME is one of SERVERS:

* ``fullduplex``: ``fullduplex.asgi.serve_asgi`` (what ``fullduplex serve --asgi`` runs);
* ``uvicorn-fd``: uvicorn with fullduplex's WebSocket protocol class
  (``ws=FullduplexWebSocketProtocol``);
* ``uvicorn-sansio``, ``uvicorn-wsproto``: uvicorn with its own implementations;
* ``hypercorn``: hypercorn's asyncio server;
* ``granian``: granian's embedded server (``granian.server.embed``, one runtime thread): the
  same Rust worker as ``granian --interface asgi --workers 1``, in this process, so that the
  process whose memory and CPU are measured is the one that serves.

Every server runs in this process on the loop given, with the application as its users
write it (below): Starlette's ``WebSocket`` under FastAPI, ``receive()`` and ``send_text`` or
``send_bytes`` by the message's type. Settings: the largest message 64 MiB; permessage-deflate
only with ``--compression`` (uvicorn's ``ws_per_message_deflate``; hypercorn always accepts
it and granian never does, neither has a setting, so they take no ``--compression``); access logs
off; lifespan on; everything else each server's default (uvicorn's keepalive ping every 20 s,
its h11/httptools choice "auto").
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from bench.server_cli import MAX_MESSAGE_SIZE, Options, announce, parse_options, run

__all__ = ["SERVERS", "api", "main"]

#: The ASGI servers this script runs (``--server``).
SERVERS = ("fullduplex", "uvicorn-fd", "uvicorn-sansio", "uvicorn-wsproto", "hypercorn", "granian")

api = FastAPI()


@api.websocket("/")
async def echo(websocket: WebSocket) -> None:
    """Send every message back with its type, until the client leaves."""
    await websocket.accept()
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is not None:
                await websocket.send_text(text)
            else:
                await websocket.send_bytes(message["bytes"])


def _listening(host: str, port: int) -> socket.socket:
    # Bound and listening before the server starts: the URL can be announced at once (a
    # connection made meanwhile waits in the backlog) and port 0 gets its real number. The
    # protocol is named: asyncio's stock loop sets TCP_NODELAY on accepted sockets only when
    # their proto is IPPROTO_TCP (socket.socket() says 0), and without it Nagle delays
    # every small echo of the uvicorn rows.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def _uvicorn(name: str, options: Options, stop: asyncio.Future[None]) -> None:
    import uvicorn  # noqa: PLC0415 - only the server asked for is imported

    ws: Any
    if name == "uvicorn-fd":
        from fullduplex.asgi.uvicorn import FullduplexWebSocketProtocol  # noqa: PLC0415

        ws = FullduplexWebSocketProtocol
    else:
        ws = name.removeprefix("uvicorn-").replace("sansio", "websockets-sansio")
    config = uvicorn.Config(
        api,
        ws=ws,
        ws_max_size=MAX_MESSAGE_SIZE,
        ws_per_message_deflate=options.compression,
        access_log=False,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    # uvicorn would install its own signal handlers: the bench's stop future rules here.
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    sock = _listening(options.host, options.port)
    announce(f"asgi-{name}", options, sock.getsockname()[1])
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    await task


async def _hypercorn(options: Options, stop: asyncio.Future[None]) -> None:
    from hypercorn.asyncio import serve  # noqa: PLC0415
    from hypercorn.config import Config  # noqa: PLC0415

    sock = _listening(options.host, options.port)
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.websocket_max_message_size = MAX_MESSAGE_SIZE
    config.accesslog = None
    config.graceful_timeout = 1.0
    announce("asgi-hypercorn", options, sock.getsockname()[1])
    await serve(api, config, shutdown_trigger=lambda: stop)  # type: ignore[arg-type]


async def _granian(options: Options, stop: asyncio.Future[None]) -> None:
    from granian.constants import Interfaces  # noqa: PLC0415
    from granian.server.embed import Server  # noqa: PLC0415

    # Granian binds its own socket: take a free port, then wait until it accepts.
    with socket.socket() as probe:
        probe.bind((options.host, options.port))
        port = probe.getsockname()[1]
    # Its log goes to stdout, whose first line must be the URL: off (access logs are off for
    # every server anyway).
    server = Server(
        api, address=options.host, port=port, interface=Interfaces.ASGI, log_enabled=False
    )
    task = asyncio.ensure_future(server.serve())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        try:
            _, writer = await asyncio.open_connection(options.host, port)
        except OSError:
            if task.done() or loop.time() > deadline:
                raise RuntimeError("granian did not listen within 10 s") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        break
    announce("asgi-granian", options, port)
    await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
    server.stop()
    await task


async def _fullduplex(options: Options, stop: asyncio.Future[None]) -> None:
    from fullduplex.asgi import serve_asgi  # noqa: PLC0415

    compression = "deflate" if options.compression else None
    server = serve_asgi(
        api,
        options.host,
        options.port,
        drain_timeout=1.0,
        compression=compression,
        max_message_size=MAX_MESSAGE_SIZE,
    )
    async with server:
        announce("asgi-fullduplex", options, server.port)
        await stop


def main(argv: list[str] | None = None) -> int:
    """Parse the command line (``--server NAME`` and the common options) and serve."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--server" not in args or args.index("--server") + 1 >= len(args):
        print(f"--server is required: one of {', '.join(SERVERS)}", file=sys.stderr)
        return 2
    at = args.index("--server")
    name = args[at + 1]
    del args[at : at + 2]
    if name not in SERVERS:
        print(f"unknown --server {name!r}: one of {', '.join(SERVERS)}", file=sys.stderr)
        return 2
    options = parse_options(
        "python -m bench.asgi_server",
        args,
        compression=name in ("fullduplex", "uvicorn-fd", "uvicorn-sansio", "uvicorn-wsproto"),
        broadcast=False,
    )

    async def serve(options: Options, stop: asyncio.Future[None]) -> None:
        if name.startswith("uvicorn"):
            await _uvicorn(name, options, stop)
        elif name == "hypercorn":
            await _hypercorn(options, stop)
        elif name == "granian":
            await _granian(options, stop)
        else:
            await _fullduplex(options, stop)

    return run(serve, options)


if __name__ == "__main__":
    raise SystemExit(main())
