"""The opening handshake over raw HTTP (RFC 6455 section 4.1, 4.2, 4.4).

Requests are written byte for byte; responses are parsed by the suite's own reader. A bad
request gets an HTTP error (RFC 6455 4.2.1: "an appropriate error code (such as 400 Bad
Request)"), and the design asks for a one-line reason in the body. The server keeps serving
after every refusal.
"""

from __future__ import annotations

import pytest

from tests.conformance.checks import assert_server_serves, case, echo, expect_received
from tests.conformance.rawclient import (
    OP_TEXT,
    HttpResponse,
    PeerClosed,
    RawClient,
    accept_key,
    build_frame,
    http_exchange,
    upgrade_request,
)

__all__: list[str] = []

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def _host(url: str) -> str:
    return url.removeprefix("ws://").split("/", 1)[0]


def _assert_reason_body(response: HttpResponse) -> None:
    """The body says what was wrong, in one non-empty line (the design's rule)."""
    text = response.body.decode("utf-8", "replace").strip()
    assert text, f"{response.status} without a reason in the body"
    assert "\n" not in text, f"reason is not one line: {text!r}"


def test_rfc_sample_accept_key() -> None:
    """RFC 6455 1.3: the sample key dGhlIHNhbXBsZSBub25jZQ== gives s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
    (checks the suite's own oracle).
    """
    assert accept_key(RFC_KEY) == RFC_ACCEPT


@pytest.mark.case("H.1")
def test_valid_upgrade(server_url: str) -> None:
    """RFC 6455 4.2.2: GET with Host, Upgrade: websocket, Connection: Upgrade, the RFC sample
    Sec-WebSocket-Key and Sec-WebSocket-Version: 13; expect "HTTP/1.1 101", Upgrade: websocket,
    Connection: Upgrade, Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=, and no
    Sec-WebSocket-Extensions or Sec-WebSocket-Protocol (none offered).
    """
    request, _ = upgrade_request(_host(server_url), key=RFC_KEY)
    response = http_exchange(server_url, request)
    assert response.status == 101
    assert (response.get("upgrade") or "").lower() == "websocket"
    assert "upgrade" in [t.strip().lower() for t in (response.get("connection") or "").split(",")]
    assert response.get_all("sec-websocket-accept") == [RFC_ACCEPT]
    assert response.get("sec-websocket-extensions") is None
    assert response.get("sec-websocket-protocol") is None


@pytest.mark.case("H.2")
def test_header_names_and_tokens_case_insensitive(server_url: str) -> None:
    """RFC 6455 4.2.1 and RFC 7230 3.2/6.1: header names and the Upgrade/Connection tokens are
    case-insensitive, and Connection may list other tokens. Send "upgrade: WebSocket",
    "CONNECTION: keep-alive, upgrade", "sec-websocket-key", "SEC-WEBSOCKET-VERSION"; expect
    101 with the right accept key.
    """
    lines = [
        "GET /any/path?x=1 HTTP/1.1",
        f"host: {_host(server_url)}",
        "upgrade: WebSocket",
        "CONNECTION: keep-alive, upgrade",
        f"sec-websocket-key: {RFC_KEY}",
        "SEC-WEBSOCKET-VERSION: 13",
    ]
    response = http_exchange(server_url, ("\r\n".join(lines) + "\r\n\r\n").encode())
    assert response.status == 101
    assert response.get_all("sec-websocket-accept") == [RFC_ACCEPT]


@pytest.mark.parametrize(
    ("omit", "headers", "statuses"),
    [
        case("H.3", ["Sec-WebSocket-Key"], [], {400}),
        case("H.4", ["Sec-WebSocket-Key"], [("Sec-WebSocket-Key", "abc")], {400}),
        case(
            "H.5",
            ["Sec-WebSocket-Key"],
            [("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAAAAAAAA")],
            {400},
        ),
        case("H.6", ["Sec-WebSocket-Version"], [], {400, 426}),
        case("H.7", ["Upgrade"], [], {400, 426}),
        case("H.8", ["Connection"], [("Connection", "keep-alive")], {400, 426}),
        case("H.9", ["Upgrade"], [("Upgrade", "h2c")], {400, 426}),
        case("H.10", ["Host"], [], {400}),
    ],
)
def test_invalid_request_refused(
    server_url: str, omit: list[str], headers: list[tuple[str, str]], statuses: set[int]
) -> None:
    """RFC 6455 4.2.1 (what the request must contain) and 4.2.2 ("If the server ... finds
    that the client did not send a handshake that matches the description below ... the server
    MUST stop processing the client's handshake and return an HTTP response with an
    appropriate error code (such as 400 Bad Request)"): H.3 no Sec-WebSocket-Key; H.4 a key
    that is not base64; H.5 a key decoding to 21 bytes, not 16; H.6 no Sec-WebSocket-Version;
    H.7 no Upgrade header; H.8 Connection without the "Upgrade" token; H.9 "Upgrade: h2c";
    H.10 no Host (item 2; also RFC 7230 5.4). Expect the listed status with a one-line reason
    in the body, and the server still serving.
    """
    request, _ = upgrade_request(_host(server_url), omit=omit, headers=headers)
    response = http_exchange(server_url, request)
    assert response.status in statuses, f"{response.status} {response.reason}: {response.body!r}"
    _assert_reason_body(response)
    assert_server_serves(server_url)


@pytest.mark.case("H.11")
def test_unsupported_version(server_url: str) -> None:
    """RFC 6455 4.2.2 item 4 / 4.4: with Sec-WebSocket-Version: 8 the server "MUST abort the
    WebSocket handshake ... and instead send an appropriate HTTP error code (such as 426
    Upgrade Required) and a |Sec-WebSocket-Version| header field indicating the version(s)
    the server is capable of understanding". Expect 426 with Sec-WebSocket-Version: 13 and a
    one-line reason.
    """
    request, _ = upgrade_request(_host(server_url), version="8")
    response = http_exchange(server_url, request)
    assert response.status == 426, f"{response.status} {response.reason}: {response.body!r}"
    versions = [v.strip() for v in (response.get("sec-websocket-version") or "").split(",")]
    assert "13" in versions, response.headers
    _assert_reason_body(response)


@pytest.mark.parametrize("method", [case("H.12", "POST"), case("H.13", "PUT")])
def test_non_get_method_refused(server_url: str, method: str) -> None:
    """RFC 6455 4.2.1 item 1: the handshake is "An HTTP/1.1 or higher GET request". Send the
    otherwise valid upgrade request with ``method`` (and Content-Length: 0); expect a 4xx.
    """
    request, _ = upgrade_request(
        _host(server_url), method=method, headers=[("Content-Length", "0")]
    )
    response = http_exchange(server_url, request)
    assert 400 <= response.status < 500, f"{response.status} {response.reason}"
    assert_server_serves(server_url)


@pytest.mark.case("H.14")
def test_http_10_refused(server_url: str) -> None:
    """RFC 6455 4.2.1 item 1: "An HTTP/1.1 or higher GET request". Send the upgrade request
    as HTTP/1.0; expect an error status (4xx, or 505 HTTP Version Not Supported).
    """
    request, _ = upgrade_request(_host(server_url))
    request = request.replace(b"HTTP/1.1\r\n", b"HTTP/1.0\r\n", 1)
    response = http_exchange(server_url, request)
    assert 400 <= response.status < 500 or response.status == 505, response.status
    assert_server_serves(server_url)


def _huge_request(url: str, kind: str) -> bytes:
    if kind == "one-header":
        headers = [("X-Huge", "a" * (100 * 1024))]
    else:
        headers = [(f"X-Filler-{i}", "b" * 500) for i in range(200)]
    return upgrade_request(_host(url), headers=headers)[0]


@pytest.mark.parametrize("kind", [case("H.15", "one-header"), case("H.16", "many-headers")])
def test_huge_header_block(server_url: str, kind: str) -> None:
    """RFC 6455 10 / RFC 6585 5 (431 Request Header Fields Too Large) and the design's bounded
    header size: send an upgrade request whose header block is ~100 KiB (H.15: one 100 KiB
    header; H.16: 200 headers of 500 bytes); expect a 4xx (431 or 400) and then the server
    still serving. The server may reset the connection after answering when it leaves the
    rest unread; the response must still have been sent.
    """
    try:
        response = http_exchange(server_url, _huge_request(server_url, kind))
    except PeerClosed as exc:
        raise AssertionError(f"no HTTP response to an oversized header block: {exc}") from exc
    assert response.status in (400, 431), f"{response.status} {response.reason}"
    assert_server_serves(server_url)


@pytest.mark.case("H.17")
def test_subprotocol_not_selected(server_url: str) -> None:
    """RFC 6455 4.2.2 item 5.4 / 4.1: the echo server supports no subprotocol, so a request
    offering "chat, superchat" gets 101 without Sec-WebSocket-Protocol (a client MUST fail a
    connection whose response names a subprotocol it did not offer).
    """
    request, key = upgrade_request(
        _host(server_url), headers=[("Sec-WebSocket-Protocol", "chat, superchat")]
    )
    response = http_exchange(server_url, request)
    assert response.status == 101
    assert response.get_all("sec-websocket-accept") == [accept_key(key)]
    assert response.get("sec-websocket-protocol") is None


@pytest.mark.case("H.18")
def test_frames_in_same_write_as_request(server_url: str) -> None:
    """RFC 6455 4.1/5: a client may send frames right after its request, before reading the
    response. Send the request and TEXT("early") in one write; expect 101 and then the echo.
    """
    client = RawClient.connect(server_url, first_data=build_frame(OP_TEXT, b"early"))
    with client:
        expect_received(client, [echo(OP_TEXT, b"early")])


@pytest.mark.case("H.19")
def test_request_one_byte_at_a_time(server_url: str) -> None:
    """RFC 6455 4.1/4.2: the request head may arrive in any number of reads. Write the
    upgrade request 1 byte per send; expect 101 and a working echo.
    """
    with RawClient.connect(server_url, chunk_size=1) as client:
        client.send_frame(OP_TEXT, b"slowly")
        expect_received(client, [echo(OP_TEXT, b"slowly")])
