"""One fallback session's connection: what a :class:`~fullduplex.app.Session` drives.

:class:`FallbackSocket` offers what sessions use of a WebSocket (``recv``, ``send``,
``send_nowait``, ``close``, ``state``, ``buffered_amount``...), so endpoints run unchanged. The
HTTP requests of its client feed it: POST batches fill its inbox; one streaming or polling
response at a time (a :class:`Receiver`) takes its outbox.

Messages to the client are numbered and kept until the client acknowledges them (the next
poll or stream request, or an ack in a POST), so that a response lost on the way is sent again
and nothing is lost or duplicated; what is kept counts as the session's buffered amount, which
the endpoint's slow-consumer policy (``max_buffered``, ``overflow``) bounds as on WebSocket.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections import deque
from typing import TYPE_CHECKING, Any

from ..asyncio.timers import Deadline, timers_for
from ..exceptions import ProtocolError
from ..protocol.closes import CloseRecord
from ..protocol.connection import State
from ..protocol.frames import serialize_close
from .wire import HEARTBEAT, close_line, message_line

if TYPE_CHECKING:
    from ..asyncio.server import ResponseStream
    from ..protocol.handshake import Request

__all__ = ["FallbackSocket", "Receiver"]

_logger = logging.getLogger("fullduplex.fallback")

_OPEN = State.OPEN
_CLOSED = State.CLOSED


class Receiver:
    """A streaming or polling response attached to a socket: the held body the server writes.

    A stream stays attached and gets every message and a heartbeat line every ``heartbeat``
    seconds; a poll ends after the first lines it gets (messages, a heartbeat, or the close).
    """

    __slots__ = ("_beat", "_socket", "_stream", "poll", "sent")

    def __init__(self, socket: FallbackSocket, *, poll: bool, ack: int) -> None:
        self._socket = socket
        self._stream: ResponseStream | None = None
        self._beat: Deadline | None = None
        self.poll = poll
        #: The number of the last message written to this response.
        self.sent = ack

    def start(self, stream: ResponseStream) -> None:
        """The head is written: attach to the socket (server side of HeldBody)."""
        self._stream = stream
        self._socket._attach(self)

    def lost(self) -> None:
        """The response ended or its connection is gone: detach."""
        self._stream = None
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None
        self._socket._detach(self)

    def _arm(self, delay: float) -> None:
        self._beat = timers_for(asyncio.get_running_loop()).call_later(delay, self._heartbeat)

    def _heartbeat(self) -> None:
        self._beat = None
        if self._stream is None:
            return
        self.write(HEARTBEAT)
        if self.poll:
            self.end()
        else:
            self._arm(self._socket.heartbeat)

    def write(self, data: bytes) -> bool:
        """Write lines; False once the response is gone."""
        stream = self._stream
        return stream is not None and stream.write(data)

    def end(self) -> None:
        """End the response (which detaches it)."""
        stream = self._stream
        if stream is not None:
            stream.end()


class FallbackSocket(CloseRecord):
    """A fallback session's connection, shaped like the WebSocket a Session drives.

    Args:
        request: The request that opened the session (its path and query are the endpoint's).
        remote_address: The client's address.
        max_message_size: The largest message accepted from the client (None: no limit).
        max_buffered: ``send`` waits while more bytes than this wait for the client.
        heartbeat: Seconds between heartbeat lines on a stream; how long a poll is held.
        close_timeout: How long ``close`` waits for the client to fetch the close.

    Attributes:
        id: Identifies the session in the log (not its session id, which is a credential).
        request: The opening request.
        subprotocol: Always None: the fallback transports negotiate none.
        last_seen: The loop time of the client's last request or of its last response's end.
        expected_seq: The number of the next POST batch to deliver (earlier ones were).
    """

    __slots__ = (
        "_close_timeout",
        "_closed_waiter",
        "_drained",
        "_final",
        "_inbox",
        "_next",
        "_out_bytes",
        "_outbox",
        "_peer_first",
        "_pump_scheduled",
        "_receiver",
        "_recv_waiter",
        "_remote_address",
        "_state",
        "expected_seq",
        "heartbeat",
        "id",
        "last_seen",
        "max_buffered",
        "max_message_size",
        "request",
        "subprotocol",
    )

    def __init__(
        self,
        request: Request,
        remote_address: Any,
        *,
        max_message_size: int | None,
        max_buffered: int,
        heartbeat: float,
        close_timeout: float,
    ) -> None:
        super().__init__()
        self.id = os.urandom(4).hex()
        self.request = request
        self.subprotocol: str | None = None
        self.max_message_size = max_message_size
        self.max_buffered = max_buffered
        self.heartbeat = heartbeat
        self._close_timeout = close_timeout
        self._remote_address = remote_address
        self._state = _OPEN
        self._peer_first = False  # the client's close came before any of ours
        # (number, line) of every message not yet acknowledged; numbers are consecutive.
        self._outbox: deque[tuple[int, bytes]] = deque()
        self._out_bytes = 0
        self._next = 1
        self._final: bytes | None = None  # the close line, once closing
        self._inbox: deque[str | bytes] = deque()
        self._recv_waiter: asyncio.Future[None] | None = None
        self._receiver: Receiver | None = None
        self._pump_scheduled = False
        self._drained: list[asyncio.Future[None]] | None = None
        self._closed_waiter: asyncio.Future[None] | None = None
        self.last_seen = asyncio.get_running_loop().time()
        self.expected_seq = 0

    def __repr__(self) -> str:
        return f"<FallbackSocket {self.id} {self._state.name}>"

    # ---- what sessions read --------------------------------------------------------------------

    @property
    def state(self) -> State:
        """OPEN, LOCAL_CLOSING once the server closes, CLOSED."""
        return self._state

    @property
    def compressed(self) -> bool:
        """Always True: broadcasts hand over the encoded message, never a WebSocket frame."""
        return True

    @property
    def buffered_amount(self) -> int:
        """Bytes of the messages the client has not acknowledged yet."""
        return self._out_bytes

    @property
    def remote_address(self) -> Any:
        """The address of the client that opened the session."""
        return self._remote_address

    @property
    def closed_by(self) -> str:
        """Who started the close: ``peer`` (the client), ``server``, or ``none`` (neither: the
        client vanished), as the metrics label it."""
        if self._peer_first:
            return "peer"
        return "server" if self._sent_code is not None else "none"

    @property
    def attached(self) -> bool:
        """Whether a stream or poll response is attached now."""
        return self._receiver is not None

    # ---- receiving -----------------------------------------------------------------------------

    async def recv(self) -> str | bytes:
        """Return the next message from the client.

        Raises:
            ConnectionClosed: The session is closed.
        """
        while True:
            # Messages the client sent before it closed are read first, as on WebSocket.
            if self._inbox:
                return self._inbox.popleft()
            if self._state is _CLOSED:
                raise self._closed()
            # One future while the inbox is empty, not one per message.
            waiter = self._recv_waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._recv_waiter = None

    def _wake_reader(self) -> None:
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def deliver(self, messages: list[str | bytes]) -> None:
        """Queue a POST batch's messages for :meth:`recv` (the service checked the limits)."""
        if self._state is _CLOSED or not messages:
            return
        self._inbox.extend(messages)
        self._wake_reader()

    @property
    def inbox_size(self) -> int:
        """Messages received and not yet read by the session."""
        return len(self._inbox)

    # ---- sending -------------------------------------------------------------------------------

    def send_nowait(self, message: str | bytes) -> None:
        """Queue ``message`` for the client.

        Raises:
            ConnectionClosed: The session is closing or closed.
        """
        if self._state is not _OPEN:
            raise self._closed()
        line = message_line(self._next, message)
        self._outbox.append((self._next, line))
        self._next += 1
        self._out_bytes += len(line)
        self._schedule_pump()

    async def send(self, message: str | bytes) -> None:
        """Queue ``message``; wait while more than ``max_buffered`` bytes are unacknowledged.

        Raises:
            ConnectionClosed: The session is closing or closed.
        """
        self.send_nowait(message)
        if self._out_bytes > self.max_buffered:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if self._drained is None:
                self._drained = []
            self._drained.append(waiter)
            await waiter
            if self._state is _CLOSED:
                raise self._closed()

    def flush(self) -> None:
        """Nothing to do: queued messages go out in the next pump (see :meth:`send_nowait`)."""

    def _release_senders(self) -> None:
        waiters, self._drained = self._drained, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def acked(self, number: int) -> None:
        """The client received every message up to ``number``: forget them."""
        outbox = self._outbox
        while outbox and outbox[0][0] <= number:
            self._out_bytes -= len(outbox.popleft()[1])
        if self._drained is not None and self._out_bytes <= self.max_buffered:
            self._release_senders()

    # ---- the attached response -----------------------------------------------------------------

    def _attach(self, receiver: Receiver) -> None:
        old = self._receiver
        self._receiver = receiver
        if old is not None:
            # The newer request wins: the client only makes one when it lost the older.
            old.end()
        self.last_seen = asyncio.get_running_loop().time()
        if not self._pump() and self._receiver is receiver:
            receiver._arm(self.heartbeat)

    def _detach(self, receiver: Receiver) -> None:
        if self._receiver is receiver:
            self._receiver = None
            self.last_seen = asyncio.get_running_loop().time()

    def _schedule_pump(self) -> None:
        # One callback per burst of messages, so that a poll answers with all of them.
        if not self._pump_scheduled and self._receiver is not None:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> bool:
        """Write what the attached response has not had; True when a poll was answered."""
        self._pump_scheduled = False
        receiver = self._receiver
        if receiver is None:
            return False
        outbox = self._outbox
        lines: list[bytes] = []
        if outbox:
            start = max(0, receiver.sent + 1 - outbox[0][0])
            lines = [line for _, line in itertools.islice(outbox, start, None)]
            if lines:
                receiver.sent = outbox[-1][0]
        final = self._final
        if final is not None:
            lines.append(final)
        if not lines:
            return False
        receiver.write(b"".join(lines))
        if final is not None:
            receiver.end()
            self._finish()
            return True
        if receiver.poll:
            receiver.end()
            return True
        return False

    # ---- closing -------------------------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the session: the client gets ``code`` and ``reason`` after the messages sent
        before; waits until it fetched them, at most ``close_timeout`` seconds.

        Raises:
            ValueError: The code may not be sent or the reason is too long.
        """
        if self._state is not _OPEN:
            if self._closed_waiter is not None:
                await asyncio.shield(self._closed_waiter)
            return
        try:
            serialize_close(code, reason)
        except ProtocolError as exc:
            raise ValueError(str(exc)) from None
        self._state = State.LOCAL_CLOSING
        self._queue_close(code, reason)
        waiter = self._closed_waiter = asyncio.get_running_loop().create_future()
        self._pump()
        if self._state is _CLOSED:
            return
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self._close_timeout)
        except TimeoutError:
            _logger.info("[%s] the client did not fetch the close: closing anyway", self.id)
            self._finish(delivered=False)

    def shutdown(self, code: int, reason: str) -> None:
        """Close now, without waiting for the client (the server is going away): the close
        reaches an attached response; a client between polls finds the session gone."""
        if self._state is _OPEN:
            self._state = State.LOCAL_CLOSING
            self._queue_close(code, reason)
        if self._state is not _CLOSED and not self._pump():
            self._finish(delivered=False)

    def peer_closed(self, code: int, reason: str) -> None:
        """The client closed the session with ``code``: answer with the same close."""
        if self._state is _CLOSED:
            return
        self._close_code, self._close_reason = code, reason
        if self._sent_code is None:
            self._peer_first = True
            self._queue_close(code, reason)  # the answer: the same close
        if not self._pump():
            self._finish()

    def _queue_close(self, code: int, reason: str) -> None:
        """This side's close: the last line the client gets."""
        self._sent_code, self._sent_reason = code, reason
        self._final = close_line(code, reason)

    def vanished(self) -> None:
        """The client stopped coming back: the session ends as a lost connection (1006)."""
        if self._state is not _CLOSED:
            _logger.info("[%s] the client is gone: closing the session", self.id)
            self._finish(delivered=False)

    def _finish(self, *, delivered: bool = True) -> None:
        """The session is closed: wake whoever waits on it."""
        if self._state is _CLOSED:
            return
        self._state = _CLOSED
        if delivered and self._close_code is None and self._sent_code is not None:
            # The client got our close: as a WebSocket peer echoing it.
            self._close_code, self._close_reason = self._sent_code, self._sent_reason
        self._wake_reader()
        self._release_senders()
        waiter = self._closed_waiter
        if waiter is None:
            waiter = self._closed_waiter = asyncio.get_running_loop().create_future()
        if not waiter.done():
            waiter.set_result(None)
        receiver = self._receiver
        if receiver is not None and self._final is None:
            receiver.end()

    def fetch_after_close(self, receiver: Receiver) -> bytes:
        """What a late poll or stream of a closed session gets: the rest, then the close."""
        start = max(0, receiver.sent + 1 - self._outbox[0][0]) if self._outbox else 0
        lines = [line for _, line in itertools.islice(self._outbox, start, None)]
        lines.append(self._final or close_line(1006, ""))
        return b"".join(lines)
