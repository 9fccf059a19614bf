"""Autobahn groups 12 and 13: permessage-deflate (RFC 7692).

Group 13 offers each parameter combination (RFC 7692 7.1) and checks the server's response
(the client's validation in ``rawclient._check_response``: offered server_no_context_takeover
must be accepted, server_max_window_bits no larger than offered, client_max_window_bits only if
offered, values 8..15, no unknown or duplicate parameters), then echoes compressed messages
under those parameters. The client inflates the server's messages with the negotiated
server window and, under server_no_context_takeover, a fresh context per message, so a server
that ignores either produces data zlib refuses. Group 12 covers compressed framing rules.
"""

from __future__ import annotations

import random
import zlib

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
    RSV1,
    RSV2,
    build_frame,
    close_payload,
)

__all__: list[str] = []

PMD = "permessage-deflate"
SIZES = [16, 1024, 16384, 131072]


def message_of(size: int, opcode: int) -> bytes:
    """A compressible payload with repeats at distances from 600 B to 40 KiB.

    Back-references longer than a negotiated window are exactly what a server that ignores
    server_max_window_bits would emit, and what the client's inflater then rejects.
    """
    rng = random.Random(size * 7 + opcode)
    alphabet = "abcdefghijklmnopqrstuvwxyz éüß€ 0123456789"
    block = "".join(rng.choice(alphabet) for _ in range(200))
    parts: list[str] = []
    total = 0
    distance = 600
    while total < size:
        filler = "".join(rng.choice(alphabet) for _ in range(distance))
        parts += [block, filler]
        total += len(block.encode()) + len(filler.encode())
        distance = distance * 2 if distance < 40000 else 600
    data = "".join(parts).encode()
    if opcode == OP_TEXT:
        return data[:size].decode("utf-8", "ignore").encode()
    return data[:size]


OFFERS = [
    case("13.1.1", PMD),
    case("13.1.2", f"{PMD}; client_max_window_bits"),
    *[case(f"13.1.3.{bits}", f"{PMD}; client_max_window_bits={bits}") for bits in (9, 12, 15)],
    *[case(f"13.2.{bits}", f"{PMD}; server_max_window_bits={bits}") for bits in range(9, 16)],
    case("13.3.1", f"{PMD}; server_no_context_takeover"),
    case("13.3.2", f"{PMD}; client_no_context_takeover"),
    case("13.3.3", f"{PMD}; server_no_context_takeover; client_no_context_takeover"),
    case(
        "13.3.4",
        f"{PMD}; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=9; client_max_window_bits=9",
    ),
    case("13.3.5", f"{PMD}; server_max_window_bits=10; client_max_window_bits"),
    case("13.3.6", f"{PMD}; client_max_window_bits=11; server_no_context_takeover"),
    case("13.3.7", f"{PMD}; server_max_window_bits=15; client_max_window_bits=15"),
]


@pytest.mark.parametrize("offer", OFFERS)
def test_negotiation_and_compressed_echo(connect: Connect, offer: str) -> None:
    """RFC 7692 5, 7.1, 7.2: offer ``offer``; expect a 101 accepting permessage-deflate with a
    valid response; then send TEXT and BINARY messages of 16 B, 1 KiB, 16 KiB and 128 KiB, each
    twice (the repeat invites context takeover), compressed with the negotiated client
    window/takeover (RSV1 set); expect every message echoed in order, inflated correctly.
    """
    client = connect(extensions=offer)
    assert client.deflate_params is not None, f"the server declined {offer!r}"
    for opcode in (OP_TEXT, OP_BINARY):
        for size in SIZES:
            payload = message_of(size, opcode)
            client.send_raw(
                build_frame(opcode, client.compress(payload), rsv=RSV1)
                + build_frame(opcode, client.compress(payload), rsv=RSV1)
            )
            expect_received(client, [echo(opcode, payload), echo(opcode, payload)])
    client.send_close(1000)
    expect_close(client, 1000, reply=False)


@pytest.mark.parametrize(
    "offer",
    [
        case("13.4.1", f"{PMD}; foo=1"),
        case("13.4.2", f"{PMD}; server_max_window_bits=7"),
        case("13.4.3", f"{PMD}; server_max_window_bits=16"),
        case("13.4.4", f"{PMD}; client_max_window_bits=abc"),
        case("13.4.5", f"{PMD}; server_no_context_takeover; server_no_context_takeover"),
        case("13.4.6", f"{PMD}; server_no_context_takeover=1"),
        case("13.4.7", f"{PMD}; server_max_window_bits"),
        case("13.4.8", "x-unknown-extension; foo=bar"),
    ],
)
def test_offer_declined(connect: Connect, offer: str) -> None:
    """RFC 7692 5 ("A server MUST decline an extension negotiation offer for this extension if
    ... an extension parameter not defined for use in an offer ... an invalid value ...
    multiple extension parameters with the same name"), RFC 6455 9.1: offer ``offer``; expect
    101 without Sec-WebSocket-Extensions (declining is not failing the handshake), and an
    uncompressed TEXT echo.
    """
    client = connect(extensions=offer)
    assert client.deflate_params is None
    assert client.response.get("sec-websocket-extensions") is None
    client.send_frame(OP_TEXT, b"plain")
    expect_received(client, [echo(OP_TEXT, b"plain")])


@pytest.mark.case("13.4.9")
def test_second_offer_accepted(connect: Connect) -> None:
    """RFC 7692 5/RFC 6455 9.1: offer "permessage-deflate; foo=1, permessage-deflate;
    client_no_context_takeover"; the first must be declined, so expect the response to
    accept permessage-deflate with parameters valid for the second; then a compressed echo.
    """
    client = connect(extensions=f"{PMD}; foo=1, {PMD}; client_no_context_takeover")
    assert client.deflate_params is not None
    payload = message_of(1024, OP_TEXT)
    client.send_raw(build_frame(OP_TEXT, client.compress(payload), rsv=RSV1))
    expect_received(client, [echo(OP_TEXT, payload)])


@pytest.mark.case("12.1.1")
def test_uncompressed_message_on_deflate_connection(connect: Connect) -> None:
    """RFC 7692 6: a message without RSV1 is not compressed, even with the extension in use.
    Send TEXT("not compressed") with RSV1=0; expect the same text echoed.
    """
    client = connect(extensions=PMD)
    assert client.deflate_params is not None
    client.send_frame(OP_TEXT, b"not compressed")
    expect_received(client, [echo(OP_TEXT, b"not compressed")])


@pytest.mark.case("12.1.2")
def test_compressed_empty_message(connect: Connect) -> None:
    """RFC 7692 7.2.3.6: an empty message compresses to an empty deflate block. Send TEXT with
    RSV1 and the payload of compress(b"") (00 after removing 00 00 FF FF, or empty); expect an
    empty TEXT echo.
    """
    client = connect(extensions=PMD)
    assert client.deflate_params is not None
    client.send_frame(OP_TEXT, client.compress(b""), rsv=RSV1)
    expect_received(client, [echo(OP_TEXT, b"")])


@pytest.mark.parametrize("opcode", [case("12.1.3", OP_TEXT), case("12.1.4", OP_BINARY)])
def test_compressed_fragmented_message(connect: Connect, opcode: int) -> None:
    """RFC 7692 6.1: a compressed message in 5 frames, RSV1 on the first only, with
    PING("mid") after the third; expect PONG("mid") then the 16 KiB message echoed.
    """
    client = connect(extensions=PMD)
    assert client.deflate_params is not None
    payload = message_of(16384, opcode)
    compressed = client.compress(payload)
    piece = -(-len(compressed) // 5)
    pieces = [compressed[i : i + piece] for i in range(0, len(compressed), piece)]
    frames = [
        build_frame(
            opcode if i == 0 else OP_CONT, p, fin=i == len(pieces) - 1, rsv=RSV1 if i == 0 else 0
        )
        for i, p in enumerate(pieces)
    ]
    frames.insert(3, build_frame(OP_PING, b"mid"))
    client.send_raw(b"".join(frames))
    expect_received(client, [pong(b"mid"), echo(opcode, payload)])


@pytest.mark.case("12.1.5")
def test_compressed_with_bfinal(connect: Connect) -> None:
    """RFC 7692 7.2.3.4: a sender may end a message's data with a DEFLATE block with BFINAL=1.
    Offer client_no_context_takeover; send two TEXT messages compressed with Z_FINISH (a final
    block; no 00 00 FF FF tail); expect both echoed.
    """
    client = connect(extensions=f"{PMD}; client_no_context_takeover")
    assert client.deflate_params is not None
    for text in (b"first message with a final block", b"second message with a final block"):
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = compressor.compress(text) + compressor.flush(zlib.Z_FINISH)
        client.send_frame(OP_TEXT, data, rsv=RSV1)
        expect_received(client, [echo(OP_TEXT, text)])


@pytest.mark.case("12.2.1")
def test_rsv1_on_continuation(connect: Connect) -> None:
    """RFC 7692 6.1: RSV1 is set on the first frame of a compressed message only; a receiver
    of a continuation frame with RSV1 must fail (RFC 6455 5.2). Send TEXT(fin=0, RSV1, first
    half), CONT(fin=1, RSV1, second half); expect CLOSE(1002), no echo.
    """
    client = connect(extensions=PMD)
    assert client.deflate_params is not None
    compressed = client.compress(b"Hello, compressed world! " * 10)
    half = len(compressed) // 2
    client.send_raw(
        build_frame(OP_TEXT, compressed[:half], fin=False, rsv=RSV1)
        + build_frame(OP_CONT, compressed[half:], rsv=RSV1)
    )
    expect_fail(client, 1002)


@pytest.mark.parametrize(
    ("opcode", "payload"),
    [case("12.2.2", OP_PING, b"ping"), case("12.2.3", OP_CLOSE, close_payload(1000))],
)
def test_rsv1_on_control_frame(connect: Connect, opcode: int, payload: bytes) -> None:
    """RFC 7692 6: "An endpoint MUST NOT set the "Per-Message Compressed" bit of control
    frames"; RFC 6455 5.2: fail on an undefined RSV bit. Send PING("ping") or CLOSE(1000) with
    RSV1; expect CLOSE(1002), no pong.
    """
    client = connect(extensions=PMD)
    assert client.deflate_params is not None
    client.send_frame(opcode, payload, rsv=RSV1)
    expect_fail(client, 1002)


@pytest.mark.case("12.2.4")
def test_rsv2_on_compressed_message(connect: Connect) -> None:
    """RFC 6455 5.2: permessage-deflate defines RSV1 only. Send a compressed TEXT with
    RSV1|RSV2; expect CLOSE(1002).
    """
    client = connect(extensions=PMD)
    assert client.deflate_params is not None
    client.send_frame(OP_TEXT, client.compress(b"hello"), rsv=RSV1 | RSV2)
    expect_fail(client, 1002)


@pytest.mark.case("12.2.5")
def test_corrupt_deflate_data(connect: Connect) -> None:
    """RFC 7692 6.2: send BINARY with RSV1 and payload FF FF FF FF (block type 11, reserved:
    not inflatable); expect the connection failed. RFC 7692 names no code: accept 1002
    (protocol error) or 1007 (data inconsistent with the message).
    """
    client = connect(extensions=PMD)
    assert client.deflate_params is not None
    client.send_frame(OP_BINARY, b"\xff\xff\xff\xff", rsv=RSV1)
    expect_fail(client, {1002, 1007})


@pytest.mark.case("12.2.6")
def test_compressed_invalid_utf8(connect: Connect) -> None:
    """RFC 6455 8.1 after RFC 7692 decompression: send TEXT with RSV1 whose payload inflates to
    "abc" ED A0 80 (a surrogate); expect CLOSE(1007).
    """
    client = connect(extensions=PMD)
    assert client.deflate_params is not None
    client.send_frame(OP_TEXT, client.compress(b"abc\xed\xa0\x80"), rsv=RSV1)
    expect_fail(client, 1007)
