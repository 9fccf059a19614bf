"""A `websockets` echo server with the command line of ``python -m fullduplex echo``.

The conformance suite runs against it with FULLDUPLEX_CONFORMANCE_TARGET=websockets, to check
the suite itself against a mature implementation. Usage::

    python tests/conformance/reference_server.py [--host H] [--port P] [--no-compression]
        [--max-message-size BYTES]

It prints ``... listening on ws://HOST:PORT`` as its first stdout line and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from websockets.asyncio.server import ServerConnection, serve

__all__ = ["echo", "main"]


async def echo(ws: ServerConnection) -> None:
    """Send every message back as it came (text as text, binary as binary)."""
    async for message in ws:
        await ws.send(message)


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        echo,
        args.host,
        args.port,
        compression=None if args.no_compression else "deflate",
        max_size=args.max_message_size,
        ping_interval=None,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"websockets reference echo server listening on ws://{args.host}:{port}", flush=True)
        await stop


def main() -> None:
    """Parse the command line and serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--no-compression", action="store_true")
    parser.add_argument("--max-message-size", type=int, default=64 * 2**20)
    # Violations are the point of the suite; their log lines would only fill the stderr pipe.
    logging.disable(logging.CRITICAL)
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
