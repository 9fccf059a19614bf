"""The asyncio WebSocket: one object per connection, the transport's Protocol and the user's API.

:class:`WebSocket` drives a sans-I/O :class:`~fullduplex.protocol.connection.Connection` from
asyncio's callbacks. Everything that does not need the application happens right inside
``data_received``: pings are answered, pongs resolve :meth:`WebSocket.ping` waiters, close
frames are answered, and all replies leave in one ``transport.write`` per read. Messages go to a
bounded queue that :meth:`WebSocket.recv` and ``async for`` read; the only future on the receive
path is the one a waiting ``recv()`` creates, so a busy connection allocates no task and no
future per message.

Flow control, both ways:

* Reading: when ``max_queue`` messages wait in the queue, the transport stops reading
  (``pause_reading``) until the application drains the queue to a quarter of that. While reading
  is paused nothing is read at all, control frames included: a peer that pings a paused
  connection gets its pong once the application catches up. This is the price of a bounded
  memory footprint; keepalive timeouts longer than the application's worst stall avoid it.
* Writing: :meth:`WebSocket.send` returns at once while the transport's buffer is below
  ``write_limit`` and waits for it to drain below a quarter of that otherwise. And when data
  arrives while the buffer is over ``write_limit``, reading stops until it drains: a peer that
  sends pings (or anything calling for a reply) and never reads cannot grow the buffer
  beyond ``write_limit`` plus the replies to one read.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import sys
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final, TypeAlias, cast

from ..exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
)
from ..protocol.connection import (
    SEND_EOF,
    SPLIT_PAYLOAD_MIN,
    Close,
    Connection,
    Ping,
    Pong,
    State,
)
from .timers import Deadline, timers_for

if TYPE_CHECKING:
    from ..protocol.handshake import Request, Response

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_OPEN_TIMEOUT",
    "DEFAULT_PING_INTERVAL",
    "DEFAULT_PING_TIMEOUT",
    "DEFAULT_WRITE_LIMIT",
    "FAILURE_GRACE",
    "Data",
    "LoggerLike",
    "Message",
    "WebSocket",
]

#: A whole message as delivered: ``str`` for text, ``bytes`` for binary.
Message: TypeAlias = str | bytes
#: What :meth:`WebSocket.send` accepts as a message or as one fragment of a message.
Data: TypeAlias = str | bytes | bytearray | memoryview
LoggerLike: TypeAlias = logging.Logger | logging.LoggerAdapter[logging.Logger]

DEFAULT_MAX_QUEUE: Final = 16
DEFAULT_WRITE_LIMIT: Final = 32 * 1024
DEFAULT_PING_INTERVAL: Final = 20.0
DEFAULT_PING_TIMEOUT: Final = 20.0
DEFAULT_OPEN_TIMEOUT: Final = 10.0
DEFAULT_CLOSE_TIMEOUT: Final = 10.0
#: How long the close frame that fails a connection may wait for the handler to answer the
#: messages received before the violation (at most close_timeout): see ``_hold_failure``.
FAILURE_GRACE: Final = 1.0

_OLD_ASYNCIO: Final = sys.version_info < (3, 12)
# A module constant: State.OPEN is a slow attribute lookup on 3.11 (EnumType.__getattr__).
_OPEN: Final = State.OPEN

# What a waiting recv() receives when no message will ever come.
_EOF: Final = object()
_BYTES_LIKE = (bytes, bytearray, memoryview)


class WebSocket:
    """One WebSocket connection: send and receive messages, ping, close.

    Servers hand one to the connection handler; :func:`fullduplex.connect` returns one. It is
    also the asyncio Protocol of its transport, which is an implementation detail: use only the
    methods and properties documented here.

    It is not a subclass of asyncio.Protocol, which has no behaviour of its own, so that Cython
    can compile it into an extension type (see connection.pxd).

    ``async for message in ws`` yields every message (``str`` or ``bytes``) until the
    connection closes; it ends quietly on a normal close (1000 or 1001) and raises
    :class:`~fullduplex.exceptions.ConnectionClosedError` otherwise.

    When the peer sends valid messages and then breaks the protocol in the same read, those
    messages are still delivered and the replies sent to them reach the peer before the close
    frame (1002, 1007...). An ``on_message`` callback answers inline, so the close frame
    follows at once. A handler that reads with ``recv()`` or ``async for`` runs in a task: the
    close frame waits until it comes back to ``recv()`` having taken every such message (its
    replies leave as they are sent meanwhile), until this side closes, until the peer
    half-closes, or :data:`FAILURE_GRACE` seconds (at most ``close_timeout``), whichever comes
    first. Nothing is sent after the close frame: a reply later than that raises
    :class:`~fullduplex.exceptions.ConnectionClosed`.

    Attributes:
        id: A short identifier for log lines about this connection.
        on_message: When set to a callable, each message is passed to it from the transport's
            callback instead of being queued for :meth:`recv`; it must not block. Flow control
            is then the callable's business. For frameworks built on top, and for plain
            (callback-style) server handlers.
        on_close: When set to a callable, it is called with this WebSocket once the
            connection is closed (the TCP connection is gone; :attr:`close_code` is known).
            With ``on_message``, this makes a connection that needs no task at all.
        on_end: When set to a callable, it is called soon (from the event loop, not from the
            callback that found out) with this WebSocket once no message will arrive any more:
            the peer's close frame came, the connection failed, or it ended. That is when
            :meth:`recv` starts raising; the TCP connection may still be open.
    """

    __slots__ = (
        "_close_handle",
        "_close_timeout",
        "_closed_waiters",
        "_conn",
        "_copies_large_writes",
        "_debug",
        "_drain_waiters",
        "_eof",
        "_failure_hold",
        "_fragmenting",
        "_keepalive_data",
        "_keepalive_handle",
        "_latency",
        "_logger",
        "_loop",
        "_lost",
        "_low_water",
        "_max_frame_size",
        "_max_message_size",
        "_max_queue",
        "_messages",
        "_ping_interval",
        "_ping_timeout",
        "_pings",
        "_pong_timeout_handle",
        "_reading_paused",
        "_receiving",
        "_recv_waiter",
        "_request",
        "_response",
        "_subprotocol",
        "_timers",
        "_transport",
        "_write_limit",
        "_write_paused",
        "id",
        "on_close",
        "on_end",
        "on_message",
    )

    def __init__(
        self,
        *,
        logger: LoggerLike,
        max_message_size: int | None = 2**20,
        max_frame_size: int | None = None,
        max_queue: int | None = DEFAULT_MAX_QUEUE,
        write_limit: int = DEFAULT_WRITE_LIMIT,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        if max_queue is not None and max_queue < 1:
            raise ValueError("max_queue must be at least 1, or None")
        self._loop = loop = asyncio.get_running_loop()
        # Timeouts (keepalive, closing; the server's opening) are coarse timers: see timers.py.
        self._timers = timers_for(loop)
        self._transport: asyncio.Transport | None = None
        self._copies_large_writes = False
        self._conn: Connection | None = None
        self._logger = logger
        self._debug = logger.isEnabledFor(logging.DEBUG)
        self.id = os.urandom(4).hex()
        self.on_message: Callable[[Message], object] | None = None
        self.on_close: Callable[[WebSocket], object] | None = None
        self.on_end: Callable[[WebSocket], object] | None = None
        self._max_message_size = max_message_size
        self._max_frame_size = max_frame_size
        self._write_limit = write_limit
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._close_timeout = close_timeout
        # Receiving.
        # Created when the first message has to wait: an empty deque costs ~600 bytes, and a
        # server may hold many idle connections.
        self._messages: collections.deque[Message] | None = None
        # An unbounded queue is a queue whose bound is never reached: no test on the hot path.
        self._max_queue = max_queue if max_queue is not None else 2**62
        self._low_water = self._max_queue // 4
        self._reading_paused = False
        self._receiving = False
        self._recv_waiter: asyncio.Future[Any] | None = None
        self._eof = False
        # Set while the protocol holds a failure back for queued messages (see _hold_failure).
        self._failure_hold: Deadline | None = None
        # Sending.
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._fragmenting: asyncio.Future[None] | None = None
        # Pings: payload -> (time sent, waiter or None for keepalive pings), oldest first. Times
        # come from perf_counter: uvloop's loop.time() has a resolution of 1 ms, too coarse
        # for round trips on a LAN.
        self._pings: dict[bytes, tuple[float, asyncio.Future[float] | None]] = {}
        self._latency = 0.0
        self._keepalive_handle: Deadline | None = None
        self._pong_timeout_handle: Deadline | None = None
        self._keepalive_data: bytes | None = None
        # Closing.
        self._close_handle: Deadline | None = None
        self._lost = False
        # One future per wait_closed() caller, so that a caller who gives up cancels only its
        # own (cheaper than asyncio.shield around a shared one: no extra future, no closures).
        self._closed_waiters: list[asyncio.Future[None]] | None = None
        # Handshake results.
        self._request: Request | None = None
        self._response: Response | None = None
        self._subprotocol: str | None = None

    # ---- public properties -------------------------------------------------------------------

    @property
    def state(self) -> State:
        """CONNECTING during the opening handshake, then OPEN, LOCAL/REMOTE_CLOSING, CLOSED."""
        if self._conn is not None:
            return self._conn.state
        return State.CLOSED if self._lost else State.CONNECTING

    @property
    def close_code(self) -> int | None:
        """The peer's close code, once its close frame arrived or the connection is closed.

        None before that (in particular while the connection is open). 1005 means the peer's
        close frame had no code, 1006 that the connection ended without one. The value is
        final once it is not None: in particular it is set when a ``ConnectionClosed`` is
        raised, and after this side failed the connection (a message over the local limit,
        say) it is 1006 at once, since no close frame will be read any more.
        """
        conn = self._conn
        if conn is None or not (self._lost or conn.close_code_final):
            return None
        return conn.close_code

    @property
    def close_reason(self) -> str | None:
        """The peer's close reason, when :attr:`close_code` is known ("" if none), else None."""
        conn = self._conn
        if conn is None or not (self._lost or conn.close_code_final):
            return None
        return conn.close_reason

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol negotiated in the opening handshake, or None."""
        return self._subprotocol

    @property
    def request(self) -> Request | None:
        """The opening handshake request (path, headers), received (server) or sent (client)."""
        return self._request

    @property
    def response(self) -> Response | None:
        """The opening handshake response, once sent (server) or received (client)."""
        return self._response

    @property
    def remote_address(self) -> Any:
        """The peer's address, as the socket reports it (e.g. ``(host, port)``)."""
        return self._extra_info("peername")

    @property
    def local_address(self) -> Any:
        """This end's address, as the socket reports it (e.g. ``(host, port)``)."""
        return self._extra_info("sockname")

    @property
    def latency(self) -> float:
        """The last measured ping round-trip time in seconds (0.0 before the first pong)."""
        return self._latency

    def _extra_info(self, name: str) -> Any:
        return self._transport.get_extra_info(name) if self._transport is not None else None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.state.name}>"

    # ---- receiving ---------------------------------------------------------------------------

    async def recv(self) -> Message:
        """Return the next message: ``str`` for a text message, ``bytes`` for a binary one.

        Messages received before the connection closed are all returned first.

        Raises:
            ConnectionClosedOK: The connection closed normally (1000 or 1001).
            ConnectionClosedError: It closed with an error code or without a close handshake.
            ConcurrencyError: Another coroutine is already waiting in recv().
        """
        messages = self._messages
        if messages:
            message = messages.popleft()
            # Not while the write buffer is full: resume_writing resumes then.
            if self._reading_paused and len(messages) <= self._low_water and not self._write_paused:
                self._resume_reading()
            return message
        if self._failure_hold is not None:
            # Back for more after every message before a violation: its replies are written,
            # so now the close frame (which ends the stream: the next check raises).
            self._release_failure()
        if self._eof:
            raise self._closed_exception()
        if self._recv_waiter is not None:
            raise ConcurrencyError("recv() is already waiting in another coroutine")
        waiter = self._loop.create_future()
        self._recv_waiter = waiter
        try:
            result = await waiter
        except asyncio.CancelledError:
            # A message handed to this waiter just before the cancellation must not be lost.
            if waiter.done() and not waiter.cancelled() and waiter.result() is not _EOF:
                if self._messages is None:
                    self._messages = collections.deque()
                self._messages.appendleft(waiter.result())
            raise
        finally:
            if self._recv_waiter is waiter:
                self._recv_waiter = None
        if result is _EOF:
            raise self._closed_exception()
        return result  # type: ignore[no-any-return]

    def __aiter__(self) -> AsyncIterator[Message]:
        """Iterate over messages until the connection closes (see the class docstring)."""
        return self

    async def __anext__(self) -> Message:
        """Return the next message; stop on a normal close, raise on an abnormal one."""
        try:
            return await self.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    def _deliver(self, message: Message) -> None:
        """Hand one received message to the application: callback, waiting recv(), or queue."""
        callback = self.on_message
        if callback is not None:
            try:
                callback(message)
            except Exception:
                # Like an async handler that raises: logged once, closed with 1011; no more
                # messages for that callback.
                self._logger.error("[%s] on_message callback failed", self.id, exc_info=True)
                self.on_message = None
                self._start_close(1011, "internal error")
            return
        waiter = self._recv_waiter
        if waiter is not None:
            self._recv_waiter = None
            if not waiter.done():
                waiter.set_result(message)
                return
        messages = self._messages
        if messages is None:
            messages = self._messages = collections.deque()
        messages.append(message)
        if len(messages) >= self._max_queue and not self._reading_paused:
            self._reading_paused = True
            if self._transport is not None:
                self._transport.pause_reading()
            if self._debug:
                self._logger.debug("[%s] receive queue full: reading paused", self.id)

    def _resume_reading(self) -> None:
        self._reading_paused = False
        if self._transport is not None and not self._lost:
            self._transport.resume_reading()
        if self._debug:
            self._logger.debug("[%s] reading resumed", self.id)

    def _end_of_stream(self) -> None:
        """No message will arrive any more: wake a waiting recv() so that it raises."""
        if self._eof:
            return
        self._eof = True
        waiter = self._recv_waiter
        if waiter is not None:
            self._recv_waiter = None
            if not waiter.done():
                waiter.set_result(_EOF)
        on_end = self.on_end
        if on_end is not None:
            self.on_end = None
            # Soon, like a waiting recv(): this runs inside data_received and _flush.
            self._loop.call_soon(on_end, self)

    def _hold_failure(self) -> None:
        """Hold the close frame of a violation back while the messages before it are handled.

        The peer sent valid messages and then broke the protocol in the same read. A callback
        (on_message) has already answered the messages, so the close frame follows at once.
        A handler that reads with ``recv()`` / ``async for`` runs in its own task: the close
        frame waits until that handler comes back to ``recv()`` with every such message taken
        (its replies are written by then: ``_flush`` writes them as they come and leaves the
        failure held), until a callback-style owner of the messages hands them back with the
        queue empty (it calls ``_release_failure``), until this side closes (the close frame
        is the failure's), until the peer half-closes (``eof_received``), or
        :data:`FAILURE_GRACE` seconds (at most ``close_timeout``), whichever comes first.
        Nothing is read meanwhile, and nothing is ever sent after the close frame.
        """
        if self._failure_hold is None and not self._lost:
            grace = FAILURE_GRACE
            if self._close_timeout is not None and self._close_timeout < grace:
                grace = self._close_timeout
            self._failure_hold = self._timers.call_later(grace, self._release_failure)

    def _release_failure(self) -> None:
        """Send the close frame held by _hold_failure (if it has not left already)."""
        hold = self._failure_hold
        if hold is not None:
            self._failure_hold = None
            hold.cancel()
        if self._conn is not None and not self._lost:
            self._flush()

    def _closed_exception(self) -> ConnectionClosed:
        if self._conn is None:
            return ConnectionClosedError(1006)
        return self._conn.close_exc()

    # ---- sending -----------------------------------------------------------------------------

    async def send(self, message: Data | Iterable[Data] | AsyncIterable[Data]) -> None:
        """Send a message.

        A ``str`` goes as a text message; ``bytes``, ``bytearray`` or ``memoryview`` as a
        binary one. An iterable or async iterable of those sends one fragmented message, one
        frame per item (all items must be of one kind: all ``str`` or all bytes-like; an empty
        iterable sends nothing). Other sends wait until a fragmented message is complete.

        Returns at once unless the transport's write buffer is above ``write_limit``; then
        waits for it to drain.

        Raises:
            ConnectionClosed: The connection is closing or closed.
            TypeError: The message is of another type, or its fragments mix kinds. When this
                happens in the middle of a fragmented message, the connection fails with 1011.
        """
        conn = self._conn
        if conn is None:
            raise InvalidState("the opening handshake is not complete")
        while self._fragmenting is not None:
            await asyncio.shield(self._fragmenting)
        kind = type(message)
        try:
            if kind is str:
                conn.send_text(message)  # type: ignore[arg-type]
            elif kind is bytes:
                conn.send_binary(message)  # type: ignore[arg-type]
            else:
                await self._send_other(conn, message)
                return
        except InvalidState:
            raise await self._send_failed() from None
        self._flush()
        if self._write_paused:
            await self._drain()

    async def _send_other(
        self, conn: Connection, message: Data | Iterable[Data] | AsyncIterable[Data]
    ) -> None:
        if isinstance(message, str):
            conn.send_text(str(message))
        elif isinstance(message, _BYTES_LIKE):
            conn.send_binary(message)
        elif isinstance(message, Iterable) and not isinstance(message, Mapping):
            await self._send_fragments(conn, iter(message), None)
            return
        elif isinstance(message, AsyncIterable):
            await self._send_fragments(conn, None, aiter(message))
            return
        else:
            raise TypeError(f"cannot send {type(message).__name__}: expected str or bytes")
        self._flush()
        if self._write_paused:
            await self._drain()

    async def _send_fragments(
        self,
        conn: Connection,
        iterator: Iterable[Data] | None,
        async_iterator: AsyncIterator[Data] | None,
    ) -> None:
        """Send one fragmented message, one frame per item, with a one-item look-ahead.

        Looking one item ahead lets the last fragment carry FIN, so no empty frame ends the
        message.
        """
        end = object()

        async def next_fragment() -> Any:
            if async_iterator is not None:
                return await anext(async_iterator, end)
            assert iterator is not None
            return next(iter(iterator), end)

        self._fragmenting = fragmenting = self._loop.create_future()
        started = False
        try:
            current = await next_fragment()
            if current is end:
                return
            text = isinstance(current, str)
            if not text and not isinstance(current, _BYTES_LIKE):
                raise TypeError(f"cannot send a fragment of type {type(current).__name__}")
            while True:
                following = await next_fragment()
                fin = following is end
                if not started:
                    if text:
                        conn.send_text(current, fin)
                    else:
                        conn.send_binary(current, fin)
                    started = True
                else:
                    conn.send_continuation(current if text else bytes(current), fin)
                self._flush()
                if self._write_paused:
                    await self._drain()
                if fin:
                    return
                if isinstance(following, str) is not text or not (
                    text or isinstance(following, _BYTES_LIKE)
                ):
                    raise TypeError("all fragments of a message must be str, or all bytes-like")
                current = following
        except InvalidState:
            raise await self._send_failed() from None
        except BaseException:
            if started and conn.state is _OPEN:
                # Half a message cannot be taken back; the only clean way out is to fail.
                conn.fail(1011, "error in fragmented message")
                self._flush()
            raise
        finally:
            self._fragmenting = None
            fragmenting.set_result(None)

    def send_nowait(self, message: Data) -> None:
        """Send a whole message now, without waiting for the write buffer to drain.

        For callers that bound the buffer themselves with :attr:`buffered_amount` (broadcast,
        slow-consumer policies): the frame is handed to the transport before this returns,
        and whatever the network does not take at once stays in the transport's buffer,
        which this call lets grow beyond ``write_limit``. A ``str`` goes as a text message,
        bytes-like as a binary one.

        Raises:
            ConnectionClosed: The connection is closing or closed.
            ConcurrencyError: A fragmented message is being sent.
            InvalidState: The opening handshake is not complete.
            TypeError: The message is neither ``str`` nor bytes-like.
        """
        conn = self._nowait_connection()
        try:
            if isinstance(message, str):
                conn.send_text(message)
            elif isinstance(message, _BYTES_LIKE):
                conn.send_binary(message)
            else:
                raise TypeError(f"cannot send {type(message).__name__}: expected str or bytes")
        except InvalidState:
            raise self._closed_exception() from None
        self._flush()

    def send_prepared_nowait(self, frame: bytes) -> None:
        """Write a whole frame serialized elsewhere, now, as the same bytes object.

        The broadcast path: a frame serialized once (unmasked, uncompressed, FIN set: see
        :meth:`~fullduplex.protocol.connection.Connection.send_prepared`) goes to many
        connections. Like :meth:`send_nowait`, it never waits for the buffer to drain.

        Raises:
            ConnectionClosed: The connection is closing or closed.
            ConcurrencyError: A fragmented message is being sent.
            InvalidState: The opening handshake is not complete.
        """
        conn = self._nowait_connection()
        try:
            conn.send_prepared(frame)
        except InvalidState:
            raise self._closed_exception() from None
        self._flush()

    def queue_prepared(self, frame: bytes) -> None:
        """Queue a whole frame serialized elsewhere without writing it yet: :meth:`flush`
        (or the next send) writes it, with whatever else was queued, in one write.

        For a burst of broadcasts: one write per connection for all of the burst, rather
        than one per message (the system call per write is the cost of a broadcast). Same
        frame rules and errors as :meth:`send_prepared_nowait`.
        """
        conn = self._nowait_connection()
        try:
            conn.send_prepared(frame)
        except InvalidState:
            raise self._closed_exception() from None

    def flush(self) -> None:
        """Write what :meth:`queue_prepared` queued (nothing when nothing is queued)."""
        if self._conn is not None:
            self._flush()

    def _nowait_connection(self) -> Connection:
        conn = self._conn
        if conn is None:
            raise InvalidState("the opening handshake is not complete")
        if self._fragmenting is not None:
            # A frame now would land between two fragments of another message.
            raise ConcurrencyError("a fragmented message is being sent")
        return conn

    @property
    def buffered_amount(self) -> int:
        """Bytes written but not yet taken by the network (the transport's write buffer)."""
        transport = self._transport
        if transport is None or self._lost:
            return 0
        return transport.get_write_buffer_size()

    @property
    def compressed(self) -> bool:
        """True when permessage-deflate was negotiated on this connection."""
        return self._conn is not None and self._conn.compressed

    async def _send_failed(self) -> ConnectionClosed:
        """Return the exception for a send on a connection that is not OPEN.

        The close handshake is underway (its timeout is armed), so waiting for its end gives
        an exception with both close frames in it rather than a guess.
        """
        if not self._lost:
            self._arm_close_timer()
            await self.wait_closed()
        return self._closed_exception()

    async def _drain(self) -> None:
        """Wait until the transport's write buffer drains below its low-water mark."""
        if self._lost:
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._drain_waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._drain_waiters:
                self._drain_waiters.remove(waiter)

    def _flush(self) -> None:
        """Write everything the protocol has to send, in one write; act on SEND_EOF."""
        if self._receiving:
            return  # data_received flushes once it has delivered every message of the read
        conn = self._conn
        assert conn is not None
        # While a failure is held (_hold_failure), only the replies leave: the close frame
        # waits for _release_failure.
        chunks = conn.data_to_send(self._failure_hold is None)
        if not chunks:
            return
        transport = self._transport
        if transport is None or self._lost:
            return
        eof = chunks[-1] == SEND_EOF
        if eof:
            chunks.pop()
        if len(chunks) == 1:
            only = chunks[0]
            if self._copies_large_writes and len(only) >= SPLIT_PAYLOAD_MIN:
                transport.write(memoryview(only))
            else:
                transport.write(only)
        elif chunks:
            for chunk in chunks:
                if len(chunk) >= SPLIT_PAYLOAD_MIN:
                    # writelines would join the chunks, copying a large payload (3.11).
                    views = self._copies_large_writes
                    for item in chunks:
                        transport.write(
                            memoryview(item) if views and len(item) >= SPLIT_PAYLOAD_MIN else item
                        )
                    break
            else:
                transport.writelines(chunks)
        if eof:
            if transport.can_write_eof():
                transport.write_eof()
            else:
                transport.close()
        # _state, not the state property: a direct field read in the compiled build.
        if conn._state is not _OPEN:
            # A close frame just went out (ours or our reply): the TCP connection must end
            # within close_timeout. After a local failure no message will arrive any more.
            self._arm_close_timer()
            if conn.failure is not None or conn.close_rcvd is not None:
                self._end_of_stream()
            if self._reading_paused:
                # Closing: the peer's EOF must be read now, or the connection lingers until
                # close_timeout while a full receive queue keeps reading paused.
                self._resume_reading()

    # ---- asyncio.Protocol callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Called by asyncio when the connection is made; not for applications."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(self._write_limit)
        # asyncio's own socket transport before 3.12 buffers what a write could not send at
        # once as data[sent:], then copies that into its buffer: two copies of a large bytes
        # payload, one of a memoryview (whose slice is a view). Other transports keep a
        # reference to bytes and may copy a memoryview, so they get bytes.
        self._copies_large_writes = (
            _OLD_ASYNCIO and type(transport).__module__ == "asyncio.selector_events"
        )

    def data_received(self, data: bytes) -> None:
        """Called by asyncio with bytes from the network; not for applications."""
        conn = self._conn
        if conn is None:
            self._handshake_data_received(data)
            return
        conn.receive_data(data)
        events = conn.events_received()
        replied = False
        if events:
            # Replies that on_message callbacks send from here (send_nowait) are written
            # together by the flush below: one write for the whole read, not one per message.
            self._receiving = True
            try:
                for event in events:
                    kind = type(event)
                    if kind is str or kind is bytes:
                        self._deliver(event)  # type: ignore[arg-type]
                    elif kind is Pong:
                        self._pong_received(event.data)  # type: ignore[union-attr]
                    elif kind is Close:
                        self._end_of_stream()
                    elif kind is Ping:
                        replied = True  # the protocol queued the pong; it leaves with the flush
            finally:
                self._receiving = False
                if (
                    conn._pending_failure is not None
                    and self.on_message is None
                    and any(type(event) is str or type(event) is bytes for event in events)
                ):
                    self._hold_failure()
                # Replies sent by callbacks before a handler took the messages over leave now;
                # a held close frame stays behind.
                self._flush()
        else:
            self._flush()
        # The write buffer is over write_limit and the peer's pings still call for pongs:
        # they would pile up without bound in the buffer of a peer that never reads. Stop
        # reading until resume_writing. Only for such replies: pausing on a full buffer alone
        # would deadlock two peers that both send more than they read at the moment. While
        # open only, as a closing connection must still read the peer's close frame and EOF.
        if (
            replied
            and self._write_paused
            and not self._reading_paused
            and not self._lost
            and conn._state is _OPEN
        ):
            self._reading_paused = True
            assert self._transport is not None
            self._transport.pause_reading()
            if self._debug:
                self._logger.debug("[%s] write buffer full: reading paused", self.id)

    def eof_received(self) -> bool | None:
        """Called by asyncio when the peer half-closes; not for applications."""
        conn = self._conn
        if conn is None:
            self._handshake_eof_received()
            return None
        if self._failure_hold is not None:
            # The peer will send nothing more: what was answered leaves, then the close frame.
            self._release_failure()
        conn.receive_eof()
        conn.events_received()
        # The protocol asks for SEND_EOF here; returning None makes asyncio close the transport,
        # which does that, so nothing needs writing.
        conn.data_to_send()
        self._end_of_stream()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """Called by asyncio when the connection is gone; not for applications."""
        self._lost = True
        conn = self._conn
        if conn is not None:
            conn.receive_eof()
            conn.events_received()
            conn.data_to_send()
        for handle in (
            self._close_handle,
            self._keepalive_handle,
            self._pong_timeout_handle,
            self._failure_hold,
        ):
            if handle is not None:
                handle.cancel()
        self._end_of_stream()
        for drain_waiter in self._drain_waiters:
            if not drain_waiter.done():
                drain_waiter.set_result(None)
        self._drain_waiters.clear()
        if self._pings:
            closed = self._closed_exception()
            for _, ping_waiter in self._pings.values():
                if ping_waiter is not None and not ping_waiter.done():
                    ping_waiter.set_exception(closed)
                    # Nobody may be waiting for this ping: do not log "never retrieved".
                    ping_waiter.exception()
            self._pings.clear()
        if self._closed_waiters is not None:
            for closed_waiter in self._closed_waiters:
                if not closed_waiter.done():
                    closed_waiter.set_result(None)
            self._closed_waiters = None
        if conn is not None:
            self._log_close(conn, exc)
        self._lost_hook(exc)
        # Dropped now, so that callbacks holding the connection make no lasting cycle.
        self.on_message = None
        on_close = self.on_close
        if on_close is not None:
            self.on_close = None
            try:
                on_close(self)
            except Exception:
                self._logger.error("[%s] on_close callback failed", self.id, exc_info=True)

    def pause_writing(self) -> None:
        """Called by asyncio when the write buffer is above ``write_limit``."""
        self._write_paused = True

    def resume_writing(self) -> None:
        """Called by asyncio when the write buffer has drained; wakes the waiting senders."""
        self._write_paused = False
        if self._reading_paused and not self._lost:
            # Paused by data_received for the write buffer, or by a full receive queue: read
            # again unless the queue is still above its low-water mark (recv() resumes then).
            messages = self._messages
            if messages is None or len(messages) <= self._low_water:
                self._resume_reading()
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    def _log_close(self, conn: Connection, exc: Exception | None) -> None:
        closed = conn.close_exc()
        if isinstance(closed, ConnectionClosedError):
            # One line per abnormal close: what each side said, and why when we know.
            why = conn.failure or exc
            self._logger.info(
                "[%s] connection closed abnormally: %s%s",
                self.id,
                closed,
                f" ({why})" if why else "",
            )
        elif self._debug:
            self._logger.debug("[%s] connection closed: %s", self.id, closed)

    # ---- hooks for the server and client subclasses ----------------------------------------

    def _handshake_data_received(self, data: bytes) -> None:
        raise NotImplementedError

    def _handshake_eof_received(self) -> None:
        raise NotImplementedError

    def _lost_hook(self, exc: Exception | None) -> None:
        """Called last in connection_lost."""

    def _connection_open(self, conn: Connection, trailing_data: bytes) -> None:
        """Start the WebSocket phase: called once the opening handshake succeeded."""
        self._conn = conn
        if self._ping_interval is not None:
            self._keepalive_handle = self._timers.call_later(self._ping_interval, self._keepalive)
        if trailing_data:
            self.data_received(trailing_data)

    # ---- ping, keepalive ---------------------------------------------------------------------

    def ping(self, data: str | bytes | None = None) -> asyncio.Future[float]:
        """Send a ping; return a future that resolves with the round-trip time, in seconds.

        ``await ws.ping()`` waits for the pong. The future may also be dropped: the pong still
        updates :attr:`latency`. A pong acknowledges its ping and every ping sent before it.
        If the connection closes first, the future raises ConnectionClosed.

        Args:
            data: The payload (at most 125 bytes; str is encoded to UTF-8). By default, four
                random bytes that no pending ping uses.

        Raises:
            ConnectionClosed: The connection is not open.
            ConcurrencyError: A ping with the same payload is still waiting for its pong.
        """
        conn = self._conn
        if conn is None:
            raise InvalidState("the opening handshake is not complete")
        if data is None:
            payload = os.urandom(4)
            while payload in self._pings:
                payload = os.urandom(4)
        else:
            payload = data.encode() if isinstance(data, str) else bytes(data)
            if payload in self._pings:
                raise ConcurrencyError("already waiting for a pong with the same data")
        try:
            conn.send_ping(payload)
        except InvalidState:
            raise self._closed_exception() from None
        waiter: asyncio.Future[float] = self._loop.create_future()
        self._pings[payload] = (perf_counter(), waiter)
        self._flush()
        return waiter

    def _pong_received(self, data: bytes) -> None:
        pings = self._pings
        if data not in pings:
            return  # unsolicited (a heartbeat) or already acknowledged
        now = perf_counter()
        # Pings are answered in order, so this pong acknowledges every earlier ping too.
        while pings:
            payload, (sent, waiter) = next(iter(pings.items()))
            del pings[payload]
            if waiter is not None and not waiter.done():
                waiter.set_result(now - sent)
            if payload == self._keepalive_data:
                self._keepalive_acknowledged(sent)
            if payload == data:
                self._latency = now - sent
                return

    def _keepalive(self) -> None:
        """Send a keepalive ping; expect its pong within ping_timeout."""
        self._keepalive_handle = None
        conn = self._conn
        if conn is None or conn.state is not _OPEN or self._lost:
            return
        payload = os.urandom(4)
        while payload in self._pings:
            payload = os.urandom(4)
        conn.send_ping(payload)
        self._pings[payload] = (perf_counter(), None)
        self._keepalive_data = payload
        self._flush()
        assert self._ping_interval is not None
        if self._ping_timeout is None:
            self._keepalive_handle = self._timers.call_later(self._ping_interval, self._keepalive)
        else:
            self._pong_timeout_handle = self._timers.call_later(
                self._ping_timeout, self._keepalive_timed_out
            )

    def _keepalive_acknowledged(self, sent: float) -> None:
        self._keepalive_data = None
        if self._pong_timeout_handle is not None:
            self._pong_timeout_handle.cancel()
            self._pong_timeout_handle = None
            assert self._ping_interval is not None
            # The next ping goes one interval after the last one, however long its pong took.
            delay = max(self._ping_interval - (perf_counter() - sent), 0.0)
            self._keepalive_handle = self._timers.call_later(delay, self._keepalive)

    def _keepalive_timed_out(self) -> None:
        self._pong_timeout_handle = None
        conn = self._conn
        if conn is None or conn.state is not _OPEN or self._lost:
            return
        self._logger.info("[%s] no pong within %ss: closing", self.id, self._ping_timeout)
        conn.fail(1011, "keepalive ping timeout")
        self._end_of_stream()
        self._flush()

    # ---- closing -----------------------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection and wait until it is closed.

        Sends a close frame, waits for the peer's and for the end of the TCP connection, at
        most ``close_timeout`` seconds (then drops the connection). Safe to call in any state
        and more than once: later calls just wait.

        Args:
            code: 1000 to 1003, 1007 to 1014, or 3000 to 4999.
            reason: At most 123 bytes once encoded in UTF-8.

        Raises:
            ValueError: The code may not be sent or the reason is too long (nothing is sent).
        """
        self._start_close(code, reason)
        await self.wait_closed()

    def _start_close(self, code: int, reason: str) -> None:
        """Send a close frame (or drop a connection still in its handshake); arm the timer."""
        conn = self._conn
        if not self._lost and self._transport is not None:
            if conn is None:
                # Still in the opening handshake: there is no WebSocket to close politely.
                self._transport.close()
            elif conn.state is _OPEN:
                conn.send_close(code, reason)
                self._flush()
            self._arm_close_timer()

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is closed (it is not closed by this call)."""
        if self._lost:
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        if self._closed_waiters is None:
            self._closed_waiters = []
        self._closed_waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._closed_waiters is not None and waiter in self._closed_waiters:
                self._closed_waiters.remove(waiter)

    def _arm_close_timer(self) -> None:
        if self._close_handle is None and self._close_timeout is not None and not self._lost:
            self._close_handle = self._timers.call_later(self._close_timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        if not self._lost and self._transport is not None:
            self._logger.info(
                "[%s] close timed out after %ss: dropping", self.id, self._close_timeout
            )
            self._transport.abort()
