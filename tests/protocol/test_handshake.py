"""Tests of fullduplex.protocol.handshake: RFC 6455 section 4, the opening handshake."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import pytest

from fullduplex.exceptions import (
    InvalidHandshake,
    InvalidMessage,
    InvalidRequest,
    InvalidResponse,
    InvalidState,
    InvalidStatus,
    InvalidVersion,
    NegotiationError,
    SecurityError,
)
from fullduplex.protocol.deflate import DeflateOptions
from fullduplex.protocol.handshake import (
    USER_AGENT,
    ClientHandshake,
    Headers,
    Request,
    Response,
    ServerHandshake,
    accept_key,
    generate_key,
)

# RFC 6455 sections 1.3 and 4.2.2: the example key and its accept value.
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

# A server's first frames: an unmasked text frame "Hello" and a ping (RFC 6455 section 5.7).
FIRST_FRAMES = b"\x81\x05Hello\x89\x00"

VALID_HEADERS = [
    ("Host", "server.example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", RFC_KEY),
    ("Sec-WebSocket-Version", "13"),
]


def http_request(
    headers: Sequence[tuple[str, str]] = VALID_HEADERS,
    *,
    method: str = "GET",
    target: str = "/chat",
    version: str = "1.1",
) -> bytes:
    """The bytes of a request with exactly these header lines."""
    lines = [f"{method} {target} HTTP/{version}", *(f"{n}: {v}" for n, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def changed(headers: Sequence[tuple[str, str]], **changes: str | None) -> list[tuple[str, str]]:
    """``headers`` with a field replaced (or removed, with None); names use _ for -."""
    result = list(headers)
    for key, value in changes.items():
        name = key.replace("_", "-").lower()
        result = [(n, v) for n, v in result if n.lower() != name]
        if value is not None:
            result.append((key.replace("_", "-"), value))
    return result


def http_response(status: str, headers: Sequence[tuple[str, str]], body: bytes = b"") -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{n}: {v}" for n, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def switching(key: str, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    """The headers of a valid 101 answering ``key``."""
    return [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(key)),
        *extra,
    ]


def receive_request(data: bytes, **options: object) -> tuple[ServerHandshake, Request]:
    server = ServerHandshake(**options)  # type: ignore[arg-type]
    request = server.receive_data(data)
    assert request is not None
    return server, request


def rejection(data: bytes, **options: object) -> tuple[InvalidHandshake, Response, bytes]:
    """Run the server handshake on ``data``; return the error, its response and its bytes."""
    server = ServerHandshake(**options)  # type: ignore[arg-type]
    with pytest.raises(InvalidHandshake) as info:
        request = server.receive_data(data)
        assert request is not None
        server.accept(request)
    response = server.reject_for(info.value)
    return info.value, response, server.serialize(response)


def started_client(**options: object) -> ClientHandshake:
    client = ClientHandshake("server.example.com", "/chat", **options)  # type: ignore[arg-type]
    client.request_bytes()
    return client


class TestSection1_3AcceptKey:
    """1.3. Opening Handshake / 4.2.2: Sec-WebSocket-Accept."""

    def test_rfc_example(self) -> None:
        assert accept_key(RFC_KEY) == RFC_ACCEPT

    def test_generate_key(self) -> None:
        key = generate_key()
        assert len(base64.b64decode(key, validate=True)) == 16
        assert len(key) == 24
        assert generate_key() != key


class TestHeaders:
    """Headers: a case-insensitive multi-map that keeps the fields as sent."""

    def test_case_insensitive_access(self) -> None:
        headers = Headers([("Content-Type", "text/plain")])
        assert headers["content-type"] == "text/plain"
        assert headers["CONTENT-TYPE"] == "text/plain"
        assert "content-TYPE" in headers
        not_a_name: object = 42
        assert not_a_name not in headers
        assert headers.get("missing") is None
        with pytest.raises(KeyError):
            headers["missing"]

    def test_multiple_values(self) -> None:
        headers = Headers([("Via", "a"), ("X", "1"), ("via", "b")])
        assert headers["Via"] == "a, b"
        assert headers.get_all("VIA") == ["a", "b"]
        assert headers.get_all("none") == []
        assert headers.raw_items() == [("Via", "a"), ("X", "1"), ("via", "b")]
        assert list(headers) == ["via", "x"]
        assert len(headers) == 2

    def test_set_replaces_every_line_and_delete_removes_them(self) -> None:
        headers = Headers([("A", "1"), ("B", "2"), ("a", "3")])
        headers["a"] = "4"
        assert headers.raw_items() == [("B", "2"), ("a", "4")]
        headers["C"] = "5"
        del headers["B"]
        assert headers.raw_items() == [("a", "4"), ("C", "5")]
        with pytest.raises(KeyError):
            del headers["B"]

    def test_constructors_copy_and_equality(self) -> None:
        headers = Headers({"A": "1"})
        headers.add("B", "2")
        copy = headers.copy()
        copy.add("C", "3")
        assert "C" not in headers
        assert Headers(headers) == headers
        assert headers == {"a": "1", "B": "2"}
        assert headers != Headers([("A", "1")])
        assert headers != 3
        assert repr(headers) == "Headers([('A', '1'), ('B', '2')])"


class TestSection4_2_1ReadingTheRequest:
    """4.2.1. Reading the Client's Opening Handshake: the HTTP part (see also test_http11)."""

    def test_rfc_example_request(self) -> None:
        # The request of RFC 6455 section 1.2.
        data = http_request(
            [
                ("Host", "server.example.com"),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", RFC_KEY),
                ("Origin", "http://example.com"),
                ("Sec-WebSocket-Protocol", "chat, superchat"),
                ("Sec-WebSocket-Version", "13"),
            ]
        )
        server, request = receive_request(data)
        assert request.method == "GET"
        assert request.path == "/chat"
        assert request.http_version == "1.1"
        assert request.headers["origin"] == "http://example.com"
        assert request.headers.raw_items()[0] == ("Host", "server.example.com")
        assert server.request is request
        assert server.trailing_data == b""

    def test_request_delivered_byte_by_byte(self) -> None:
        data = http_request()
        server = ServerHandshake()
        results = [server.receive_data(data[i : i + 1]) for i in range(len(data))]
        assert all(result is None for result in results[:-1])
        assert isinstance(results[-1], Request)
        assert results[-1].path == "/chat"

    def test_empty_read_is_not_eof(self) -> None:
        server = ServerHandshake()
        assert server.receive_data(b"") is None
        assert server.receive_data(http_request()) is not None
        client = started_client()
        assert client.receive_data(b"") is None
        assert client.receive_data(http_response("101 OK", switching(client.key))) is not None

    def test_trailing_data_after_the_head(self) -> None:
        frame = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"  # RFC 6455 section 5.7
        server, _ = receive_request(http_request() + frame[:3])
        assert server.trailing_data == frame[:3]
        assert server.receive_data(frame[3:]) is None
        assert server.trailing_data == frame

    @pytest.mark.parametrize(
        "data",
        [
            b"GARBAGE\r\n\r\n",
            b"GET /chat HTTP/1.1\r\nno colon here\r\n\r\n",
            b"GET /chat HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
            b"GET /chat HTTP/1.1\r\n\r\n",  # HTTP/1.1 requires Host
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # TLS on a plain port
        ],
    )
    def test_bad_http_is_invalid_message(self, data: bytes) -> None:
        error, response, _ = rejection(data)
        assert type(error) is InvalidMessage
        assert str(error).startswith("invalid HTTP request: ")
        assert response.status == 400

    def test_request_body_is_refused(self) -> None:
        data = http_request([*VALID_HEADERS, ("Content-Length", "5")]) + b"hello"
        error, response, _ = rejection(data)
        assert type(error) is InvalidMessage
        assert str(error) == "a request body is not allowed in an opening handshake"
        assert response.status == 400
        data = http_request([*VALID_HEADERS, ("Transfer-Encoding", "chunked")])
        error, _, _ = rejection(data)
        assert str(error) == "a request body is not allowed in an opening handshake"

    def test_plain_request_body_is_read_when_allowed(self) -> None:
        """max_body_size lets a plain POST (a fallback transport's) carry a body, read whole
        even when it comes in pieces; the bytes after it stay trailing data."""
        head = http_request([("Host", "x"), ("Content-Length", "11")], method="POST")
        server = ServerHandshake(max_body_size=100)
        assert server.receive_data(head + b"hello") is None
        request = server.receive_data(b" worldEXTRA")
        assert request is not None
        assert (request.method, request.body) == ("POST", b"hello world")
        assert server.trailing_data == b"EXTRA"

    @pytest.mark.parametrize(
        ("fields", "status", "message"),
        [
            (
                [("Transfer-Encoding", "chunked")],
                411,
                "send the request body with a Content-Length",
            ),
            ([("Content-Length", "1x")], 400, "invalid Content-Length"),
            ([("Content-Length", "1"), ("Content-Length", "2")], 400, "invalid Content-Length"),
            (
                [("Upgrade", "websocket"), ("Content-Length", "5")],
                400,
                "a request body is not allowed in an opening handshake",
            ),
        ],
    )
    def test_plain_request_body_limits(
        self, fields: list[tuple[str, str]], status: int, message: str
    ) -> None:
        data = http_request([("Host", "x"), *fields], method="POST")
        error, response, _ = rejection(data, max_body_size=100)
        assert (error.status, str(error)) == (status, message)
        assert response.status == status

    def test_plain_request_body_over_the_limit_is_dropped(self) -> None:
        """A body over max_body_size is read (so that the client gets an answer) but not
        kept: the request says how long it was; the bytes after it stay trailing data."""
        head = http_request([("Host", "x"), ("Content-Length", "250")], method="POST")
        server = ServerHandshake(max_body_size=100)
        assert server.receive_data(head + b"x" * 120) is None
        assert server.receive_data(b"x" * 100) is None
        request = server.receive_data(b"x" * 30 + b"EXTRA")
        assert request is not None
        assert (request.body, request.discarded) == (b"", 250)
        assert server.trailing_data == b"EXTRA"

    def test_body_trickling_in_is_accumulated_in_place(self) -> None:
        """A body in 100-byte pieces grows one buffer (a copy of each piece), instead of a
        new bytes object holding all that came before at each piece (quadratic)."""
        size = 2**20
        head = http_request([("Host", "x"), ("Content-Length", str(size))], method="POST")
        server = ServerHandshake(max_body_size=size)
        assert server.receive_data(head) is None
        buffer = server._body_buffer
        assert type(buffer) is bytearray
        piece = b"y" * 100
        for count in range(1, size // 100 + 1):
            assert server.receive_data(piece) is None
            if count % 1000 == 0:
                # Nothing kept twice: the body so far is in that one buffer, nowhere else.
                assert server._body_buffer is buffer and len(buffer) == count * 100
                assert server.trailing_data == b""
        request = server.receive_data(b"y" * (size % 100) + b"NEXT")
        assert request is not None
        assert request.body == b"y" * size and server.trailing_data == b"NEXT"

    def test_body_is_refused_before_it_is_read_where_not_allowed(self) -> None:
        """body_allowed says which requests may have a body: any other is refused (400) on
        its head, without waiting for a byte of its body."""
        seen: list[tuple[str, str]] = []

        def allowed(method: str, target: str) -> bool:
            seen.append((method, target))
            return target.startswith("/in")

        head = http_request([("Host", "x"), ("Content-Length", "100")], method="POST")
        error, response, _ = rejection(head, max_body_size=1000, body_allowed=allowed)
        assert type(error) is InvalidMessage and response.status == 400
        assert seen == [("POST", "/chat")]
        server = ServerHandshake(max_body_size=1000, body_allowed=allowed)
        inside = head.replace(b"POST /chat", b"POST /in?x=1")
        assert server.receive_data(inside) is None
        request = server.receive_data(b"z" * 100)
        assert request is not None and request.body == b"z" * 100

    def test_held_response_has_no_content_length(self) -> None:
        server, _ = receive_request(http_request([("Host", "x")]))
        data = server.serialize(server.reject(200, b""), held=True)
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"Content-Length" not in data
        assert b"Connection: close\r\n" in data and data.endswith(b"\r\n\r\n")

    def test_empty_content_length_is_fine(self) -> None:
        _, request = receive_request(http_request([*VALID_HEADERS, ("Content-Length", "0")]))
        assert request.headers["Content-Length"] == "0"

    def test_head_larger_than_the_limit_in_pieces(self) -> None:
        server = ServerHandshake(max_header_size=1024)
        data = http_request([*VALID_HEADERS, ("X-Padding", "x" * 2000)])
        with pytest.raises(SecurityError) as info:
            for i in range(0, len(data), 100):
                server.receive_data(data[i : i + 100])
        assert str(info.value) == "request head is larger than 1024 bytes"
        assert server.reject_for(info.value).status == 431

    def test_head_larger_than_the_limit_at_once(self) -> None:
        data = http_request([*VALID_HEADERS, ("X-Padding", "x" * 2000)])
        error, response, _ = rejection(data, max_header_size=1024)
        assert type(error) is SecurityError
        assert str(error) == f"request head is too large ({len(data)} bytes)"
        assert response.status == 431

    def test_head_at_the_limit(self) -> None:
        data = http_request()
        _, request = receive_request(data, max_header_size=len(data))
        assert request.method == "GET"

    def test_too_many_headers(self) -> None:
        headers = [*VALID_HEADERS, *((f"X-{i}", "1") for i in range(6))]
        error, response, _ = rejection(http_request(headers), max_header_count=10)
        assert type(error) is SecurityError
        assert str(error) == "too many header fields (11)"
        assert response.status == 431
        _, request = receive_request(http_request(headers), max_header_count=11)
        assert len(request.headers.raw_items()) == 11

    def test_eof(self) -> None:
        with pytest.raises(InvalidMessage, match=r"^connection closed before a request was sent$"):
            ServerHandshake().receive_eof()
        server = ServerHandshake()
        server.receive_data(http_request()[:20])
        with pytest.raises(InvalidMessage, match="before the request was complete"):
            server.receive_eof()
        server, _ = receive_request(http_request())
        server.receive_eof()  # nothing to complain about: the request is there


BODY_PREFIX = b"Failed to open a WebSocket connection: "


class TestSection4_2_1Validation:
    """4.2.1. Reading the Client's Opening Handshake: every check, status and message."""

    @pytest.mark.parametrize(
        ("data", "exc_type", "status", "message"),
        [
            (
                http_request(method="POST"),
                InvalidRequest,
                405,
                "method must be GET, got 'POST'",
            ),
            (
                http_request(version="1.0"),
                InvalidRequest,
                400,
                "HTTP/1.1 or later is required, got 'HTTP/1.0'",
            ),
            (
                http_request(changed(VALID_HEADERS, Upgrade=None)),
                InvalidRequest,
                426,
                "missing Upgrade header",
            ),
            (
                http_request(changed(VALID_HEADERS, Upgrade="h2c")),
                InvalidRequest,
                426,
                "Upgrade header must include websocket, got 'h2c'",
            ),
            (
                http_request(changed(VALID_HEADERS, Connection=None)),
                InvalidRequest,
                426,
                "missing Connection header",
            ),
            (
                http_request(changed(VALID_HEADERS, Connection="keep-alive")),
                InvalidRequest,
                426,
                "Connection header must include upgrade, got 'keep-alive'",
            ),
            (
                http_request(changed(VALID_HEADERS, Sec_WebSocket_Key=None)),
                InvalidRequest,
                400,
                "missing Sec-WebSocket-Key header",
            ),
            (
                http_request([*VALID_HEADERS, ("Sec-WebSocket-Key", RFC_KEY)]),
                InvalidRequest,
                400,
                "more than one Sec-WebSocket-Key header",
            ),
            (
                http_request(changed(VALID_HEADERS, Sec_WebSocket_Key="not base64!")),
                InvalidRequest,
                400,
                "Sec-WebSocket-Key must be base64 of 16 bytes, got 'not base64!'",
            ),
            (
                http_request(
                    changed(VALID_HEADERS, Sec_WebSocket_Key=base64.b64encode(b"x" * 15).decode())
                ),
                InvalidRequest,
                400,
                "Sec-WebSocket-Key must be base64 of 16 bytes, got 'eHh4eHh4eHh4eHh4eHh4'",
            ),
            (
                http_request(changed(VALID_HEADERS, Sec_WebSocket_Version=None)),
                InvalidVersion,
                426,
                "missing Sec-WebSocket-Version header",
            ),
            (
                http_request(changed(VALID_HEADERS, Sec_WebSocket_Version="8")),
                InvalidVersion,
                426,
                "Sec-WebSocket-Version must be 13, got '8'",
            ),
            (
                http_request([*VALID_HEADERS, ("Sec-WebSocket-Version", "8")]),
                InvalidVersion,
                426,
                "Sec-WebSocket-Version must be 13, got '13, 8'",
            ),
            (
                http_request([*VALID_HEADERS, ("Sec-WebSocket-Protocol", "chat, bad/token")]),
                NegotiationError,
                400,
                "invalid Sec-WebSocket-Protocol header: 'bad/token'",
            ),
            (
                http_request([*VALID_HEADERS, ("Sec-WebSocket-Extensions", "permessage-deflate;")]),
                NegotiationError,
                400,
                "invalid Sec-WebSocket-Extensions header 'permessage-deflate;': "
                "expected a parameter name at 19",
            ),
        ],
    )
    def test_rejection(
        self, data: bytes, exc_type: type[InvalidHandshake], status: int, message: str
    ) -> None:
        error, response, raw = rejection(data)
        assert type(error) is exc_type
        assert str(error) == message
        assert error.status == status
        assert response.status == status
        body = BODY_PREFIX + message.encode() + b".\n"
        assert response.body == body
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert "close" in response.headers["Connection"]
        assert raw.endswith(b"\r\n\r\n" + body)
        assert f"Content-Length: {len(body)}\r\n".encode() in raw
        assert raw.startswith(f"HTTP/1.1 {status} ".encode())

    def test_checks_run_in_rfc_order(self) -> None:
        # Everything is wrong: the first check of section 4.2.1 (the method) is reported.
        data = http_request([("Host", "a")], method="PUT")
        error, _, _ = rejection(data)
        assert str(error) == "method must be GET, got 'PUT'"
        # Without the method problem, the next one: Upgrade before the key and version.
        error, _, _ = rejection(http_request([("Host", "a")]))
        assert str(error) == "missing Upgrade header"

    def test_host(self) -> None:
        # h11 refuses an HTTP/1.1 request without Host or with two; accept() checks a
        # request built by other means (another HTTP parser, ASGI) too.
        request = Request("GET", "/", Headers(changed(VALID_HEADERS, Host=None)))
        with pytest.raises(InvalidRequest, match=r"^missing Host header$") as info:
            ServerHandshake().accept(request)
        assert info.value.status == 400
        request = Request("GET", "/", Headers([*VALID_HEADERS, ("Host", "b")]))
        with pytest.raises(InvalidRequest, match=r"^more than one Host header$"):
            ServerHandshake().accept(request)
        error, _, _ = rejection(http_request([*VALID_HEADERS, ("Host", "b")]))
        assert str(error) == "invalid HTTP request: more than one Host header"

    def test_http_version_later_than_1_1(self) -> None:
        request = Request("GET", "/", Headers(VALID_HEADERS), http_version="2.0")
        assert ServerHandshake().accept(request).status == 101
        request = Request("GET", "/", Headers(VALID_HEADERS), http_version="x.y")
        with pytest.raises(InvalidRequest, match=r"HTTP/1\.1 or later is required"):
            ServerHandshake().accept(request)

    def test_405_allows_get(self) -> None:
        _, response, raw = rejection(http_request(method="POST"))
        assert response.headers["Allow"] == "GET"
        assert raw.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")

    def test_426_names_the_upgrade(self) -> None:
        _, response, _ = rejection(http_request(changed(VALID_HEADERS, Upgrade=None)))
        assert response.headers["Upgrade"] == "websocket"
        assert response.headers.get_all("Connection") == ["Upgrade, close"]
        assert "Sec-WebSocket-Version" not in response.headers

    def test_section_4_4_version_mismatch_lists_13(self) -> None:
        _, response, raw = rejection(
            http_request(changed(VALID_HEADERS, Sec_WebSocket_Version="8"))
        )
        assert response.headers["Sec-WebSocket-Version"] == "13"
        assert response.headers["Upgrade"] == "websocket"
        assert raw.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
        assert b"\r\nSec-WebSocket-Version: 13\r\n" in raw

    @pytest.mark.parametrize(
        ("upgrade", "connection"),
        [
            ("WebSocket", "upgrade"),
            ("websocket", "keep-alive, Upgrade"),
            ("h2c, WEBSOCKET", "Upgrade,keep-alive"),
        ],
    )
    def test_tokens_are_case_insensitive_lists(self, upgrade: str, connection: str) -> None:
        headers = changed(VALID_HEADERS, Upgrade=upgrade, Connection=connection)
        server, request = receive_request(http_request(headers))
        assert server.accept(request).status == 101

    def test_connection_split_across_lines(self) -> None:
        headers = [*changed(VALID_HEADERS, Connection="keep-alive"), ("Connection", "Upgrade")]
        server, request = receive_request(http_request(headers))
        assert server.accept(request).status == 101


class TestSection4_2_2ServerResponse:
    """4.2.2. Sending the Server's Opening Handshake."""

    def test_rfc_example_response(self) -> None:
        data = http_request([*VALID_HEADERS, ("Sec-WebSocket-Protocol", "chat, superchat")])
        server, request = receive_request(data, subprotocols=["chat"], deflate=None)
        response = server.accept(request)
        assert server.serialize(response) == (
            b"HTTP/1.1 101 Switching Protocols\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            b"Sec-WebSocket-Protocol: chat\r\n"
            b"\r\n"
        )
        assert server.subprotocol == "chat"
        assert server.deflate_extension is None

    def test_extra_headers(self) -> None:
        server, request = receive_request(http_request())
        response = server.accept(request, extra_headers=[("Server", "test"), ("Set-Cookie", "a=1")])
        assert response.headers.raw_items()[-2:] == [("Server", "test"), ("Set-Cookie", "a=1")]
        assert b"\r\nServer: test\r\nSet-Cookie: a=1\r\n\r\n" in server.serialize(response)

    @pytest.mark.parametrize(
        ("supported", "offered", "expected"),
        [
            (["chat", "superchat"], "superchat, chat", "chat"),  # the server's preference
            (["superchat", "chat"], "chat, superchat", "superchat"),
            (["chat"], "superchat", None),  # nothing in common: no header, the client decides
            ([], "chat", None),
            (["chat"], None, None),
        ],
    )
    def test_subprotocol_preference(
        self, supported: list[str], offered: str | None, expected: str | None
    ) -> None:
        headers = list(VALID_HEADERS)
        if offered is not None:
            headers.append(("Sec-WebSocket-Protocol", offered))
        server, request = receive_request(http_request(headers), subprotocols=supported)
        response = server.accept(request)
        assert server.subprotocol == expected
        assert response.headers.get("Sec-WebSocket-Protocol") == expected

    def test_subprotocols_across_lines(self) -> None:
        headers = [*VALID_HEADERS, ("Sec-WebSocket-Protocol", "a"), ("Sec-WebSocket-Protocol", "b")]
        server, request = receive_request(http_request(headers), subprotocols=["b"])
        server.accept(request)
        assert server.subprotocol == "b"

    def test_select_subprotocol(self) -> None:
        calls: list[tuple[Request, Sequence[str]]] = []

        def select(request: Request, offered: Sequence[str]) -> str | None:
            calls.append((request, offered))
            return offered[-1]

        headers = [*VALID_HEADERS, ("Sec-WebSocket-Protocol", "a, b")]
        server, request = receive_request(
            http_request(headers), subprotocols=["a"], select_subprotocol=select
        )
        assert server.accept(request).headers["Sec-WebSocket-Protocol"] == "b"
        assert calls == [(request, ["a", "b"])]

    def test_select_subprotocol_none(self) -> None:
        headers = [*VALID_HEADERS, ("Sec-WebSocket-Protocol", "a")]
        server, request = receive_request(
            http_request(headers), select_subprotocol=lambda request, offered: None
        )
        response = server.accept(request)
        assert "Sec-WebSocket-Protocol" not in response.headers
        assert server.subprotocol is None

    def test_select_subprotocol_not_offered(self) -> None:
        headers = [*VALID_HEADERS, ("Sec-WebSocket-Protocol", "a")]
        error, response, _ = rejection(
            http_request(headers), select_subprotocol=lambda request, offered: "z"
        )
        assert type(error) is NegotiationError
        assert str(error) == "subprotocol 'z' was not offered"
        assert response.status == 400

    def test_select_subprotocol_refuses(self) -> None:
        def select(request: Request, offered: Sequence[str]) -> str | None:
            raise NegotiationError("a subprotocol is required")

        error, response, _ = rejection(http_request(), select_subprotocol=select)
        assert str(error) == "a subprotocol is required"
        assert response.body == BODY_PREFIX + b"a subprotocol is required.\n"

    def test_permessage_deflate_accepted(self) -> None:
        headers = [
            *VALID_HEADERS,
            ("Sec-WebSocket-Extensions", "x-unknown, permessage-deflate; client_max_window_bits"),
        ]
        server, request = receive_request(http_request(headers))
        response = server.accept(request)
        assert response.headers["Sec-WebSocket-Extensions"] == (
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
        )
        assert server.deflate_extension is not None
        assert server.deflate_extension.local_max_window_bits == 12

    def test_permessage_deflate_disabled(self) -> None:
        headers = [*VALID_HEADERS, ("Sec-WebSocket-Extensions", "permessage-deflate")]
        server, request = receive_request(http_request(headers), deflate=None)
        assert "Sec-WebSocket-Extensions" not in server.accept(request).headers
        assert server.deflate_extension is None

    def test_no_acceptable_extension(self) -> None:
        headers = [*VALID_HEADERS, ("Sec-WebSocket-Extensions", "permessage-deflate; x")]
        server, request = receive_request(http_request(headers))
        assert "Sec-WebSocket-Extensions" not in server.accept(request).headers
        assert server.deflate_extension is None


class TestRejectAndSerialize:
    """reject(), reject_for() and serialize()."""

    def test_reject_with_text(self) -> None:
        server, _ = receive_request(http_request())
        response = server.reject(403, "Forbidden origin\n", headers=[("X-Why", "origin")])
        assert response.status == 403
        assert response.reason == "Forbidden"
        assert response.headers.raw_items() == [
            ("X-Why", "origin"),
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Connection", "close"),
        ]
        assert server.serialize(response) == (
            b"HTTP/1.1 403 Forbidden\r\n"
            b"X-Why: origin\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Connection: close\r\n"
            b"Content-Length: 17\r\n"
            b"\r\n"
            b"Forbidden origin\n"
        )

    def test_reject_with_bytes_and_own_headers(self) -> None:
        server, _ = receive_request(http_request())
        response = server.reject(
            302, b"", headers=[("Location", "/elsewhere"), ("Connection", "close")]
        )
        assert response.headers.get_all("Connection") == ["close"]
        assert "Content-Type" not in response.headers
        raw = server.serialize(response)
        assert raw.startswith(b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\n")
        assert raw.endswith(b"Content-Length: 0\r\n\r\n")

    def test_unknown_status_has_empty_reason(self) -> None:
        server, _ = receive_request(http_request())
        assert server.reject(499, "x").reason == ""

    def test_response_to_a_request_that_could_not_be_parsed(self) -> None:
        server = ServerHandshake()
        with pytest.raises(InvalidMessage) as info:
            server.receive_data(b"nonsense\r\n\r\n")
        raw = server.serialize(server.reject_for(info.value))
        assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert raw.endswith(
            b"\r\n\r\nFailed to open a WebSocket connection: " + str(info.value).encode() + b".\n"
        )

    def test_one_response_only(self) -> None:
        server, request = receive_request(http_request())
        server.serialize(server.accept(request))
        with pytest.raises(InvalidState, match="cannot send this response"):
            server.serialize(server.reject(500, "late"))

    def test_101_needs_an_upgrade_request(self) -> None:
        server, _ = receive_request(http_request(changed(VALID_HEADERS, Upgrade=None)))
        # accept() refuses such a request; a hand-made 101 is refused in serialize().
        response = Response(101, "Switching Protocols", Headers(switching(RFC_KEY)))
        with pytest.raises(InvalidState, match="a 101 answers only a request with an Upgrade"):
            server.serialize(response)
        server, _ = receive_request(http_request(changed(VALID_HEADERS, Upgrade=" , ")))
        with pytest.raises(InvalidState, match="a 101 answers only a request with an Upgrade"):
            server.serialize(response)
        with pytest.raises(InvalidState, match="a 101 answers only a request with an Upgrade"):
            ServerHandshake().serialize(response)  # no request at all
        server, _ = receive_request(http_request(changed(VALID_HEADERS, Upgrade="h2c")))
        assert server.serialize(response).startswith(b"HTTP/1.1 101 Switching Protocols\r\n")

    def test_one_response_only_after_a_rejection(self) -> None:
        server, _ = receive_request(http_request())
        server.serialize(server.reject(403, "no"))
        with pytest.raises(InvalidState, match=r"^cannot send this response: a response was"):
            server.serialize(server.reject(500, "late"))

    def test_a_rejection_before_any_request(self) -> None:
        server = ServerHandshake()
        raw = server.serialize(server.reject(503, "busy"))
        assert raw.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert raw.endswith(b"\r\nContent-Length: 4\r\n\r\nbusy")

    @pytest.mark.parametrize(
        ("response", "message"),
        [
            (Response(200, "OK", Headers([("X", "a\r\nSet-Cookie: x=1")])), "invalid value"),
            (Response(200, "OK", Headers([("X\r\nY", "a")])), "invalid header name"),
            (Response(200, "OK\r\nSet-Cookie: x=1", Headers()), "invalid reason phrase"),
            (Response(200, "OK", Headers([("X", "\u20ac")])), "invalid value"),
            (Response(100, "Continue", Headers()), "status 100 is not final"),
            (Response(1000, "", Headers()), "status must be 100 to 999"),
            (Response(204, "", Headers(), b"x"), "a 204 has no body"),
            (Response(304, "", Headers(), b"x"), "a 304 has no body"),
            (
                Response(200, "OK", Headers([("Transfer-Encoding", "chunked")]), b"x"),
                "Transfer-Encoding is not supported",
            ),
        ],
    )
    def test_bad_responses_are_refused_and_nothing_is_sent(
        self, response: Response, message: str
    ) -> None:
        server, _ = receive_request(http_request())
        with pytest.raises(InvalidState, match=f"^cannot send this response: {message}"):
            server.serialize(response)
        # Nothing went out: a proper response can still be sent.
        assert server.serialize(server.reject(500, "oops")).startswith(b"HTTP/1.1 500 ")

    def test_101_bytes(self) -> None:
        server, request = receive_request(http_request())
        raw = server.serialize(server.accept(request, extra_headers=[("X-A", "1")]))
        assert raw == (
            b"HTTP/1.1 101 Switching Protocols\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + RFC_ACCEPT.encode() + b"\r\n"
            b"X-A: 1\r\n"
            b"\r\n"
        )


class TestSection4_1ClientRequest:
    """4.1. Client Requirements: the request."""

    def test_request_bytes(self) -> None:
        client = ClientHandshake(
            "server.example.com",
            "/chat?x=1",
            origin="http://example.com",
            subprotocols=["chat", "superchat"],
            extra_headers=[("Authorization", "Bearer t")],
        )
        data = client.request_bytes()
        assert data == (
            b"GET /chat?x=1 HTTP/1.1\r\n"
            b"Host: server.example.com\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + client.key.encode() + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\n"
            b"Origin: http://example.com\r\n"
            b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12; "
            b"client_max_window_bits=12, permessage-deflate\r\n"
            b"Sec-WebSocket-Protocol: chat, superchat\r\n"
            b"User-Agent: " + USER_AGENT.encode() + b"\r\n"
            b"Authorization: Bearer t\r\n"
            b"\r\n"
        )
        assert client.request_bytes() is data  # built once
        assert client.request.headers["Sec-WebSocket-Key"] == client.key
        assert len(base64.b64decode(client.key)) == 16

    def test_minimal_request(self) -> None:
        client = ClientHandshake("h:8080", "/", deflate=None, user_agent=None)
        assert client.request_bytes() == (
            b"GET / HTTP/1.1\r\nHost: h:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + client.key.encode() + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )

    def test_every_client_has_its_own_key(self) -> None:
        assert ClientHandshake("h", "/").key != ClientHandshake("h", "/").key

    def test_subprotocols_must_be_tokens(self) -> None:
        with pytest.raises(ValueError, match="not a token"):
            ClientHandshake("h", "/", subprotocols=["a b"])

    @pytest.mark.parametrize(
        ("resource", "extra"),
        [("/", [("X-Evil", "a\r\nInjected: 1")]), ("/a b", []), ("/", [("Bad Name", "1")])],
    )
    def test_invalid_request_parts(self, resource: str, extra: list[tuple[str, str]]) -> None:
        client = ClientHandshake("h", resource, extra_headers=extra)
        with pytest.raises(ValueError, match=r"^invalid opening handshake request: "):
            client.request_bytes()

    def test_response_before_request(self) -> None:
        client = ClientHandshake("h", "/")
        with pytest.raises(InvalidState):
            client.receive_data(b"HTTP/1.1 101 Switching Protocols\r\n")
        with pytest.raises(InvalidState):
            client.receive_eof()


class TestRoundTrip:
    """ClientHandshake and ServerHandshake in memory, through bytes only."""

    def run(
        self, client: ClientHandshake, server: ServerHandshake, chunk: int | None = None
    ) -> list[Response | None]:
        """Deliver the request, accept it, deliver the 101 and the first frames in chunks."""
        request = server.receive_data(client.request_bytes())
        assert request is not None
        data = server.serialize(server.accept(request)) + FIRST_FRAMES
        step = chunk or len(data)
        return [client.receive_data(data[i : i + step]) for i in range(0, len(data), step)]

    @pytest.mark.parametrize("chunk", [None, 1, 7, 64])
    def test_round_trip_with_trailing_data(self, chunk: int | None) -> None:
        client = ClientHandshake("server.example.com", "/chat", subprotocols=["superchat", "chat"])
        server = ServerHandshake(subprotocols=["chat"])
        results = self.run(client, server, chunk)
        responses = [result for result in results if result is not None]
        assert len(responses) == 1  # returned once, when the head is complete
        assert responses[0].status == 101
        assert client.response is responses[0]
        assert client.trailing_data == FIRST_FRAMES
        assert client.subprotocol == server.subprotocol == "chat"
        assert client.deflate_extension is not None and server.deflate_extension is not None
        assert client.deflate_extension.local_max_window_bits == 12
        assert server.deflate_extension.remote_max_window_bits == 12
        client.receive_eof()  # harmless once the handshake is done

    def test_negotiated_codecs_understand_each_other(self) -> None:
        client = ClientHandshake("h", "/", deflate=DeflateOptions(client_no_context_takeover=True))
        server = ServerHandshake(deflate=DeflateOptions(server_max_window_bits=9))
        self.run(client, server)
        assert client.deflate_extension is not None and server.deflate_extension is not None
        message = b"round trip " * 100
        payload = client.deflate_extension.compress(message, True)
        assert server.deflate_extension.decompress(payload, True, None) == message
        payload = server.deflate_extension.compress(message, True)
        assert client.deflate_extension.decompress(payload, True, None) == message
        assert client.deflate_extension.local_no_context_takeover
        assert server.deflate_extension.local_max_window_bits == 9

    def test_without_compression(self) -> None:
        client = ClientHandshake("h", "/", deflate=None)
        server = ServerHandshake()
        self.run(client, server)
        assert client.deflate_extension is None and server.deflate_extension is None

    def test_server_without_compression(self) -> None:
        client = ClientHandshake("h", "/")
        server = ServerHandshake(deflate=None)
        self.run(client, server)
        assert client.deflate_extension is None and server.deflate_extension is None


class TestSection4_1ClientValidation:
    """4.1. Client Requirements: validating the server's response."""

    def test_valid_response(self) -> None:
        client = started_client(subprotocols=["chat"])
        data = http_response(
            "101 Switching Protocols",
            switching(
                client.key,
                ("Sec-WebSocket-Protocol", "chat"),
                ("Sec-WebSocket-Extensions", "permessage-deflate; server_no_context_takeover"),
            ),
        )
        response = client.receive_data(data)
        assert response is not None
        assert response.reason == "Switching Protocols"
        assert response.headers["Upgrade"] == "websocket"
        assert client.subprotocol == "chat"
        assert client.deflate_extension is not None
        assert client.deflate_extension.remote_no_context_takeover
        assert client.receive_data(b"more") is None
        assert client.trailing_data == b"more"

    def test_case_insensitive_tokens(self) -> None:
        client = started_client()
        headers = [
            ("upgrade", "WebSocket"),
            ("connection", "keep-alive, UPGRADE"),
            ("sec-websocket-accept", accept_key(client.key)),
        ]
        assert client.receive_data(http_response("101 OK", headers)) is not None

    def test_interim_response_is_skipped(self) -> None:
        client = started_client()
        data = http_response("100 Continue", []) + http_response("101 Go", switching(client.key))
        response = client.receive_data(data)
        assert response is not None and response.status == 101

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"Upgrade": None}, "missing Upgrade header"),
            ({"Upgrade": "h2c"}, "Upgrade header must be websocket, got 'h2c'"),
            ({"Upgrade": "websocket, h2c"}, "Upgrade header must be websocket"),
            ({"Connection": None}, "missing Connection header"),
            ({"Connection": "close"}, "Connection header must include upgrade, got 'close'"),
            ({"Sec_WebSocket_Accept": None}, "missing Sec-WebSocket-Accept header"),
            (
                {"Sec_WebSocket_Accept": RFC_ACCEPT},
                f"Sec-WebSocket-Accept does not match the key: {RFC_ACCEPT!r}",
            ),
        ],
    )
    def test_invalid_101(self, change: dict[str, str | None], message: str) -> None:
        client = started_client()
        data = http_response("101 Switching Protocols", changed(switching(client.key), **change))
        with pytest.raises(InvalidResponse) as info:
            client.receive_data(data)
        assert str(info.value).startswith(message)
        assert client.response is None

    def test_two_accept_headers(self) -> None:
        client = started_client()
        headers = [*switching(client.key), ("Sec-WebSocket-Accept", accept_key(client.key))]
        with pytest.raises(InvalidResponse, match=r"^more than one Sec-WebSocket-Accept header$"):
            client.receive_data(http_response("101 Switching Protocols", headers))

    @pytest.mark.parametrize(
        ("offered", "headers", "message"),
        [
            ([], [("Sec-WebSocket-Protocol", "chat")], "server chose subprotocol 'chat', which"),
            (["a"], [("Sec-WebSocket-Protocol", "b")], "server chose subprotocol 'b', which"),
            (["a", "b"], [("Sec-WebSocket-Protocol", "a, b")], "more than one subprotocol"),
            (
                ["a", "b"],
                [("Sec-WebSocket-Protocol", "a"), ("Sec-WebSocket-Protocol", "b")],
                "more than one subprotocol",
            ),
            (["a"], [("Sec-WebSocket-Protocol", "a/1")], "invalid Sec-WebSocket-Protocol"),
        ],
    )
    def test_subprotocol_errors(
        self, offered: list[str], headers: list[tuple[str, str]], message: str
    ) -> None:
        client = started_client(subprotocols=offered)
        data = http_response("101 Switching Protocols", switching(client.key, *headers))
        with pytest.raises(NegotiationError, match=message):
            client.receive_data(data)
        assert client.subprotocol is None

    @pytest.mark.parametrize(
        ("deflate", "value", "message"),
        [
            (None, "permessage-deflate", "server accepted extension permessage-deflate, which"),
            (DeflateOptions(), "x-unknown", "server accepted extension x-unknown, which"),
            (
                DeflateOptions(),
                "permessage-deflate, permessage-deflate",
                "accepted permessage-deflate more than once",
            ),
            (
                DeflateOptions(client_max_window_bits=None),
                "permessage-deflate; client_max_window_bits=10",
                "client_max_window_bits in response but not in offer",
            ),
            (DeflateOptions(), "permessage-deflate; x=1", "unknown permessage-deflate parameter"),
            (DeflateOptions(), "permessage-deflate,,;", "invalid Sec-WebSocket-Extensions"),
        ],
    )
    def test_extension_errors(
        self, deflate: DeflateOptions | None, value: str, message: str
    ) -> None:
        client = started_client(deflate=deflate)
        data = http_response(
            "101 Switching Protocols", switching(client.key, ("Sec-WebSocket-Extensions", value))
        )
        with pytest.raises(NegotiationError, match=message):
            client.receive_data(data)
        assert client.deflate_extension is None

    def test_error_status(self) -> None:
        client = started_client()
        body = b"Failed to open a WebSocket connection: missing Sec-WebSocket-Key header.\n"
        data = http_response(
            "400 Bad Request",
            [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
            body,
        )
        # The head and part of the body: nothing yet, the rest of the body may follow.
        assert client.receive_data(data[:-10]) is None
        with pytest.raises(InvalidStatus) as info:
            client.receive_data(data[-10:])
        assert info.value.status_code == 400
        assert info.value.headers == [
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(body))),
        ]
        assert info.value.body == body
        assert str(info.value) == "server rejected WebSocket connection: HTTP 400"

    def test_error_status_without_body(self) -> None:
        client = started_client()
        data = http_response("302 Found", [("Location", "/b"), ("Content-Length", "0")])
        with pytest.raises(InvalidStatus) as info:
            client.receive_data(data)
        assert info.value.status_code == 302
        assert ("Location", "/b") in info.value.headers
        assert info.value.body == b""

    def test_error_status_with_body_until_eof(self) -> None:
        # Such a body ends with the connection, which the server may keep open: the status
        # is reported at once, with the body received so far.
        client = started_client()
        with pytest.raises(InvalidStatus) as info:
            client.receive_data(http_response("503 Busy", [], b"try later"))
        assert info.value.status_code == 503
        assert info.value.body == b"try later"

    def test_chunked_error_body(self) -> None:
        client = started_client()
        data = http_response("500 Oops", [("Transfer-Encoding", "chunked")], b"3\r\nabc\r\n")
        assert client.receive_data(data) is None
        with pytest.raises(InvalidStatus) as info:
            client.receive_data(b"2\r\nde\r\n0\r\n\r\n")
        assert info.value.body == b"abcde"

    def test_error_status_with_body_cut_short(self) -> None:
        client = started_client()
        client.receive_data(http_response("500 Oops", [("Content-Length", "100")], b"partial"))
        with pytest.raises(InvalidStatus) as info:
            client.receive_eof()
        assert info.value.body == b"partial"

    def test_error_status_body_is_bounded(self) -> None:
        client = started_client(max_body_size=16)
        headers = [("Content-Length", "100000")]
        with pytest.raises(InvalidStatus) as info:
            client.receive_data(http_response("500 Oops", headers, b"x" * 1000))
        assert info.value.body == b"x" * 16

    @pytest.mark.parametrize(
        "data",
        [
            b"nonsense\r\n\r\n",
            b"HTTP/1.1 abc Nope\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nBad Header\r\n\r\n",
        ],
    )
    def test_bad_http(self, data: bytes) -> None:
        client = started_client()
        with pytest.raises(InvalidMessage, match=r"^invalid HTTP response: "):
            client.receive_data(data)

    def test_eof_before_the_response(self) -> None:
        client = started_client()
        client.receive_data(b"HTTP/1.1 101 Switching")
        with pytest.raises(InvalidMessage, match=r"^invalid HTTP response: "):
            client.receive_eof()

    def test_head_too_large(self) -> None:
        client = started_client(max_header_size=256)
        data = http_response("101 Switching Protocols", [("X-Pad", "x" * 300)])
        with pytest.raises(SecurityError, match=r"^response head is larger than 256 bytes$"):
            for i in range(0, len(data), 50):
                client.receive_data(data[i : i + 50])
        client = started_client(max_header_size=256)
        with pytest.raises(SecurityError, match=r"^response head is too large"):
            client.receive_data(data)

    def test_too_many_headers(self) -> None:
        client = started_client(max_header_count=4)
        headers = [*switching(client.key), ("X-1", "1"), ("X-2", "2")]
        with pytest.raises(SecurityError, match=r"^too many header fields \(5\)$"):
            client.receive_data(http_response("101 Switching Protocols", headers))


class TestHeadResponseLength:
    """RFC 9110 section 8.6: the answer to HEAD announces the length of the body it omits."""

    def test_caller_content_length_kept_for_empty_body(self) -> None:
        handshake = ServerHandshake()
        assert handshake.receive_data(b"HEAD /f HTTP/1.1\r\nHost: a\r\n\r\n") is not None
        response = handshake.reject(200, b"", headers=[("Content-Length", "7")])
        data = handshake.serialize(response)
        assert b"\r\nContent-Length: 7\r\n" in data
        assert data.endswith(b"\r\n\r\n")

    def test_head_leaves_the_body_out(self) -> None:
        # A HEAD request to a WebSocket endpoint gets its 405 without a body: the same fields
        # as for GET, Content-Length included (RFC 9110 section 9.3.2).
        handshake = ServerHandshake()
        request = handshake.receive_data(http_request(method="HEAD"))
        assert request is not None
        with pytest.raises(InvalidRequest) as info:
            handshake.accept(request)
        response = handshake.reject_for(info.value)
        data = handshake.serialize(response)
        assert data.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
        assert f"\r\nContent-Length: {len(response.body)}\r\n".encode() in data
        assert data.endswith(b"\r\n\r\n")

    def test_body_length_wins_over_a_wrong_header(self) -> None:
        handshake = ServerHandshake()
        assert handshake.receive_data(b"GET /f HTTP/1.1\r\nHost: a\r\n\r\n") is not None
        response = handshake.reject(200, b"abc", headers=[("Content-Length", "7")])
        data = handshake.serialize(response)
        assert b"Content-Length: 3\r\n" in data
        assert data.endswith(b"\r\n\r\nabc")


class TestSharedStrings:
    """Request strings shared between connections: a bounded table, never the key."""

    def test_bounded_and_without_keys(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from fullduplex.protocol import handshake as module  # noqa: PLC0415

        monkeypatch.setattr(module, "_shared_strings", {})
        monkeypatch.setattr(module, "_SHARED_MAX", 50)
        for i in range(200):
            server = module.ServerHandshake()
            head = http_request(changed(VALID_HEADERS, **{"X-Unique": f"value-{i}"}))
            request = server.receive_data(head)
            assert request is not None
        assert len(module._shared_strings) == 50
        assert "Upgrade" in module._shared_strings
        key = dict(VALID_HEADERS)["Sec-WebSocket-Key"]
        assert key not in module._shared_strings

    def test_the_same_string_object_for_every_request(self) -> None:
        first = ServerHandshake().receive_data(http_request())
        second = ServerHandshake().receive_data(http_request())
        assert first is not None and second is not None
        assert first.headers.raw_items()[0][0] is second.headers.raw_items()[0][0]
