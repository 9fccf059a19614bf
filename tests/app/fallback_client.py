"""A small HTTP client for the fallback transports, on asyncio streams (stdlib only).

Every fallback response ends its connection, so a response is read to EOF; a stream's lines
are read one at a time as they come.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from tests.asyncio.utils import wait_for

__all__ = ["FallbackClient", "Stream"]


class Stream:
    """A streaming (or polling) response being read: its status, headers and lines."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: int
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.status = status
        self.headers: dict[str, str] = {}

    async def line(self, timeout: float = 5) -> dict[str, Any] | None:
        """The next line, parsed; None at the end of the response."""
        data = await wait_for(self.reader.readline(), timeout)
        if not data:
            return None
        assert data.endswith(b"\n"), data
        parsed: dict[str, Any] = json.loads(data)
        return parsed

    async def messages(self, count: int, timeout: float = 5) -> list[dict[str, Any]]:
        """The next ``count`` message lines (heartbeats skipped)."""
        found: list[dict[str, Any]] = []
        while len(found) < count:
            line = await self.line(timeout)
            assert line is not None, f"the stream ended after {found}"
            if "h" not in line:
                found.append(line)
        return found

    async def close(self) -> None:
        """Drop the connection (as a browser that goes away)."""
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await wait_for(self.writer.wait_closed())


class FallbackClient:
    """Requests to one endpoint's fallback transports on 127.0.0.1:``port``."""

    def __init__(self, port: int, endpoint: str) -> None:
        self.port = port
        self.endpoint = endpoint.rstrip("/")
        self.sid = ""
        self.seq = 0

    async def start(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Stream:
        """Send a request; return the response once its head is read."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        fields = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
        if body is not None:
            fields["Content-Length"] = str(len(body))
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in fields.items()
        )
        writer.write(head.encode("latin-1") + b"\r\n" + (body or b""))
        status_line = await wait_for(reader.readline())
        assert status_line.startswith(b"HTTP/1.1 "), status_line
        stream = Stream(reader, writer, int(status_line.split()[1]))
        while True:
            line = (await wait_for(reader.readline())).decode("latin-1").rstrip("\r\n")
            if not line:
                break
            name, _, value = line.partition(":")
            stream.headers[name.strip().lower()] = value.strip()
        return stream

    async def request(
        self, method: str, path: str, body: bytes | None = None, **kwargs: Any
    ) -> tuple[int, dict[str, str], bytes]:
        """Send a request; return the status, headers (lower-case names) and whole body."""
        stream = await self.start(method, path, body, **kwargs)
        data = await wait_for(stream.reader.read())
        await stream.close()
        return stream.status, stream.headers, data

    def url(self, action: str, query: str = "") -> str:
        """The path of ``action`` for this endpoint (with this session's id unless opening)."""
        if action != "open":
            query = f"s={self.sid}" + (f"&{query}" if query else "")
        return f"{self.endpoint}/_fd/{action}" + (f"?{query}" if query else "")

    async def open(self, query: str = "") -> dict[str, Any]:
        """Open a session; return the server's answer (``s``, ``h``, ``t``)."""
        status, _, body = await self.request("POST", self.url("open", query), b"")
        assert status == 200, (status, body)
        answer: dict[str, Any] = json.loads(body)
        self.sid = answer["s"]
        return answer

    async def post(self, payload: dict[str, Any] | bytes) -> tuple[int, bytes]:
        """POST to ``send``; return the status and body."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        status, _, data = await self.request("POST", self.url("send"), body)
        return status, data

    async def send(self, *messages: Any) -> int:
        """Send a batch with the next sequence number; return the status."""
        status, _ = await self.post({"q": self.seq, "m": list(messages)})
        if status == 200:
            self.seq += 1
        return status

    async def stream(self, ack: int = 0) -> Stream:
        """Start a stream from after message ``ack``."""
        stream = await self.start("GET", self.url("stream", f"a={ack}"))
        assert stream.status == 200, stream.status
        return stream

    async def poll(self, ack: int = 0, timeout: float = 5) -> list[dict[str, Any]]:
        """One poll from after message ``ack``: its lines."""
        stream = await self.start("GET", self.url("poll", f"a={ack}"))
        assert stream.status == 200, stream.status
        lines = []
        while (line := await stream.line(timeout)) is not None:
            lines.append(line)
        await stream.close()
        return lines
