"""Tests for fullduplex.proxy: proxy choice and the tunnel handshakes, with bytes only."""

from __future__ import annotations

import base64

import pytest

from fullduplex.exceptions import (
    InvalidHandshake,
    InvalidMessage,
    InvalidProxyMessage,
    InvalidProxyStatus,
    InvalidStatus,
    ProxyError,
    SOCKSProxyError,
)
from fullduplex.proxy import (
    HTTPConnectHandshake,
    Proxy,
    SOCKS5Handshake,
    get_proxy,
    parse_proxy,
)
from fullduplex.retry import is_retryable
from fullduplex.uri import parse_uri

_PROXY_VARIABLES = [f"{scheme}_proxy" for scheme in ("http", "https", "ws", "wss", "all", "no")] + [
    f"{scheme.upper()}_PROXY" for scheme in ("http", "https", "ws", "wss", "all", "no")
]


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean proxy environment; the test sets what it needs through the returned patcher."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("REQUEST_METHOD", raising=False)
    return monkeypatch


def feed_bytewise(handshake: HTTPConnectHandshake | SOCKS5Handshake, data: bytes) -> list[bool]:
    """Feed ``data`` one byte at a time; return what each call returned."""
    return [handshake.receive_data(data[i : i + 1]) for i in range(len(data))]


class TestParseProxy:
    """Proxy URLs: schemes, default ports, credentials, errors."""

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("http://proxy:3128", Proxy("http", "proxy", 3128)),
            ("http://proxy", Proxy("http", "proxy", 80)),
            ("proxy.example:8080", Proxy("http", "proxy.example", 8080)),
            ("HTTP://Proxy:1", Proxy("http", "proxy", 1)),
            ("socks5://127.0.0.1", Proxy("socks5", "127.0.0.1", 1080)),
            ("socks5h://[::1]:9050", Proxy("socks5h", "::1", 9050)),
            ("http://proxy:3128/", Proxy("http", "proxy", 3128)),
            ("http://us%40er:p%3Ass@proxy:1", Proxy("http", "proxy", 1, "us@er", "p:ss")),
            ("socks5://user@proxy:1", Proxy("socks5", "proxy", 1, "user", "")),
        ],
    )
    def test_valid(self, url: str, expected: Proxy) -> None:
        assert parse_proxy(url) == expected

    @pytest.mark.parametrize(
        "url",
        [
            "https://proxy:443",
            "socks4://proxy:1080",
            "ftp://proxy",
            "http://:8080",
            "http://proxy:99999",
            "http://proxy:port",
            "http://proxy:0",
            "http://[::1",
        ],
    )
    def test_invalid(self, url: str) -> None:
        with pytest.raises(ValueError, match="proxy URL"):
            parse_proxy(url)

    def test_password_not_shown(self) -> None:
        proxy = parse_proxy("http://user:hunter2@proxy:1")
        assert "hunter2" not in repr(proxy)
        assert "hunter2" not in str(proxy)
        assert str(proxy) == "http://user@proxy:1"
        assert str(parse_proxy("socks5://[::1]:2")) == "socks5://[::1]:2"

    def test_remote_dns(self) -> None:
        assert parse_proxy("http://p:1").remote_dns
        assert parse_proxy("socks5h://p:1").remote_dns
        assert not parse_proxy("socks5://p:1").remote_dns

    def test_handshake_kinds(self) -> None:
        assert isinstance(parse_proxy("http://p:1").handshake("h", 1), HTTPConnectHandshake)
        assert isinstance(parse_proxy("socks5://p:1").handshake("::1", 1), SOCKS5Handshake)
        assert isinstance(parse_proxy("socks5h://p:1").handshake("h", 1), SOCKS5Handshake)


class TestGetProxy:
    """The ``proxy`` option and the environment (like urllib.request.getproxies)."""

    WS = parse_uri("ws://example.com:8765/")
    WSS = parse_uri("wss://example.com/")

    def test_disabled(self, environment: pytest.MonkeyPatch) -> None:
        environment.setenv("all_proxy", "http://proxy:1")
        assert get_proxy(self.WS, None) is None
        assert get_proxy(self.WS, False) is None
        assert get_proxy(self.WS, True) == Proxy("http", "proxy", 1)

    def test_explicit(self, environment: pytest.MonkeyPatch) -> None:
        environment.setenv("no_proxy", "*")  # an explicit proxy ignores the environment
        assert get_proxy(self.WS, "socks5h://p:2") == Proxy("socks5h", "p", 2)

    def test_empty_environment(self, environment: pytest.MonkeyPatch) -> None:
        assert get_proxy(self.WS) is None
        assert get_proxy(self.WSS) is None

    def test_scheme_specific(self, environment: pytest.MonkeyPatch) -> None:
        environment.setenv("http_proxy", "http://plain:1")
        environment.setenv("https_proxy", "http://secure:2")
        assert get_proxy(self.WS) == Proxy("http", "plain", 1)
        assert get_proxy(self.WSS) == Proxy("http", "secure", 2)

    def test_upper_case(self, environment: pytest.MonkeyPatch) -> None:
        environment.setenv("HTTPS_PROXY", "http://secure:2")
        assert get_proxy(self.WSS) == Proxy("http", "secure", 2)
        assert get_proxy(self.WS) is None

    def test_lower_case_wins(self, environment: pytest.MonkeyPatch) -> None:
        environment.setenv("HTTP_PROXY", "http://upper:1")
        environment.setenv("http_proxy", "http://lower:2")
        assert get_proxy(self.WS) == Proxy("http", "lower", 2)

    def test_websocket_specific_first(self, environment: pytest.MonkeyPatch) -> None:
        environment.setenv("http_proxy", "http://plain:1")
        environment.setenv("ws_proxy", "socks5://ws:3")
        environment.setenv("wss_proxy", "socks5h://wss:4")
        environment.setenv("https_proxy", "http://secure:2")
        assert get_proxy(self.WS) == Proxy("socks5", "ws", 3)
        assert get_proxy(self.WSS) == Proxy("socks5h", "wss", 4)

    def test_all_proxy_fallback(self, environment: pytest.MonkeyPatch) -> None:
        environment.setenv("ALL_PROXY", "socks5h://everything:5")
        environment.setenv("http_proxy", "http://plain:1")
        assert get_proxy(self.WS) == Proxy("http", "plain", 1)
        assert get_proxy(self.WSS) == Proxy("socks5h", "everything", 5)

    @pytest.mark.parametrize(
        ("no_proxy", "uri", "bypassed"),
        [
            ("example.com", "ws://example.com:8765/", True),
            ("example.com", "ws://www.example.com/", True),
            (".example.com", "ws://www.example.com/", True),
            ("example.com", "ws://notexample.com/", False),
            ("other.org, example.com", "ws://example.com/", True),
            ("*", "ws://anything/", True),
            ("example.com:8765", "ws://example.com:8765/", True),
            ("example.com:8765", "ws://example.com:9000/", False),
            ("127.0.0.1", "ws://127.0.0.1:9/", True),
            ("::1", "ws://[::1]:9/", True),
            ("EXAMPLE.com", "ws://example.COM/", True),
        ],
    )
    def test_no_proxy(
        self, environment: pytest.MonkeyPatch, no_proxy: str, uri: str, bypassed: bool
    ) -> None:
        environment.setenv("all_proxy", "http://proxy:1")
        environment.setenv("no_proxy", no_proxy)
        expected = None if bypassed else Proxy("http", "proxy", 1)
        assert get_proxy(parse_uri(uri)) == expected

    def test_invalid_environment(self, environment: pytest.MonkeyPatch) -> None:
        environment.setenv("https_proxy", "socks4://old:1080")
        with pytest.raises(ValueError, match="https_proxy"):
            get_proxy(self.WSS)
        assert get_proxy(self.WS) is None  # only the variable in use matters


class TestHTTPConnect:
    """RFC 9110 section 9.3.6: CONNECT, and the proxy's answer."""

    @staticmethod
    def granted(host: str = "example.com", port: int = 443, **kwargs: object) -> bytes:
        handshake = HTTPConnectHandshake(host, port, **kwargs)  # type: ignore[arg-type]
        return handshake.data_to_send()

    def test_request(self) -> None:
        handshake = HTTPConnectHandshake("example.com", 8443, user_agent="agent/1")
        data = handshake.data_to_send()
        assert data == (
            b"CONNECT example.com:8443 HTTP/1.1\r\n"
            b"Host: example.com:8443\r\n"
            b"User-Agent: agent/1\r\n\r\n"
        )
        assert handshake.data_to_send() == b""  # sent once

    def test_request_ipv6(self) -> None:
        data = HTTPConnectHandshake("::1", 80, user_agent=None).data_to_send()
        assert data == b"CONNECT [::1]:80 HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"

    def test_basic_credentials(self) -> None:
        data = HTTPConnectHandshake(
            "h", 1, credentials=("Aladdin", "open sesame"), user_agent=None
        ).data_to_send()
        # The example of RFC 7617 section 2.
        assert b"Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n" in data

    def test_proxy_handshake_carries_credentials(self) -> None:
        tunnel = parse_proxy("http://u%3A:p@proxy:1").handshake("h", 2, user_agent=None)
        token = base64.b64encode(b"u::p").decode()
        assert f"Proxy-Authorization: Basic {token}\r\n".encode() in tunnel.data_to_send()

    def test_invalid_host(self) -> None:
        with pytest.raises(ValueError, match="CONNECT"):
            HTTPConnectHandshake("bad\r\nhost", 1)

    def test_granted(self) -> None:
        handshake = HTTPConnectHandshake("h", 1)
        handshake.data_to_send()
        assert handshake.receive_data(b"HTTP/1.1 200 Connection established\r\n\r\n")
        assert handshake.trailing_data == b""
        assert handshake.receive_data(b"more")  # after that, everything is tunnel data
        assert handshake.trailing_data == b"more"
        handshake.receive_eof()  # the tunnel was open: nothing to complain about

    def test_granted_bytewise_http10_with_headers(self) -> None:
        handshake = HTTPConnectHandshake("h", 1)
        handshake.data_to_send()
        response = b"HTTP/1.0 200 OK\r\nProxy-Agent: test\r\n\r\n"
        results = feed_bytewise(handshake, response)
        assert results == [False] * (len(response) - 1) + [True]

    def test_interim_response_then_granted(self) -> None:
        handshake = HTTPConnectHandshake("h", 1)
        handshake.data_to_send()
        assert handshake.receive_data(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nxy")
        assert handshake.trailing_data == b"xy"

    def test_empty_data(self) -> None:
        handshake = HTTPConnectHandshake("h", 1)
        assert handshake.receive_data(b"") is False

    def test_rejected_with_body(self) -> None:
        handshake = HTTPConnectHandshake("h", 1)
        handshake.data_to_send()
        head = (
            b"HTTP/1.1 407 Proxy Authentication Required\r\n"
            b'Proxy-Authenticate: Basic realm="x"\r\nContent-Length: 4\r\n\r\n'
        )
        assert handshake.receive_data(head) is False  # waits for the body
        with pytest.raises(InvalidProxyStatus) as info:
            handshake.receive_data(b"deny")
        assert info.value.status_code == 407
        assert ("Proxy-Authenticate", 'Basic realm="x"') in info.value.headers
        assert info.value.body == b"deny"

    def test_rejected_body_until_eof(self) -> None:
        handshake = HTTPConnectHandshake("h", 1)
        handshake.data_to_send()
        with pytest.raises(InvalidProxyStatus) as info:
            handshake.receive_data(b"HTTP/1.1 502 Bad Gateway\r\n\r\nupstream down")
        assert info.value.status_code == 502

    def test_rejected_body_cut_by_eof(self) -> None:
        handshake = HTTPConnectHandshake("h", 1)
        handshake.data_to_send()
        handshake.receive_data(b"HTTP/1.1 503 Busy\r\nContent-Length: 100\r\n\r\npartial")
        with pytest.raises(InvalidProxyStatus) as info:
            handshake.receive_eof()
        assert info.value.status_code == 503
        assert info.value.body == b"partial"

    def test_rejected_large_body_is_cut(self) -> None:
        handshake = HTTPConnectHandshake("h", 1, max_body_size=10)
        handshake.data_to_send()
        with pytest.raises(InvalidProxyStatus) as info:
            handshake.receive_data(b"HTTP/1.1 403 No\r\nContent-Length: 1000\r\n\r\n" + b"x" * 50)
        assert info.value.body == b"x" * 10

    def test_eof_before_response(self) -> None:
        handshake = HTTPConnectHandshake("h", 1)
        handshake.data_to_send()
        handshake.receive_data(b"HTTP/1.1 200")
        with pytest.raises(InvalidProxyMessage, match="closed"):
            handshake.receive_eof()

    def test_garbage(self) -> None:
        handshake = HTTPConnectHandshake("h", 1)
        handshake.data_to_send()
        with pytest.raises(InvalidProxyMessage, match="invalid HTTP response"):
            handshake.receive_data(b"SSH-2.0-OpenSSH_9.0\r\n\r\n")

    def test_head_too_large(self) -> None:
        handshake = HTTPConnectHandshake("h", 1, max_header_size=100)
        handshake.data_to_send()
        with pytest.raises(InvalidProxyMessage):
            handshake.receive_data(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 200)


class TestSOCKS5Requests:
    """RFC 1928 sections 3 and 4, RFC 1929 section 2: what the client sends."""

    def test_greeting_without_credentials(self) -> None:
        assert SOCKS5Handshake("h", 1).data_to_send() == b"\x05\x01\x00"

    def test_greeting_with_credentials(self) -> None:
        handshake = SOCKS5Handshake("h", 1, credentials=("u", "p"))
        assert handshake.data_to_send() == b"\x05\x02\x00\x02"
        assert handshake.data_to_send() == b""

    @pytest.mark.parametrize(
        ("host", "port", "request_bytes"),
        [
            ("127.0.0.1", 8765, b"\x05\x01\x00\x01\x7f\x00\x00\x01\x22\x3d"),
            ("::1", 80, b"\x05\x01\x00\x04" + b"\x00" * 15 + b"\x01\x00\x50"),
            ("example.com", 443, b"\x05\x01\x00\x03\x0bexample.com\x01\xbb"),
            ("bücher.example", 1, b"\x05\x01\x00\x03\x15xn--bcher-kva.example\x00\x01"),
        ],
    )
    def test_connect_request(self, host: str, port: int, request_bytes: bytes) -> None:
        handshake = SOCKS5Handshake(host, port)
        handshake.data_to_send()
        assert handshake.receive_data(b"\x05\x00") is False
        assert handshake.data_to_send() == request_bytes

    def test_username_password(self) -> None:
        handshake = SOCKS5Handshake("h", 1, credentials=("user", "pässword"))
        handshake.data_to_send()
        assert handshake.receive_data(b"\x05\x02") is False
        password = "pässword".encode()
        assert handshake.data_to_send() == b"\x01\x04user" + bytes([len(password)]) + password
        assert handshake.receive_data(b"\x01\x00") is False
        assert handshake.data_to_send() == b"\x05\x01\x00\x03\x01h\x00\x01"

    def test_credentials_but_no_authentication_chosen(self) -> None:
        handshake = SOCKS5Handshake("h", 1, credentials=("u", "p"))
        handshake.data_to_send()
        handshake.receive_data(b"\x05\x00")
        assert handshake.data_to_send() == b"\x05\x01\x00\x03\x01h\x00\x01"

    @pytest.mark.parametrize(
        ("host", "port", "credentials"),
        [
            ("a" * 256, 1, None),
            ("h", 0, None),
            ("h", 65536, None),
            ("h", 1, ("", "p")),
            ("h", 1, ("u" * 256, "p")),
            ("h", 1, ("u", "p" * 256)),
        ],
    )
    def test_invalid(self, host: str, port: int, credentials: tuple[str, str] | None) -> None:
        with pytest.raises(ValueError):
            SOCKS5Handshake(host, port, credentials=credentials)

    def test_longest_name(self) -> None:
        name = ".".join(["a" * 63] * 4)[:255]
        handshake = SOCKS5Handshake(name, 1)
        handshake.data_to_send()
        handshake.receive_data(b"\x05\x00")
        assert handshake.data_to_send()[4] == 255

    def test_invalid_international_name(self) -> None:
        with pytest.raises(ValueError, match="invalid host name"):
            SOCKS5Handshake("ü" * 70 + ".example", 1)


class TestSOCKS5Replies:
    """RFC 1928 section 6: the proxy's replies, in any pieces, and its refusals."""

    @staticmethod
    def requested(credentials: tuple[str, str] | None = None) -> SOCKS5Handshake:
        """A handshake that has sent its CONNECT request (after no authentication)."""
        handshake = SOCKS5Handshake("h", 1, credentials=credentials)
        handshake.data_to_send()
        assert handshake.receive_data(b"\x05\x00") is False
        handshake.data_to_send()
        return handshake

    @pytest.mark.parametrize(
        "reply",
        [
            b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x00",
            b"\x05\x00\x00\x04" + b"\x00" * 16 + b"\x04\x00",
            b"\x05\x00\x00\x03\x09localhost\x04\x00",
            b"\x05\x00\x00\x03\x00\x04\x00",
        ],
    )
    def test_granted_bytewise(self, reply: bytes) -> None:
        handshake = self.requested()
        assert feed_bytewise(handshake, reply) == [False] * (len(reply) - 1) + [True]
        assert handshake.trailing_data == b""
        handshake.receive_eof()

    def test_everything_at_once(self) -> None:
        handshake = SOCKS5Handshake("h", 1, credentials=("u", "p"))
        handshake.data_to_send()
        # A proxy that answers ahead (pipelining): method, auth verdict, reply and data.
        assert handshake.receive_data(
            b"\x05\x02" + b"\x01\x00" + b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"early"
        )
        assert handshake.trailing_data == b"early"
        assert handshake.receive_data(b"!")
        assert handshake.trailing_data == b"early!"

    def test_no_acceptable_methods(self) -> None:
        handshake = SOCKS5Handshake("h", 1)
        handshake.data_to_send()
        with pytest.raises(SOCKSProxyError, match="none of the offered") as info:
            handshake.receive_data(b"\x05\xff")
        assert info.value.reply is None
        assert not is_retryable(info.value)

    def test_method_not_offered(self) -> None:
        handshake = SOCKS5Handshake("h", 1)  # no credentials: username/password not offered
        handshake.data_to_send()
        with pytest.raises(InvalidProxyMessage, match="not offered"):
            handshake.receive_data(b"\x05\x02")

    def test_not_socks5(self) -> None:
        handshake = SOCKS5Handshake("h", 1)
        handshake.data_to_send()
        with pytest.raises(InvalidProxyMessage, match="version 72"):
            handshake.receive_data(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    def test_credentials_rejected(self) -> None:
        handshake = SOCKS5Handshake("h", 1, credentials=("u", "wrong"))
        handshake.data_to_send()
        handshake.receive_data(b"\x05\x02")
        handshake.data_to_send()
        with pytest.raises(SOCKSProxyError, match="rejected the username") as info:
            handshake.receive_data(b"\x01\x01")
        assert info.value.reply is None
        assert not is_retryable(info.value)

    @pytest.mark.parametrize(
        ("code", "text"),
        [
            (1, "general SOCKS server failure"),
            (3, "network unreachable"),
            (4, "host unreachable"),
            (5, "connection refused"),
            (6, "TTL expired"),
        ],
    )
    def test_unreachable(self, code: int, text: str) -> None:
        """The proxy could not reach the server: worth a retry, as a direct attempt would be."""
        handshake = self.requested()
        with pytest.raises(SOCKSProxyError, match=text) as info:
            handshake.receive_data(bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]))
        assert info.value.reply == code
        assert is_retryable(info.value)

    @pytest.mark.parametrize(
        ("code", "text"), [(2, "ruleset"), (7, "command"), (8, "address type")]
    )
    def test_refused(self, code: int, text: str) -> None:
        handshake = self.requested()
        with pytest.raises(SOCKSProxyError, match=text) as info:
            handshake.receive_data(bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]))
        assert info.value.reply == code
        assert not is_retryable(info.value)

    def test_unknown_reply_code(self) -> None:
        handshake = self.requested()
        with pytest.raises(InvalidProxyMessage, match="reply code"):
            handshake.receive_data(bytes([5, 9, 0, 1, 0, 0, 0, 0, 0, 0]))

    def test_bad_reply_version(self) -> None:
        handshake = self.requested()
        with pytest.raises(InvalidProxyMessage, match="version 4"):
            handshake.receive_data(bytes([4, 0, 0, 1, 0, 0, 0, 0, 0, 0]))

    def test_bad_address_type(self) -> None:
        handshake = self.requested()
        with pytest.raises(InvalidProxyMessage, match="address type"):
            handshake.receive_data(bytes([5, 0, 0, 2, 0, 0, 0]))

    def test_eof_before_reply(self) -> None:
        handshake = self.requested()
        handshake.receive_data(b"\x05\x00\x00")
        with pytest.raises(InvalidProxyMessage, match="closed"):
            handshake.receive_eof()


class TestProxyErrors:
    """Every refusal is a ProxyError, told apart from the server's own answers, and the retry
    rule reads it: authentication and refusals are final, a proxy's 5xx is not."""

    @pytest.mark.parametrize(
        "exc",
        [
            InvalidProxyStatus(407),
            InvalidProxyMessage("garbled"),
            SOCKSProxyError("refused", 2),
            SOCKSProxyError("bad credentials"),
        ],
    )
    def test_tree(self, exc: ProxyError) -> None:
        assert isinstance(exc, ProxyError)
        assert isinstance(exc, InvalidHandshake)
        assert not isinstance(exc, (InvalidStatus, InvalidMessage))

    @pytest.mark.parametrize(
        ("status", "retryable"),
        [(407, False), (403, False), (400, False), (502, True), (503, True), (504, True)],
    )
    def test_connect_status(self, status: int, retryable: bool) -> None:
        handshake = HTTPConnectHandshake("h", 1)
        handshake.data_to_send()
        with pytest.raises(InvalidProxyStatus) as info:
            handshake.receive_data(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
        assert info.value.status_code == status
        assert str(status) in str(info.value) and "proxy" in str(info.value)
        assert is_retryable(info.value) is retryable

    def test_garbled_reply_is_retried(self) -> None:
        handshake = HTTPConnectHandshake("h", 1)
        handshake.data_to_send()
        with pytest.raises(InvalidProxyMessage) as info:
            handshake.receive_data(b"SSH-2.0-OpenSSH_9.0\r\n\r\n")
        assert is_retryable(info.value)
