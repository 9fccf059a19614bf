"""What every Python benchmark server shares: its command line, its loop, its stop signal.

Each ``bench/*_server.py`` script accepts ``--host``, ``--port`` (0: a free one), ``--loop
asyncio|aiofastnet|uvloop``, ``--mode echo|broadcast`` and
``--compression``; it prints its URL as the first stdout line (flushed) and stops on SIGINT or
SIGTERM. Only the library-specific part lives in the scripts:
a coroutine that starts the server, announces it and serves until the stop future is done.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = [
    "LOOPS",
    "MAX_MESSAGE_SIZE",
    "MODES",
    "SHUTDOWN_GRACE",
    "Options",
    "Serve",
    "announce",
    "parse_options",
    "run",
]

# Far above the largest benchmark message (16 MiB): no server refuses a message of the bench.
MAX_MESSAGE_SIZE = 64 * 2**20
MODES = ("echo", "broadcast")
#: The event loops a Python server can run on: asyncio's stock loop; the same loop patched
#: with ``aiofastnet.patch_loop`` (its ``create_server`` gives aiofastnet's compiled
#: transports, which picows uses on every loop); uvloop's loop. In table order.
LOOPS = ("asyncio", "aiofastnet", "uvloop")
# Seconds a library may take to close its connections after SIGTERM before the process exits
# anyway: a peer that never answers a close frame would hold it for the library's close
# timeout (10 s in most), or for ever, and the benchmark stops servers many times.
SHUTDOWN_GRACE = 3.0


@dataclass(frozen=True, slots=True)
class Options:
    """One server's settings, from its command line."""

    host: str
    port: int
    loop: str  # one of LOOPS
    mode: str
    compression: bool


Serve = Callable[[Options, "asyncio.Future[None]"], Awaitable[None]]
"""``serve(options, stop)``: start the server, announce it, serve until ``stop`` is done."""


def parse_options(
    prog: str,
    argv: list[str] | None = None,
    *,
    compression: bool = True,
    broadcast: bool = True,
) -> Options:
    """Parse a server's command line; exit with status 2 on a setting it cannot honour.

    Args:
        prog: The program name for usage messages.
        argv: The arguments (default: ``sys.argv[1:]``).
        compression: Whether the library can serve permessage-deflate.
        broadcast: Whether the server has a broadcast mode.
    """
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    # One destination for both: the last one given wins, like any repeated option.
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default="asyncio",
        help="asyncio's stock loop (default), the same patched with aiofastnet, or uvloop's",
    )
    parser.add_argument("--mode", choices=MODES, default="echo")
    parser.add_argument(
        "--compression", action="store_true", help="accept permessage-deflate (default: off)"
    )
    args = parser.parse_args(argv)
    if args.compression and not compression:
        parser.error("this server cannot serve permessage-deflate")
    if args.mode == "broadcast" and not broadcast:
        parser.error("this server has no broadcast mode")
    return Options(args.host, args.port, args.loop, args.mode, args.compression)


def announce(name: str, options: Options, port: int, scheme: str = "ws") -> None:
    """Print the server's first stdout line, with its URL, and flush it."""
    print(f"{name} {options.mode} server listening on {scheme}://{options.host}:{port}", flush=True)


def _exit_now() -> None:
    print(f"closing took over {SHUTDOWN_GRACE} s: exiting anyway", file=sys.stderr, flush=True)
    os._exit(0)


async def _serve_until_signalled(serve: Serve, options: Options) -> None:
    loop = asyncio.get_running_loop()
    if options.loop == "aiofastnet":
        import aiofastnet  # noqa: PLC0415 - optional, only when asked for

        # Before the server exists: from now on the loop's create_server (and
        # create_connection) give aiofastnet's transports to whatever library calls them.
        aiofastnet.patch_loop(loop)
    stop: asyncio.Future[None] = loop.create_future()

    def request_stop() -> None:
        if not stop.done():
            stop.set_result(None)
            loop.call_later(SHUTDOWN_GRACE, _exit_now)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, request_stop)
    await serve(options, stop)


def run(serve: Serve, options: Options) -> int:
    """Run ``serve(options, stop)`` on the loop the options ask for; return the exit status.

    "asyncio" is asyncio's stock loop, "uvloop" uvloop's, "aiofastnet" the stock loop with
    ``aiofastnet.patch_loop`` applied before ``serve`` starts. ``stop`` is a future that SIGINT
    or SIGTERM completes: ``serve`` starts its server, announces it, awaits ``stop`` and closes
    the server as its library does. If that takes over SHUTDOWN_GRACE seconds, the process
    exits anyway.

    Raises:
        ValueError: ``options.loop`` is not one of LOOPS.
    """
    if options.loop not in LOOPS:
        raise ValueError(f"unknown loop {options.loop!r}; choose from {', '.join(LOOPS)}")
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if options.loop == "uvloop":
        import uvloop  # noqa: PLC0415 - optional, only when asked for

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve_until_signalled(serve, options))
    return 0
