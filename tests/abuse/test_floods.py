"""Peers that send and never read: ping floods, and a server that sends to a deaf client.

Before the fix that these tests guard, the server answered every ping of a peer that never
read, and the pongs piled up in its write buffer: 8.7 million pings in 8 s took the server's
RSS from 27 MiB to 1.1 GiB. Now reading stops while the write buffer is over its limit, so
the peer's own socket fills up and its sends block.
"""

from __future__ import annotations

import socket
import time

from tests.abuse.utils import (
    KiB,
    MiB,
    abuse_server,
    canary,
    echo_server,
    masked,
    memory,
    read_frames,
    report,
    upgraded,
)
from tests.helpers import seconds

PING_FLOODERS = 4
FLOOD_SECONDS = 3.0


def flood_pings(sock: socket.socket, budget: float) -> int:
    """Send 125-byte pings for at most ``budget`` seconds or until a send blocks for 0.5 s;
    return how many were sent. Nothing is ever read."""
    burst = masked(9, b"p" * 125) * 1000
    sock.settimeout(0.5)
    sent = 0
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        try:
            sock.sendall(burst)
        except TimeoutError:
            return sent
        sent += 1000
    return sent


def test_ping_flood_without_reading_is_bounded() -> None:
    with abuse_server("--ping-interval", "none") as server:
        canary(server.port)
        rss_before, _ = memory(server.pid)
        flooders = [upgraded(server.port)[0] for _ in range(PING_FLOODERS)]
        try:
            for sock in flooders:
                # A small receive buffer: the server's pongs stop fitting in the kernel soon.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            counts = [flood_pings(sock, FLOOD_SECONDS) for sock in flooders]
            # Each flooder was stopped by TCP backpressure (the server stopped reading), not
            # by the time budget: a server that kept reading would take ~1M pings/s.
            for count in counts:
                assert count < 400_000, counts
            grown = memory(server.pid)[0] - rss_before
            report(
                f"ping flood: {PING_FLOODERS} peers blocked after {counts} pings, "
                f"RSS +{grown / KiB:.0f} KiB"
            )
            # Bounded by write_limit (32 KiB) plus the pongs of one read, per connection.
            assert grown < 8 * MiB, grown
            canary(server.port)
        finally:
            for sock in flooders:
                sock.close()
        canary(server.port)


def test_a_client_that_never_reads_is_closed_by_the_overflow_policy() -> None:
    # /flood sends 16 KiB messages without waiting (as broadcasts do); its endpoint allows
    # 256 KiB in a session's buffer, then closes the session with 1013 ("close" policy).
    with abuse_server("--max-buffered", str(256 * KiB)) as server:
        canary(server.port)
        rss_before, _ = memory(server.pid)
        sock, _ = upgraded(server.port, path="/flood")
        try:
            time.sleep(0.5)  # the server floods; nobody reads
            grown = memory(server.pid)[0] - rss_before
            assert grown < 4 * MiB, grown
            canary(server.port)
            # Now read it all: data frames, then the close frame with 1013.
            sock.settimeout(seconds(10))
            data = 0
            close = None
            for frame in read_frames(sock):
                if frame.opcode == 8:
                    close = int.from_bytes(frame.payload[:2], "big")
                    break
                data += len(frame.payload)
            report(f"deaf reader: 1013 after {data / MiB:.1f} MiB sent, RSS +{grown / KiB:.0f} KiB")
            assert close == 1013, close
            # What was sent before the policy acted is the buffer bound (256 KiB) plus what
            # the kernel's socket buffers took; far from the 100,000 x 16 KiB it would send.
            assert data < 16 * MiB, data
        finally:
            sock.close()
        canary(server.port)


def test_echoes_to_a_client_that_never_reads_stop_at_the_queue_and_write_bounds() -> None:
    # `fullduplex echo` awaits each send: with the client not reading, send() waits once the
    # write buffer is over write_limit (32 KiB), the receive queue fills (16 messages), and
    # the server stops reading, so the client's own sends block.
    message = masked(2, bytes(64 * KiB))
    with echo_server() as server:
        canary(server.port)
        rss_before, _ = memory(server.pid)
        sock, _ = upgraded(server.port)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(0.5)
            sent = 0
            deadline = time.monotonic() + FLOOD_SECONDS
            while time.monotonic() < deadline:
                try:
                    sock.sendall(message)
                except TimeoutError:
                    break
                sent += 1
            grown = memory(server.pid)[0] - rss_before
            report(f"deaf echo client: blocked after {sent} x 64 KiB, RSS +{grown / KiB:.0f} KiB")
            # Blocked by backpressure, not by the time budget (loopback takes ~1 GB/s).
            assert sent < 1000, sent
            # 16 queued messages of 64 KiB, the write buffer, one read: about 1.5 MiB.
            assert grown < 8 * MiB, grown
            canary(server.port)
        finally:
            sock.close()
        canary(server.port)
