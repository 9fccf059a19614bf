"""Autobahn group 9 (limits): the message size limit, plain, fragmented and compressed.

The server under test runs with ``--max-message-size 65536``. RFC 6455 7.4.1: 1009 "indicates
that an endpoint is terminating the connection because it has received a message that is too
big for it to process"; RFC 6455 10.4 asks implementations to limit frame and message size
and RFC 7692 8.1 warns that a small compressed message can inflate to a huge one, so the limit
must apply to the decompressed size. The design adds: the limit is enforced as data arrives
(a 65537-byte frame header alone is enough), so memory stays bounded.
"""

from __future__ import annotations

import contextlib
import zlib

import pytest

from tests.conformance.checks import Connect, case, echo, expect_fail, expect_received, pong
from tests.conformance.rawclient import (
    OP_BINARY,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    RSV1,
    build_frame,
)
from tests.helpers import seconds

__all__: list[str] = []

LIMIT = 65536


def text_of(length: int) -> bytes:
    """Valid UTF-8 text of exactly ``length`` bytes."""
    return (b"0123456789abcdef" * (length // 16 + 1))[:length]


@pytest.mark.parametrize("opcode", [case("9.1.1", OP_TEXT), case("9.1.2", OP_BINARY)])
def test_message_at_limit_echoed(connect: Connect, limited_url: str, opcode: int) -> None:
    """Send one TEXT|BINARY frame of exactly 65536 bytes; the limit is inclusive: expect it
    echoed.
    """
    client = connect(limited_url)
    client.send_frame(opcode, text_of(LIMIT))
    expect_received(client, [echo(opcode, text_of(LIMIT))])


@pytest.mark.parametrize("opcode", [case("9.1.3", OP_TEXT), case("9.1.4", OP_BINARY)])
def test_message_over_limit(connect: Connect, limited_url: str, opcode: int) -> None:
    """RFC 6455 7.4.1: send one TEXT|BINARY frame of 65537 bytes; expect CLOSE(1009), no echo."""
    client = connect(limited_url)
    client.send_frame(opcode, text_of(LIMIT + 1))
    expect_fail(client, 1009)


@pytest.mark.case("9.1.5")
def test_frame_header_over_limit(connect: Connect, limited_url: str) -> None:
    """Bounded buffering: send only the header (and mask) of a BINARY frame announcing 65537
    payload bytes; expect CLOSE(1009) while the payload is still held back.
    """
    client = connect(limited_url)
    frame = build_frame(OP_BINARY, bytes(LIMIT + 1))
    client.send_raw(frame[:14])  # 2 + 8 (64-bit length) + 4 (mask)
    expect_fail(client, 1009, timeout=seconds(3))


@pytest.mark.case("9.1.6")
def test_fragmented_message_at_limit_echoed(connect: Connect, limited_url: str) -> None:
    """RFC 6455 5.4: send 16 fragments of 4096 bytes (TEXT fin=0, 14 CONT fin=0, CONT fin=1),
    65536 bytes in all; expect one TEXT echo of 65536 bytes.
    """
    client = connect(limited_url)
    payload = text_of(LIMIT)
    client.send_raw(
        b"".join(
            build_frame(
                OP_TEXT if i == 0 else OP_CONT, payload[i : i + 4096], fin=i == LIMIT - 4096
            )
            for i in range(0, LIMIT, 4096)
        )
    )
    expect_received(client, [echo(OP_TEXT, payload)])


@pytest.mark.case("9.1.7")
def test_fragmented_message_over_limit(connect: Connect, limited_url: str) -> None:
    """RFC 6455 7.4.1 for a fragmented message: send 16 fragments of 4096 bytes (fin=0) and
    PING("full"); expect PONG("full") (65536 bytes is still allowed); then CONT(fin=0, 1 byte);
    expect CLOSE(1009) while the final fragment is held back.
    """
    client = connect(limited_url)
    payload = text_of(LIMIT)
    client.send_raw(
        b"".join(
            build_frame(OP_BINARY if i == 0 else OP_CONT, payload[i : i + 4096], fin=False)
            for i in range(0, LIMIT, 4096)
        )
        + build_frame(OP_PING, b"full")
    )
    expect_received(client, [pong(b"full")])
    client.send_frame(OP_CONT, b"x", fin=False)
    expect_fail(client, 1009, timeout=seconds(3))


def _compressed(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


@pytest.mark.parametrize(
    ("size", "fragments"),
    [
        case("9.2.1", LIMIT + 1, 1),
        case("9.2.2", 1 << 20, 1),
        case("9.2.3", 16 << 20, 1),
        case("9.2.4", 16 << 20, 8),
    ],
)
def test_compressed_message_over_limit(
    connect: Connect, limited_url: str, size: int, fragments: int
) -> None:
    """RFC 7692 8.1 (compression bomb), RFC 6455 7.4.1: with permessage-deflate negotiated,
    send a BINARY message (RSV1 on its first frame) of ``size`` zero bytes after
    decompression, in ``fragments`` frames; 16 MiB of zeros deflate to ~16 KiB, far below the
    limit on the wire. Expect CLOSE(1009) and no echo.
    """
    client = connect(limited_url, extensions="permessage-deflate; client_no_context_takeover")
    assert client.deflate_params is not None, "the server declined permessage-deflate"
    payload = _compressed(bytes(size))
    piece = -(-len(payload) // fragments)
    frames = [
        build_frame(
            OP_BINARY if i == 0 else OP_CONT,
            payload[i : i + piece],
            fin=i + piece >= len(payload),
            rsv=RSV1 if i == 0 else 0,
        )
        for i in range(0, len(payload), piece)
    ]
    # The server may fail the connection before it has read everything.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        client.send_raw(b"".join(frames))
    expect_fail(client, 1009)


@pytest.mark.case("9.2.5")
def test_compressed_message_at_limit_echoed(connect: Connect, limited_url: str) -> None:
    """RFC 7692: a compressed BINARY message that inflates to exactly 65536 bytes is within
    the limit: expect it echoed (compressed or not).
    """
    client = connect(limited_url, extensions="permessage-deflate; client_no_context_takeover")
    assert client.deflate_params is not None, "the server declined permessage-deflate"
    client.send_raw(build_frame(OP_BINARY, client.compress(bytes(LIMIT)), rsv=RSV1))
    expect_received(client, [echo(OP_BINARY, bytes(LIMIT))])
