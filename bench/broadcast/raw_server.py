"""The floor: the least a Python asyncio process can do per cross-process broadcast.

``python -m bench.broadcast.raw_server --port P --redis URL``. No WebSocket library: a
hand-written handshake, then every message PUBLISHed on the Redis channel ``bench-raw``
(read with redis-py's asyncio pub/sub, hiredis' parser) is framed once and handed to every
connection's ``transport.write``. No order check, no gap detection, no flow control: what
is left is Redis, redis-py's reader, the event loop and one ``send`` per member. The
``raw`` row of ``python -m bench.broadcast`` (not a contestant: the floor of the others).
With ``--batch`` (the ``raw-batched`` row), the messages parsed from one read of the pub/sub
connection are joined and written with one ``transport.write`` per member: what coalescing
the writes of one read would give a library.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import signal

import redis.asyncio as redis_asyncio

__all__ = ["CHANNEL", "main"]

CHANNEL = "bench-raw"
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B65"
_READY = b"\x81\x05ready"
_MAX_BATCH = 64


class _Member(asyncio.Protocol):
    def __init__(self, members: set[asyncio.Transport]) -> None:
        self.members = members
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.open:
            return  # the receivers send nothing but a close at the end
        self.buffer += data
        if b"\r\n\r\n" not in self.buffer:
            return
        key = b""
        for line in self.buffer.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n" + _READY
        )
        self.open = True
        self.members.add(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.members.discard(self.transport)


def _frame(data: bytes) -> bytes:
    size = len(data)
    if size < 126:
        return bytes((0x81, size)) + data
    if size < 65536:
        return bytes((0x81, 126)) + size.to_bytes(2, "big") + data
    return bytes((0x81, 127)) + size.to_bytes(8, "big") + data


async def _serve(port: int, url: str, batch: bool) -> None:
    loop = asyncio.get_running_loop()
    members: set[asyncio.Transport] = set()
    client = redis_asyncio.Redis.from_url(url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(CHANNEL)

    async def relay() -> None:
        parse = pubsub.parse_response
        while True:
            response = await parse(block=True)
            if response is None or response[0] != b"message":
                continue
            frame = _frame(response[2])
            if batch:  # the messages already read from Redis leave in one write per member
                frames = [frame]
                while len(frames) < _MAX_BATCH:
                    more = await parse(block=False, timeout=0)
                    if more is None:
                        break
                    if more[0] == b"message":
                        frames.append(_frame(more[2]))
                frame = b"".join(frames)
            for transport in members:
                transport.write(frame)

    reader = loop.create_task(relay())
    server = await loop.create_server(lambda: _Member(members), "127.0.0.1", port)
    stop = loop.create_future()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set_result, None)
    print(f"raw listening on ws://127.0.0.1:{port}", flush=True)
    try:
        await stop
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        server.close()
        for transport in list(members):
            transport.abort()
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m bench.broadcast.raw_server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument(
        "--batch", action="store_true", help="one write per member for what one read brought"
    )
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.port, args.redis, args.batch))


if __name__ == "__main__":
    main()
