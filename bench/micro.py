"""``python -m bench.micro [SIZE]``: fullduplex's own cost per message, without the network.

A server-side WebSocket on a transport that only counts writes, with
``on_message = send_nowait`` (the callback-style echo): each call of ``data_received`` with one
masked text frame parses, unmasks, decodes, delivers, frames the reply and writes it. Prints
the best of three runs of 200,000 messages, one per read and 16 per read. Compare builds with
``FULLDUPLEX_NO_EXTENSIONS=1`` (the pure-Python reference). No socket, no event loop
iteration, so this is the library's share of a round trip, not a round trip.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time

from fullduplex.asyncio.connection import WebSocket
from fullduplex.protocol.connection import Connection, Role
from fullduplex.protocol.frames import serialize_frame

__all__ = ["CountingTransport", "main", "measure"]

MESSAGES = 200_000


class CountingTransport:
    """Just enough of an asyncio transport: counts writes, keeps nothing."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: bytes) -> None:
        """Count one write."""
        self.writes += 1

    def writelines(self, data: list[bytes]) -> None:
        """Count one write."""
        self.writes += 1

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Accept the limits; there is no buffer."""

    def get_write_buffer_size(self) -> int:
        """Nothing is ever buffered."""
        return 0


def _echo_socket(transport: CountingTransport) -> WebSocket:
    ws = WebSocket(logger=logging.getLogger("bench.micro"), ping_interval=None)
    ws.connection_made(transport)  # type: ignore[arg-type]
    ws._connection_open(Connection(Role.SERVER), b"")
    ws.on_message = ws.send_nowait
    return ws


def measure(size: int, per_read: int) -> float:
    """Return the best of three runs: microseconds per message, ``per_read`` frames per read."""
    data = serialize_frame(1, b"x" * size, mask=b"abcd") * per_read
    best = float("inf")
    for _ in range(3):
        transport = CountingTransport()
        received = _echo_socket(transport).data_received
        start = time.perf_counter()
        for _ in range(MESSAGES // per_read):
            received(data)
        best = min(best, (time.perf_counter() - start) / MESSAGES * 1e6)
        if transport.writes != MESSAGES // per_read:
            raise RuntimeError(f"{transport.writes} writes for {MESSAGES // per_read} reads")
    return best


async def _run(size: int) -> None:
    # WebSocket needs a running loop (it creates futures on demand), not a real transport.
    one, batch = measure(size, 1), measure(size, 16)
    print(f"{size} B text echo: {one:.2f} us per message one per read, {batch:.2f} us 16 per read")


def main(argv: list[str] | None = None) -> int:
    """Measure the message size given (default 16 bytes); return the exit status."""
    args = sys.argv[1:] if argv is None else argv
    asyncio.run(_run(int(args[0]) if args else 16))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
