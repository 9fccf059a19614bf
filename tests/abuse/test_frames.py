"""Attacks after the upgrade: impossible lengths and decompression bombs.

The server's rules (RFC 6455 section 5.2 and the size limit): a 64-bit length with its most
significant bit set is a protocol error (1002); a valid length over ``max_message_size`` is
refused with 1009 from the header alone, before any payload; a compressed message that
inflates past ``max_message_size`` is refused with 1009 as soon as the inflated bytes pass it.
"""

from __future__ import annotations

import os
import struct
import zlib

import pytest

from tests.abuse.utils import (
    KiB,
    MiB,
    canary,
    echo_server,
    memory,
    read_close,
    report,
    upgraded,
)

LIMIT = MiB  # the servers' max_message_size here


def header_claiming(length: int) -> bytes:
    """A masked binary frame header announcing ``length`` bytes (64-bit length form)."""
    return struct.pack("!BBQ", 0x82, 0x80 | 127, length) + os.urandom(4)


CLAIMS = [(2**63, 1002), (2**64 - 1, 1002), (2**63 - 1, 1009), (LIMIT + 1, 1009)]


@pytest.mark.parametrize("pure_python", [False, True], ids=["compiled", "pure-python"])
def test_announced_lengths_are_refused_from_the_header(pure_python: bool) -> None:
    with echo_server("--max-message-size", str(LIMIT), pure_python=pure_python) as server:
        canary(server.port)
        rss_before, _ = memory(server.pid)
        for length, code in CLAIMS:
            sock, _ = upgraded(server.port)
            with sock:
                # The header and a few payload bytes: the verdict cannot wait for the rest.
                sock.sendall(header_claiming(length) + b"x" * 100)
                closed = read_close(sock)
            assert closed is not None and closed[0] == code, (length, closed)
        canary(server.port)
        grown = memory(server.pid)[0] - rss_before
        report(
            f"announced lengths ({'pure' if pure_python else 'compiled'}): {CLAIMS}, "
            f"RSS +{grown / KiB:.0f} KiB"
        )
        assert grown < 4 * MiB, grown


BOMBERS = 10
INFLATED = 64 * MiB  # per bomb, from about 64 KB on the wire


def deflate_bomb() -> bytes:
    """A permessage-deflate message (RFC 7692 section 7.2.1) that inflates to 64 MiB of
    zeros: the raw DEFLATE stream, without its final empty block's 00 00 ff ff."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(MiB)
    data = b"".join(compressor.compress(chunk) for _ in range(INFLATED // MiB))
    data += compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def test_decompression_bombs_get_1009_and_inflate_no_further_than_the_limit() -> None:
    bomb = deflate_bomb()
    assert len(bomb) < 128 * 1024
    frame = struct.pack("!BBQ", 0xC2, 0x80 | 127, len(bomb))  # FIN, RSV1, binary
    mask = os.urandom(4)
    masked_bomb = bytes(b ^ mask[i % 4] for i, b in enumerate(bomb))
    with echo_server("--max-message-size", str(LIMIT)) as server:
        canary(server.port)
        rss_before, _ = memory(server.pid)
        for _ in range(BOMBERS):
            sock, head = upgraded(server.port, "Sec-WebSocket-Extensions: permessage-deflate\r\n")
            assert b"permessage-deflate" in head.lower(), head
            with sock:
                sock.sendall(frame + mask + masked_bomb)
                closed = read_close(sock)
            assert closed is not None and closed[0] == 1009, closed
        canary(server.port)
        grown = memory(server.pid)[0] - rss_before
        report(
            f"deflate bombs: {BOMBERS} x {len(bomb)} B -> 64 MiB, 1009, RSS +{grown / KiB:.0f} KiB"
        )
        # 10 x 64 MiB announced by the compressed data; inflation stops past the 1 MiB limit.
        assert grown < 8 * MiB, grown
