"""Helpers for the asyncio tests: servers on free ports and a raw-socket WebSocket peer.

The raw peer writes bytes exactly as a test tells it and reports exactly what arrives, so a
test can play a misbehaving client (no pong, a bad handshake, silence) against a real server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fullduplex.asyncio.server import Server
from fullduplex.protocol.frames import Frame, FrameParser, Opcode, serialize_frame
from tests.helpers import seconds

__all__ = [
    "Handlers",
    "RawClient",
    "echo",
    "frames_after",
    "until",
    "uri",
    "violation_after",
    "wait_for",
]

T = TypeVar("T")


def uri(server: Server, path: str = "/") -> str:
    """The ws:// URI of ``server`` (listening on 127.0.0.1)."""
    return f"ws://127.0.0.1:{server.port}{path}"


async def echo(ws: Any) -> None:
    """The echo handler."""
    async for message in ws:
        await ws.send(message)


async def wait_for(awaitable: Awaitable[T], timeout: float = 5) -> T:
    """Await with a bound of ``seconds(timeout)``."""
    return await asyncio.wait_for(awaitable, seconds(timeout))


def _key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


class RawClient:
    """A TCP client that speaks WebSocket byte by byte, for tests that need a bad peer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = FrameParser(mask_required=False, allow_rsv1=True)
        self.frames: list[Frame] = []

    @classmethod
    async def open(cls, port: int) -> RawClient:
        """Connect to 127.0.0.1:port."""
        reader, writer = await wait_for(asyncio.open_connection("127.0.0.1", port))
        return cls(reader, writer)

    @staticmethod
    def request(path: str = "/", *, headers: dict[str, str] | None = None) -> bytes:
        """A valid opening handshake request, with ``headers`` added or replaced (a value of
        "" removes the header)."""
        fields = {
            "Host": "127.0.0.1",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": _key(),
            "Sec-WebSocket-Version": "13",
        }
        fields.update(headers or {})
        lines = [f"GET {path} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in fields.items() if value]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def http(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        """Send a raw request; return the response status, headers (lower-case names) and the
        body (everything until EOF for a non-101 response)."""
        self.writer.write(request)
        head = await wait_for(self.reader.readuntil(b"\r\n\r\n"))
        status_line, *header_lines = head.decode("latin-1").split("\r\n")[:-2]
        status = int(status_line.split(" ")[1])
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if status != 101:
            body = await wait_for(self.reader.read())
        return status, headers, body

    async def handshake(self, path: str = "/") -> dict[str, str]:
        """Complete a valid opening handshake (no extensions); return the response headers."""
        status, headers, _ = await self.http(self.request(path))
        assert status == 101, status
        return headers

    def send_frame(self, opcode: int, payload: bytes = b"", *, fin: bool = True) -> None:
        """Send one masked frame."""
        self.writer.write(serialize_frame(opcode, payload, fin=fin, mask=os.urandom(4)))

    async def read_frame(self) -> Frame:
        """Return the next frame from the server; raise EOFError at the end of the stream."""
        while not self.frames:
            data = await wait_for(self.reader.read(65536))
            if not data:
                raise EOFError("the server closed the connection")
            self.frames.extend(self.parser.feed(data))
            assert self.parser.error is None, self.parser.error
        return self.frames.pop(0)

    async def read_until_eof(self) -> bytes:
        """Read until the server ends the connection; return what came."""
        return await wait_for(self.reader.read())

    async def close(self) -> None:
        """Close the socket."""
        self.writer.close()
        with contextlib.suppress(OSError):
            await wait_for(self.writer.wait_closed())


def violation_after(*messages: bytes) -> bytes:
    """TEXT frames with ``messages``, then a TEXT frame with RSV2 (a violation): one write."""
    bad = bytearray(serialize_frame(Opcode.TEXT, b"bad", mask=b"abcd"))
    bad[0] |= 0x20
    return b"".join(serialize_frame(Opcode.TEXT, m, mask=b"abcd") for m in messages) + bytes(bad)


async def frames_after(
    port: int, data: bytes, *, path: str = "/", eof: bool = False
) -> list[tuple[int, bytes]]:
    """Open a raw connection to ``path``, write ``data`` at once (then half-close if ``eof``);
    return every frame until the server ends the connection (a close frame by its code)."""
    raw = await RawClient.open(port)
    try:
        await raw.handshake(path)
        raw.writer.write(data)
        if eof:
            await asyncio.sleep(0.001)  # the violation is read first, as its own read
            raw.writer.write_eof()
        frames = []
        while True:
            try:
                frame = await raw.read_frame()
            except EOFError:
                return frames
            frames.append((frame.opcode, frame.payload[:2] if frame.opcode == 8 else frame.payload))
    finally:
        await raw.close()


async def until(condition: Callable[[], bool], timeout: float = 5) -> None:
    """Wait until ``condition()`` is true, checking every few milliseconds, at most
    ``seconds(timeout)``. For states no event announces (e.g. a paused transport)."""
    deadline = asyncio.get_running_loop().time() + seconds(timeout)
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition still false after {seconds(timeout)}s")
        await asyncio.sleep(0.005)


class Handlers:
    """A handler that hands each server-side connection to the test and holds it open until
    the test calls :meth:`release` (or the connection closes)."""

    def __init__(self) -> None:
        self.connections: asyncio.Queue[Any] = asyncio.Queue()
        self.released = asyncio.Event()

    async def __call__(self, ws: Any) -> None:
        await self.connections.put(ws)
        released = asyncio.ensure_future(self.released.wait())
        closed = asyncio.ensure_future(ws.wait_closed())
        await asyncio.wait([released, closed], return_when=asyncio.FIRST_COMPLETED)
        released.cancel()
        closed.cancel()

    async def next(self) -> Any:
        """The next server-side connection."""
        return await wait_for(self.connections.get())

    def release(self) -> None:
        """Let every handler return."""
        self.released.set()
