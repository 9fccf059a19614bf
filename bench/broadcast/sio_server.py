"""The python-socketio side: an ``AsyncServer`` with ``AsyncRedisManager``, served by aiohttp.

``python -m bench.broadcast.sio_server --port P --redis URL``. Websocket transport only (the
receivers connect straight to ``/socket.io/?EIO=4&transport=websocket``); a client joins the
room ``bench`` in its connect handler, before the server acknowledges the connection. Stops on
SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

import socketio  # type: ignore[import-untyped]
from aiohttp import web

__all__ = ["ROOM", "main"]

ROOM = "bench"


async def _serve(port: int, redis_url: str) -> None:
    manager = socketio.AsyncRedisManager(redis_url)
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=manager,
        transports=["websocket"],
        cors_allowed_origins="*",
    )

    @sio.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, environ: dict[str, Any]) -> None:
        await sio.enter_room(sid, ROOM)

    application = web.Application()
    sio.attach(application)
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    stop = asyncio.get_running_loop().create_future()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set_result, None)
    print(f"socketio listening on ws://127.0.0.1:{port}", flush=True)
    try:
        await stop
    finally:
        await asyncio.wait_for(runner.cleanup(), 3)


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m bench.broadcast.sio_server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.port, args.redis))


if __name__ == "__main__":
    main()
