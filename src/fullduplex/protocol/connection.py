"""The WebSocket state machine shared by client and server (RFC 6455 sections 5 to 7).

A :class:`Connection` starts once the opening handshake is done. It turns received bytes into
events and method calls into bytes, and does no I/O. The driver's loop is::

    conn.receive_data(data)              # bytes from the network
    for event in conn.events_received(): # str, bytes, Ping, Pong, Close
        ...
    for chunk in conn.data_to_send():    # bytes for the network; SEND_EOF means "close TCP"
        ...
    if conn.close_expected():            # the TCP connection should end soon
        ...                              # arm the close timeout

Messages are delivered whole, as ``str`` (text) or ``bytes`` (binary): the cheapest event there
is, and ``match`` on ``str()`` / ``bytes()`` / :class:`Ping` / :class:`Pong` / :class:`Close` is
exhaustive. Pings are answered by the connection itself, so liveness never depends on whether
the application reads.
"""

from __future__ import annotations

import codecs
import enum
import logging
import os
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeAlias

from ..exceptions import ConnectionClosed, InvalidState, PayloadTooBig, ProtocolError
from .frames import (
    CloseCode,
    FrameParser,
    Opcode,
    frame,
    frame_header,
    is_valid_close_code,
    parse_close,
    serialize_close,
)

if TYPE_CHECKING:
    from .deflate import PerMessageDeflate

__all__ = [
    "SEND_EOF",
    "SPLIT_PAYLOAD_MIN",
    "Close",
    "Connection",
    "Event",
    "Ping",
    "Pong",
    "Role",
    "State",
    "generate_mask",
]

#: In :meth:`Connection.data_to_send`, a request to end the TCP connection (half-close).
SEND_EOF = b""

#: From this payload length on, a server's frame is queued as two chunks, header and payload
#: (see :meth:`Connection.data_to_send`), so that the payload is never copied.
SPLIT_PAYLOAD_MIN = 64 * 1024

#: Where client masks come from. Tests replace it to get deterministic frames.
generate_mask = os.urandom

DEFAULT_MAX_MESSAGE_SIZE = 2**20

_default_logger = logging.getLogger("fullduplex.protocol")

_TEXT = Opcode.TEXT.value
_BINARY = Opcode.BINARY.value
_CONTINUATION = Opcode.CONTINUATION.value
_CLOSE = Opcode.CLOSE.value
_PING = Opcode.PING.value
_PONG = Opcode.PONG.value
_utf8_decoder = codecs.getincrementaldecoder("utf-8")
# Empty lists shared by every connection, so that an idle one holds no list of its own: never
# appended to (a message's first frame starts a list of its own; _queue_event and _queue_data
# replace _NONE_YET before appending) and never handed to a caller.
_NO_PARTS: list[Any] = []
_NONE_YET: list[Any] = []


class Role(enum.IntEnum):
    """Which end of the connection this is."""

    CLIENT = 0
    SERVER = 1


class State(enum.IntEnum):
    """Where a connection is in its life (RFC 6455 section 4 to 7).

    CONNECTING belongs to the opening handshake; a :class:`Connection` starts OPEN. The two
    closing states say who started the close handshake, and last until the TCP connection ends.
    """

    CONNECTING = 0
    OPEN = 1
    LOCAL_CLOSING = 2
    REMOTE_CLOSING = 3
    CLOSED = 4


class _Trigger(enum.Enum):
    SEND_CLOSE = "send close"
    RECEIVE_CLOSE = "receive close"
    RECEIVE_EOF = "receive eof"


# The members as module constants: on Python 3.11, State.OPEN is an attribute lookup through
# EnumType.__getattr__ (~70 ns), and the send path tests the state once per message.
_OPEN: Final = State.OPEN
_LOCAL_CLOSING: Final = State.LOCAL_CLOSING
_REMOTE_CLOSING: Final = State.REMOTE_CLOSING
_CLOSED: Final = State.CLOSED
_SERVER: Final = Role.SERVER

# Every state change, as data. A (state, trigger) pair not listed leaves the state as it is:
# for example a close frame received in LOCAL_CLOSING completes the handshake but the state
# stays LOCAL_CLOSING until the TCP connection ends.
_TRANSITIONS: dict[tuple[State, _Trigger], State] = {
    (State.OPEN, _Trigger.SEND_CLOSE): State.LOCAL_CLOSING,
    (State.OPEN, _Trigger.RECEIVE_CLOSE): State.REMOTE_CLOSING,
    (State.OPEN, _Trigger.RECEIVE_EOF): State.CLOSED,
    (State.LOCAL_CLOSING, _Trigger.RECEIVE_EOF): State.CLOSED,
    (State.REMOTE_CLOSING, _Trigger.RECEIVE_EOF): State.CLOSED,
}


class Ping(NamedTuple):
    """A ping arrived. The pong that answers it is already queued."""

    data: bytes


class Pong(NamedTuple):
    """A pong arrived."""

    data: bytes


class Close(NamedTuple):
    """A close frame: its code (1005 when it had none) and reason."""

    code: int
    reason: str


Event: TypeAlias = str | bytes | Ping | Pong | Close

# The close reasons sent to a peer that broke the protocol: fixed phrases, because exception
# text stays in the local log (see exceptions.py).
_FAILURE_REASONS: dict[int, str] = {
    CloseCode.PROTOCOL_ERROR: "protocol error",
    CloseCode.INVALID_DATA: "invalid data",
    CloseCode.MESSAGE_TOO_BIG: "message too big",
}


class Connection:
    """The sans-I/O WebSocket protocol for one connection, after the opening handshake.

    Args:
        role: CLIENT masks what it sends and requires unmasked frames; SERVER the reverse.
        deflate: The negotiated permessage-deflate extension, or None.
        max_message_size: The largest message accepted, in bytes after decompression, or
            None for no limit. A larger message fails the connection with 1009.
        max_frame_size: The largest frame payload accepted, or None to bound frames by
            ``max_message_size`` alone.
        logger: Where state changes are logged at debug level.
    """

    __slots__ = (
        "_closing_eof_sent",
        "_compressed",
        "_debug",
        "_decoder",
        "_deflate",
        "_discarding",
        "_events",
        "_frame_limit_derived",
        "_logger",
        "_mask",
        "_max_message_size",
        "_message_opcode",
        "_message_parts",
        "_message_size",
        "_out",
        "_parser",
        "_partial_checked",
        "_partial_decoder",
        "_pending_failure",
        "_role",
        "_send_compressed",
        "_send_opcode",
        "_state",
        "close_rcvd",
        "close_sent",
        "failure",
    )

    def __init__(
        self,
        role: Role,
        *,
        deflate: PerMessageDeflate | None = None,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        max_frame_size: int | None = None,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
    ) -> None:
        self._role = role
        self._mask = role is Role.CLIENT
        self._deflate = deflate
        self._max_message_size = max_message_size
        # A frame limit that only follows from max_message_size reads as the message limit.
        self._frame_limit_derived = max_frame_size is None and max_message_size is not None
        if max_frame_size is None and max_message_size is not None:
            # A frame can never be longer than its message, except that compressed data may
            # be a little longer than the original when it does not compress.
            max_frame_size = max_message_size
            if deflate is not None:
                max_frame_size += (max_message_size >> 8) + 256
        self._parser = FrameParser(
            mask_required=role is _SERVER,
            max_frame_size=max_frame_size,
            allow_rsv1=deflate is not None,
        )
        self._logger = logger if logger is not None else _default_logger
        self._debug = self._logger.isEnabledFor(logging.DEBUG)
        self._state = _OPEN
        # Both start as the shared _NONE_YET and get a list of their own on first use, which
        # each call of events_received / data_to_send hands over to the caller.
        self._events: list[Event] = _NONE_YET
        self._out: list[bytes] = _NONE_YET
        self._discarding = False
        self._closing_eof_sent = False
        # The incoming message in progress: its opcode (0 when none), parts and size.
        self._message_opcode = 0
        self._message_parts: list[Any] = _NO_PARTS
        self._message_size = 0
        self._compressed = False
        self._decoder: codecs.IncrementalDecoder | None = None
        # The text frame still incomplete at the end of the last read: how many bytes of its
        # payload were validated as they came, and the decoder that did it (None when none).
        self._partial_checked = 0
        self._partial_decoder: codecs.IncrementalDecoder | None = None
        # The outgoing fragmented message in progress: its opcode (0 when none).
        self._send_opcode = 0
        self._send_compressed = False
        #: The close frame received from the peer, or None.
        self.close_rcvd: Close | None = None
        #: The close frame sent to the peer, or None.
        self.close_sent: Close | None = None
        #: The protocol error that failed the connection, or None: for the local log.
        self.failure: ProtocolError | None = None
        # A violation found after messages that are still to be handed over: its close frame
        # waits for the next data_to_send, so that replies to those messages go out first.
        self._pending_failure: ProtocolError | None = None

    # ---- state ---------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The connection's state (see :class:`State`)."""
        return self._state

    def _transition(self, trigger: _Trigger) -> None:
        new_state = _TRANSITIONS.get((self._state, trigger), self._state)
        if new_state is not self._state:
            if self._debug:
                self._logger.debug("= %s -> %s (%s)", self._state.name, new_state.name, trigger)
            self._state = new_state

    @property
    def role(self) -> Role:
        """CLIENT or SERVER."""
        return self._role

    @property
    def close_code(self) -> int:
        """The code of the peer's close frame: 1005 if it had none, 1006 if none arrived."""
        return self.close_rcvd.code if self.close_rcvd is not None else 1006

    @property
    def close_reason(self) -> str:
        """The reason in the peer's close frame ("" if none)."""
        return self.close_rcvd.reason if self.close_rcvd is not None else ""

    def close_exc(self) -> ConnectionClosed:
        """Return the exception that describes how the connection closed.

        ConnectionClosedOK when both sides closed with 1000 or 1001 (or the peer with no code),
        ConnectionClosedError otherwise.
        """
        sent = self.close_sent
        return ConnectionClosed.create(
            self.close_code,
            self.close_reason,
            sent.code if sent is not None else None,
            sent.reason if sent is not None else "",
            self.failure,
        )

    @property
    def close_code_final(self) -> bool:
        """Tell whether :attr:`close_code` can no longer change.

        True once the peer's close frame arrived, or once no more input is read: after a
        failure (this side reads nothing more, RFC 6455 section 7.1.7) or the end of the
        stream. Then a close code of 1006 means no close frame will ever arrive.
        """
        return self.close_rcvd is not None or self._discarding

    def close_expected(self) -> bool:
        """Tell whether the TCP connection is expected to end soon.

        True once a close frame was sent or received (or the connection failed), until EOF.
        After it turns True, the driver must arm a timeout and, when it fires, close the TCP
        connection itself.
        """
        return self._state is _LOCAL_CLOSING or self._state is _REMOTE_CLOSING

    @property
    def failure_pending(self) -> bool:
        """Tell whether a protocol violation waits to fail the connection.

        When a read holds valid messages and then a violation (a reserved bit, a reserved
        opcode, a fragmented ping...), :meth:`receive_data` queues the messages as events and
        holds the failure: no more input is processed, but the state stays OPEN so that the
        application may still answer those messages. The next :meth:`data_to_send` (or
        :meth:`send_close`, :meth:`fail`, :meth:`receive_eof`) queues the close frame after
        whatever was sent meanwhile. A driver that hands messages to the application later
        (in another task) writes the replies meanwhile with ``data_to_send(apply_failure=False)``
        and may delay the failing call for a bounded time; it must not delay it forever.
        """
        return self._pending_failure is not None

    # ---- receiving -----------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray) -> None:
        """Receive bytes from the network.

        After calling this, you must call :meth:`data_to_send` and write what it returns
        (pongs, close replies), and you should call :meth:`events_received` and handle the
        events. A protocol violation in ``data`` never raises: it queues a close frame with the
        right code (1002, 1007, 1009), sets :attr:`failure`, and drops all further input. When
        events queued before the violation are not handed over yet, the close frame waits for
        the next :meth:`data_to_send` instead (see :attr:`failure_pending`), so that replies to
        the messages before the violation reach the peer before it.
        """
        if self._discarding:
            return
        parser = self._parser
        frames = parser.feed(data)
        if not frames:
            if parser.error is None:
                # The usual case of a partial frame: only its text, if any, needs a look.
                self._check_partial_text()
                return
        elif self._partial_decoder is not None:
            # The first frame is the one whose text was validated as it arrived: done with it.
            self._partial_decoder = None
            self._partial_checked = 0
        events = self._events
        if events is _NONE_YET:
            events = self._events = []
        max_size = self._max_message_size
        for opcode, payload, fin, rsv1 in frames:
            # The fast path: a whole, uncompressed message while no other message is open.
            if fin and not rsv1 and not self._message_opcode:
                if opcode == _TEXT:
                    if max_size is not None and len(payload) > max_size:
                        self._fail_received(PayloadTooBig(_too_big(len(payload), max_size)))
                        return
                    try:
                        events.append(payload.decode())
                    except UnicodeDecodeError:
                        self._fail_received(ProtocolError("invalid UTF-8", CloseCode.INVALID_DATA))
                        return
                    continue
                if opcode == _BINARY:
                    if max_size is not None and len(payload) > max_size:
                        self._fail_received(PayloadTooBig(_too_big(len(payload), max_size)))
                        return
                    events.append(payload)
                    continue
            if not self._handle_frame(opcode, payload, fin, rsv1):
                return
        if parser.error is not None:
            error = parser.error
            if self._frame_limit_derived and isinstance(error, PayloadTooBig):
                # The user set max_message_size, not max_frame_size: name the limit they know.
                error = PayloadTooBig(
                    f"message over the local limit ({self._max_message_size} bytes)"
                )
            self._fail_received(error)
        elif parser.buffered:
            self._check_partial_text()

    def _check_partial_text(self) -> None:
        """Validate the UTF-8 of a text frame that is still incomplete, as far as it arrived.

        RFC 6455 section 8.1 wants invalid text to fail the connection as soon as it arrives,
        not once the frame is whole. The bytes are decoded here only to be checked, and once
        more when the frame completes: only text frames that span reads pay for it. Keeping
        the text decoded here instead would decode each byte once, but joining the pieces
        costs more than decoding again (measured: 1 MiB of ASCII in 64 KiB reads, 0.87 ms
        against 0.10 ms; of Greek, 0.47 ms against 0.45 ms).
        """
        message = self._message_opcode
        if message and self._compressed:
            message = 2  # decompressed only once the frame is whole: nothing to check yet
        data = self._parser.partial_text(self._partial_checked, message)
        if not data:
            return
        decoder = self._partial_decoder
        if decoder is None:
            decoder = self._partial_decoder = _utf8_decoder()
            if message:
                # A continuation: start from where the message's own decoder stands (the
                # first bytes of a character may have ended the previous fragment).
                assert self._decoder is not None
                decoder.setstate(self._decoder.getstate())
        self._partial_checked += len(data)
        try:
            decoder.decode(data, False)
        except UnicodeDecodeError:
            self._fail_received(ProtocolError("invalid UTF-8", CloseCode.INVALID_DATA))

    def _handle_frame(self, opcode: int, payload: bytes, fin: bool, rsv1: bool) -> bool:
        """Handle a frame off the fast path. Return False when no more frames may follow."""
        if opcode >= _CLOSE:
            return self._handle_control_frame(opcode, payload)
        if opcode == _CONTINUATION:
            if not self._message_opcode:
                return self._fail_received(ProtocolError("continuation frame without a message"))
            if rsv1:
                return self._fail_received(ProtocolError("RSV1 set on a continuation frame"))
        else:
            if self._message_opcode:
                return self._fail_received(ProtocolError("new message before the last one ended"))
            self._message_opcode = opcode
            self._message_size = 0
            self._compressed = rsv1
            self._message_parts = []
            if opcode == _TEXT:
                self._decoder = _utf8_decoder()
        max_size = self._max_message_size
        if self._compressed:
            assert self._deflate is not None  # the parser rejects RSV1 without it
            budget = None if max_size is None else max_size - self._message_size
            try:
                payload = self._deflate.decompress(payload, fin, budget)
            except PayloadTooBig:
                # Decompression stopped at the budget left: the message is over the limit.
                return self._fail_received(
                    PayloadTooBig(f"message over the local limit ({max_size} bytes)")
                )
            except ProtocolError as exc:
                return self._fail_received(exc)
        self._message_size += len(payload)
        if max_size is not None and self._message_size > max_size:
            return self._fail_received(PayloadTooBig(_too_big(self._message_size, max_size)))
        decoder = self._decoder
        if decoder is not None:
            try:
                # Decoding each fragment as it arrives fails fast on invalid UTF-8 (RFC 6455
                # section 8.1) and decodes every byte exactly once.
                text = decoder.decode(payload, fin)
            except UnicodeDecodeError:
                return self._fail_received(ProtocolError("invalid UTF-8", CloseCode.INVALID_DATA))
            self._message_parts.append(text)
        else:
            self._message_parts.append(payload)
        if fin:
            parts = self._message_parts
            message: str | bytes = "".join(parts) if decoder is not None else b"".join(parts)
            self._queue_event(message)
            self._message_opcode = 0
            self._message_parts = _NO_PARTS
            self._decoder = None
        return True

    def _handle_control_frame(self, opcode: int, payload: bytes) -> bool:
        if opcode == _PING:
            self._queue_event(Ping(payload))
            if self._state is _OPEN:
                self._write(_PONG, payload, True, False)
            return True
        if opcode == _PONG:
            self._queue_event(Pong(payload))
            return True
        try:
            code, reason = parse_close(payload)
        except ProtocolError as exc:
            return self._fail_received(exc)
        self.close_rcvd = Close(code, reason)
        self._queue_event(self.close_rcvd)
        if self._state is _OPEN:
            # RFC 6455 section 5.5.1: reply with a close frame that echoes the status code. The
            # payload is echoed as it came (already validated), so the reason goes back too.
            self._write(_CLOSE, payload, True, False)
            self.close_sent = self.close_rcvd
        self._transition(_Trigger.RECEIVE_CLOSE)
        # Both close frames are on their way; nothing after a close frame is processed. The
        # server ends the TCP connection first (RFC 6455 section 7.1.1).
        self._discarding = True
        if self._role is _SERVER:
            self._send_eof()
        return False

    def receive_eof(self) -> None:
        """Receive the end of the TCP stream.

        After calling this, you must call :meth:`data_to_send` (it may ask to close the TCP
        connection) and you should call :meth:`events_received`. The state becomes CLOSED.
        """
        if self._state is _CLOSED:
            return
        if self._pending_failure is not None:
            self._apply_pending_failure()
        self._transition(_Trigger.RECEIVE_EOF)
        self._discarding = True
        self._send_eof()

    def events_received(self) -> list[Event]:
        """Return the events received since the last call, in order, and forget them."""
        events = self._events
        if events is _NONE_YET:
            return []
        self._events = _NONE_YET
        return events

    def _queue_event(self, event: Event) -> None:
        if self._events is _NONE_YET:
            self._events = []
        self._events.append(event)

    # ---- sending -------------------------------------------------------------------------

    def data_to_send(self, apply_failure: bool = True) -> list[bytes]:
        """Return the bytes to write since the last call, in order, and forget them.

        An item equal to :data:`SEND_EOF` asks the driver to end the TCP connection: half-close
        it (write_eof) where possible, else close it. A frame may span two items (a server's
        header, then a payload of :data:`SPLIT_PAYLOAD_MIN` bytes or more, as given): write
        them in order, and write a large item on its own rather than joining it with others.

        A failure held by :meth:`receive_data` (:attr:`failure_pending`) is applied first: its
        close frame comes last, after whatever was sent since. With ``apply_failure=False``
        it stays held and only what was sent since the last call is returned (replies to the
        messages before the violation): after calling this, you must still call
        ``data_to_send()`` (or :meth:`send_close`, :meth:`fail`, :meth:`receive_eof`, then
        ``data_to_send()``) within a bounded time, and write what it returns.
        """
        if apply_failure and self._pending_failure is not None:
            self._apply_pending_failure()
        out = self._out
        if out is _NONE_YET:
            return []
        self._out = _NONE_YET
        return out

    def _queue_data(self, data: bytes) -> None:
        if self._out is _NONE_YET:
            self._out = []
        self._out.append(data)

    def _write(self, opcode: int, payload: bytes, fin: bool, rsv1: bool) -> None:
        if self._mask:
            self._queue_data(frame(opcode, payload, fin, rsv1, generate_mask(4)))
        elif len(payload) < SPLIT_PAYLOAD_MIN:
            self._queue_data(frame(opcode, payload, fin, rsv1, None))
        else:
            # A large unmasked payload goes out as the same object after its header: copying
            # megabytes to prepend a few bytes would cost more than a second chunk.
            self._queue_data(frame_header(opcode, len(payload), fin, rsv1))
            self._queue_data(payload)

    def _send_data(self, opcode: int, payload: bytes, fin: bool) -> None:
        if self._state is not _OPEN:
            raise InvalidState(f"cannot send a message: connection is {self._state.name}")
        if opcode == _CONTINUATION:
            if not self._send_opcode:
                raise InvalidState("no fragmented message is in progress")
            compressed = self._send_compressed
            rsv1 = False
        else:
            if self._send_opcode:
                raise InvalidState("a fragmented message is in progress: finish it first")
            compressed = rsv1 = self._send_compressed = self._deflate is not None
            self._send_opcode = opcode
        if compressed:
            assert self._deflate is not None
            payload = self._deflate.compress(payload, fin)
        if fin:
            self._send_opcode = 0
        self._write(opcode, payload, fin, rsv1)

    def send_text(self, data: str | bytes, fin: bool = True) -> None:
        """Send a text message, or the first frame of one when ``fin`` is False.

        ``data`` is a str, or bytes already encoded in UTF-8 (not checked). After calling this,
        you must call :meth:`data_to_send` and write what it returns.

        Raises:
            InvalidState: The connection is not OPEN, or a fragmented message is in progress.
        """
        self._send_data(_TEXT, data.encode() if isinstance(data, str) else data, fin)

    def send_binary(self, data: bytes | bytearray | memoryview, fin: bool = True) -> None:
        """Send a binary message, or the first frame of one when ``fin`` is False.

        After calling this, you must call :meth:`data_to_send` and write what it returns.

        Raises:
            InvalidState: The connection is not OPEN, or a fragmented message is in progress.
        """
        self._send_data(_BINARY, data if type(data) is bytes else bytes(data), fin)

    def send_continuation(self, data: str | bytes, fin: bool) -> None:
        """Send the next frame of the fragmented message started by send_text/send_binary.

        After calling this, you must call :meth:`data_to_send` and write what it returns.

        Raises:
            InvalidState: The connection is not OPEN, or no fragmented message is in progress.
        """
        self._send_data(_CONTINUATION, data.encode() if isinstance(data, str) else data, fin)

    @property
    def compressed(self) -> bool:
        """True when permessage-deflate was negotiated: messages are sent compressed."""
        return self._deflate is not None

    def send_prepared(self, frame: bytes) -> None:
        """Send one whole data frame serialized elsewhere, as it is (the same bytes object).

        For broadcast: a frame serialized once is sent on many connections. It must be a
        complete frame (FIN set) that this connection could have sent itself: unmasked from a
        server, masked from a client, and RSV1 clear unless it was compressed by this
        connection's own context (an uncompressed message is valid with or without
        permessage-deflate, RFC 7692 section 6). It is not checked. After calling this, you
        must call :meth:`data_to_send` and write what it returns.

        Raises:
            InvalidState: The connection is not OPEN, or a fragmented message is in progress.
        """
        if self._state is not _OPEN:
            raise InvalidState(f"cannot send a message: connection is {self._state.name}")
        if self._send_opcode:
            raise InvalidState("a fragmented message is in progress: finish it first")
        self._queue_data(frame)

    def send_ping(self, data: bytes = b"") -> None:
        """Send a ping (at most 125 bytes). The peer answers with a pong carrying ``data``.

        After calling this, you must call :meth:`data_to_send` and write what it returns.

        Raises:
            InvalidState: The connection is not OPEN.
            ValueError: ``data`` is longer than 125 bytes.
        """
        self._send_control(_PING, data)

    def send_pong(self, data: bytes = b"") -> None:
        """Send an unsolicited pong (a unidirectional heartbeat, RFC 6455 section 5.5.3).

        After calling this, you must call :meth:`data_to_send` and write what it returns.

        Raises:
            InvalidState: The connection is not OPEN.
            ValueError: ``data`` is longer than 125 bytes.
        """
        self._send_control(_PONG, data)

    def _send_control(self, opcode: int, data: bytes) -> None:
        if self._state is not _OPEN:
            raise InvalidState(f"cannot send a control frame: connection is {self._state.name}")
        if len(data) > 125:
            raise ValueError("a control frame carries at most 125 bytes")
        self._write(opcode, data, True, False)

    def send_close(self, code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the close handshake (RFC 6455 section 7.1.2).

        After calling this, you must call :meth:`data_to_send` and write what it returns, then
        wait for the peer's close frame and the end of the TCP connection with a timeout
        (:meth:`close_expected` is now True).

        Args:
            code: A close code that may be sent (1000-1003, 1007-1014, 3000-4999), or None to
                send a close frame without a code.
            reason: Why, at most 123 bytes in UTF-8; requires a code.

        Raises:
            InvalidState: The connection is not OPEN.
            ValueError: The code may not be sent, or the reason is too long.
        """
        if self._pending_failure is not None:
            # The peer broke the protocol: its close frame (1002, 1007...) is the one to send.
            self._apply_pending_failure()
            return
        if self._state is not _OPEN:
            raise InvalidState(f"cannot close: connection is {self._state.name}")
        if code is not None and not is_valid_close_code(code):
            raise ValueError(f"close code {code} may not be sent")
        try:
            payload = serialize_close(code, reason)
        except ProtocolError as exc:
            raise ValueError(str(exc)) from None
        self.close_sent = Close(CloseCode.NO_STATUS_RCVD if code is None else code, reason)
        self._write(_CLOSE, payload, True, False)
        self._transition(_Trigger.SEND_CLOSE)

    def fail(self, code: int, reason: str = "") -> None:
        """Fail the connection (RFC 6455 section 7.1.7): send a close frame, drop all input.

        A server also asks to end the TCP connection at once; a client waits for the server to
        do it (with a timeout, :meth:`close_expected` is True). After calling this, you must
        call :meth:`data_to_send` and write what it returns.

        Raises:
            ValueError: The code may not be sent, or the reason is too long.
        """
        if self._pending_failure is not None:
            # A violation of the peer's is already on its way to fail the connection.
            self._apply_pending_failure()
            return
        if self._state is _OPEN:
            try:
                payload = serialize_close(code, reason)
            except ProtocolError as exc:
                raise ValueError(str(exc)) from None
            self.close_sent = Close(code, reason)
            self._write(_CLOSE, payload, True, False)
            self._transition(_Trigger.SEND_CLOSE)
        self._discarding = True
        if self._role is _SERVER:
            self._send_eof()

    def _fail_with(self, exc: ProtocolError) -> bool:
        """Fail the connection because the peer broke the protocol. Always returns False."""
        self.failure = exc
        if self._debug:
            self._logger.debug("! failing the connection: %s", exc)
        self.fail(exc.code, _FAILURE_REASONS.get(exc.code, ""))
        return False

    def _fail_received(self, exc: ProtocolError) -> bool:
        """Fail for a violation in received data. Always returns False.

        Events not yet handed over came before the violation and are valid: they are still
        delivered, and the close frame waits for the next data_to_send (failure_pending), so
        that the application's replies to them leave first. No input is processed meanwhile.
        """
        if self._events:
            self._pending_failure = exc
            self._discarding = True
            if self._debug:
                self._logger.debug("! failing the connection after pending events: %s", exc)
            return False
        return self._fail_with(exc)

    def _apply_pending_failure(self) -> None:
        exc = self._pending_failure
        assert exc is not None
        self._pending_failure = None
        self._fail_with(exc)

    def _send_eof(self) -> None:
        if not self._closing_eof_sent:
            self._closing_eof_sent = True
            self._queue_data(SEND_EOF)


def _too_big(size: int, limit: int) -> str:
    return f"message of at least {size} bytes over the local limit ({limit} bytes)"
