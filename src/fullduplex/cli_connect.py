"""``fullduplex connect URL``: an interactive client, like wscat or websocat.

Each line of standard input is sent as a text message; each message received is printed on its
own line. :func:`add_connect_parser` adds the subcommand to the ``fullduplex`` parser.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import sys
import threading
from typing import Any

from .asyncio.client import connect
from .exceptions import ConnectionClosed
from .protocol.connection import State

__all__ = ["add_connect_parser", "byte_count"]


def byte_count(value: str) -> int | None:
    """Parse a byte count for argparse; "none" or 0 disables the limit."""
    if value.lower() == "none":
        return None
    try:
        size = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of bytes: {value!r}") from None
    if size < 0:
        raise argparse.ArgumentTypeError("must be 0 or more (0 or none: no limit)")
    return size or None


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
        raise argparse.ArgumentTypeError("must be 0 or more (0 or none: disabled)")
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

    closed: ConnectionClosed | None = None  # what recv() raised, to say how it ended

    async def receive() -> None:
        nonlocal received, closed
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
        except ConnectionClosed as exc:
            closed = exc  # the close is reported below

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
    if closed is not None and closed.failure is not None:
        # This side failed the connection (a message over --max-message-size, say): the
        # peer's 1006 would only hide what happened.
        print(f"failed: {closed}", file=sys.stderr)
        return 1
    if closed_here and code != 1006:
        return 0  # our close handshake completed
    print(f"closed {code} {reason}".rstrip(), file=sys.stderr)
    return 0 if code in (1000, 1001) and not closed_here else 1


def _connect_command(args: argparse.Namespace) -> int:
    return asyncio.run(_connect_session(args))


def add_connect_parser(commands: Any) -> None:
    """Add ``fullduplex connect URL``: send lines of input, print messages received.

    Exit status: 0 when the input ended (or Ctrl-C) and the close handshake completed, or when
    the server closed with 1000 or 1001; 1 when it closed with another code or without a close
    frame (then ``closed CODE REASON`` goes to standard error), or when it failed the connection
    itself (``failed: ...``, e.g. a message over ``--max-message-size``); 2 when the connection
    could not be opened.
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
        "than 1000/1001 or dropped the connection ('closed CODE REASON' on standard error), "
        "or when this client failed the connection, e.g. for a message over "
        "--max-message-size ('failed: WHAT HAPPENED' on standard error); "
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
        type=byte_count,
        default=_CONNECT_MAX_MESSAGE_SIZE,
        metavar="BYTES",
        help="largest message accepted, 'none' for no limit (default 64 MiB here; the "
        "library's connect() defaults to 1 MiB)",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v: info, -vv: debug)"
    )
    parser.set_defaults(func=_connect_command)
