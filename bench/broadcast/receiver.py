"""The load: N raw WebSocket clients in one process that count and time what they receive.

``python -m bench.broadcast.receiver --kind ws|sio --url URL [--url URL ...] --connections N
--counter FILE --slot I``. Connection ``j`` goes to ``url[j % len(urls)]``. A minimal client
(an asyncio protocol on uvloop when installed, its own handshake and frame reader: no
library's client), so that the receivers cost as little CPU as possible:

- ``ws``: a plain WebSocket; the server's first message, ``ready``, says it joined the room.
- ``sio``: engine.io 4's websocket transport spoken by hand (``0{...}`` open; the client
  sends ``40``, the namespace connect; ``40{...}`` back means it is in the room; a ``2`` ping
  gets a ``3`` pong).

Every delivered message (one with a :mod:`~bench.broadcast.payload` inside) counts; the total
of this process is written to slot ``I`` of the counter file (8-byte native integers, one per
receiver process) after each read, for the publisher's window. Latency (receive time, taken
once per read, minus the send time in the message) is kept for every ``--sample``-th
connection. Prints ``ready N`` once all are in the room, then waits for ``report`` on stdin,
prints one JSON line (per phase: deliveries, first and last delivery time, latency samples),
and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import mmap
import os
import struct
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["Stats", "main"]

_COUNTER = struct.Struct("=q")
_READY_TEXT = b"ready"
# Client frames, masked with a zero key (the mask must be present; its value is not checked).
_SIO_CONNECT = b"\x81\x82\x00\x00\x00\x0040"
_SIO_PONG = b"\x81\x81\x00\x00\x00\x003"
_WS_PONG_EMPTY = b"\x8a\x80\x00\x00\x00\x00"
_CLOSE = b"\x88\x82\x00\x00\x00\x00\x03\xe8"


@dataclass
class Stats:
    """What one receiver process saw in one phase."""

    count: int = 0
    first_ns: int = 0
    last_ns: int = 0
    latencies_ns: list[int] = field(default_factory=list)


class _Shared:
    """The process's totals: deliveries, per phase stats, the counter slot."""

    def __init__(self, counter: mmap.mmap | None, slot: int) -> None:
        self.total = 0
        self.phases: dict[int, Stats] = {}
        self.counter = counter
        self.offset = slot * _COUNTER.size
        self.ready = 0
        self.failed = 0
        self.closed = 0


class _Client(asyncio.Protocol):
    """One connection: handshake, then frames."""

    def __init__(self, shared: _Shared, request: bytes, sio: bool, sample: bool) -> None:
        self.shared = shared
        self.request = request
        self.sio = sio
        self.sample = sample
        self.buffer = b""
        self.upgraded = False
        self.joined = False
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.shared.closed += 1
        if not self.done.done():
            self.done.set_result(False)

    def _joined(self) -> None:
        self.joined = True
        self.shared.ready += 1
        if not self.done.done():
            self.done.set_result(True)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            if b" 101 " not in buffer[: buffer.find(b"\r\n")]:
                assert self.transport is not None
                self.transport.close()
                return
            self.upgraded = True
            buffer = buffer[end + 4 :]
        now = time.monotonic_ns()
        shared = self.shared
        size = len(buffer)
        pos = 0
        delivered = 0
        while size - pos >= 2:
            length = buffer[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = (buffer[pos + 2] << 8) | buffer[pos + 3]
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                head = 10
            start = pos + head
            end = start + length
            if end > size:
                break
            opcode = buffer[pos] & 0x0F
            pos = end
            if opcode == 1 or opcode == 2:  # noqa: PLR1714 - the two data opcodes
                at = buffer.find(b"@", start, end)
                if at >= 0:
                    delivered += 1
                    phase = buffer[at + 20] - 48
                    stats = shared.phases.get(phase)
                    if stats is None:
                        stats = shared.phases[phase] = Stats(first_ns=now)
                    stats.count += 1
                    stats.last_ns = now
                    if self.sample:
                        stats.latencies_ns.append(now - int(buffer[at + 1 : at + 20]))
                else:
                    self._control(buffer[start:end])
            elif opcode == 9:  # ping
                assert self.transport is not None
                self.transport.write(_WS_PONG_EMPTY)
        self.buffer = buffer[pos:] if pos < size else b""
        if delivered:
            shared.total += delivered
            if shared.counter is not None:
                _COUNTER.pack_into(shared.counter, shared.offset, shared.total)

    def _control(self, message: bytes) -> None:
        """A message that is no benchmark payload: the join and engine.io's chatter."""
        assert self.transport is not None
        if not self.sio:
            if message == _READY_TEXT and not self.joined:
                self._joined()
            return
        if message.startswith(b"0{"):
            self.transport.write(_SIO_CONNECT)
        elif message.startswith(b"40") and not self.joined:
            self._joined()
        elif message == b"2":
            self.transport.write(_SIO_PONG)


def _request(url: str) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "Origin: http://127.0.0.1\r\n\r\n"
    )
    return host, port, request.encode()


async def _run(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    counter: mmap.mmap | None = None
    if args.counter:
        with open(args.counter, "r+b") as file:
            counter = mmap.mmap(file.fileno(), 0)
    shared = _Shared(counter, args.slot)
    clients: list[_Client] = []
    deadline = loop.time() + args.connect_timeout

    async def open_one(index: int) -> None:
        host, port, request = _request(args.url[index % len(args.url)])
        client = _Client(shared, request, args.kind == "sio", index % args.sample == 0)
        clients.append(client)
        try:
            await loop.create_connection(lambda: client, host, port)
            await asyncio.wait_for(client.done, max(0.1, deadline - loop.time()))
        except (OSError, TimeoutError):
            shared.failed += 1

    for start in range(0, args.connections, args.batch):
        batch = range(start, min(start + args.batch, args.connections))
        await asyncio.gather(*(open_one(index) for index in batch))
    print(f"ready {shared.ready} failed {shared.failed}", flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line or line.strip() == b"report":
            break
    report = {
        "ready": shared.ready,
        "failed": shared.failed,
        "closed": shared.closed,
        "total": shared.total,
        "phases": {
            str(phase): {
                "count": stats.count,
                "first_ns": stats.first_ns,
                "last_ns": stats.last_ns,
                "latencies_ns": stats.latencies_ns,
            }
            for phase, stats in shared.phases.items()
        },
    }
    print(json.dumps(report), flush=True)
    for client in clients:
        if client.transport is not None and not client.transport.is_closing():
            client.transport.write(_CLOSE)
            client.transport.close()
    await asyncio.sleep(0.1)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the receivers until ``report`` (or end of input) on stdin."""
    parser = argparse.ArgumentParser(prog="python -m bench.broadcast.receiver")
    parser.add_argument("--kind", choices=("ws", "sio"), required=True)
    parser.add_argument("--url", action="append", required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--counter", default="")
    parser.add_argument("--slot", type=int, default=0)
    parser.add_argument("--sample", type=int, default=10, help="time every Nth connection")
    parser.add_argument("--batch", type=int, default=50, help="handshakes at a time")
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    try:
        import uvloop  # noqa: PLC0415 - optional: the cheapest loop for the load

        return uvloop.run(_run(args))
    except ImportError:
        return asyncio.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
