"""Clients for the broker tests: they join a room of :mod:`tests.brokers.room_app` and log
every stamped message they receive."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import fullduplex
from fullduplex.app import App
from fullduplex.asyncio.connection import WebSocket
from tests.helpers import seconds

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Member:
    """One client in a room: what it received, by position."""

    ws: WebSocket
    received: list[tuple[str, int, str]] = field(default_factory=list)
    recovery: list[str] = field(default_factory=list)
    binary: list[bytes] = field(default_factory=list)
    unstamped: list[str] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @property
    def offsets(self) -> list[int]:
        """The offsets received, in order."""
        return [offset for _, offset, _ in self.received]

    @property
    def bodies(self) -> list[str]:
        """The messages received, in order, without their stamps."""
        return [body for _, _, body in self.received]

    @property
    def position(self) -> tuple[str, int]:
        """The last position received (from the recovery line when nothing else came)."""
        if self.received:
            epoch, offset, _ = self.received[-1]
            return epoch, offset
        words = self.recovery[-1].split()
        return words[3], int(words[4])

    async def _read(self) -> None:
        with contextlib.suppress(fullduplex.ConnectionClosed):
            async for message in self.ws:
                if isinstance(message, bytes):
                    self.binary.append(message)
                    continue
                if message.startswith("recovery "):
                    self.recovery.append(message)
                    continue
                stamp, bar, body = message.partition("|")
                epoch, _, offset = stamp.partition(":")
                if not bar or not offset.isdigit():
                    self.unstamped.append(message)  # a group the stamp is not set for
                    continue
                self.received.append((epoch, int(offset), body))

    async def wait_for(self, count: int, timeout: float = 20) -> None:
        """Wait until ``count`` messages arrived (``timeout`` in test units)."""
        async with asyncio.timeout(seconds(timeout)):
            while len(self.received) < count:
                await asyncio.sleep(0.01)

    async def wait_recovery(self, timeout: float = 10) -> list[str]:
        """Wait for the recovery line; return its words."""
        async with asyncio.timeout(seconds(timeout)):
            while not self.recovery:
                await asyncio.sleep(0.01)
        return self.recovery[-1].split()

    async def close(self) -> None:
        """Close the connection and stop reading."""
        await self.ws.close()
        if self.task is not None:
            await self.task


async def join(
    port: int, room: str, *, user: str = "u", since: tuple[str, int] | None = None
) -> Member:
    """Connect a member to ``room`` on the server at ``port``; wait for its recovery line."""
    query = f"?user={user}"
    if since is not None:
        query += f"&epoch={since[0]}&offset={since[1]}"
    ws = await fullduplex.connect(f"ws://127.0.0.1:{port}/room/{room}{query}", max_queue=None)
    member = Member(ws)
    member.task = asyncio.get_running_loop().create_task(member._read())
    await member.wait_recovery()
    return member


@contextlib.contextmanager
def server_process(
    broker_url: str, *extra_env: tuple[str, str]
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``fullduplex serve tests.brokers.room_app:app --broker URL`` on a free port."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.update(dict(extra_env))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fullduplex",
            "serve",
            "tests.brokers.room_app:app",
            "--port",
            "0",
            "--broker",
            broker_url,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on" in line, line
        port = int(line.rsplit(":", 1)[1])
        yield process, port
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(seconds(10))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()


@contextlib.asynccontextmanager
async def serving(*apps: App) -> AsyncIterator[list[int]]:
    """Serve every app on a free port; yield the ports."""
    async with contextlib.AsyncExitStack() as stack:
        ports = []
        for app in apps:
            server = await stack.enter_async_context(app.serve("127.0.0.1", 0))
            ports.append(server.port)
        yield ports


async def eventually(check: Callable[[], object], timeout: float = 10) -> None:
    """Wait until ``check()`` is true (``timeout`` in test units)."""
    async with asyncio.timeout(seconds(timeout)):
        while not check():
            await asyncio.sleep(0.02)
