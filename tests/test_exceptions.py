"""Tests of fullduplex.exceptions: the close code mapping and ConnectionClosed."""

from __future__ import annotations

import pytest

from fullduplex.exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    DecodeError,
    InvalidHandshake,
    InvalidMessage,
    InvalidProxyMessage,
    InvalidProxyStatus,
    InvalidRequest,
    InvalidResponse,
    InvalidState,
    InvalidStatus,
    InvalidURI,
    InvalidVersion,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    ProxyError,
    SecurityError,
    SOCKSProxyError,
    TooManyGroups,
    WebSocketError,
    close_code_for,
)


class TestCloseCodeFor:
    """close_code_for(): the one mapping from errors to close codes (RFC 6455 section 7.4.1)."""

    def test_protocol_error_default(self) -> None:
        assert close_code_for(ProtocolError("bad frame")) == 1002

    @pytest.mark.parametrize("code", [1002, 1007, 1009, 1010])
    def test_protocol_error_carries_code(self, code: int) -> None:
        assert close_code_for(ProtocolError("bad", code)) == code

    def test_payload_too_big(self) -> None:
        exc = PayloadTooBig("too big")
        assert exc.code == 1009
        assert close_code_for(exc) == 1009

    @pytest.mark.parametrize(
        "exc",
        [
            ValueError("x"),
            RuntimeError("x"),
            KeyboardInterrupt(),
            InvalidState("x"),
            ConnectionClosed(),
            InvalidHandshake("x"),
            ConcurrencyError("x"),
        ],
    )
    def test_anything_else_is_internal_error(self, exc: BaseException) -> None:
        assert close_code_for(exc) == 1011

    def test_too_many_groups_is_a_policy_violation(self) -> None:
        assert close_code_for(TooManyGroups(128, "room")) == 1008


class TestConnectionClosedCreate:
    """ConnectionClosed.create(): OK only for 1000/1001 (or no code) on both sides."""

    @pytest.mark.parametrize(
        ("code", "sent_code", "ok"),
        [
            (1000, None, True),
            (1001, None, True),
            (1005, None, True),
            (1000, 1000, True),
            (1000, 1001, True),
            (1001, 1000, True),
            (1005, 1000, True),
            (1005, 1001, True),
            (1006, None, False),
            (1006, 1000, False),
            (1002, None, False),
            (1002, 1002, False),
            (1000, 1002, False),
            (1001, 1011, False),
            (1009, 1000, False),
            (3000, 3000, False),
            (4999, 1000, False),
            (1000, 4000, False),
        ],
    )
    def test_matrix(self, code: int, sent_code: int | None, ok: bool) -> None:
        exc = ConnectionClosed.create(code, "why", sent_code, "because")
        assert type(exc) is (ConnectionClosedOK if ok else ConnectionClosedError)
        assert isinstance(exc, ConnectionClosed)
        assert (exc.code, exc.reason, exc.sent_code, exc.sent_reason) == (
            code,
            "why",
            sent_code,
            "because",
        )

    def test_defaults(self) -> None:
        exc = ConnectionClosed()
        assert (exc.code, exc.reason, exc.sent_code, exc.sent_reason) == (1006, "", None, "")
        assert exc.args == (1006, "")
        created = ConnectionClosed.create(1000)
        assert (created.reason, created.sent_code, created.sent_reason) == ("", None, "")


class TestConnectionClosedStr:
    def test_received_and_sent(self) -> None:
        exc = ConnectionClosed(1000, "bye", 1001, "going")
        assert str(exc) == "received 1000 (bye); sent 1001 (going)"

    def test_without_reasons(self) -> None:
        assert str(ConnectionClosed(1000, "", 1000, "")) == "received 1000; sent 1000"

    def test_nothing_sent(self) -> None:
        assert str(ConnectionClosed(1006)) == "received 1006; sent no close frame"
        assert str(ConnectionClosed(1011, "oops")) == "received 1011 (oops); sent no close frame"

    def test_local_failure_tells_what_happened(self) -> None:
        failure = PayloadTooBig("message of at least 2000 bytes over the local limit (1000 bytes)")
        exc = ConnectionClosed.create(1006, "", 1009, "message too big", failure)
        assert isinstance(exc, ConnectionClosedError)
        assert exc.failure is failure
        assert str(exc) == (
            "message of at least 2000 bytes over the local limit (1000 bytes): "
            "sent 1009 (message too big)"
        )

    def test_failure_is_never_ok(self) -> None:
        exc = ConnectionClosed.create(1000, "", 1000, "", ProtocolError("odd"))
        assert isinstance(exc, ConnectionClosedError)
        assert ConnectionClosed().failure is None


class TestHierarchy:
    @pytest.mark.parametrize(
        ("cls", "bases"),
        [
            (ConnectionClosed, (WebSocketError,)),
            (ConnectionClosedOK, (ConnectionClosed,)),
            (ConnectionClosedError, (ConnectionClosed,)),
            (InvalidHandshake, (WebSocketError,)),
            (InvalidMessage, (InvalidHandshake,)),
            (SecurityError, (InvalidHandshake,)),
            (InvalidRequest, (InvalidHandshake,)),
            (InvalidVersion, (InvalidRequest,)),
            (InvalidStatus, (InvalidHandshake,)),
            (InvalidResponse, (InvalidHandshake,)),
            (NegotiationError, (InvalidHandshake,)),
            (ProtocolError, (WebSocketError,)),
            (PayloadTooBig, (ProtocolError,)),
            (DecodeError, (ProtocolError,)),
            (ProxyError, (InvalidHandshake,)),
            (InvalidProxyMessage, (ProxyError,)),
            (InvalidProxyStatus, (ProxyError,)),
            (SOCKSProxyError, (ProxyError,)),
            (InvalidState, (WebSocketError, AssertionError)),
            (InvalidURI, (WebSocketError, ValueError)),
            (ConcurrencyError, (WebSocketError, RuntimeError)),
            (TooManyGroups, (WebSocketError,)),
        ],
    )
    def test_bases(self, cls: type, bases: tuple[type, ...]) -> None:
        for base in bases:
            assert issubclass(cls, base)

    def test_http_statuses(self) -> None:
        assert InvalidHandshake("x").status == 400
        assert InvalidMessage("x").status == 400
        assert SecurityError("x").status == 431
        assert InvalidRequest("x").status == 400
        assert InvalidRequest("x", 403).status == 403
        assert InvalidVersion("x").status == 426

    def test_invalid_status(self) -> None:
        exc = InvalidStatus(403, [("a", "b")], b"no")
        assert (exc.status_code, exc.headers, exc.body) == (403, [("a", "b")], b"no")
        assert "403" in str(exc)
        assert InvalidStatus(500).headers == []

    def test_proxy_errors_are_not_the_servers(self) -> None:
        # A proxy's refusal must not read as the server's answer.
        for cls in (InvalidProxyStatus, InvalidProxyMessage, SOCKSProxyError):
            assert not issubclass(cls, (InvalidStatus, InvalidMessage))

    def test_invalid_proxy_status(self) -> None:
        exc = InvalidProxyStatus(407, [("Proxy-Authenticate", "Basic")], b"no")
        assert (exc.status_code, exc.headers, exc.body) == (
            407,
            [("Proxy-Authenticate", "Basic")],
            b"no",
        )
        assert "proxy" in str(exc) and "407" in str(exc)
        assert InvalidProxyStatus(502).headers == []

    def test_socks_proxy_error(self) -> None:
        assert SOCKSProxyError("refused", 5).reply == 5
        assert SOCKSProxyError("bad credentials").reply is None

    def test_decode_error(self) -> None:
        from fullduplex.app import codecs  # noqa: PLC0415 - the app package re-exports it

        assert codecs.DecodeError is DecodeError
        assert close_code_for(DecodeError("bad JSON")) == 1007
        exc = DecodeError("binary to a text endpoint", 1003)
        assert (exc.code, exc.close_code) == (1003, 1003)

    def test_invalid_uri(self) -> None:
        exc = InvalidURI("http://x", "scheme isn't ws or wss")
        assert exc.uri == "http://x"
        assert "'http://x'" in str(exc)
        assert "scheme" in str(exc)

    def test_protocol_error_message(self) -> None:
        exc = ProtocolError("reserved opcode 0x3")
        assert str(exc) == "reserved opcode 0x3"
