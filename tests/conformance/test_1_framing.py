"""Autobahn group 1: framing of text and binary messages (RFC 6455 section 5.2, 5.6).

Each case sends one unfragmented, masked data frame whose payload length exercises one of the
three length encodings (7-bit, 16-bit ``126``, 64-bit ``127``) and its boundaries, and expects
the echo server to send back one message with the same type and payload.
"""

from __future__ import annotations

import pytest
from _pytest.mark.structures import ParameterSet

from tests.conformance.checks import Connect, case, echo, expect_fail, expect_received
from tests.conformance.rawclient import OP_BINARY, OP_TEXT, build_frame
from tests.helpers import seconds

__all__: list[str] = []

MIB = 1 << 20
LENGTHS = [0, 125, 126, 127, 128, 65535, 65536, MIB, 16 * MIB]
# Small frames go out one byte per send, so the server's parser must resume mid-header.
BYTEWISE_MAX = 128


def payload_of(opcode: int, length: int) -> bytes:
    """A deterministic payload: printable ASCII for text (valid UTF-8), all bytes for binary."""
    unit = b"*fullduplex conformance text* " if opcode == OP_TEXT else bytes(range(256))
    return (unit * (length // len(unit) + 1))[:length]


def _cases() -> list[ParameterSet]:
    params = []
    for group, opcode in ((1, OP_TEXT), (2, OP_BINARY)):
        for index, length in enumerate(LENGTHS, start=1):
            params.append(case(f"1.{group}.{index}", opcode, length, None))
        params.append(case(f"1.{group}.{len(LENGTHS) + 1}", opcode, 65536, 997))
    return params


@pytest.mark.parametrize(("opcode", "length", "chunk"), _cases())
def test_echo_frame_length(connect: Connect, opcode: int, length: int, chunk: int | None) -> None:
    """RFC 6455 5.2 (payload length encodings) and 5.6: send one masked frame
    FIN=1 opcode=TEXT|BINARY with ``length`` payload bytes; expect one unmasked message with the
    same opcode and payload. Frames <= 128 bytes are written 1 byte per send; the ``chunk``
    variant (Autobahn 1.x.8) writes 997 bytes per send.
    """
    client = connect()
    payload = payload_of(opcode, length)
    if length <= BYTEWISE_MAX:
        client.send_frame(opcode, payload, chunk_size=1, pause=0.0002)
    else:
        client.send_frame(opcode, payload, chunk_size=chunk)
    # 16 MiB crosses the loopback twice and is unmasked/copied by both sides.
    timeout = seconds(5) + seconds(length / MIB)
    expect_received(client, [echo(opcode, payload)], timeout=timeout)


@pytest.mark.case("1.3.1")
def test_many_frames_in_one_write(connect: Connect) -> None:
    """RFC 6455 5.2, 5.6: ten TEXT frames written in one send() get ten echoes, in order."""
    client = connect()
    messages = [f"message {i}".encode() for i in range(10)]
    client.send_raw(b"".join(build_frame(OP_TEXT, m) for m in messages))
    expect_received(client, [echo(OP_TEXT, m) for m in messages])


@pytest.mark.case("1.3.2")
def test_unmasked_client_frame(connect: Connect) -> None:
    """RFC 6455 5.1: "a server MUST close the connection upon receiving a frame that is not
    masked" and MAY send close 1002. Send TEXT "hello" without a mask; expect close 1002 (we
    hold the server to the close frame, as the design says every breach gets its code).
    """
    client = connect()
    client.send_frame(OP_TEXT, b"hello", masked=False)
    expect_fail(client, 1002)
