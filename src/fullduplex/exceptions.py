"""Every exception fullduplex raises, in one tree.

::

    WebSocketError                     root of everything below
    ├── ConnectionClosed               the connection is closed; carries both close frames
    │   ├── ConnectionClosedOK         ... with 1000 / 1001 (or no code) on both sides
    │   └── ConnectionClosedError      ... with any other code, or without a close handshake
    ├── InvalidHandshake               the opening handshake failed
    │   ├── InvalidMessage             the HTTP message could not be parsed
    │   ├── SecurityError              a handshake limit was exceeded (header size or count)
    │   ├── InvalidRequest             the server rejects the client's request (HTTP status)
    │   │   └── InvalidVersion         Sec-WebSocket-Version is not 13 (HTTP 426)
    │   ├── InvalidStatus              the client got a non-101 response (keeps the response)
    │   ├── InvalidResponse            the client got a 101 it must refuse (accept key, headers)
    │   ├── NegotiationError           subprotocol or extension negotiation failed
    │   └── ProxyError                 the client's proxy did not open a tunnel to the server
    │       ├── InvalidProxyMessage    ... its reply is not HTTP or SOCKS5, or it hung up first
    │       ├── InvalidProxyStatus     ... the HTTP proxy answered CONNECT with a non-2xx status
    │       └── SOCKSProxyError        ... the SOCKS5 proxy refused (carries the reply code)
    ├── ProtocolError                  the peer broke RFC 6455 / 7692 (carries a close code)
    │   ├── PayloadTooBig              a message or frame exceeds a size limit (1009)
    │   └── DecodeError                an endpoint's codec cannot decode a message (1007, 1003)
    ├── InvalidState                   an operation is not allowed in the current state
    ├── InvalidURI                     a ws:// or wss:// URI could not be parsed
    ├── ConcurrencyError               two coroutines or threads did what only one may do
    ├── BrokerError                    the broker (Redis) did not take a publish or a query
    └── TooManyGroups                  a session joined more groups than its endpoint allows

Which failures a reconnecting client retries is decided in one place too:
:func:`fullduplex.retry.is_retryable`.

Close codes are derived from exceptions in exactly one place, :func:`close_code_for`. The text of
an exception is for the local log only; it never travels to the peer, except the one-line reason
of an HTTP rejection, which is written for the peer on purpose.
"""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "DecodeError",
    "InvalidHandshake",
    "InvalidMessage",
    "InvalidProxyMessage",
    "InvalidProxyStatus",
    "InvalidRequest",
    "InvalidResponse",
    "InvalidState",
    "InvalidStatus",
    "InvalidURI",
    "InvalidVersion",
    "NegotiationError",
    "PayloadTooBig",
    "ProtocolError",
    "ProxyError",
    "SOCKSProxyError",
    "SecurityError",
    "TooManyGroups",
    "WebSocketError",
    "close_code_for",
]

# Numeric close codes are repeated here (not imported from protocol.frames) so that this module
# has no dependency and every layer can import it.
_PROTOCOL_ERROR = 1002
_INVALID_DATA = 1007
_MESSAGE_TOO_BIG = 1009
_INTERNAL_ERROR = 1011
_POLICY_VIOLATION = 1008
_OK_CODES = frozenset({1000, 1001, 1005})  # 1005: a close frame without a code


class WebSocketError(Exception):
    """Base class of every exception fullduplex raises."""


class ConnectionClosed(WebSocketError):
    """Raised when using a connection that is closed, or closes while waiting.

    Attributes:
        code: The close code received from the peer, or 1006 when no close frame arrived
            (1005 when the peer's close frame had no code).
        reason: The close reason received from the peer ("" when none).
        sent_code: The close code this side sent, or None if it sent no close frame.
        sent_reason: The close reason this side sent ("" when none).
        failure: The error this side detected and failed the connection for (a message over
            the local ``max_message_size`` is a :class:`PayloadTooBig`, invalid UTF-8 a
            :class:`ProtocolError` with 1007...), or None when the close did not start here
            with a failure. When it is set, ``sent_code`` is its close code, and ``code`` is
            1006: after failing, this side reads nothing more, not even the peer's close frame
            (RFC 6455 section 7.1.7).
    """

    def __init__(
        self,
        code: int = 1006,
        reason: str = "",
        sent_code: int | None = None,
        sent_reason: str = "",
        failure: ProtocolError | None = None,
    ) -> None:
        self.code = code
        self.reason = reason
        self.sent_code = sent_code
        self.sent_reason = sent_reason
        self.failure = failure
        super().__init__(code, reason)

    def __str__(self) -> str:
        sent = (
            "sent no close frame"
            if self.sent_code is None
            else f"sent {self.sent_code}" + (f" ({self.sent_reason})" if self.sent_reason else "")
        )
        if self.failure is not None:
            # The peer sent nothing that explains the close: what this side found is the story.
            return f"{self.failure}: {sent}"
        received = f"received {self.code}" + (f" ({self.reason})" if self.reason else "")
        return f"{received}; {sent}"

    @staticmethod
    def create(
        code: int,
        reason: str = "",
        sent_code: int | None = None,
        sent_reason: str = "",
        failure: ProtocolError | None = None,
    ) -> ConnectionClosed:
        """Return ConnectionClosedOK or ConnectionClosedError, whichever the codes call for.

        A close is OK when the peer sent 1000, 1001 or no code (1005), and this side, if it
        sent a close frame, sent 1000, 1001 or no code, and this side did not fail the
        connection (``failure`` is None).
        """
        ok = failure is None and code in _OK_CODES and (sent_code is None or sent_code in _OK_CODES)
        cls = ConnectionClosedOK if ok else ConnectionClosedError
        return cls(code, reason, sent_code, sent_reason, failure)


class ConnectionClosedOK(ConnectionClosed):
    """The connection closed normally (1000 or 1001)."""


class ConnectionClosedError(ConnectionClosed):
    """The connection closed with an error code or without a close handshake."""


class InvalidHandshake(WebSocketError):
    """The opening handshake failed.

    Attributes:
        status: The HTTP status a server answers with (400 unless a subclass says otherwise).
    """

    status: int = 400


class InvalidMessage(InvalidHandshake):
    """The HTTP request or response could not be parsed."""


class SecurityError(InvalidHandshake):
    """The HTTP request or response exceeds a limit (header size or header count)."""

    status = 431


class InvalidRequest(InvalidHandshake):
    """The server refuses the client's opening handshake request."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class InvalidVersion(InvalidRequest):
    """The client asked for a WebSocket version other than 13."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 426)


class InvalidStatus(InvalidHandshake):
    """The server answered the opening handshake with a status other than 101.

    Attributes:
        status_code: The HTTP status the server sent.
        headers: Its response headers, as (name, value) pairs.
        body: Its response body (possibly truncated).
    """

    def __init__(
        self, status_code: int, headers: list[tuple[str, str]] | None = None, body: bytes = b""
    ) -> None:
        super().__init__(f"server rejected WebSocket connection: HTTP {status_code}")
        self.status_code = status_code
        self.headers = headers or []
        self.body = body


class InvalidResponse(InvalidHandshake):
    """The server sent a 101 response that the client must refuse."""


class NegotiationError(InvalidHandshake):
    """Subprotocol or extension negotiation failed."""


class ProxyError(InvalidHandshake):
    """The proxy a client connects through did not open a tunnel to the server.

    Raised as such for a failure of a proxy with no more specific class; the subclasses say
    more. Connection failures on the way to the proxy itself stay :class:`OSError`.
    """


class InvalidProxyMessage(ProxyError):
    """The proxy's reply is not valid HTTP or SOCKS5, or it closed before granting the tunnel."""


class InvalidProxyStatus(ProxyError):
    """The HTTP proxy answered CONNECT with a status other than 2xx.

    407 means credentials are missing or wrong, 403 that the proxy forbids the destination,
    502, 503 and 504 that it could not reach the server.

    Attributes:
        status_code: The HTTP status the proxy sent.
        headers: Its response headers, as (name, value) pairs.
        body: Its response body (possibly truncated).
    """

    def __init__(
        self, status_code: int, headers: list[tuple[str, str]] | None = None, body: bytes = b""
    ) -> None:
        super().__init__(f"proxy rejected CONNECT: HTTP {status_code}")
        self.status_code = status_code
        self.headers = headers or []
        self.body = body


class SOCKSProxyError(ProxyError):
    """The SOCKS5 proxy refused the tunnel, or the credentials.

    Attributes:
        reply: The reply code of RFC 1928 section 6 (1: general failure, 2: not allowed by
            ruleset, 3: network unreachable, 4: host unreachable, 5: connection refused, 6:
            TTL expired, 7: command not supported, 8: address type not supported), or None
            when authentication failed (no acceptable method, or credentials rejected).
    """

    def __init__(self, message: str, reply: int | None = None) -> None:
        super().__init__(message)
        self.reply = reply


class ProtocolError(WebSocketError):
    """The peer violated the WebSocket protocol.

    Attributes:
        code: The close code to send: 1002 by default, 1007 for invalid data such as bad
            UTF-8, 1009 for a message too big.
    """

    def __init__(self, message: str, code: int = _PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


class PayloadTooBig(ProtocolError):
    """A message or frame exceeds the configured limit."""

    def __init__(self, message: str) -> None:
        super().__init__(message, _MESSAGE_TOO_BIG)


class DecodeError(ProtocolError):
    """A received message could not be decoded by the endpoint's codec.

    It is a :class:`ProtocolError`, so :func:`close_code_for` maps it to its close code. Its
    text is for the local log; the peer only gets the close code.

    Args:
        message: What was wrong, for the log.
        close_code: 1007 (invalid data, the default) or 1003 (a kind of message the endpoint
            does not accept).
    """

    def __init__(self, message: str, close_code: int = _INVALID_DATA) -> None:
        super().__init__(message, close_code)

    @property
    def close_code(self) -> int:
        """The close code that answers this error (the same as ``code``)."""
        return self.code


class InvalidState(WebSocketError, AssertionError):
    """An operation is not allowed in the connection's current state.

    It subclasses AssertionError because it reveals a bug in the caller.
    """


class InvalidURI(WebSocketError, ValueError):
    """A URI is not a valid ws:// or wss:// URI."""

    def __init__(self, uri: str, message: str) -> None:
        super().__init__(f"{uri!r} is not a valid WebSocket URI: {message}")
        self.uri = uri


class ConcurrencyError(WebSocketError, RuntimeError):
    """Two coroutines or threads called a method that allows only one at a time."""


class BrokerError(WebSocketError):
    """The broker that carries groups between processes failed an operation.

    Raised by a publish (``await group.broadcast(...)`` with a Redis broker) or a query
    (presence, recovery) that the broker did not answer: it is unreachable, timed out, or
    refused the command. A publish that raised this may or may not have reached the broker
    (a timeout after sending cannot tell); retrying it may deliver it twice unless it carries
    an idempotency key.
    """


class TooManyGroups(WebSocketError):
    """A session tried to join a group beyond its endpoint's ``max_groups``.

    Raised by ``session.join()`` and ``session.rejoin()``; the session's groups are unchanged.
    Catch it to answer the client (an error message, say); left uncaught in a callback, it
    closes the session with 1008 (policy violation), like any error a callback raises.

    Attributes:
        limit: The endpoint's ``max_groups``.
        group: The group that was not joined.
    """

    def __init__(self, limit: int, group: str) -> None:
        super().__init__(f"a session may join at most {limit} groups; not joining {group!r}")
        self.limit = limit
        self.group = group


def close_code_for(exc: BaseException) -> int:
    """Return the close code that answers ``exc``: the one mapping from errors to codes.

    Protocol errors carry their own code (1002, 1007, 1009); :class:`TooManyGroups` is a
    policy violation (1008); anything else is an internal error (1011).
    """
    if isinstance(exc, ProtocolError):
        return exc.code
    if isinstance(exc, TooManyGroups):
        return _POLICY_VIOLATION
    return _INTERNAL_ERROR
