"""The thread-based WebSocket: one object per connection, safe to share between threads.

:class:`WebSocket` drives a sans-I/O :class:`~fullduplex.protocol.connection.Connection` over a
socket with one background thread, the *reader*, which owns the receiving side. The reader
reads, feeds the protocol, answers pings and close frames (the protocol queues the replies, the
reader writes them), resolves pongs, runs the keepalive and close timers, and puts messages on
a bounded queue that :meth:`WebSocket.recv` and iteration read. Any thread may send, ping or
close at any time; one thread may wait in :meth:`~WebSocket.recv` while others do.

Threads and locks (taken in this order only, so that no two threads wait for each other):

* ``_message_lock``: one outgoing message at a time, so that a fragmented message is never
  interleaved with another one. Only :meth:`~WebSocket.send` takes it; ping, pong and close
  frames may go between two fragments, as RFC 6455 section 5.4 allows.
* ``_send_lock``: one writer on the socket at a time, and in the order the protocol produced
  the bytes (compression contexts depend on it). The protocol's output is only taken out with
  this lock held, and written before it is released. Background writers (the reader's pongs,
  keepalive pings, close) never wait for it: they flag the output as pending and the thread
  holding the lock writes it before letting go (see ``_try_flush``).
* ``_lock``: the protocol state, the message queue, pings and timers. Never held during I/O.

The socket is non-blocking once the connection is open: threads wait in ``poll()``, so a
blocked reader or writer wakes when :meth:`~WebSocket.close` shuts the socket down, and the
reader can run its timers between reads. With TLS, every call into the TLS object is further
serialized by ``_io_lock``, because OpenSSL does not allow one thread to read while another
writes on the same connection; the calls are non-blocking, so the lock is held only briefly.

Flow control: when ``max_queue`` messages wait in the queue, the reader stops reading until the
application drains it to a quarter of that; TCP then pushes back on the peer. While it waits,
nothing is read, control frames included, as in the asyncio connection.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import select
import socket
import ssl
import threading
from collections.abc import Iterable, Iterator, Mapping
from time import monotonic, perf_counter
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeAlias, cast

from ..exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
)
from ..protocol.connection import SEND_EOF, Close, Connection, Ping, Pong, State

if TYPE_CHECKING:
    from ..protocol.handshake import Request, Response

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_OPEN_TIMEOUT",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PING_TIMEOUT",
    "Data",
    "LoggerLike",
    "Message",
    "PongWaiter",
    "WebSocket",
]

#: A whole message as delivered: ``str`` for text, ``bytes`` for binary.
Message: TypeAlias = str | bytes
#: What :meth:`WebSocket.send` accepts as a message or as one fragment of a message.
Data: TypeAlias = str | bytes | bytearray | memoryview
LoggerLike: TypeAlias = logging.Logger | logging.LoggerAdapter[logging.Logger]

# The same defaults as the asyncio layer (fullduplex.asyncio.connection), repeated so that the
# thread-based client does not import asyncio.
DEFAULT_MAX_QUEUE: Final = 16
DEFAULT_PING_INTERVAL: Final = 20.0
DEFAULT_PING_TIMEOUT: Final = 20.0
DEFAULT_OPEN_TIMEOUT: Final = 10.0
DEFAULT_CLOSE_TIMEOUT: Final = 10.0

# Bytes asked for per read: large enough that a busy connection reads many frames per call.
_READ_SIZE: Final = 65536
# How long a TLS write waits before retrying when OpenSSL needs to read first (renegotiation
# or a key update): the reader thread does that read, so there is nothing better to wait for.
_TLS_RETRY_DELAY: Final = 0.01
_BYTES_LIKE: Final = (bytes, bytearray, memoryview)

_WouldBlock: Final = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


if hasattr(select, "poll"):

    def _wait(sock: socket.socket, write: bool, timeout: float | None) -> None:
        """Wait until ``sock`` is readable (or writable), has an error, or ``timeout`` passes."""
        poller = select.poll()
        poller.register(sock, select.POLLOUT if write else select.POLLIN)
        # Rounded up: waking a little early would only spin once more.
        poller.poll(None if timeout is None else math.ceil(max(timeout, 0.0) * 1000))

else:  # pragma: no cover - Windows has no poll()

    def _wait(sock: socket.socket, write: bool, timeout: float | None) -> None:
        """Wait until ``sock`` is readable (or writable), has an error, or ``timeout`` passes."""
        if write:
            select.select([], [sock], [sock], timeout)
        else:
            select.select([sock], [], [sock], timeout)


class PongWaiter:
    """What :meth:`WebSocket.ping` returns: wait on it for the pong.

    ``rtt = ws.ping().wait(timeout=5)`` sends a ping and returns the round-trip time in seconds.
    The waiter may also be dropped: the pong still updates :attr:`WebSocket.latency`.
    """

    __slots__ = ("_event", "_exc", "_rtt")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._rtt = 0.0
        self._exc: ConnectionClosed | None = None

    def wait(self, timeout: float | None = None) -> float:
        """Wait for the pong; return the round-trip time in seconds.

        Any number of threads may wait, and wait again after a timeout.

        Args:
            timeout: The longest wait in seconds; None waits until the pong or the close.

        Raises:
            TimeoutError: No pong within ``timeout`` (the ping stays pending).
            ConnectionClosed: The connection closed before the pong arrived.
        """
        if not self._event.wait(timeout):
            raise TimeoutError(f"no pong within {timeout} seconds")
        if self._exc is not None:
            raise self._exc
        return self._rtt

    def done(self) -> bool:
        """True once the pong arrived or the connection closed."""
        return self._event.is_set()

    def _resolve(self, rtt: float) -> None:
        self._rtt = rtt
        self._event.set()

    def _fail(self, exc: ConnectionClosed) -> None:
        self._exc = exc
        self._event.set()


class WebSocket:
    """One WebSocket connection over a socket, driven by a background reader thread.

    :func:`fullduplex.sync.connect` creates them; every method may be called from any thread.
    ``for message in ws`` yields every message (``str`` or ``bytes``) until the connection
    closes; it ends quietly on a normal close (1000 or 1001) and raises
    :class:`~fullduplex.exceptions.ConnectionClosedError` otherwise. ``with ws:`` closes the
    connection at the end of the block.

    Args:
        sock: The connected socket (plain or TLS), after the opening handshake. The connection
            owns it from now on: it makes it non-blocking and closes it.
        conn: The protocol connection, OPEN.
        logger: Where close reasons and timeouts are logged.
        request: The opening handshake request.
        response: The opening handshake response.
        subprotocol: The negotiated subprotocol.
        trailing_data: Bytes received after the opening handshake: the first frames.
        max_queue: How many received messages may wait for :meth:`recv` before reading stops
            (at least 1), or None for no limit.
        ping_interval: Seconds between keepalive pings, or None for no keepalive.
        ping_timeout: How long a keepalive ping may wait for its pong before the connection
            fails with 1011, or None to wait forever.
        close_timeout: How long the closing handshake may take before the socket is closed
            without it, or None to wait forever.

    Attributes:
        id: A short identifier for log lines about this connection.
    """

    __slots__ = (
        "_close_deadline",
        "_close_timeout",
        "_closing",
        "_conn",
        "_debug",
        "_done",
        "_eof",
        "_io_lock",
        "_keepalive_data",
        "_latency",
        "_local_address",
        "_lock",
        "_logger",
        "_low_water",
        "_max_queue",
        "_message_lock",
        "_message_ready",
        "_messages",
        "_next_deadline",
        "_output_pending",
        "_ping_at",
        "_ping_interval",
        "_ping_timeout",
        "_pings",
        "_pong_deadline",
        "_read_error",
        "_reader",
        "_reader_waiting",
        "_recv_waiting",
        "_remote_address",
        "_request",
        "_response",
        "_send_lock",
        "_sock",
        "_sock_closed",
        "_space_ready",
        "_stop_reading",
        "_subprotocol",
        "_tls",
        "_trailing_data",
        "id",
    )

    def __init__(
        self,
        sock: socket.socket,
        conn: Connection,
        *,
        logger: LoggerLike,
        request: Request | None = None,
        response: Response | None = None,
        subprotocol: str | None = None,
        trailing_data: bytes = b"",
        max_queue: int | None = DEFAULT_MAX_QUEUE,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        if max_queue is not None and max_queue < 1:
            raise ValueError("max_queue must be at least 1, or None")
        self.id = os.urandom(4).hex()
        self._sock = sock
        self._conn = conn
        self._logger = logger
        self._debug = logger.isEnabledFor(logging.DEBUG)
        self._request = request
        self._response = response
        self._subprotocol = subprotocol
        try:
            self._remote_address: Any = sock.getpeername()
            self._local_address: Any = sock.getsockname()
        except OSError:
            self._remote_address = self._local_address = None
        sock.setblocking(False)
        self._tls = isinstance(sock, ssl.SSLSocket)
        # Locks: see the module docstring.
        self._io_lock = threading.Lock()
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._message_lock = threading.Lock()
        self._message_ready = threading.Condition(self._lock)
        self._space_ready = threading.Condition(self._lock)
        self._output_pending = False
        self._sock_closed = False
        # Receiving. An unbounded queue is a queue whose bound is never reached.
        self._messages: collections.deque[Message] = collections.deque()
        self._max_queue = max_queue if max_queue is not None else 2**62
        self._low_water = self._max_queue // 4
        self._recv_waiting = False
        self._reader_waiting = False
        self._eof = False
        self._closing = False
        # Pings: payload -> (time sent, waiter or None for keepalive pings), oldest first.
        self._pings: dict[bytes, tuple[float, PongWaiter | None]] = {}
        self._latency = 0.0
        self._keepalive_data: bytes | None = None
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._close_timeout = close_timeout
        # Timers, as monotonic() deadlines run by the reader; _next_deadline is the earliest.
        self._ping_at = None if ping_interval is None else monotonic() + ping_interval
        self._pong_deadline: float | None = None
        self._close_deadline: float | None = None
        self._next_deadline = self._ping_at
        self._stop_reading = False
        self._read_error: BaseException | None = None
        self._done = threading.Event()
        self._trailing_data = trailing_data
        self._reader = threading.Thread(
            target=self._run, name=f"fullduplex-reader-{self.id}", daemon=True
        )
        self._reader.start()

    # ---- public properties -------------------------------------------------------------------

    @property
    def state(self) -> State:
        """OPEN, then LOCAL_CLOSING or REMOTE_CLOSING, then CLOSED once the socket is closed."""
        return self._conn.state

    @property
    def close_code(self) -> int | None:
        """The peer's close code, once its close frame arrived or the connection is closed.

        None before that. 1005 means the peer's close frame had no code, 1006 that the
        connection ended without one. Final once it is not None (1006 at once after this side
        failed the connection, since no close frame will be read any more).
        """
        conn = self._conn
        if not (conn.close_code_final or self._done.is_set()):
            return None
        return conn.close_code

    @property
    def close_reason(self) -> str | None:
        """The peer's close reason, when :attr:`close_code` is known ("" if none), else None."""
        conn = self._conn
        if not (conn.close_code_final or self._done.is_set()):
            return None
        return conn.close_reason

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol negotiated in the opening handshake, or None."""
        return self._subprotocol

    @property
    def request(self) -> Request | None:
        """The opening handshake request (path, headers) this client sent."""
        return self._request

    @property
    def response(self) -> Response | None:
        """The opening handshake response (status, headers) the server sent."""
        return self._response

    @property
    def remote_address(self) -> Any:
        """The peer's address, as the socket reported it when connected (e.g. ``(host, port)``)."""
        return self._remote_address

    @property
    def local_address(self) -> Any:
        """This end's address, as the socket reported it when connected."""
        return self._local_address

    @property
    def latency(self) -> float:
        """The last measured ping round-trip time in seconds (0.0 before the first pong)."""
        return self._latency

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.state.name}>"

    # ---- receiving ---------------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> Message:
        """Return the next message: ``str`` for a text message, ``bytes`` for a binary one.

        Messages received before the connection closed are all returned first.

        Args:
            timeout: The longest wait in seconds; None waits until a message or the close, 0
                returns a message only if one is already there.

        Raises:
            TimeoutError: No message arrived within ``timeout`` (nothing is lost: the next
                message is returned by the next call).
            ConnectionClosedOK: The connection closed normally (1000 or 1001).
            ConnectionClosedError: It closed with an error code or without a close handshake.
            ConcurrencyError: Another thread is already waiting in recv().
        """
        with self._lock:
            messages = self._messages
            if not messages:
                if self._eof:
                    raise self._conn.close_exc()
                if self._recv_waiting:
                    raise ConcurrencyError("recv() is already waiting in another thread")
                self._recv_waiting = True
                try:
                    if timeout is None:
                        while not messages and not self._eof:
                            self._message_ready.wait()
                    else:
                        deadline = monotonic() + timeout
                        while not messages and not self._eof:
                            remaining = deadline - monotonic()
                            if remaining <= 0:
                                raise TimeoutError(f"no message within {timeout} seconds")
                            self._message_ready.wait(remaining)
                finally:
                    self._recv_waiting = False
                if not messages:
                    raise self._conn.close_exc()
            message = messages.popleft()
            if self._reader_waiting and len(messages) <= self._low_water:
                self._space_ready.notify()
            return message

    def __iter__(self) -> Iterator[Message]:
        """Iterate over messages until the connection closes (see the class docstring)."""
        return self

    def __next__(self) -> Message:
        """Return the next message; stop on a normal close, raise on an abnormal one."""
        try:
            return self.recv()
        except ConnectionClosedOK:
            raise StopIteration from None

    # ---- sending -----------------------------------------------------------------------------

    def send(self, message: Data | Iterable[Data]) -> None:
        """Send a message; return once it is written to the socket.

        A ``str`` goes as a text message; ``bytes``, ``bytearray`` or ``memoryview`` as a
        binary one. An iterable of those sends one fragmented message, one frame per item (all
        items of one kind: all ``str`` or all bytes-like; an empty iterable sends nothing).
        Sends from several threads are serialized, whole messages at a time.

        Blocks while the network does not take the bytes (the peer reads slowly); closing the
        connection from another thread unblocks it.

        Raises:
            ConnectionClosed: The connection is closing or closed.
            TypeError: The message is of another type, or its fragments mix kinds. When this
                happens in the middle of a fragmented message, the connection fails with 1011.
        """
        with self._message_lock:
            if isinstance(message, str):
                self._send_frame(True, message, True, False)
            elif isinstance(message, _BYTES_LIKE):
                self._send_frame(False, message, True, False)
            elif isinstance(message, Iterable) and not isinstance(message, Mapping):
                self._send_fragments(iter(message))
            else:
                raise TypeError(f"cannot send {type(message).__name__}: expected str or bytes")

    def _send_fragments(self, fragments: Iterator[Data]) -> None:
        """Send one fragmented message, one frame per item, with a one-item look-ahead.

        Looking one item ahead lets the last fragment carry FIN, so no empty frame ends the
        message.
        """
        end = object()
        current: Any = next(fragments, end)
        if current is end:
            return
        text = isinstance(current, str)
        if not text and not isinstance(current, _BYTES_LIKE):
            raise TypeError(f"cannot send a fragment of type {type(current).__name__}")
        started = False
        try:
            while True:
                following: Any = next(fragments, end)
                fin = following is end
                self._send_frame(text, current, fin, started)
                started = True
                if fin:
                    return
                if isinstance(following, str) is not text or not (
                    text or isinstance(following, _BYTES_LIKE)
                ):
                    raise TypeError("all fragments of a message must be str, or all bytes-like")
                current = following
        except ConnectionClosed:
            raise
        except BaseException:
            if started:
                # Half a message cannot be taken back; the only clean way out is to fail.
                with self._lock:
                    if self._conn.state is State.OPEN:
                        self._conn.fail(1011, "error in fragmented message")
                        self._output_pending = True
                self._try_flush()
            raise

    def _send_frame(self, text: bool, data: Data, fin: bool, continuation: bool) -> None:
        """Have the protocol frame ``data`` and write it, in this thread."""
        failed = False
        with self._send_lock:
            with self._lock:
                conn = self._conn
                try:
                    if text:
                        text_data = cast(str, data)
                        if continuation:
                            conn.send_continuation(text_data, fin)
                        else:
                            conn.send_text(text_data, fin)
                    else:
                        binary = cast("bytes | bytearray | memoryview", data)
                        if continuation:
                            conn.send_continuation(bytes(binary), fin)
                        else:
                            conn.send_binary(binary, fin)
                except InvalidState:
                    failed = True
                    chunks: list[bytes] = []
                else:
                    chunks = conn.data_to_send()
                    self._output_pending = False
            if not failed:
                failed = not self._write_locked(chunks)
        if self._output_pending:
            self._try_flush()
        if failed:
            raise self._send_failed()

    def _send_failed(self) -> ConnectionClosed:
        """Return the exception for a send on a connection that is not open (or broke).

        The close handshake is underway with its timeout running, or the socket is shut down,
        so waiting for the reader to finish gives an exception with both close frames in it
        rather than a guess. The wait is bounded by ``close_timeout`` all the same.
        """
        if threading.current_thread() is not self._reader:
            self._done.wait(self._close_timeout)
        with self._lock:
            return self._conn.close_exc()

    # ---- writing -----------------------------------------------------------------------------

    def _try_flush(self) -> None:
        """Write the protocol's pending output, unless another thread is writing.

        Never waits for another writer: the thread that holds the send lock checks for pending
        output after releasing it (here, or after its own write), so nothing is left behind.
        """
        while self._output_pending:
            if not self._send_lock.acquire(blocking=False):
                return
            try:
                with self._lock:
                    chunks = self._conn.data_to_send()
                    self._output_pending = False
                self._write_locked(chunks)
            finally:
                self._send_lock.release()

    def _write_locked(self, chunks: list[bytes]) -> bool:
        """Write ``chunks`` and all output produced meanwhile; the caller holds the send lock.

        Returns False if the socket is closed or the write failed (the socket is then shut
        down, so that the reader finishes and every waiter wakes).
        """
        try:
            while chunks:
                if self._sock_closed:
                    return False
                self._write(chunks)
                with self._lock:
                    chunks = self._conn.data_to_send()
                    self._output_pending = False
        except OSError as exc:
            if self._debug:
                self._logger.debug("[%s] write failed: %s", self.id, exc)
            self._abort()
            return False
        except BaseException:
            # Interrupted (KeyboardInterrupt) in the middle of a frame: the stream is cut
            # mid-frame and no close frame can follow it. Drop the connection.
            self._abort()
            raise
        return True

    def _write(self, chunks: list[bytes]) -> None:
        """Write one batch of protocol output in one call; act on SEND_EOF."""
        eof = chunks[-1] == SEND_EOF
        if eof:
            chunks = chunks[:-1]
        if chunks:
            self._send_all(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if eof:
            with contextlib.suppress(OSError):
                # The raw socket's shutdown: SSLSocket.shutdown() would drop its TLS state
                # while the reader may still be using it.
                socket.socket.shutdown(self._sock, socket.SHUT_WR)

    def _send_all(self, data: bytes) -> None:
        sock = self._sock
        view: bytes | memoryview = data
        while True:
            try:
                if self._tls:
                    with self._io_lock:
                        sent = sock.send(view)
                else:
                    sent = sock.send(view)
            except (BlockingIOError, ssl.SSLWantWriteError):
                # A TLS write must be retried with the same buffer; `view` is unchanged.
                if threading.get_ident() == self._reader.ident:
                    self._reader_wait_writable()
                else:
                    self._wait_writable()
                continue
            except ssl.SSLWantReadError:
                _wait(sock, False, _TLS_RETRY_DELAY)
                continue
            if sent >= len(view):
                return
            view = memoryview(view)[sent:]

    def _wait_writable(self) -> None:
        """Wait for the socket to take more bytes, in an application thread.

        Once the close handshake has started, no write may outlast its timeout: close()
        itself may be the writer, with nobody left to shut the socket down.

        Raises:
            TimeoutError: The close timeout expired: the write is abandoned.
        """
        deadline = self._close_deadline
        if deadline is None:
            # Unbounded: the wait ends when the peer reads, or when a close shuts the socket.
            _wait(self._sock, True, None)
            return
        _wait(self._sock, True, deadline - monotonic())
        if monotonic() >= deadline:
            raise TimeoutError("close timed out while writing")

    def _reader_wait_writable(self) -> None:
        """Wait for the socket to take more bytes, in the reader thread, running its timers.

        The reader writes pongs and keepalive pings itself when no other thread is writing; a
        peer that stopped reading must not stop its timers, or a vanished peer would never be
        detected.

        Raises:
            TimeoutError: The close timeout expired: the write is abandoned.
        """
        deadline = self._next_deadline
        _wait(self._sock, True, None if deadline is None else deadline - monotonic())
        if deadline is not None and monotonic() >= deadline:
            # Output the timers produce is written by this thread once this write is done.
            self._run_timers()
            if self._stop_reading:
                raise TimeoutError("close timed out while writing")

    def _abort(self) -> None:
        """Shut the socket down: every thread blocked on it wakes, and the reader finishes."""
        with self._lock:
            if not self._sock_closed:
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(self._sock, socket.SHUT_RDWR)

    # ---- the reader thread -------------------------------------------------------------------

    def _run(self) -> None:
        """The reader thread: read until EOF, an error, or the close timeout; then finish."""
        sock = self._sock
        tls = self._tls
        io_lock = self._io_lock
        try:
            if self._trailing_data:
                data, self._trailing_data = self._trailing_data, b""
                self._data_received(data)
            # After a short read the socket is most likely drained: wait for it to become
            # readable before reading, rather than read, fail, wait and read again.
            readable = True
            while not self._stop_reading:
                deadline = self._next_deadline
                if deadline is not None and monotonic() >= deadline:
                    self._run_timers()
                    continue
                if not readable and not (tls and self._tls_pending()):
                    _wait(sock, False, None if deadline is None else deadline - monotonic())
                try:
                    if tls:
                        with io_lock:
                            data = sock.recv(_READ_SIZE)
                    else:
                        data = sock.recv(_READ_SIZE)
                except _WouldBlock as exc:
                    if isinstance(exc, ssl.SSLWantWriteError):
                        wait = None if deadline is None else deadline - monotonic()
                        _wait(sock, True, wait)
                    readable = False
                    continue
                if not data:
                    break
                readable = len(data) == _READ_SIZE
                self._data_received(data)
        except OSError as exc:
            self._read_error = exc
        except BaseException as exc:  # a bug: log it, and do not leave the connection half-alive
            self._read_error = exc
            self._logger.error("[%s] reader thread failed", self.id, exc_info=True)
        finally:
            self._finish()

    def _tls_pending(self) -> bool:
        """True if the TLS layer holds decrypted bytes: the socket may be empty, yet readable."""
        with self._io_lock:
            return cast(ssl.SSLSocket, self._sock).pending() > 0

    def _data_received(self, data: bytes) -> None:
        conn = self._conn
        flush = False
        with self._lock:
            conn.receive_data(data)
            messages = self._messages
            for event in conn.events_received():
                kind = type(event)
                if kind is str or kind is bytes:
                    messages.append(event)  # type: ignore[arg-type]
                elif kind is Pong:
                    self._pong_received(event.data)  # type: ignore[union-attr]
                elif kind is Ping:
                    flush = True  # the protocol has queued the pong
                else:
                    assert kind is Close
                    flush = True  # the protocol has queued the reply
                    self._end_of_stream()
            if messages and self._recv_waiting:
                self._message_ready.notify()
            if conn.failure_pending:
                # The peer broke the protocol after valid messages. This API hands them over
                # in the application's thread, with no bound on when: the close frame leaves
                # now (recv() still returns the messages before the violation first).
                conn.send_close()
            if conn.state is not State.OPEN:
                flush = True
                if conn.failure is not None:
                    # The peer broke the protocol: no message will be delivered any more.
                    self._end_of_stream()
                self._arm_close_timer()
            if flush:
                self._output_pending = True
            full = len(messages) >= self._max_queue and not self._closing and not self._eof
        if flush:
            self._try_flush()
        if full:
            self._wait_for_space()

    def _wait_for_space(self) -> None:
        """Stop reading until recv() drains the queue to its low-water mark (backpressure).

        Timers still run meanwhile; close() ends the wait, since the close handshake must
        read the peer's close frame.
        """
        while not self._stop_reading:
            with self._lock:
                self._reader_waiting = True
                try:
                    while (
                        len(self._messages) > self._low_water
                        and not self._closing
                        and not self._eof
                    ):
                        deadline = self._next_deadline
                        if deadline is None:
                            self._space_ready.wait()
                            continue
                        remaining = deadline - monotonic()
                        if remaining <= 0:
                            break
                        self._space_ready.wait(remaining)
                    else:
                        if self._debug:
                            self._logger.debug("[%s] reading resumed", self.id)
                        return
                finally:
                    self._reader_waiting = False
            self._run_timers()

    def _finish(self) -> None:
        """End of the reader: the connection is over. Wake every waiter, close the socket."""
        conn = self._conn
        with self._lock:
            conn.receive_eof()
            conn.events_received()
            # A SEND_EOF request: the socket is closed just below, which does it.
            conn.data_to_send()
            self._output_pending = False
            self._closing = True
            self._end_of_stream()
            self._ping_at = self._pong_deadline = self._close_deadline = None
            self._next_deadline = None
            waiters = [waiter for _, waiter in self._pings.values() if waiter is not None]
            self._pings.clear()
            closed = conn.close_exc()
        for waiter in waiters:
            waiter._fail(closed)
        # A writer blocked on a full socket buffer wakes with an error and lets go of the
        # send lock; then no thread uses the socket any more and it can be closed.
        self._abort()
        with self._send_lock, self._lock:
            self._sock_closed = True
            self._sock.close()
        self._log_close(closed)
        self._done.set()

    def _end_of_stream(self) -> None:
        """No message will arrive any more: wake a waiting recv() so that it raises."""
        if not self._eof:
            self._eof = True
            self._message_ready.notify_all()

    def _log_close(self, closed: ConnectionClosed) -> None:
        if isinstance(closed, ConnectionClosedError):
            # One line per abnormal close: what each side said, and why when we know.
            why = self._conn.failure or self._read_error
            self._logger.info(
                "[%s] connection closed abnormally: %s%s",
                self.id,
                closed,
                f" ({why})" if why else "",
            )
        elif self._debug:
            self._logger.debug("[%s] connection closed: %s", self.id, closed)

    # ---- timers (run by the reader) ------------------------------------------------------------

    def _update_deadline(self) -> None:
        deadlines = [
            deadline
            for deadline in (self._ping_at, self._pong_deadline, self._close_deadline)
            if deadline is not None
        ]
        self._next_deadline = min(deadlines) if deadlines else None

    def _arm_close_timer(self) -> None:
        """The TCP connection must end within close_timeout from now (with _lock held)."""
        if self._close_deadline is None and self._close_timeout is not None:
            self._close_deadline = monotonic() + self._close_timeout
            self._update_deadline()

    def _run_timers(self) -> None:
        """Run the timers that are due: close timeout, pong timeout, keepalive ping."""
        now = monotonic()
        with self._lock:
            conn = self._conn
            if self._close_deadline is not None and now >= self._close_deadline:
                self._logger.info(
                    "[%s] close timed out after %ss: dropping", self.id, self._close_timeout
                )
                self._stop_reading = True
                self._close_deadline = None
            elif conn.state is not State.OPEN:
                self._ping_at = self._pong_deadline = None
            elif self._pong_deadline is not None and now >= self._pong_deadline:
                self._logger.info("[%s] no pong within %ss: closing", self.id, self._ping_timeout)
                self._pong_deadline = None
                conn.fail(1011, "keepalive ping timeout")
                self._output_pending = True
                self._end_of_stream()
                self._arm_close_timer()
            elif self._ping_at is not None and now >= self._ping_at:
                payload = self._new_ping_payload()
                conn.send_ping(payload)
                self._output_pending = True
                self._pings[payload] = (perf_counter(), None)
                self._keepalive_data = payload
                if self._ping_timeout is None:
                    assert self._ping_interval is not None
                    self._ping_at = now + self._ping_interval
                else:
                    self._ping_at = None
                    self._pong_deadline = now + self._ping_timeout
            self._update_deadline()
        self._try_flush()

    # ---- ping --------------------------------------------------------------------------------

    def ping(self, data: str | bytes | None = None) -> PongWaiter:
        """Send a ping; return a :class:`PongWaiter` whose ``wait(timeout)`` returns the RTT.

        ``rtt = ws.ping().wait(5)`` waits for the pong. The waiter may also be dropped: the pong
        still updates :attr:`latency`. A pong acknowledges its ping and every ping sent before
        it. If the connection closes first, ``wait()`` raises ConnectionClosed.

        Never waits for another thread's write: when one is in progress, the ping is
        written right after it, by that thread.

        Args:
            data: The payload (at most 125 bytes; str is encoded to UTF-8). By default, four
                random bytes that no pending ping uses.

        Raises:
            ConnectionClosed: The connection is not open.
            ConcurrencyError: A ping with the same payload is still waiting for its pong.
            ValueError: ``data`` is longer than 125 bytes.
        """
        waiter = PongWaiter()
        with self._lock:
            if data is None:
                payload = self._new_ping_payload()
            else:
                payload = data.encode() if isinstance(data, str) else bytes(data)
                if payload in self._pings:
                    raise ConcurrencyError("already waiting for a pong with the same data")
            try:
                self._conn.send_ping(payload)
            except InvalidState:
                raise self._conn.close_exc() from None
            self._pings[payload] = (perf_counter(), waiter)
            self._output_pending = True
        self._try_flush()
        return waiter

    def _new_ping_payload(self) -> bytes:
        payload = os.urandom(4)
        while payload in self._pings:
            payload = os.urandom(4)
        return payload

    def _pong_received(self, data: bytes) -> None:
        """Resolve the ping ``data`` answers and every earlier one (with _lock held)."""
        pings = self._pings
        if data not in pings:
            return  # unsolicited (a heartbeat) or already acknowledged
        now = perf_counter()
        # Pings are answered in order, so this pong acknowledges every earlier ping too.
        while pings:
            payload, (sent, waiter) = next(iter(pings.items()))
            del pings[payload]
            if waiter is not None:
                waiter._resolve(now - sent)
            if payload == self._keepalive_data:
                self._keepalive_data = None
                if self._pong_deadline is not None and self._ping_interval is not None:
                    self._pong_deadline = None
                    # The next ping goes one interval after the last one, however long its
                    # pong took.
                    delay = max(self._ping_interval - (now - sent), 0.0)
                    self._ping_at = monotonic() + delay
                    self._update_deadline()
            if payload == data:
                self._latency = now - sent
                return

    # ---- closing -----------------------------------------------------------------------------

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection; return once it is closed and the reader thread has ended.

        Sends a close frame (right after the frame being written, if any), waits for the
        peer's and for the end of the TCP connection, at most ``close_timeout`` seconds, then
        closes the socket anyway. Threads blocked in :meth:`recv` raise ConnectionClosed once
        the peer's close frame arrives or the socket closes; threads blocked in :meth:`send`
        raise it too. Safe to call from any thread, in any state, more than once: later calls
        just wait.

        Args:
            code: 1000 to 1003, 1007 to 1014, or 3000 to 4999.
            reason: At most 123 bytes once encoded in UTF-8.

        Raises:
            ValueError: The code may not be sent or the reason is too long (nothing is sent).
        """
        with self._lock:
            conn = self._conn
            if conn.state is State.OPEN:
                conn.send_close(code, reason)
                self._output_pending = True
            if not self._done.is_set():
                self._arm_close_timer()
            # The close handshake must read the peer's close frame: no more backpressure.
            self._closing = True
            if self._reader_waiting:
                self._space_ready.notify()
        self._try_flush()
        if threading.current_thread() is self._reader:
            return
        if not self._done.wait(self._close_timeout):
            self._logger.info(
                "[%s] close timed out after %ss: dropping", self.id, self._close_timeout
            )
            self._abort()
        # Once the socket is shut down the reader has nothing left to wait for; the bound is a
        # safety net.
        self._reader.join(max(self._close_timeout or 0.0, 10.0))

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the connection is closed (this does not close it).

        Args:
            timeout: The longest wait in seconds, or None.

        Returns:
            True if the connection is closed, False if ``timeout`` passed first.
        """
        return self._done.wait(timeout)

    def __enter__(self) -> WebSocket:
        """Return the connection itself; the end of the ``with`` block closes it."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the connection (1000) and wait until it is closed."""
        self.close()
