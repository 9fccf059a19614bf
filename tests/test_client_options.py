"""Tests for fullduplex.client_options: what both clients derive from the URI and options."""

from __future__ import annotations

import base64
import ssl
from typing import Any

import pytest

from fullduplex.client_options import (
    basic_authorization,
    handshake_options,
    proxy_user_agent,
    tls_context,
)
from fullduplex.protocol.handshake import USER_AGENT
from fullduplex.uri import parse_uri

_DEFAULTS: dict[str, Any] = {
    "origin": None,
    "subprotocols": None,
    "compression": "deflate",
    "additional_headers": (),
    "user_agent": ...,
    "max_header_size": 16384,
    "max_header_count": 128,
}


class TestBasicAuthentication:
    """Credentials in the URI become ``Authorization: Basic`` (RFC 7617)."""

    def test_value(self) -> None:
        assert basic_authorization(("alice", "s:cret")) == "Basic " + base64.b64encode(
            b"alice:s:cret"
        ).decode("ascii")

    def test_from_uri(self) -> None:
        options = handshake_options(parse_uri("ws://alice:s%20cret@h/"), **_DEFAULTS)
        expected = "Basic " + base64.b64encode(b"alice:s cret").decode()
        assert options["extra_headers"] == [("Authorization", expected)]

    def test_explicit_header_wins(self) -> None:
        mine = [("authorization", "Bearer token")]
        options = handshake_options(
            parse_uri("ws://alice:x@h/"), **{**_DEFAULTS, "additional_headers": mine}
        )
        assert options["extra_headers"] == mine

    def test_no_credentials(self) -> None:
        options = handshake_options(parse_uri("ws://h/"), **_DEFAULTS)
        assert options["extra_headers"] == []


class TestHandshakeOptions:
    def test_user_agent(self) -> None:
        uri = parse_uri("ws://h/")
        assert "user_agent" not in handshake_options(uri, **_DEFAULTS)
        options = handshake_options(uri, **{**_DEFAULTS, "user_agent": None})
        assert options["user_agent"] is None
        assert proxy_user_agent(...) == USER_AGENT
        assert proxy_user_agent(None) is None
        assert proxy_user_agent("probe/1") == "probe/1"

    def test_compression(self) -> None:
        uri = parse_uri("ws://h/")
        assert handshake_options(uri, **{**_DEFAULTS, "compression": None})["deflate"] is None
        assert handshake_options(uri, **_DEFAULTS)["deflate"] is not None
        with pytest.raises(ValueError):
            handshake_options(uri, **{**_DEFAULTS, "compression": "brotli"})


class TestTLSContext:
    def test_wss_gets_a_verifying_default(self) -> None:
        for option in (None, True):
            context = tls_context(parse_uri("wss://h/"), option)
            assert context is not None
            assert context.verify_mode == ssl.CERT_REQUIRED

    def test_given_context(self) -> None:
        mine = ssl.create_default_context()
        assert tls_context(parse_uri("wss://h/"), mine) is mine

    def test_ws(self) -> None:
        assert tls_context(parse_uri("ws://h/"), None) is None
        assert tls_context(parse_uri("ws://h/"), False) is None
        with pytest.raises(ValueError, match="wss://"):
            tls_context(parse_uri("ws://h/"), ssl.create_default_context())
