"""Autobahn group 5: fragmentation (RFC 6455 section 5.4).

A message is one TEXT/BINARY frame with FIN=0 followed by CONTINUATION frames, the last with
FIN=1. Control frames may be injected between fragments but are never fragmented themselves;
fragments of different messages must not interleave. The echo server must reassemble and send
back the whole message; every violation must fail the connection with CLOSE(1002).
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
    OP_PONG,
    OP_TEXT,
    build_frame,
    close_payload,
)

__all__: list[str] = []


def _pace(chunk: int | None) -> float:
    return 0.0002 if chunk else 0.0


@pytest.mark.parametrize("opcode", [case("5.1", OP_PING), case("5.2", OP_PONG)])
def test_fragmented_control_frame(connect: Connect, opcode: int) -> None:
    """RFC 6455 5.5: "Control frames ... MUST NOT be fragmented." Send PING|PONG(fin=0,
    "fragment1") then CONT(fin=1, "fragment2"); expect CLOSE(1002), no pong.
    """
    client = connect()
    client.send_raw(
        build_frame(opcode, b"fragment1", fin=False) + build_frame(OP_CONT, b"fragment2")
    )
    expect_fail(client, 1002)


@pytest.mark.case("5.3")
def test_fragmented_close(connect: Connect) -> None:
    """RFC 6455 5.5: send CLOSE(fin=0, code 1000) then CONT(fin=1, "x"); expect CLOSE(1002)."""
    client = connect()
    client.send_raw(
        build_frame(OP_CLOSE, close_payload(1000), fin=False) + build_frame(OP_CONT, b"x")
    )
    expect_fail(client, 1002)


@pytest.mark.parametrize(
    ("opcode", "chunk"),
    [
        case("5.4", OP_TEXT, None),
        case("5.5", OP_TEXT, 1),
        case("5.6", OP_BINARY, None),
        case("5.7", OP_BINARY, 1),
    ],
)
def test_two_fragments_echoed_whole(connect: Connect, opcode: int, chunk: int | None) -> None:
    """RFC 6455 5.4: send TEXT|BINARY(fin=0, "fragment1"), CONT(fin=1, "fragment2") (5.5/5.7:
    1 byte per send); expect one message "fragment1fragment2" of the same type.
    """
    client = connect()
    data = build_frame(opcode, b"fragment1", fin=False) + build_frame(OP_CONT, b"fragment2")
    client.send_raw(data, chunk_size=chunk, pause=_pace(chunk))
    expect_received(client, [echo(opcode, b"fragment1fragment2")])


@pytest.mark.parametrize("chunk", [case("5.8", None), case("5.9", 1)])
def test_ping_between_fragments(connect: Connect, chunk: int | None) -> None:
    """RFC 6455 5.4/5.5.2: send TEXT(fin=0, "fragment1"), PING("pongme!"), CONT(fin=1,
    "fragment2") (5.9: 1 byte per send); expect PONG("pongme!") then TEXT
    "fragment1fragment2".
    """
    client = connect()
    data = (
        build_frame(OP_TEXT, b"fragment1", fin=False)
        + build_frame(OP_PING, b"pongme!")
        + build_frame(OP_CONT, b"fragment2")
    )
    client.send_raw(data, chunk_size=chunk, pause=_pace(chunk))
    expect_received(client, [pong(b"pongme!"), echo(OP_TEXT, b"fragment1fragment2")])


@pytest.mark.case("5.10")
def test_pong_between_fragments(connect: Connect) -> None:
    """RFC 6455 5.4/5.5.3: send TEXT(fin=0, "fragment1"), unsolicited PONG("x"), CONT(fin=1,
    "fragment2"); expect only TEXT "fragment1fragment2".
    """
    client = connect()
    client.send_raw(
        build_frame(OP_TEXT, b"fragment1", fin=False)
        + build_frame(OP_PONG, b"x")
        + build_frame(OP_CONT, b"fragment2")
    )
    expect_received(client, [echo(OP_TEXT, b"fragment1fragment2")])
    client.send_close(1000)
    expect_close(client, 1000, reply=False)


@pytest.mark.parametrize(
    ("fin", "chunk"), [case("5.11", True, None), case("5.12", True, 1), case("5.13", False, None)]
)
def test_continuation_without_message(connect: Connect, fin: bool, chunk: int | None) -> None:
    """RFC 6455 5.4: a CONTINUATION frame only continues an open message. Send CONT(fin=1|0,
    "non-continuation payload") with no message open, then TEXT("Hello, world!") (5.12: 1 byte
    per send); expect CLOSE(1002) and no echo.
    """
    client = connect()
    data = build_frame(OP_CONT, b"non-continuation payload", fin=fin) + build_frame(
        OP_TEXT, b"Hello, world!"
    )
    client.send_raw(data, chunk_size=chunk, pause=_pace(chunk))
    expect_fail(client, 1002)


@pytest.mark.case("5.14")
def test_continuation_after_finished_message(connect: Connect) -> None:
    """RFC 6455 5.4: send TEXT(fin=1, "whole") and wait for its echo; then CONT(fin=1,
    "stray"): the message it would continue is finished; expect CLOSE(1002).
    """
    client = connect()
    client.send_frame(OP_TEXT, b"whole")
    expect_received(client, [echo(OP_TEXT, b"whole")])
    client.send_frame(OP_CONT, b"stray")
    expect_fail(client, 1002)


@pytest.mark.parametrize(
    ("first", "second", "second_fin"),
    [
        case("5.15", OP_TEXT, OP_TEXT, True),
        case("5.16", OP_TEXT, OP_BINARY, False),
        case("5.17", OP_BINARY, OP_TEXT, True),
    ],
)
def test_new_message_inside_fragmented_message(
    connect: Connect, first: int, second: int, second_fin: bool
) -> None:
    """RFC 6455 5.4: fragments of one message "MUST NOT be interleaved" with another's. Send
    TEXT|BINARY(fin=0, "fragment1"), then a new TEXT|BINARY frame "fragment2" instead of a
    continuation, then CONT(fin=1, "fragment3"); expect CLOSE(1002) and no echo.
    """
    client = connect()
    client.send_raw(
        build_frame(first, b"fragment1", fin=False)
        + build_frame(second, b"fragment2", fin=second_fin)
        + build_frame(OP_CONT, b"fragment3")
    )
    expect_fail(client, 1002)


@pytest.mark.parametrize("opcode", [case("5.18", OP_TEXT), case("5.19", OP_BINARY)])
def test_hundred_one_byte_fragments(connect: Connect, opcode: int) -> None:
    """RFC 6455 5.4: send a message as 100 frames of 1 payload byte each (first TEXT|BINARY
    fin=0, then 98 CONT fin=0, then CONT fin=1), one frame per send; expect the whole
    100-byte message once.
    """
    client = connect()
    payload = bytes(0x41 + i % 26 for i in range(100))
    for index in range(100):
        client.send_frame(
            opcode if index == 0 else OP_CONT, payload[index : index + 1], fin=index == 99
        )
    expect_received(client, [echo(opcode, payload)])


@pytest.mark.case("5.20")
def test_fragments_with_pings_answered_while_open(connect: Connect) -> None:
    """RFC 6455 5.4/5.5.2 (Autobahn 5.19): TEXT(fin=0,"fragment1"), CONT(fin=0,"fragment2"),
    PING("pongme 1!") -> expect PONG("pongme 1!") while the message is open; CONT(fin=0,
    "fragment3"), CONT(fin=0,"fragment4"), PING("pongme 2!") -> PONG("pongme 2!");
    CONT(fin=1,"fragment5") -> TEXT "fragment1fragment2fragment3fragment4fragment5".
    """
    client = connect()
    client.send_raw(
        build_frame(OP_TEXT, b"fragment1", fin=False)
        + build_frame(OP_CONT, b"fragment2", fin=False)
        + build_frame(OP_PING, b"pongme 1!")
    )
    expect_received(client, [pong(b"pongme 1!")])
    client.send_raw(
        build_frame(OP_CONT, b"fragment3", fin=False)
        + build_frame(OP_CONT, b"fragment4", fin=False)
        + build_frame(OP_PING, b"pongme 2!")
    )
    expect_received(client, [pong(b"pongme 2!")])
    client.send_frame(OP_CONT, b"fragment5")
    expect_received(client, [echo(OP_TEXT, b"fragment1fragment2fragment3fragment4fragment5")])


@pytest.mark.case("5.21")
def test_large_message_in_sixteen_fragments(connect: Connect) -> None:
    """RFC 6455 5.4: send a 1 MiB BINARY message as 16 frames of 64 KiB (64-bit length form
    of 65536); expect one 1 MiB BINARY echo.
    """
    client = connect()
    payload = bytes(range(256)) * 4096
    piece = 65536
    client.send_raw(
        b"".join(
            build_frame(
                OP_BINARY if i == 0 else OP_CONT,
                payload[i : i + piece],
                fin=i + piece >= len(payload),
            )
            for i in range(0, len(payload), piece)
        )
    )
    expect_received(client, [echo(OP_BINARY, payload)])
