"""Tests for fullduplex.uri: RFC 6455 section 3, WebSocket URIs."""

from __future__ import annotations

import pytest

from fullduplex.exceptions import InvalidURI
from fullduplex.uri import WebSocketURI, parse_uri


class TestWebSocketURIs:
    """3. WebSocket URIs: ws-URI and wss-URI."""

    @pytest.mark.parametrize(
        ("uri", "expected"),
        [
            ("ws://localhost", WebSocketURI(False, "localhost", 80, "/")),
            ("ws://localhost/", WebSocketURI(False, "localhost", 80, "/")),
            ("wss://localhost", WebSocketURI(True, "localhost", 443, "/")),
            ("ws://localhost:8765/chat", WebSocketURI(False, "localhost", 8765, "/chat")),
            ("WS://LocalHost:8765/Chat", WebSocketURI(False, "localhost", 8765, "/Chat")),
            ("ws://h/a/b?x=1&y=2", WebSocketURI(False, "h", 80, "/a/b?x=1&y=2")),
            ("ws://h?x=1", WebSocketURI(False, "h", 80, "/?x=1")),
            ("wss://127.0.0.1:9001/", WebSocketURI(True, "127.0.0.1", 9001, "/")),
            ("ws://[::1]:8080/p", WebSocketURI(False, "::1", 8080, "/p")),
            ("wss://[2001:db8::7]/", WebSocketURI(True, "2001:db8::7", 443, "/")),
        ],
    )
    def test_valid(self, uri: str, expected: WebSocketURI) -> None:
        assert parse_uri(uri) == expected

    @pytest.mark.parametrize(
        "uri",
        [
            "http://localhost/",  # another scheme
            "localhost:8765",
            "ws:/localhost",  # no authority
            "ws://",  # no host
            "ws://:8765/",
            "ws://localhost/#frag",  # fragments are forbidden
            "ws://localhost/#",
            "ws://localhost:port/",  # a port that is not a number
            "ws://localhost:70000/",  # out of range
            "ws://localhost:0/",
            "ws://localhost:/",  # an empty port
            "ws://[::1/",  # an unbalanced IPv6 bracket
        ],
    )
    def test_invalid(self, uri: str) -> None:
        with pytest.raises(InvalidURI) as info:
            parse_uri(uri)
        assert info.value.uri == uri
        assert uri in str(info.value)

    def test_invalid_uri_is_a_value_error(self) -> None:
        with pytest.raises(ValueError, match="scheme"):
            parse_uri("ftp://x/")


class TestHostHeader:
    """4.1. The Host header carries the host, in brackets when IPv6, and non-default ports."""

    @pytest.mark.parametrize(
        ("uri", "host_header"),
        [
            ("ws://example.com/", "example.com"),
            ("ws://example.com:80/", "example.com"),
            ("ws://example.com:443/", "example.com:443"),
            ("wss://example.com:443/", "example.com"),
            ("wss://example.com:80/", "example.com:80"),
            ("ws://[::1]/", "[::1]"),
            ("ws://[::1]:9000/", "[::1]:9000"),
        ],
    )
    def test_host_header(self, uri: str, host_header: str) -> None:
        assert parse_uri(uri).host_header == host_header

    def test_str_round_trips(self) -> None:
        assert str(parse_uri("wss://[::1]:9000/a?b=c")) == "wss://[::1]:9000/a?b=c"
        assert str(parse_uri("ws://h")) == "ws://h/"


class TestEncoding:
    """Non-ASCII hosts become IDNA; non-ASCII resource names are percent-encoded once."""

    def test_idna_host(self) -> None:
        assert parse_uri("ws://bücher.example/").host == "xn--bcher-kva.example"

    def test_non_ascii_path_is_percent_encoded(self) -> None:
        assert parse_uri("ws://h/caf\u00e9 x").resource_name == "/caf%C3%A9%20x"

    def test_already_encoded_path_is_kept(self) -> None:
        assert parse_uri("ws://h/caf%C3%A9?q=%20").resource_name == "/caf%C3%A9?q=%20"


class TestUserInfo:
    """Credentials in the URI are kept for HTTP Basic authentication."""

    def test_user_and_password(self) -> None:
        uri = parse_uri("ws://al%40ice:s%3Ae@h/")
        assert uri.user_info == ("al@ice", "s:e")
        assert uri.host == "h"

    def test_none(self) -> None:
        assert parse_uri("ws://h/").user_info is None
