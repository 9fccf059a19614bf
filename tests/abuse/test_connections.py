"""Many idle connections, and peers that stop answering pings."""

from __future__ import annotations

import socket

from tests.abuse.utils import (
    KiB,
    MiB,
    abuse_server,
    canary,
    echo_server,
    eventually,
    memory,
    open_fds,
    quiet_fds,
    read_frames,
    report,
    upgraded,
)
from tests.helpers import seconds

# The size: the test process holds one socket per connection, the server another.
IDLE = 10_000
PER_CONNECTION = 16 * KiB


def test_ten_thousand_idle_connections_cost_at_most_16_kib_each() -> None:
    with echo_server() as server:
        canary(server.port)
        fds_before = quiet_fds(server)
        # Warm the allocator and the server's caches with a few, so that the baseline is the
        # server ready to take connections, and what grows after is per connection.
        warm = [upgraded(server.port)[0] for _ in range(20)]
        for sock in warm:
            sock.close()
        assert eventually(lambda: open_fds(server.pid) <= fds_before, timeout=5)
        rss_before, _ = memory(server.pid)
        idle: list[socket.socket] = []
        try:
            for _ in range(IDLE):
                idle.append(upgraded(server.port)[0])
            assert open_fds(server.pid) >= fds_before + IDLE
            canary(server.port)
            grown = memory(server.pid)[0] - rss_before
            report(
                f"idle: {IDLE} connections, RSS +{grown / KiB:.0f} KiB, "
                f"{grown / IDLE / KiB:.1f} KiB each"
            )
            assert grown <= IDLE * PER_CONNECTION, f"{grown / IDLE / KiB:.1f} KiB each"
        finally:
            for sock in idle:
                sock.close()
        assert eventually(lambda: open_fds(server.pid) <= fds_before, timeout=10)
        canary(server.port)


DEAF = 20


def test_peers_that_stop_answering_pings_are_closed_with_1011() -> None:
    # Pings every 0.5 s, a pong due within 0.5 s; the deaf peers read but never answer.
    with abuse_server("--ping-interval", "0.5", "--ping-timeout", "0.5") as server:
        # The first keepalive timer creates the server's timerfd: part of the baseline.
        canary(server.port)
        fds_before = quiet_fds(server)
        deaf = [upgraded(server.port)[0] for _ in range(DEAF)]
        try:
            canary(server.port)  # the canary's client answers pings: it stays open
            for sock in deaf:
                sock.settimeout(seconds(10))
                pings = 0
                close = None
                for frame in read_frames(sock, limit=MiB):
                    if frame.opcode == 9:
                        pings += 1
                    elif frame.opcode == 8:
                        close = int.from_bytes(frame.payload[:2], "big"), frame.payload[2:]
                        break
                assert pings >= 1
                report_pings = pings
                assert close == (1011, b"keepalive ping timeout"), close
            report(
                f"deaf keepalive: {DEAF} peers closed with 1011 (the last saw {report_pings} ping)"
            )
        finally:
            for sock in deaf:
                sock.close()
        assert eventually(lambda: open_fds(server.pid) <= fds_before, timeout=10)
        canary(server.port)
