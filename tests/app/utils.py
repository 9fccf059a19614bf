"""Helpers for the app tests: URLs, a recording endpoint, raw HTTP, and a slow raw client."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fullduplex.app import App, CloseReason, Endpoint, Session
from fullduplex.asyncio.server import Server
from tests.asyncio.utils import RawClient, wait_for

__all__ = [
    "Recorder",
    "http_get",
    "listening_socket",
    "raw_session",
    "serving",
    "url",
]


def url(server: Server, path: str = "/") -> str:
    """The ws:// URL of ``path`` on ``server`` (listening on 127.0.0.1)."""
    return f"ws://127.0.0.1:{server.port}{path}"


@asynccontextmanager
async def serving(app: App, **options: Any) -> AsyncIterator[Server]:
    """Serve ``app`` on 127.0.0.1, on a free port, for the duration of the block."""
    async with app.serve("127.0.0.1", 0, **options) as server:
        yield server


class Recorder:
    """What endpoints saw, in order, with an event per kind so that tests can await them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.opened: asyncio.Queue[Session] = asyncio.Queue()
        self.closed: asyncio.Queue[tuple[Session, CloseReason]] = asyncio.Queue()
        self.errors: asyncio.Queue[tuple[Session, Exception]] = asyncio.Queue()

    def endpoint(self, **overrides: Any) -> type[Endpoint]:
        """An Endpoint class recording every callback into this recorder; ``overrides`` are
        methods (functions of ``self, session, ...``) replacing the recording ones."""
        recorder = self

        class Recording(Endpoint):
            def on_open(self, session: Session) -> None:
                recorder.events.append(("open", session))
                recorder.opened.put_nowait(session)

            def on_message(self, session: Session, message: Any) -> Any:
                recorder.events.append(("message", message))
                return None

            def on_close(self, session: Session, reason: CloseReason) -> None:
                recorder.events.append(("close", reason))
                recorder.closed.put_nowait((session, reason))

            def on_error(self, session: Session, error: Exception) -> None:
                recorder.events.append(("error", error))
                recorder.errors.put_nowait((session, error))

        for name, method in overrides.items():
            setattr(Recording, name, method)
        return Recording

    async def next_open(self) -> Session:
        """The next session opened."""
        return await wait_for(self.opened.get())

    async def next_close(self) -> tuple[Session, CloseReason]:
        """The next session closed, with its reason."""
        return await wait_for(self.closed.get())

    async def next_error(self) -> tuple[Session, Exception]:
        """The next error reported to on_error."""
        return await wait_for(self.errors.get())


async def http_get(
    server: Server | int,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """Send one plain HTTP request to a server (or a port on 127.0.0.1); return the status,
    headers (lower-case names) and body."""
    client = await RawClient.open(server if isinstance(server, int) else server.port)
    try:
        fields = {"Host": "127.0.0.1", **(headers or {})}
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in fields.items()
        )
        return await client.http((head + "\r\n").encode("latin-1"))
    finally:
        await client.close()


def listening_socket(send_buffer: int) -> socket.socket:
    """A socket bound to 127.0.0.1 on a free port whose accepted connections get a small
    kernel send buffer (Linux copies it from the listening socket), so that a client that
    does not read fills the server's transport buffer after little data."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.bind(("127.0.0.1", 0))
    return sock


async def raw_session(port: int, path: str, *, receive_buffer: int | None = None) -> RawClient:
    """A raw WebSocket client past its handshake (no compression), optionally with a small
    kernel receive buffer: a consumer that can be made slow by not reading."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await wait_for(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)))
    reader, writer = await asyncio.open_connection(sock=sock)
    client = RawClient(reader, writer)
    await client.handshake(path)
    return client
