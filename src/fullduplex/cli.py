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
import importlib
import json
import logging
import os
import signal
import ssl
import sys
import threading
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .asyncio.client import connect
from .asyncio.server import serve
from .exceptions import ConnectionClosed
from .protocol.connection import State

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


def _find_examples_root() -> Path | None:
    """Return the directory holding ``examples/demo.py``: the source checkout or the cwd.

    The demo ships with the repository, not the wheel: an editable install finds it next to
    ``src/``; otherwise the current directory is tried.
    """
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (root / "examples" / "demo.py").is_file():
            return root
    return None


def _load_demo_app(root: Path) -> Any:
    """Import ``examples.demo`` from ``root`` and return its ``app``.

    Raises:
        ImportError: If ``examples`` resolves to another package than ``root/examples``.
    """
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module = importlib.import_module("examples.demo")
    where = Path(module.__file__ or "").resolve()
    if not where.is_relative_to(root / "examples"):
        raise ImportError(f"'examples' was imported from {where}, not from {root}")
    return module.app


async def _run_demo_app(app: Any, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Serve the demo app until SIGINT or SIGTERM; then close every connection with 1001."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def request_stop() -> None:
        if not stop.done():
            stop.set_result(None)

    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, request_stop)
    try:
        async with app.serve(host, port) as server:
            shown = f"[{host}]" if ":" in host else host
            announce(f"http://{shown}:{server.port}/")
            await stop
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def _demo(args: argparse.Namespace) -> int:
    root = _find_examples_root()
    if root is None:
        print(
            "fullduplex demo: cannot find examples/demo.py (looked next to the fullduplex "
            "sources and in the current directory); run it from a fullduplex source checkout",
            file=sys.stderr,
        )
        return 2
    try:
        app = _load_demo_app(root)
    except ImportError as exc:
        print(f"fullduplex demo: cannot load the demo from {root}: {exc}", file=sys.stderr)
        return 2

    def announce(url: str) -> None:
        # The first line of stdout, flushed at once: tools and tests wait for it.
        print(f"fullduplex demo on {url}", flush=True)
        print(
            f"\n  {url}echo.html    echo (WebSocket {url.replace('http', 'ws', 1)}echo)"
            f"\n  {url}chat.html    chat rooms"
            f"\n  {url}snake.html   multiplayer snake"
            "\n\nPress Ctrl+C to stop.",
            flush=True,
        )

    return _run(_run_demo_app(app, args.host, args.port, announce), args.uvloop)


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


# ---- fullduplex connect: an interactive client ------------------------------------------------

_CONNECT_WAIT = 10.0  # default --wait: how long replies may take once the input has ended
_CONNECT_MAX_MESSAGE_SIZE = 64 * 2**20
_STDIN_QUEUE = 64  # lines read ahead of the connection, at most


def _header(value: str) -> tuple[str, str]:
    """Parse a --header value, ``NAME:VALUE``, for argparse."""
    name, colon, content = value.partition(":")
    if not colon or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME:VALUE, got {value!r}")
    return name.strip(), content.strip()


def _interval(value: str) -> float | None:
    """Parse a number of seconds for argparse; "none" or 0 disables."""
    if value.lower() == "none":
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError("must be positive")
    return seconds or None


def _shown_message(message: str | bytes, pretty_json: bool) -> str:
    """How a received message is printed: text as is, binary as hex after ``[binary]``."""
    if isinstance(message, bytes):
        return f"[binary] {message.hex()}"
    if pretty_json:
        try:
            return json.dumps(json.loads(message), indent=2, ensure_ascii=False)
        except ValueError:
            pass  # not JSON: print it as it came
    return message


class _StdinLines:
    """The lines of standard input, read in a thread and handed to the event loop.

    A daemon thread reads the file descriptor with os.read: it works the same for a terminal,
    a pipe and a regular file (the loop's pipe transports refuse files and would set the
    terminal non-blocking), and, holding no buffered reader's lock, it cannot hang the
    interpreter's exit while it waits for input that never comes. At most ``_STDIN_QUEUE``
    lines wait in :attr:`queue`, so a large file is read as fast as the connection sends it,
    not into memory. None in the queue marks the end of the input.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int = 0) -> None:
        self._loop = loop
        self._fd = fd
        self._room = threading.Semaphore(_STDIN_QUEUE)
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        threading.Thread(target=self._read, name="fullduplex-stdin", daemon=True).start()

    async def get(self) -> str | None:
        """Return the next line (without its line break), or None at the end of the input."""
        line = await self.queue.get()
        self._room.release()
        return line

    def _put(self, line: str | None) -> bool:
        self._room.acquire()
        try:
            self._loop.call_soon_threadsafe(self.queue.put_nowait, line)
        except RuntimeError:  # the loop is closed: nobody reads any more
            return False
        return True

    def _read(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if not self._put(self._decode(line)):
                    return
        if pending:
            self._put(self._decode(pending))
        self._put(None)

    @staticmethod
    def _decode(line: bytes) -> str:
        # Text messages must be UTF-8: bytes that are not become U+FFFD rather than an error.
        return line.removesuffix(b"\r").decode("utf-8", errors="replace")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _connect_session(args: argparse.Namespace) -> int:
    """Run ``fullduplex connect``; return the exit status (see :func:`_add_connect_parser`)."""
    options: dict[str, Any] = {
        "additional_headers": args.header,
        "subprotocols": args.subprotocol or None,
        "compression": "deflate" if args.compression else None,
        "ping_interval": args.ping_interval,
        "max_message_size": args.max_message_size,
        "proxy": None if args.proxy and args.proxy.lower() == "none" else args.proxy or True,
    }
    if args.insecure and args.url.lower().startswith("wss:"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        options["ssl"] = context
    try:
        ws = await connect(args.url, **options)
    except Exception as exc:  # any failure to connect is reported the same way: exit 2
        print(f"fullduplex: cannot connect to {args.url}: {_describe(exc)}", file=sys.stderr)
        return 2
    if os.isatty(0):
        chosen = f" (subprotocol {ws.subprotocol})" if ws.subprotocol else ""
        print(
            f"connected to {args.url}{chosen}; type messages, Ctrl-D or Ctrl-C to close",
            file=sys.stderr,
            flush=True,
        )

    loop = asyncio.get_running_loop()
    stdin = _StdinLines(loop)
    sent = received = 0
    input_ended = False
    caught_up = asyncio.Event()  # every line sent has had its reply, once the input ended
    stop = asyncio.Event()  # Ctrl-C, SIGTERM, or standard output went away
    signals = (signal.SIGINT, signal.SIGTERM)

    def interrupted() -> None:
        stop.set()
        # A second Ctrl-C while the close handshake runs interrupts it (exit status 130).
        for signum in signals:
            loop.remove_signal_handler(signum)

    async def receive() -> None:
        nonlocal received
        output = True
        try:
            async for message in ws:
                received += 1
                if output:
                    try:
                        print(_shown_message(message, args.json), flush=True)
                    except BrokenPipeError:
                        # Nobody reads standard output any more (e.g. `| head -1`): close,
                        # quietly; the interpreter's last flush goes to /dev/null. Reading
                        # goes on, so that the close handshake is not stuck behind a full queue.
                        devnull = os.open(os.devnull, os.O_WRONLY)
                        os.dup2(devnull, sys.stdout.fileno())
                        os.close(devnull)
                        output = False
                        stop.set()
                if input_ended and received >= sent:
                    caught_up.set()
        except ConnectionClosed:
            pass  # the close code is reported below

    async def send_input() -> None:
        nonlocal sent, input_ended
        while (line := await stdin.get()) is not None:
            await ws.send(line)
            sent += 1
        input_ended = True
        if received >= sent:
            caught_up.set()

    for signum in signals:
        loop.add_signal_handler(signum, interrupted)
    receiver = asyncio.create_task(receive())
    sender = asyncio.create_task(send_input())
    stopper = asyncio.create_task(stop.wait())
    closed_here = False
    try:
        await asyncio.wait({receiver, sender, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if sender.done() and sender.exception() is None and not stop.is_set():
            # The input ended: wait for the replies to the lines sent (or the server's close).
            waiter = asyncio.create_task(caught_up.wait())
            await asyncio.wait(
                {receiver, stopper, waiter}, timeout=args.wait, return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()
        # Whoever closed first decides what the close means; OPEN means nobody did yet.
        if ws.state is State.OPEN:
            closed_here = True
            await ws.close(1000)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        for task in (receiver, sender, stopper):
            task.cancel()
        await asyncio.gather(receiver, sender, stopper, return_exceptions=True)
    await ws.wait_closed()
    code, reason = ws.close_code, ws.close_reason or ""
    if closed_here and code != 1006:
        return 0  # our close handshake completed
    print(f"closed {code} {reason}".rstrip(), file=sys.stderr)
    return 0 if code in (1000, 1001) and not closed_here else 1


def _connect_command(args: argparse.Namespace) -> int:
    return asyncio.run(_connect_session(args))


def _add_connect_parser(commands: Any) -> None:
    """Add ``fullduplex connect URL``: send lines of input, print messages received.

    Exit status: 0 when the input ended (or Ctrl-C) and the close handshake completed, or when
    the server closed with 1000 or 1001; 1 when it closed with another code or without a close
    frame (then ``closed CODE REASON`` goes to standard error); 2 when the connection could not
    be opened.
    """
    parser = commands.add_parser(
        "connect",
        help="an interactive client: send lines, print messages",
        description="Connect to a WebSocket server. Each line of standard input is sent as a "
        "text message; each message received is printed on its own line (binary ones in hex, "
        "after '[binary] '). When the input ends (Ctrl-D, or the end of a pipe), the client "
        "waits until it has received at least as many messages as it sent lines, or the "
        "server closes, or --wait seconds pass, whichever comes first; then it closes with "
        "1000. So `echo hi | fullduplex connect URL` prints the reply. Ctrl-C closes at once. "
        "Exit status: 0 after a normal close; 1 when the server closed with a code other "
        "than 1000/1001 or dropped the connection ('closed CODE REASON' on standard error); "
        "2 when the connection failed.",
    )
    parser.add_argument("url", metavar="URL", help="ws:// or wss:// URL")
    parser.add_argument(
        "-H",
        "--header",
        type=_header,
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="an extra request header (repeatable)",
    )
    parser.add_argument(
        "-s",
        "--subprotocol",
        action="append",
        default=[],
        metavar="NAME",
        help="offer this subprotocol (repeatable, in order of preference)",
    )
    parser.add_argument(
        "--compression",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="offer permessage-deflate (default: yes)",
    )
    parser.add_argument(
        "--ping-interval",
        type=_interval,
        default=20.0,
        metavar="SECONDS",
        help="keepalive ping interval, 'none' or 0 to disable (default 20)",
    )
    parser.add_argument(
        "-k",
        "--insecure",
        action="store_true",
        help="do not verify the server's TLS certificate (wss://)",
    )
    parser.add_argument(
        "--proxy",
        metavar="URL",
        help="http://, socks5:// or socks5h:// proxy, or 'none' (default: from https_proxy, "
        "http_proxy, all_proxy, no_proxy)",
    )
    parser.add_argument("--json", action="store_true", help="pretty-print messages that are JSON")
    parser.add_argument(
        "--wait",
        type=float,
        default=_CONNECT_WAIT,
        metavar="SECONDS",
        help="after the input ends, how long to wait for replies (default 10)",
    )
    parser.add_argument(
        "--max-message-size",
        type=_size,
        default=_CONNECT_MAX_MESSAGE_SIZE,
        metavar="BYTES",
        help="largest message accepted, 'none' for no limit (default 64 MiB)",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v: info, -vv: debug)"
    )
    parser.set_defaults(func=_connect_command)


def _load_app(spec: str) -> Any:
    """Import ``module:attribute`` (attribute ``app`` by default) and return the attribute.

    The current directory is importable, as with ``python -m``, so that ``fullduplex serve
    myapp:app`` finds ``./myapp.py`` from the installed command too.

    Raises:
        ImportError: The module cannot be imported.
        AttributeError: It has no such attribute.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name:
        raise ImportError(f"no module in {spec!r}: use module:attribute")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    target: Any = importlib.import_module(module_name)
    for name in (attribute or "app").split("."):
        target = getattr(target, name)
    return target


def _serve_app(args: argparse.Namespace) -> int:
    # Imported here: the other commands need not load the framework.
    from .app import App  # noqa: PLC0415

    try:
        app = _load_app(args.app)
    except (ImportError, AttributeError) as exc:
        print(f"fullduplex serve: cannot load {args.app}: {exc}", file=sys.stderr)
        return 2
    if not isinstance(app, App):
        print(
            f"fullduplex serve: {args.app} is a {type(app).__name__}, not a fullduplex.app.App",
            file=sys.stderr,
        )
        return 2
    loop_factory = None
    if args.uvloop:
        try:
            import uvloop  # noqa: PLC0415 - optional dependency
        except ImportError:
            print(
                "fullduplex: --uvloop needs uvloop: pip install 'fullduplex[uvloop]'",
                file=sys.stderr,
            )
            return 2
        loop_factory = uvloop.new_event_loop
    # App.run prints "fullduplex app listening on http://HOST:PORT and ws://HOST:PORT" as the
    # first line of stdout, flushed, and closes every session with 1001 on SIGINT/SIGTERM.
    app.run(
        args.host,
        args.port,
        loop_factory=loop_factory,
        compression=None if args.no_compression else "deflate",
    )
    return 0


def _add_serve_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "serve",
        help="serve a fullduplex.app App: fullduplex serve module:app",
        description="Import MODULE:ATTRIBUTE (a fullduplex.app.App; ATTRIBUTE defaults to "
        "'app') and serve it until SIGINT or SIGTERM, which close every session with 1001. "
        "The first line of standard output is 'fullduplex app listening on http://HOST:PORT "
        "and ws://HOST:PORT'.",
    )
    parser.add_argument("app", metavar="MODULE:ATTRIBUTE", help="e.g. examples.demo:app")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument(
        "--port", type=int, default=8000, help="TCP port, 0 for any free one (default 8000)"
    )
    parser.add_argument("--no-compression", action="store_true", help="refuse permessage-deflate")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v: info, -vv: debug)"
    )
    parser.set_defaults(func=_serve_app)


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
        help="serve the sample apps (echo, chat, snake) and their pages",
        description="Serve examples/demo.py: the echo, chat and snake samples and their pages "
        "on one port. The first line of standard output is "
        "'fullduplex demo on http://HOST:PORT/'.",
    )
    demo.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    demo.add_argument(
        "--port", type=int, default=8000, help="TCP port, 0 for any free one (default 8000)"
    )
    demo.add_argument("--uvloop", action="store_true", help="run on uvloop's event loop")
    demo.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v: info, -vv: debug)"
    )
    demo.set_defaults(func=_demo)
    _add_connect_parser(commands)
    _add_serve_parser(commands)
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
