"""Autobahn group 3: reserved bits (RFC 6455 section 5.2).

RFC 6455 5.2: RSV1-3 "MUST be 0 unless an extension is negotiated that defines meanings for
non-zero values. If a nonzero value is received and none of the negotiated extensions defines
the meaning of such a nonzero value, the receiving endpoint MUST _Fail the WebSocket
Connection_." These clients offer no extension, so every RSV bit is a violation: expect
CLOSE(1002) (section 7.4.1) and, as the connection is failed (section 7.1.7), nothing else:
no echo or pong for frames sent after the bad one.
"""

from __future__ import annotations

import pytest
from _pytest.mark.structures import ParameterSet

from tests.conformance.checks import Connect, case, echo, expect_fail, expect_received
from tests.conformance.rawclient import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    RSV1,
    RSV2,
    RSV3,
    build_frame,
    close_payload,
)

__all__: list[str] = []

_FRAMES = {"text": (OP_TEXT, b"hello"), "binary": (OP_BINARY, b"\x00\x01"), "ping": (OP_PING, b"p")}


def _cases() -> list[ParameterSet]:
    params = []
    for group, kind in enumerate(_FRAMES, start=1):
        for index, bit in enumerate((RSV1, RSV2, RSV3), start=1):
            params.append(case(f"3.{group}.{index}", kind, bit))
    return params


@pytest.mark.parametrize(("kind", "rsv"), _cases())
def test_reserved_bit_fails(connect: Connect, kind: str, rsv: int) -> None:
    """RFC 6455 5.2: send one TEXT("hello") / BINARY(00 01) / PING("p") frame with one RSV bit
    set (3.x.1 RSV1, 3.x.2 RSV2, 3.x.3 RSV3), then PING("after"); expect CLOSE(1002) and
    nothing else (no echo, no pong).
    """
    client = connect()
    opcode, payload = _FRAMES[kind]
    client.send_raw(build_frame(opcode, payload, rsv=rsv) + build_frame(OP_PING, b"after"))
    expect_fail(client, 1002)


@pytest.mark.parametrize("chunk", [case("3.4", None), case("3.5", 1)])
def test_reserved_bit_after_valid_echo(connect: Connect, chunk: int | None) -> None:
    """RFC 6455 5.2, 7.1.7: send TEXT("hello") and wait for its echo; then send TEXT("hello")
    with RSV2 and PING("after") (3.5: 1 byte per send); expect CLOSE(1002) and no pong.

    We wait for the first echo on purpose: a server may fail the connection before its
    application has echoed a message that arrived in the same read (Autobahn calls that
    non-strict), which is not what these cases are about.
    """
    client = connect()
    client.send_frame(OP_TEXT, b"hello")
    expect_received(client, [echo(OP_TEXT, b"hello")])
    data = build_frame(OP_TEXT, b"hello", rsv=RSV2) + build_frame(OP_PING, b"after")
    client.send_raw(data, chunk_size=chunk, pause=0.0002 if chunk else 0.0)
    expect_fail(client, 1002)


@pytest.mark.case("3.6")
def test_reserved_bits_on_close(connect: Connect) -> None:
    """RFC 6455 5.2: send CLOSE(1000) with RSV1|RSV2|RSV3 set; expect CLOSE(1002), not 1000."""
    client = connect()
    client.send_frame(OP_CLOSE, close_payload(1000), rsv=RSV1 | RSV2 | RSV3)
    expect_fail(client, 1002)


@pytest.mark.case("3.7")
def test_all_reserved_bits_on_binary(connect: Connect) -> None:
    """RFC 6455 5.2: send BINARY(00 ff) with RSV1|RSV2|RSV3; expect CLOSE(1002)."""
    client = connect()
    client.send_frame(OP_BINARY, b"\x00\xff", rsv=RSV1 | RSV2 | RSV3)
    expect_fail(client, 1002)


@pytest.mark.case("3.8")
def test_reserved_bit_on_continuation(connect: Connect) -> None:
    """RFC 6455 5.2: send TEXT(fin=0, "frag1"), CONT(fin=1, "frag2") with RSV3; expect
    CLOSE(1002) and no echo of the message.
    """
    client = connect()
    client.send_raw(
        build_frame(OP_TEXT, b"frag1", fin=False) + build_frame(OP_CONT, b"frag2", rsv=RSV3)
    )
    expect_fail(client, 1002)
