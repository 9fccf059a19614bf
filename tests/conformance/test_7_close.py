"""Autobahn group 7: the closing handshake (RFC 6455 sections 5.5.1, 7.1, 7.4).

RFC 6455 5.5.1: an endpoint that receives a Close frame and has not sent one "MUST send a Close
frame in response" ("typically echos the status code it received"), and after sending a Close
frame "MUST NOT send any more data frames". Section 7.1.1: the server closes the TCP connection
first. Section 7.4: only some codes may appear on the wire; a close payload is empty or a
2-byte code plus a UTF-8 reason, and (5.5) at most 125 bytes in all.
"""

from __future__ import annotations

import pytest

from tests.conformance.checks import (
    Connect,
    case,
    echo,
    expect_close,
    expect_fail,
    expect_received,
    pong,
)
from tests.conformance.rawclient import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    build_frame,
    close_payload,
)

__all__: list[str] = []

VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]
VALID_CODES += [3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.mark.case("7.1.1")
def test_echo_then_close(connect: Connect) -> None:
    """RFC 6455 5.5.1, 7.1.1: send TEXT("Hello World!") and wait for the echo; then
    CLOSE(1000); expect CLOSE(1000), then the server closes TCP.
    """
    client = connect()
    client.send_frame(OP_TEXT, b"Hello World!")
    expect_received(client, [echo(OP_TEXT, b"Hello World!")])
    client.send_close(1000)
    expect_close(client, 1000, reply=False)


@pytest.mark.case("7.1.8")
def test_message_and_close_in_one_write(connect: Connect) -> None:
    """RFC 6455 5.5.1: send TEXT("Hello World!") and CLOSE(1000) in one write; expect
    CLOSE(1000), preceded by the echo or not (the server may answer the close before its
    application echoes; Autobahn calls the missing echo non-strict), then TCP closed.
    """
    client = connect()
    client.send_raw(
        build_frame(OP_TEXT, b"Hello World!") + build_frame(OP_CLOSE, close_payload(1000))
    )
    expect_close(client, 1000, before=[echo(OP_TEXT, b"Hello World!")], or_before=[[]], reply=False)


@pytest.mark.parametrize(
    ("after", "label"),
    [
        case("7.1.2", build_frame(OP_CLOSE, close_payload(1000)), "a second close"),
        case("7.1.3", build_frame(OP_PING, b"after close"), "a ping"),
        case("7.1.4", build_frame(OP_TEXT, b"after close"), "a text message"),
        case("7.1.5", build_frame(OP_BINARY, b"\x00" * 200), "a binary message"),
    ],
)
def test_data_after_close_ignored(connect: Connect, after: bytes, label: str) -> None:
    """RFC 6455 1.4/5.5.1: after the peer's Close "the endpoint ... discards any further data".
    Send CLOSE(1000) then, in the same write, ``label``; expect only CLOSE(1000) (no pong, no
    echo, no second close) and then TCP closed by the server.
    """
    client = connect()
    client.send_raw(build_frame(OP_CLOSE, close_payload(1000)) + after)
    expect_close(client, 1000, reply=False)


@pytest.mark.case("7.1.6")
def test_close_inside_fragmented_message(connect: Connect) -> None:
    """RFC 6455 5.4/5.5.1: send TEXT(fin=0, "fragment1"), CLOSE(1000), CONT(fin=1,
    "fragment2"); the close ends the connection, so expect only CLOSE(1000) and no echo.
    """
    client = connect()
    client.send_raw(
        build_frame(OP_TEXT, b"fragment1", fin=False)
        + build_frame(OP_CLOSE, close_payload(1000))
        + build_frame(OP_CONT, b"fragment2")
    )
    expect_close(client, 1000, reply=False)


@pytest.mark.case("7.1.7")
def test_ping_answered_before_close(connect: Connect) -> None:
    """RFC 6455 5.5.2/5.5.1: send PING("before close"), CLOSE(1000); expect PONG("before
    close") then CLOSE(1000), then TCP closed by the server.
    """
    client = connect()
    client.send_raw(
        build_frame(OP_PING, b"before close") + build_frame(OP_CLOSE, close_payload(1000))
    )
    expect_close(client, 1000, before=[pong(b"before close")], reply=False)


@pytest.mark.case("7.3.1")
def test_close_without_payload(connect: Connect) -> None:
    """RFC 6455 5.5.1/7.4.1: send CLOSE with an empty payload (no status code, i.e. 1005
    locally); expect CLOSE with an empty payload or with 1000 (1005 must not be sent), then the
    server closes TCP.
    """
    client = connect()
    client.send_close(None)
    expect_close(client, {None, 1000}, reply=False)


@pytest.mark.case("7.3.2")
def test_close_with_one_byte_payload(connect: Connect) -> None:
    """RFC 6455 5.5.1: the close body, if any, starts with a 2-byte code. Send CLOSE with the
    single byte 0x03; expect CLOSE(1002).
    """
    client = connect()
    client.send_frame(OP_CLOSE, b"\x03")
    expect_fail(client, 1002)


@pytest.mark.parametrize(
    "reason",
    [
        case("7.3.3", b""),
        case("7.3.4", b"Hello World!"),
        case("7.3.5", b"*" * 123),
        case("7.3.6", "Ünïcödé reason €𝄞".encode()),
    ],
)
def test_close_1000_with_reason(connect: Connect, reason: bytes) -> None:
    """RFC 6455 5.5.1, 5.5: send CLOSE(1000, reason) with a reason of 0, 12, 123 (the maximum:
    2 + 123 = 125 bytes) or multi-byte UTF-8 bytes; expect CLOSE(1000) echoing the reason
    (the RFC only says the code is typically echoed; fullduplex echoes code and reason), then
    the server closes TCP.
    """
    client = connect()
    client.send_close(1000, reason)
    expect_close(client, 1000, reason=reason, reply=False)


@pytest.mark.case("7.3.7")
def test_close_payload_too_long(connect: Connect) -> None:
    """RFC 6455 5.5: control payloads are at most 125 bytes. Send CLOSE(1000) with a 124-byte
    reason (126-byte payload); expect CLOSE(1002).
    """
    client = connect()
    client.send_frame(OP_CLOSE, close_payload(1000, b"*" * 124))
    expect_fail(client, 1002)


@pytest.mark.parametrize(
    "reason",
    [
        case("7.5.1", b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"),
        case("7.5.2", b"\xff"),
        case("7.5.3", b"trunc\xe2\x82"),
    ],
)
def test_close_reason_invalid_utf8(connect: Connect, reason: bytes) -> None:
    """RFC 6455 5.5.1 (the reason is UTF-8) and 8.1: send CLOSE(1000) whose reason is invalid
    UTF-8 (a surrogate; FF; a truncated sequence); expect CLOSE(1007).
    """
    client = connect()
    client.send_close(1000, reason)
    expect_fail(client, 1007)


@pytest.mark.parametrize("code", [case(f"7.7.{code}", code) for code in VALID_CODES])
def test_valid_close_code(connect: Connect, code: int) -> None:
    """RFC 6455 7.4.1/7.4.2 and the IANA registry (1012-1014 are registered): send
    CLOSE(code); expect CLOSE with the same code or 1000, then the server closes TCP.
    """
    client = connect()
    client.send_close(code)
    expect_close(client, {code, 1000}, reply=False)


@pytest.mark.parametrize("code", [case(f"7.9.{code}", code) for code in INVALID_CODES])
def test_invalid_close_code(connect: Connect, code: int) -> None:
    """RFC 6455 7.4.1/7.4.2: 0-999 are unused, 1004 is reserved, 1005/1006/1015 "MUST NOT be
    set as a status code in a Close control frame", 1016-2999 are unassigned protocol codes,
    5000+ do not exist. Send CLOSE(code); expect CLOSE(1002).
    """
    client = connect()
    client.send_close(code)
    expect_fail(client, 1002)


@pytest.mark.case("7.13.1")
def test_server_closes_tcp_without_our_reply(connect: Connect) -> None:
    """RFC 6455 7.1.1: "the underlying TCP connection, in most normal cases, SHOULD be closed
    first by the server". Send CLOSE(1000) and hold the socket open without reading further;
    expect CLOSE(1000) and then EOF from the server, without any action from us.
    """
    client = connect()
    client.send_close(1000, b"bye")
    expect_close(client, 1000, reply=False)
    # A fresh connection still works after that one ended cleanly.
    fresh = connect()
    fresh.send_frame(OP_TEXT, b"next")
    expect_received(fresh, [echo(OP_TEXT, b"next")])
