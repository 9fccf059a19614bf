"""The websockets echo server the benchmark compares fullduplex with.

``python -m bench.websockets_server [--host 127.0.0.1] [--port 0] [--uvloop]`` prints
``websockets echo server listening on ws://HOST:PORT`` as its first stdout line (flushed), like
``python -m fullduplex echo``, and stops on SIGINT or SIGTERM. It is configured like the
fullduplex server under test: no compression and a message limit far above the largest
benchmark message. Everything else is websockets' defaults, as its users run it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable

from websockets.asyncio.server import ServerConnection, serve

__all__ = ["echo", "main", "run"]

MAX_SIZE = 64 * 2**20


async def echo(ws: ServerConnection) -> None:
    """Send every message back as it came (text as text, binary as binary)."""
    async for message in ws:
        await ws.send(message)


async def run(host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM; print the URL first.

    Args:
        host: The address to listen on.
        port: The port, 0 for a free one.
    """
    stop = asyncio.get_running_loop().create_future()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set_result, None)
    async with serve(echo, host, port, compression=None, max_size=MAX_SIZE) as server:
        bound_port = server.sockets[0].getsockname()[1]
        print(f"websockets echo server listening on ws://{host}:{bound_port}", flush=True)
        await stop


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench.websockets_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    args = parser.parse_args(argv)
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if args.uvloop:
        import uvloop  # noqa: PLC0415 - optional, only when asked for

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(run(args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
