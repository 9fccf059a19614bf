"""Real proxies for the tests: a tiny HTTP CONNECT proxy and a tiny SOCKS5 proxy, on 127.0.0.1.

They are written from the RFCs (RFC 9110 section 9.3.6; RFC 1928 and RFC 1929), independently
of :mod:`fullduplex.proxy`, and record what they were asked and what went through them, so
that a test can prove that a connection really used the proxy::

    async with HTTPConnectProxy() as proxy:
        async with connect(url, proxy=proxy.url) as ws:
            ...
        assert proxy.tunnels == 1

For code that is not on an event loop (a sync client, a subprocess started from a plain test),
``with proxy.running_in_thread(): ...`` runs the same proxy on a loop of its own.

For safety they only open tunnels to loopback addresses (127.0.0.0/8, ::1, "localhost"); any
other target is refused.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from tests.helpers import seconds

__all__ = ["HTTPConnectProxy", "SOCKS5Proxy", "SOCKS5Request"]

_MAX_HEAD = 65536


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _ProxyServer:
    """What both proxies share: the listening socket, the relay, the counters, the stopping.

    Attributes:
        credentials: (username, password) the proxy requires, or None.
        tunnels: How many tunnels were opened.
        relayed: How many bytes went through the tunnels, both ways.
        connections: How many TCP connections the proxy accepted.
    """

    scheme = ""

    def __init__(self, *, credentials: tuple[str, str] | None = None) -> None:
        self.credentials = credentials
        self.tunnels = 0
        self.relayed = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        """The proxy URL to give a client, with the credentials if any."""
        userinfo = ""
        if self.credentials is not None:
            userinfo = "{}:{}@".format(*self.credentials)
        return f"{self.scheme}://{userinfo}127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on 127.0.0.1, on a free port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, end every tunnel, and wait for every handler."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=seconds(5))
        if self._server is not None:
            await asyncio.wait_for(self._server.wait_closed(), seconds(5))

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @contextlib.contextmanager
    def running_in_thread(self) -> Iterator[Self]:
        """Run this proxy on an event loop in a thread of its own; stop it on exit."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="test-proxy", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(seconds(10))
            yield self
        finally:
            try:
                asyncio.run_coroutine_threadsafe(self.stop(), loop).result(seconds(10))
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(seconds(10))
                loop.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            await self._handle(reader, writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except asyncio.CancelledError:
            pass  # stopped by stop(): end quietly
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _relay(
        self,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        """Copy bytes both ways until both directions have ended; pass each EOF on."""
        self.tunnels += 1
        self._writers.add(server[1])
        try:
            await asyncio.gather(self._copy(client[0], server[1]), self._copy(server[0], client[1]))
        finally:
            self._writers.discard(server[1])
            server[1].transport.abort()

    async def _copy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                self.relayed += len(data)
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except ConnectionError:
            writer.transport.abort()


class HTTPConnectProxy(_ProxyServer):
    """An HTTP proxy that only does CONNECT (RFC 9110 section 9.3.6), with optional Basic auth.

    Args:
        credentials: Require ``Proxy-Authorization: Basic`` with these; else answer 407.
        status: Answer every CONNECT with this status (and a short body) instead of tunnelling.

    Attributes:
        requests: (request target, headers with lower-case names) of every request received.
    """

    scheme = "http"

    def __init__(
        self, *, credentials: tuple[str, str] | None = None, status: int | None = None
    ) -> None:
        super().__init__(credentials=credentials)
        self.status = status
        self.requests: list[tuple[str, dict[str, str]]] = []

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > _MAX_HEAD:
            return
        request_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
        method, target, _version = request_line.split(" ")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.requests.append((target, headers))
        if method != "CONNECT":
            await self._answer(writer, 405, "only CONNECT here")
            return
        if self.status is not None:
            await self._answer(writer, self.status, "as the test asked")
            return
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
            if headers.get("proxy-authorization") != expected:
                await self._answer(
                    writer, 407, "credentials needed", 'Proxy-Authenticate: Basic realm="test"\r\n'
                )
                return
        host, _, port = target.rpartition(":")
        host = host.strip("[]")
        if not _is_loopback(host):
            await self._answer(writer, 403, "loopback only")
            return
        try:
            upstream = await asyncio.wait_for(asyncio.open_connection(host, int(port)), seconds(5))
        except (OSError, TimeoutError):
            await self._answer(writer, 502, "cannot reach the server")
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await self._relay((reader, writer), upstream)

    @staticmethod
    async def _answer(
        writer: asyncio.StreamWriter, status: int, body: str, extra_headers: str = ""
    ) -> None:
        data = body.encode()
        writer.write(
            f"HTTP/1.1 {status} Test\r\nContent-Length: {len(data)}\r\n{extra_headers}"
            "Connection: close\r\n\r\n".encode()
            + data
        )
        await writer.drain()


@dataclass(frozen=True)
class SOCKS5Request:
    """A CONNECT request as the SOCKS5 proxy received it.

    Attributes:
        address_type: 1 (IPv4), 3 (domain name) or 4 (IPv6), as sent.
        host: The address or name.
        port: The port.
        methods: The authentication methods the client offered.
        username: The user name it authenticated with, if any.
    """

    address_type: int
    host: str
    port: int
    methods: bytes = b""
    username: str | None = field(default=None)


class SOCKS5Proxy(_ProxyServer):
    """A SOCKS5 proxy (RFC 1928) that only does CONNECT, with optional username/password auth.

    Args:
        credentials: Require username/password authentication (RFC 1929) with these.
        reply_code: Answer every CONNECT request with this failure code instead of tunnelling.
        remote_dns: "socks5h" in :attr:`url` (the client sends names), else "socks5".

    Attributes:
        requests: Every CONNECT request received.
    """

    def __init__(
        self,
        *,
        credentials: tuple[str, str] | None = None,
        reply_code: int | None = None,
        remote_dns: bool = False,
    ) -> None:
        super().__init__(credentials=credentials)
        self.reply_code = reply_code
        self.scheme = "socks5h" if remote_dns else "socks5"
        self.requests: list[SOCKS5Request] = []

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        version, count = await reader.readexactly(2)
        if version != 5:
            return
        methods = await reader.readexactly(count)
        wanted = 2 if self.credentials is not None else 0
        if wanted not in methods:
            writer.write(b"\x05\xff")
            await writer.drain()
            return
        writer.write(bytes([5, wanted]))
        await writer.drain()
        username = None
        if self.credentials is not None:
            _version, size = await reader.readexactly(2)
            username = (await reader.readexactly(size)).decode()
            (size,) = await reader.readexactly(1)
            password = (await reader.readexactly(size)).decode()
            ok = (username, password) == self.credentials
            writer.write(b"\x01\x00" if ok else b"\x01\x01")
            await writer.drain()
            if not ok:
                return
        _version, command, _reserved, kind = await reader.readexactly(4)
        if kind == 1:
            host = socket.inet_ntop(socket.AF_INET, await reader.readexactly(4))
        elif kind == 4:
            host = socket.inet_ntop(socket.AF_INET6, await reader.readexactly(16))
        elif kind == 3:
            (size,) = await reader.readexactly(1)
            host = (await reader.readexactly(size)).decode("idna")
        else:
            await self._reply(writer, 8)
            return
        port = int.from_bytes(await reader.readexactly(2), "big")
        self.requests.append(SOCKS5Request(kind, host, port, bytes(methods), username))
        if command != 1:
            await self._reply(writer, 7)
            return
        if self.reply_code is not None:
            await self._reply(writer, self.reply_code)
            return
        if not _is_loopback(host):
            await self._reply(writer, 2)
            return
        try:
            upstream = await asyncio.wait_for(asyncio.open_connection(host, port), seconds(5))
        except ConnectionRefusedError:
            await self._reply(writer, 5)
            return
        except (OSError, TimeoutError):
            await self._reply(writer, 4)
            return
        bound_host, bound_port = upstream[1].get_extra_info("sockname")[:2]
        await self._reply(writer, 0, bound_host, bound_port)
        await self._relay((reader, writer), upstream)

    @staticmethod
    async def _reply(
        writer: asyncio.StreamWriter, code: int, host: str = "0.0.0.0", port: int = 0
    ) -> None:
        address = ipaddress.ip_address(host)
        kind = 1 if address.version == 4 else 4
        writer.write(bytes([5, code, 0, kind]) + address.packed + port.to_bytes(2, "big"))
        await writer.drain()
