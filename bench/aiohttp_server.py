"""The aiohttp server: ``web.WebSocketResponse`` in a request handler, as its docs show.

``python -m bench.aiohttp_server [--host H] [--port 0] [--loop asyncio|aiofastnet|uvloop]
[--mode echo|broadcast] [--compression]`` prints ``aiohttp MODE server listening on
ws://HOST:PORT`` first and stops on SIGINT or SIGTERM.

One route for every path (``/{tail:.*}``). Settings: ``max_msg_size`` 64 MiB (default
4 MiB); ``compress`` True (the default) with ``--compression``, False without. Everything
else is aiohttp's default: no heartbeat (no keepalive pings; pings from the peer are answered,
``autoping``), receive timeout none, close timeout 10 s, the access log off (aiohttp logs
through ``logging``, which is not configured here, so nothing is written anyway).

Every open response is in one set, which ``on_shutdown`` closes with 1001, as aiohttp's docs
show for websockets. Broadcast: each message goes to each of them with
``send_str`` / ``send_bytes`` in a loop, as aiohttp's docs suggest (it has no broadcast
helper); those already closing are skipped.
"""

from __future__ import annotations

import asyncio

from aiohttp import WSCloseCode, WSMsgType, web

from bench.server_cli import MAX_MESSAGE_SIZE, Options, announce, parse_options, run

__all__ = ["main", "make_app", "serve_until"]

CONNECTIONS: set[web.WebSocketResponse] = set()


async def _send_to_all(data: str | bytes) -> None:
    for ws in tuple(CONNECTIONS):
        if ws.closed:
            continue
        try:
            if isinstance(data, str):
                await ws.send_str(data)
            else:
                await ws.send_bytes(data)
        except ConnectionResetError:
            pass  # closing: its handler takes it out of the set


def make_app(mode: str, compression: bool) -> web.Application:
    """Return the application whose one route serves ``mode`` on every path."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_SIZE, compress=compression)
        await ws.prepare(request)
        CONNECTIONS.add(ws)
        try:
            if mode == "echo":
                async for msg in ws:
                    if msg.type is WSMsgType.TEXT:
                        await ws.send_str(msg.data)
                    elif msg.type is WSMsgType.BINARY:
                        await ws.send_bytes(msg.data)
            else:
                async for msg in ws:
                    if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                        await _send_to_all(msg.data)
        finally:
            CONNECTIONS.discard(ws)
        return ws

    async def close_all(app: web.Application) -> None:
        # aiohttp's documented graceful shutdown: close every websocket with 1001.
        for ws in tuple(CONNECTIONS):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    app = web.Application()
    app.on_shutdown.append(close_all)
    app.router.add_get("/{tail:.*}", handler)
    return app


async def serve_until(options: Options, stop: asyncio.Future[None]) -> None:
    """Serve until ``stop`` is done."""
    runner = web.AppRunner(make_app(options.mode, options.compression), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, options.host, options.port)
        await site.start()
        announce("aiohttp", options, runner.addresses[0][1])
        await stop
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve; return the exit status."""
    return run(serve_until, parse_options("python -m bench.aiohttp_server", argv))


if __name__ == "__main__":
    raise SystemExit(main())
