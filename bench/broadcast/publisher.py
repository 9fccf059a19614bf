"""The outside publisher: a process that serves nothing and publishes to the room.

``python -m bench.broadcast.publisher --library L --redis URL --phase P --count N
--connections C --counter FILE --slots K [--rate R] [--window W]``. Each library publishes
the way its documentation says a process outside the servers does, one awaited call per
message, sequentially:

- ``fullduplex``: ``fullduplex.brokers.Publisher(url).publish(group, text)`` (one EVALSHA);
- ``socketio``: ``AsyncRedisManager(url, write_only=True).emit("m", text, room=...)``
  (one PUBLISH of a pickle);
- ``channels-core`` / ``channels-pubsub``: ``channel_layer.group_send(group, event)``;
- ``raw``, ``raw-batched`` (the floor): ``redis.asyncio`` ``PUBLISH``.

Without ``--rate`` it publishes as fast as deliveries follow: at most ``--window`` messages
ahead of the deliveries the receivers count (the counter file: their totals, 8-byte integers,
``--slots`` of them, divided by ``--connections``). With ``--rate`` it publishes at that
many messages per second (``--window`` times 10 ahead at most: past that it stops and says
so). Bounded by ``--max-time`` either way. Prints one JSON line: how many it published, the
first and last send times, its own CPU seconds, and whether it stopped early.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import mmap
import os
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import payload

__all__ = ["LIBRARIES", "main", "make_publish"]

LIBRARIES = ("fullduplex", "socketio", "channels-core", "channels-pubsub", "raw", "raw-batched")
_COUNTER = struct.Struct("=q")

Publish = Callable[[str], Awaitable[None]]


async def make_publish(library: str, url: str) -> Publish:
    """The coroutine function that publishes one text message to the room for ``library``."""
    if library == "fullduplex":
        from fullduplex.brokers.publisher import Publisher  # noqa: PLC0415

        from .fd_app import GROUP  # noqa: PLC0415

        publisher = Publisher(url)

        async def publish_fd(text: str) -> None:
            publisher.publish(GROUP, text)

        return publish_fd
    if library == "socketio":
        import socketio  # type: ignore[import-untyped]  # noqa: PLC0415

        from .sio_server import ROOM  # noqa: PLC0415

        manager = socketio.AsyncRedisManager(url, write_only=True)

        async def publish_sio(text: str) -> None:
            await manager.emit("m", text, room=ROOM, namespace="/")

        return publish_sio
    if library in ("channels-core", "channels-pubsub"):
        os.environ["BENCH_REDIS_URL"] = url
        os.environ["BENCH_CHANNELS_LAYER"] = library.partition("-")[2]
        from channels.layers import get_channel_layer  # type: ignore[import-untyped]  # noqa: PLC0415

        from .channels_app import GROUP  # noqa: PLC0415

        layer: Any = get_channel_layer()

        async def publish_channels(text: str) -> None:
            await layer.group_send(GROUP, {"type": "bench.message", "text": text})

        return publish_channels
    if library in ("raw", "raw-batched"):
        import redis.asyncio as redis_asyncio  # noqa: PLC0415

        from .raw_server import CHANNEL  # noqa: PLC0415

        client = redis_asyncio.Redis.from_url(url)

        async def publish_raw(text: str) -> None:
            await client.publish(CHANNEL, text)

        return publish_raw
    raise ValueError(f"unknown library {library!r}; choose from {', '.join(LIBRARIES)}")


def _delivered(counter: mmap.mmap, slots: int) -> int:
    return sum(_COUNTER.unpack_from(counter, slot * _COUNTER.size)[0] for slot in range(slots))


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    publish = await make_publish(args.library, args.redis)
    with open(args.counter, "r+b") as file:
        counter = mmap.mmap(file.fileno(), 0)
    base = _delivered(counter, args.slots)
    connections = args.connections
    window = args.window
    cpu0 = time.process_time()
    start = time.monotonic_ns()
    deadline = start + int(args.max_time * 1e9)
    interval = 1e9 / args.rate if args.rate else 0.0
    stopped = ""
    published = 0
    last = start
    while published < args.count:
        now = time.monotonic_ns()
        if now > deadline:
            stopped = "max-time"
            break
        ahead = published - (_delivered(counter, args.slots) - base) / connections
        if interval:
            due = start + int(published * interval)
            if ahead > 10 * window:
                stopped = f"deliveries fell {ahead:.0f} messages behind"
                break
            if now < due:
                await asyncio.sleep((due - now) / 1e9)
        elif ahead >= window:
            await asyncio.sleep(0.0002)
            continue
        last = time.monotonic_ns()
        await publish(payload.make(last, args.phase, published))
        published += 1
    return {
        "published": published,
        "start_ns": start,
        "last_ns": last,
        "end_ns": time.monotonic_ns(),
        "cpu_s": time.process_time() - cpu0,
        "stopped": stopped,
    }


def main(argv: list[str] | None = None) -> int:
    """Publish one phase; print its JSON summary."""
    parser = argparse.ArgumentParser(prog="python -m bench.broadcast.publisher")
    parser.add_argument("--library", choices=LIBRARIES, required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--phase", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--counter", required=True)
    parser.add_argument("--slots", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="messages/s (default: window)")
    parser.add_argument("--window", type=int, default=20, help="messages ahead at most")
    parser.add_argument("--max-time", type=float, default=30.0)
    args = parser.parse_args(argv)
    result = asyncio.run(_run(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
