"""Helpers for the thread-based client's tests: servers on free ports, in background threads.

* :class:`ServerThread`: a real fullduplex asyncio server in a thread of its own, with its own
  event loop, so that blocking client code can run in the test's thread.
* :class:`RawServer`: a TCP server whose connections a test answers byte by byte, to play a
  peer that misbehaves (never answers, ignores pings, stops reading).

Every one of them is a context manager that stops its threads and closes its sockets.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

from fullduplex.asyncio.server import Server, serve
from fullduplex.protocol.frames import Frame, FrameParser
from fullduplex.protocol.handshake import accept_key
from tests.helpers import seconds

__all__ = [
    "RawServer",
    "ServerThread",
    "read_request",
    "switching_protocols",
    "until",
]

T = TypeVar("T")

# How often the helper servers' loops look at their stop flag.
_TICK = 0.05


def until(condition: Callable[[], bool], timeout: float = 5) -> None:
    """Wait until ``condition()`` is true, checking every few milliseconds, at most
    ``seconds(timeout)``. For states no event announces (e.g. a thread blocked in a call)."""
    deadline = time.monotonic() + seconds(timeout)
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition still false after {seconds(timeout)}s")
        time.sleep(0.005)


class ServerThread:
    """A fullduplex server (``serve(handler, "127.0.0.1", port, **options)``) in a thread.

    Args:
        handler: The async connection handler, run on the server's loop.
        port: The port to listen on; 0 for a free one. :meth:`start` again after :meth:`stop`
            listens on the same port.
        **options: More keyword arguments for :func:`fullduplex.serve`.
    """

    def __init__(
        self, handler: Callable[[Any], Awaitable[None]], port: int = 0, **options: Any
    ) -> None:
        self.handler = handler
        self.port = port
        self.options = options
        self.server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The ws:// URL of the server."""
        return f"ws://127.0.0.1:{self.port}/"

    def start(self) -> ServerThread:
        """Start the loop's thread and the server; return self."""
        self._loop = loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="test-server-loop")
        self._thread.start()

        async def start() -> Server:
            return await serve(self.handler, "127.0.0.1", self.port, **self.options)

        self.server = self.call(start())
        self.port = self.server.port
        return self

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the server's loop; return its result (bounded wait)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(seconds(10))

    def stop(self) -> None:
        """Close the server (connections get 1001), stop the loop and join its thread."""
        if self._loop is None:
            return
        server = self.server

        async def close() -> None:
            if server is not None:
                await server.close()

        try:
            self.call(close())
        finally:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            self.server = None
            loop.call_soon_threadsafe(loop.stop)
            assert thread is not None
            thread.join(seconds(10))
            assert not thread.is_alive()
            loop.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        self.stop()


def read_request(conn: socket.socket) -> bytes:
    """Read an HTTP request head (up to the blank line) from a blocking socket."""
    head = b""
    while b"\r\n\r\n" not in head:
        data = conn.recv(4096)
        if not data:
            raise EOFError("the client closed the connection during the request")
        head += data
    return head


def switching_protocols(head: bytes) -> bytes:
    """A valid 101 answering the request ``head`` (no extension, no subprotocol)."""
    match = re.search(rb"Sec-WebSocket-Key: (\S+)", head)
    assert match is not None
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(match.group(1).decode()).encode() + b"\r\n\r\n"
    )


class RawServer:
    """A TCP server on 127.0.0.1 that hands each accepted connection to ``respond``.

    ``respond(conn, server)`` runs in a thread per connection, on a blocking socket with a
    timeout of ``seconds(10)``; the socket is closed when it returns. :meth:`frames` parses
    what a WebSocket client sent (masked frames).

    Args:
        respond: The per-connection behaviour, or None to never accept (connections then stay
            in the listen backlog: the TCP handshake completes, nothing is ever answered).
        rcvbuf: SO_RCVBUF for accepted connections, to make a client's writes block sooner.
    """

    def __init__(
        self,
        respond: Callable[[socket.socket, RawServer], None] | None,
        *,
        rcvbuf: int | None = None,
    ) -> None:
        self.respond = respond
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Set before listen(): accepted sockets inherit it, and the TCP window with it.
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(_TICK)
        self.port: int = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.errors: list[BaseException] = []
        self.accepted = 0
        #: For ``respond``: the bytes a connection received, and an event to signal the test.
        self.received = b""
        self.signal = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept_thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The ws:// URL of the server."""
        return f"ws://127.0.0.1:{self.port}/"

    def __enter__(self) -> RawServer:
        if self.respond is not None:
            self._accept_thread = threading.Thread(target=self._accept, name="test-raw-accept")
            self._accept_thread.start()
        return self

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            thread = threading.Thread(target=self._handle, args=(conn,), name="test-raw-conn")
            self._threads.append(thread)
            thread.start()

    def _handle(self, conn: socket.socket) -> None:
        assert self.respond is not None
        with conn:
            conn.settimeout(seconds(10))
            try:
                self.respond(conn, self)
            except (OSError, EOFError):
                pass
            except BaseException as exc:  # reported by __exit__
                self.errors.append(exc)

    @staticmethod
    def frames(data: bytes) -> list[Frame]:
        """Parse masked frames sent by a client."""
        parser = FrameParser(mask_required=True, allow_rsv1=True)
        frames = parser.feed(data)
        assert parser.error is None, parser.error
        return frames

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join(seconds(10))
            assert not self._accept_thread.is_alive()
        self.listener.close()
        for thread in self._threads:
            thread.join(seconds(15))
            assert not thread.is_alive()
        if self.errors and exc is None:
            raise self.errors[0]
