"""Endpoints: what an application implements, and how each one is configured.

An :class:`Endpoint` subclass handles the sessions of one path template. As in JSR-356's
default, each session gets its own instance, so instance attributes are per-session state.
Every callback may be a plain method or a coroutine method; plain ones are called directly
and must not block.

The framework calls, per session and one at a time: ``on_open``, then ``on_message`` for each
message in order (a value it returns is sent back), then ``on_close``. On the App's own server
a callback that cannot suspend (a plain method, or a coroutine method that never awaits) runs
right from the connection's read callback, outside any task; one that awaits runs in a task,
while later messages of its session wait (see :mod:`fullduplex.app.inline`).

An exception raised by a callback reaches ``on_error``, is logged once with its traceback,
and closes that session with 1011; a message the codec cannot decode reaches ``on_error`` and
closes the session with the codec's code (1007 or 1003). Other sessions are not affected.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeAlias

from .codecs import Codec, PassthroughCodec

if TYPE_CHECKING:
    from .session import Session

__all__ = [
    "DEFAULT_MAX_BUFFERED",
    "DEFAULT_MAX_GROUPS",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "OVERFLOW_CLOSE_CODE",
    "CloseReason",
    "Endpoint",
    "EndpointConfig",
    "FunctionEndpoint",
    "MessageHandler",
    "Overflow",
]

DEFAULT_MAX_MESSAGE_SIZE = 2**20
DEFAULT_MAX_BUFFERED = 2**20
#: A session's group subscriptions by default: Centrifugo's ``channel_limit``. Each one costs
#: a dict entry per group and, with a broker, maybe a subscription: a client that may name
#: groups must not hold unboundedly many.
DEFAULT_MAX_GROUPS = 128

#: The close code of the "close" overflow policy: 1013 Try Again Later (RFC 6455 section 7.4,
#: IANA registry). The peer did nothing against the protocol or a policy it could know of, so
#: 1008 (policy violation) would blame it wrongly; the condition (a backlog) is transient, and
#: reconnecting, which 1013 invites, is exactly how a slow client catches up: it gets a fresh
#: state instead of a stale backlog.
OVERFLOW_CLOSE_CODE = 1013

Overflow: TypeAlias = Literal["drop", "close"]

MessageHandler: TypeAlias = Callable[["Session", Any], "Any | Awaitable[Any]"]
"""A function endpoint: ``(session, message) -> reply or None``, sync or async."""


class CloseReason(NamedTuple):
    """Why a session ended, as ``on_close`` receives it.

    Attributes:
        code: The close code: the peer's, or the one this side sent when the peer sent none
            (e.g. 1009 after a message too big, 1011 after an error); 1006 when the
            connection ended without any close frame.
        reason: The close reason that went with the code ("" if none).
    """

    code: int
    reason: str


class Endpoint:
    """Base class of class-based endpoints; override the callbacks you need.

    Register a subclass with ``@app.endpoint("/path/{param}", **config)``. One instance is
    created per session (the class is called without arguments). Each callback may be
    ``def`` or ``async def``.
    """

    def on_open(self, session: Session) -> Any:
        """Called once when the session opens, before any message."""

    def on_message(self, session: Session, message: Any) -> Any:
        """Called for each message, decoded by the endpoint's codec, in order.

        Returns:
            None, or a value to send back to this session (encoded by the codec).
        """

    def on_close(self, session: Session, reason: CloseReason) -> Any:
        """Called once when the session has ended (the connection is closing or closed).

        The session has already left its groups; :attr:`Session.groups` still names them.
        """

    def on_error(self, session: Session, error: Exception) -> Any:
        """Called with an exception raised by another callback, or with a
        :class:`~fullduplex.app.codecs.DecodeError`; the session is then closed.

        The framework has already logged the error (once); this default does nothing more.
        """


class FunctionEndpoint(Endpoint):
    """The endpoint of ``@app.on_message(path)``: a function called for each message.

    Args:
        handler: ``(session, message) -> reply or None``, sync or async. A non-None reply
            is sent back to the session.
    """

    __slots__ = ("handler",)

    def __init__(self, handler: MessageHandler) -> None:
        self.handler = handler

    def on_message(self, session: Session, message: Any) -> Any:
        """Call the handler (its result, an awaitable for an async handler, is returned)."""
        return self.handler(session, message)


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """The configuration of one endpoint: ``@app.endpoint(path, **config)`` takes these fields.

    Attributes:
        path: The path template, e.g. ``/chat/{room}``.
        factory: Called without arguments for each session; returns its :class:`Endpoint`.
        codec: Decodes received messages and encodes sent ones (default: passthrough).
        max_message_size: The largest message accepted, in bytes after decompression (None:
            no limit); a larger one closes the session with 1009. Default 1 MiB.
        idle_timeout: Seconds without any message received from or sent to the session
            (broadcasts included) after which it is closed with 1001; None: never.
        max_buffered: Bytes a session may have waiting in its outgoing buffer; a message sent
            without waiting (``send_nowait``, broadcasts) that would go beyond it triggers the
            overflow policy. A message is always accepted into an empty buffer. Default 1 MiB.
        overflow: ``"drop"`` (default): the message is not sent to that session, which stays
            open and gets later messages once its buffer drains. ``"close"``: the session is
            closed with :data:`OVERFLOW_CLOSE_CODE` (1013).
        max_groups: The groups one session may be in at once (default
            :data:`DEFAULT_MAX_GROUPS`, 128; None: no limit). ``session.join()`` or
            ``rejoin()`` of one more raises :class:`~fullduplex.exceptions.TooManyGroups`,
            which closes the session with 1008 unless the endpoint catches it.
        subprotocols: The subprotocols this endpoint speaks, in order of preference.
        compression: ``"deflate"`` (default) to accept permessage-deflate when the server
            does, None to refuse it on this endpoint.
    """

    path: str
    factory: Callable[[], Endpoint]
    codec: Codec = field(default_factory=PassthroughCodec)
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE
    idle_timeout: float | None = None
    max_buffered: int = DEFAULT_MAX_BUFFERED
    overflow: Overflow = "drop"
    max_groups: int | None = DEFAULT_MAX_GROUPS
    subprotocols: Sequence[str] = ()
    compression: Literal["deflate"] | None = "deflate"

    def __post_init__(self) -> None:
        """Validate the values; store ``subprotocols`` as a tuple."""
        if self.max_message_size is not None and self.max_message_size <= 0:
            raise ValueError("max_message_size must be positive, or None")
        if self.idle_timeout is not None and self.idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive, or None")
        if self.max_buffered < 0:
            raise ValueError("max_buffered must not be negative")
        if self.max_groups is not None and self.max_groups < 1:
            raise ValueError("max_groups must be at least 1, or None")
        if self.overflow not in ("drop", "close"):
            raise ValueError(f"overflow must be 'drop' or 'close', not {self.overflow!r}")
        if self.compression not in ("deflate", None):
            raise ValueError(f"compression must be 'deflate' or None, not {self.compression!r}")
        if isinstance(self.subprotocols, str):
            raise TypeError("subprotocols must be a sequence of names, not one string")
        object.__setattr__(self, "subprotocols", tuple(self.subprotocols))
