"""The chat sample as one room across processes on a real Redis: ``fullduplex demo --workers 2
--broker URL`` and two ``fullduplex serve examples.chat:app --broker URL`` processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

import fullduplex
from fullduplex.asyncio.connection import WebSocket
from fullduplex.brokers import wire
from tests.brokers.redis_servers import RedisServer
from tests.helpers import seconds

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def running(*arguments: str) -> Iterator[int]:
    """``python -m fullduplex ARGUMENTS --port 0``; yield its port; stop it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "fullduplex", *arguments, "--port", "0"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "127.0.0.1:" in line, line
        yield int(re.search(r"127\.0\.0\.1:(\d+)", line)[1])  # type: ignore[index]
    finally:
        process.terminate()
        try:
            process.wait(seconds(15))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


class Chatter:
    """A chat client that keeps what it received, decoded."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(fullduplex.ConnectionClosed):
            async for message in self.ws:
                self.received.append(json.loads(message))

    def messages(self) -> list[str]:
        return [m["message"] for m in self.received if m["type"] == "message"]

    async def wait(self, check: Any, timeout: float = 10) -> None:
        async with asyncio.timeout(seconds(timeout)):
            while not check(self):
                await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.ws.close()
        await self.task


async def chatter(port: int, name: str, room: str = "lobby") -> Chatter:
    ws = await fullduplex.connect(f"ws://127.0.0.1:{port}/chat/{room}?name={name}")
    member = Chatter(ws)
    await member.wait(lambda m: any(r["type"] == "join" for r in m.received))
    return member


def subscribers(server: RedisServer, room: str) -> int:
    with redis.Redis(port=server.port) as client:
        return int(client.pubsub_numsub(wire.channel("chat:" + room))[0][1])


async def one_room(ports: list[int], server: RedisServer) -> None:
    """Members joined on ``ports`` until two processes have members; then every message of
    the room reaches every member, and every member's list names everyone."""
    members: list[Chatter] = []
    try:
        for number in range(40):  # spread over the workers by the kernel: until both have some
            members.append(await chatter(ports[number % len(ports)], f"u{number}"))
            if len(members) >= 2 and subscribers(server, "lobby") == 2:
                break
        assert subscribers(server, "lobby") == 2
        names = {f"u{number}" for number in range(len(members))}
        await members[-1].wait(lambda m: set(m.received[-1].get("members", ())) == names)
        for index, member in enumerate(members):
            await member.ws.send(json.dumps({"username": f"u{index}", "message": f"hi {index}"}))
        expected = {f"hi {index}" for index in range(len(members))}
        for member in members:
            await member.wait(lambda m: set(m.messages()) == expected)
            assert len(member.messages()) == len(members)
        orders = {tuple(member.messages()) for member in members}
        assert len(orders) == 1  # one room: one order for everyone
    finally:
        for member in members:
            await member.close()


async def test_demo_with_two_workers_is_one_room() -> None:
    with (
        RedisServer() as server,
        running("demo", "--workers", "2", "--broker", server.url) as port,
    ):
        await one_room([port], server)


async def test_two_serve_processes_are_one_room() -> None:
    with RedisServer() as server:
        serve = ("serve", "examples.chat:app", "--broker", server.url)
        with running(*serve) as port_a, running(*serve) as port_b:
            await one_room([port_a, port_b], server)
