"""The ``fullduplex`` command line: ``fullduplex echo`` and ``fullduplex demo``.

``python -m fullduplex echo --port 0`` prints ``fullduplex echo server listening on
ws://127.0.0.1:PORT`` as the first line of standard output (tests and conformance suites read
it), then echoes every message on every path until SIGINT or SIGTERM, which close every
connection with 1001 and exit with status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from . import __version__
from .asyncio.server import serve

__all__ = ["echo_handler", "main"]

_ECHO_MAX_MESSAGE_SIZE = 64 * 2**20  # conformance suites send messages of 16 MiB


async def echo_handler(ws: Any) -> None:
    """Send every message back as it came: text as text, binary as binary."""
    async for message in ws:
        await ws.send(message)


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"ws://{shown}:{port}"


def _size(value: str) -> int | None:
    """Parse a byte count for argparse; "none" or 0 disables the limit."""
    if value.lower() == "none":
        return None
    try:
        size = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of bytes: {value!r}") from None
    if size < 0:
        raise argparse.ArgumentTypeError("must be positive")
    return size or None


async def _run_echo_server(
    host: str, port: int, options: dict[str, Any], announce: Callable[[str], None]
) -> None:
    """Serve echo_handler until SIGINT or SIGTERM; then close every connection with 1001."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def request_stop() -> None:
        if not stop.done():
            stop.set_result(None)

    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, request_stop)
    try:
        async with serve(echo_handler, host, port, **options) as server:
            announce(_url(host, server.port))
            await stop
            # Leaving the block closes the server: 1001 to every client, handlers awaited.
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def _run(coro: Coroutine[Any, Any, None], use_uvloop: bool) -> int:
    if use_uvloop:
        try:
            # Optional dependency, imported only when asked for.
            import uvloop  # noqa: PLC0415
        except ImportError:
            coro.close()
            print(
                "fullduplex: --uvloop needs uvloop: pip install 'fullduplex[uvloop]'",
                file=sys.stderr,
            )
            return 2
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro)
        return 0
    asyncio.run(coro)
    return 0


def _server_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "compression": None if args.no_compression else "deflate",
        "max_message_size": args.max_message_size,
    }


def _echo(args: argparse.Namespace) -> int:
    def announce(url: str) -> None:
        # The first line of stdout, flushed at once: tools wait for it to learn the port.
        print(f"fullduplex echo server listening on {url}", flush=True)

    return _run(
        _run_echo_server(args.host, args.port, _server_options(args), announce), args.uvloop
    )


def _demo(args: argparse.Namespace) -> int:
    def announce(url: str) -> None:
        print(f"fullduplex demo: echo server listening on {url}", flush=True)
        print(
            "\nTry it from another terminal:\n\n"
            "  python -c 'import asyncio, fullduplex\n"
            "async def main():\n"
            f'    async with fullduplex.connect("{url}/") as ws:\n'
            '        await ws.send("hello")\n'
            "        print(await ws.recv())\n"
            "asyncio.run(main())'\n\n"
            "or interactively, in `python -m asyncio`:\n\n"
            f'  >>> import fullduplex; ws = await fullduplex.connect("{url}/")\n'
            '  >>> await ws.send("hello"); await ws.recv()\n\n'
            "Press Ctrl+C to stop.",
            flush=True,
        )

    return _run(
        _run_echo_server(args.host, args.port, _server_options(args), announce), args.uvloop
    )


def _add_server_arguments(parser: argparse.ArgumentParser, port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument(
        "--port", type=int, default=port, help=f"TCP port, 0 for any free one (default {port})"
    )
    parser.add_argument("--no-compression", action="store_true", help="refuse permessage-deflate")
    parser.add_argument(
        "--max-message-size",
        type=_size,
        default=_ECHO_MAX_MESSAGE_SIZE,
        metavar="BYTES",
        help="largest message accepted, 'none' for no limit (default 64 MiB)",
    )
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v: info, -vv: debug)"
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``fullduplex`` command."""
    parser = argparse.ArgumentParser(
        prog="fullduplex", description="fullduplex: WebSocket servers and tools."
    )
    parser.add_argument("--version", action="version", version=f"fullduplex {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    echo = commands.add_parser(
        "echo",
        help="run an echo server (every path)",
        description="Echo every text and binary message back, on every path. The first line "
        "of standard output is 'fullduplex echo server listening on ws://HOST:PORT'.",
    )
    _add_server_arguments(echo, 9001)
    echo.set_defaults(func=_echo)
    demo = commands.add_parser(
        "demo",
        help="run the demo server and print how to try it",
        description="Run the demo (for now, an echo server) and print how to talk to it.",
    )
    _add_server_arguments(demo, 8000)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fullduplex`` command.

    Args:
        argv: The arguments, without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 on a usage error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    with contextlib.suppress(KeyboardInterrupt):
        return func(args)
    return 130
