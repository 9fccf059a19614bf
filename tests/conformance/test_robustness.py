"""Peers that vanish or stall must not hang the server (RFC 6455 7.1.5, 10; the design's
"bounded everything").

RFC 6455 7.1.5: when the TCP connection closes without a close frame, the connection is closed
with 1006, locally. Nothing is sent back, so the observable contract is the server's: after
each abrupt disconnect (FIN or RST, mid-header, mid-payload, mid-message, mid-handshake, while
it writes a large echo), a fresh client is served at once, and a client connected all along
keeps being served while another peer stalls mid-frame.
"""

from __future__ import annotations

import socket
import struct
from urllib.parse import urlsplit

import pytest

from tests.conformance.checks import Connect, assert_server_serves, case, echo, expect_received
from tests.conformance.rawclient import (
    OP_BINARY,
    OP_CLOSE,
    OP_TEXT,
    RawClient,
    build_frame,
    close_payload,
    upgrade_request,
)
from tests.helpers import seconds

__all__: list[str] = []


def _abort(client: RawClient) -> None:
    """Close with RST instead of FIN (SO_LINGER with a zero timeout)."""
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


BIG = build_frame(OP_BINARY, bytes(1000))
PARTIALS = {
    "mid-header": build_frame(OP_TEXT, b"x")[:1],
    "mid-length": build_frame(OP_BINARY, bytes(300))[:3],
    "mid-mask": build_frame(OP_BINARY, bytes(300))[:6],
    "mid-payload": BIG[:20],
    "mid-message": build_frame(OP_TEXT, b"fragment", fin=False),
    "after-close": build_frame(OP_CLOSE, close_payload(1000)),
}


@pytest.mark.parametrize(
    ("where", "reset"),
    [
        case(f"R.1.{i}.{'rst' if reset else 'fin'}", where, reset)
        for i, where in enumerate(PARTIALS, start=1)
        for reset in (False, True)
    ],
)
def test_peer_vanishes(connect: Connect, server_url: str, where: str, reset: bool) -> None:
    """RFC 6455 7.1.5: open a connection, send the bytes ``where`` names (the first byte of a
    header; up to inside the 16-bit length; up to inside the mask; 20 bytes of a 1000-byte
    frame; a whole TEXT(fin=0); a CLOSE(1000) without waiting for the reply), then close the
    socket with FIN, or RST; expect a fresh client served normally.
    """
    client = connect()
    client.send_raw(PARTIALS[where])
    if reset:
        _abort(client)
    else:
        client.close()
    assert_server_serves(server_url)


@pytest.mark.parametrize("reset", [case("R.2.fin", False), case("R.2.rst", True)])
def test_peer_vanishes_mid_handshake(server_url: str, reset: bool) -> None:
    """RFC 6455 4.1: send half an upgrade request, then close (FIN or RST); expect a fresh
    client served normally.
    """
    parts = urlsplit(server_url)
    request, _ = upgrade_request(f"{parts.hostname}:{parts.port}")
    with socket.create_connection((parts.hostname, parts.port), timeout=seconds(5)) as sock:
        sock.sendall(request[: len(request) // 2])
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert_server_serves(server_url)


@pytest.mark.case("R.3")
def test_peer_vanishes_while_server_writes(connect: Connect, server_url: str) -> None:
    """Send an 8 MiB BINARY message, then reset the connection without reading the echo the
    server is writing; expect a fresh client served normally.
    """
    client = connect()
    client.send_frame(OP_BINARY, bytes(8 << 20))
    _abort(client)
    assert_server_serves(server_url)


@pytest.mark.case("R.4")
def test_stalled_peer_does_not_block_others(connect: Connect) -> None:
    """A peer that stops in the middle of a frame (20 of 1000 bytes sent, socket left open)
    must not stall the server: a client connected before it and one connected after it both
    get their echoes while it stays stalled.
    """
    before = connect()
    stalled = connect()
    stalled.send_raw(BIG[:20])
    before.send_frame(OP_TEXT, b"still served")
    expect_received(before, [echo(OP_TEXT, b"still served")])
    after = connect()
    after.send_frame(OP_TEXT, b"also served")
    expect_received(after, [echo(OP_TEXT, b"also served")])


@pytest.mark.case("R.5")
def test_many_vanishing_peers(connect: Connect, server_url: str) -> None:
    """Twenty connections in a row each vanish mid-payload (alternating FIN and RST); expect a
    fresh client served normally afterwards.
    """
    for index in range(20):
        client = connect()
        client.send_raw(BIG[:20])
        if index % 2:
            _abort(client)
        else:
            client.close()
    assert_server_serves(server_url)
