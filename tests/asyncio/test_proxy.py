"""Tests for the proxy support of fullduplex.asyncio.client, through real proxies on 127.0.0.1.

The proxies (tests/proxy_servers.py) count the tunnels they open and the bytes they relay, so
each test proves that its traffic went through the proxy, or did not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from fullduplex.asyncio.client import connect, is_retryable
from fullduplex.asyncio.server import Server, serve
from fullduplex.exceptions import (
    ConnectionClosed,
    InvalidProxyMessage,
    InvalidProxyStatus,
    SOCKSProxyError,
)
from tests.asyncio.utils import Handlers, echo, uri, wait_for
from tests.helpers import seconds
from tests.proxy_servers import HTTPConnectProxy, SOCKS5Proxy

_PROXY_VARIABLES = [f"{scheme}_proxy" for scheme in ("http", "https", "ws", "wss", "all", "no")] + [
    f"{scheme.upper()}_PROXY" for scheme in ("http", "https", "ws", "wss", "all", "no")
]


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variable from the machine leaks into these tests; tests set their own."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
async def http_proxy() -> AsyncIterator[HTTPConnectProxy]:
    """An HTTP CONNECT proxy without authentication."""
    async with HTTPConnectProxy() as proxy:
        yield proxy


@pytest.fixture
async def socks_proxy() -> AsyncIterator[SOCKS5Proxy]:
    """A SOCKS5 proxy without authentication (url: socks5://, local name resolution)."""
    async with SOCKS5Proxy() as proxy:
        yield proxy


@contextlib.asynccontextmanager
async def silent_server(
    respond: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    """A TCP server whose connections ``respond`` handles; yields its port, stops on exit."""
    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await respond(reader, writer)
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=seconds(5))
        await wait_for(server.wait_closed())


def refused_port() -> socket.socket:
    """A bound socket that does not listen: connecting to its port is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


async def exchange(url: str, **options: object) -> None:
    """Open a connection, check a large random message comes back, close it."""
    message = os.urandom(100_000)  # random: compression cannot shrink what the proxy relays
    async with connect(url, open_timeout=seconds(5), **options) as ws:
        await ws.send(message)
        assert await wait_for(ws.recv()) == message
    assert ws.close_code == 1000


class TestHTTPConnect:
    """ws:// and wss:// through an HTTP CONNECT proxy."""

    async def test_tunnel(self, echo_server: Server, http_proxy: HTTPConnectProxy) -> None:
        await exchange(uri(echo_server), proxy=http_proxy.url)
        assert http_proxy.tunnels == 1
        assert http_proxy.relayed > 200_000
        target, headers = http_proxy.requests[0]
        assert target == f"127.0.0.1:{echo_server.port}"
        assert headers["host"] == target
        assert "proxy-authorization" not in headers
        assert headers["user-agent"].startswith("Python/")

    async def test_user_agent(self, echo_server: Server, http_proxy: HTTPConnectProxy) -> None:
        await exchange(uri(echo_server), proxy=http_proxy.url, user_agent="probe/2")
        assert http_proxy.requests[0][1]["user-agent"] == "probe/2"
        await exchange(uri(echo_server), proxy=http_proxy.url, user_agent=None)
        assert "user-agent" not in http_proxy.requests[1][1]

    async def test_basic_auth(self, echo_server: Server) -> None:
        async with HTTPConnectProxy(credentials=("alice", "s3cr:t")) as proxy:
            await exchange(uri(echo_server), proxy=f"http://alice:s3cr%3At@127.0.0.1:{proxy.port}")
            assert proxy.tunnels == 1
            assert proxy.requests[0][1]["proxy-authorization"].startswith("Basic ")

    @pytest.mark.parametrize("userinfo", ["", "alice:wrong@"])
    async def test_auth_required(self, echo_server: Server, userinfo: str) -> None:
        async with HTTPConnectProxy(credentials=("alice", "secret")) as proxy:
            with pytest.raises(InvalidProxyStatus) as info:
                await connect(uri(echo_server), proxy=f"http://{userinfo}127.0.0.1:{proxy.port}")
            assert info.value.status_code == 407
            assert ("Proxy-Authenticate", 'Basic realm="test"') in info.value.headers
            assert info.value.body == b"credentials needed"
            assert not is_retryable(info.value)
            assert proxy.tunnels == 0

    async def test_server_unreachable(self, http_proxy: HTTPConnectProxy) -> None:
        with refused_port() as sock:
            port = sock.getsockname()[1]
            with pytest.raises(InvalidProxyStatus) as info:
                await connect(f"ws://127.0.0.1:{port}/", proxy=http_proxy.url)
        assert info.value.status_code == 502
        assert is_retryable(info.value)
        assert http_proxy.requests[0][0] == f"127.0.0.1:{port}"

    @pytest.mark.parametrize(("status", "retryable"), [(403, False), (502, True), (503, True)])
    async def test_refusals(self, echo_server: Server, status: int, retryable: bool) -> None:
        async with HTTPConnectProxy(status=status) as proxy:
            with pytest.raises(InvalidProxyStatus) as info:
                await connect(uri(echo_server), proxy=proxy.url)
        assert info.value.status_code == status
        assert is_retryable(info.value) is retryable

    async def test_proxy_down(self, echo_server: Server) -> None:
        with refused_port() as sock:
            proxy = f"http://127.0.0.1:{sock.getsockname()[1]}"
            with pytest.raises(ConnectionRefusedError):
                await connect(uri(echo_server), proxy=proxy)

    async def test_proxy_never_answers(self, echo_server: Server) -> None:
        async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # reads the CONNECT request and says nothing

        async with silent_server(mute) as port:
            with pytest.raises(TimeoutError):
                await connect(uri(echo_server), proxy=f"http://127.0.0.1:{port}", open_timeout=0.2)

    async def test_proxy_speaks_first_in_the_tunnel(self, echo_server: Server) -> None:
        async def chatty(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\n\r\nunexpected")
            await reader.read()

        async with silent_server(chatty) as port:
            with pytest.raises(InvalidProxyMessage, match="sent data"):
                await connect(uri(echo_server), proxy=f"http://127.0.0.1:{port}")

    async def test_proxy_closes(self, echo_server: Server) -> None:
        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")

        async with silent_server(hang_up) as port:
            with pytest.raises(InvalidProxyMessage, match="closed"):
                await connect(uri(echo_server), proxy=f"http://127.0.0.1:{port}")

    async def test_wss(self, certificate: tuple[Path, Path], http_proxy: HTTPConnectProxy) -> None:
        cert, key = certificate
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(cert, key)
        client_context = ssl.create_default_context(cafile=str(cert))
        async with serve(echo, "127.0.0.1", 0, ssl=server_context) as server:
            url = f"wss://localhost:{server.port}/"
            await exchange(url, proxy=http_proxy.url, ssl=client_context)
            assert http_proxy.tunnels == 1
            # The proxy resolves the name (as in curl and browsers) and sees only ciphertext.
            assert http_proxy.requests[0][0] == f"localhost:{server.port}"

            # The certificate is still checked end to end, through the tunnel.
            with pytest.raises(ssl.SSLCertVerificationError):
                await connect(url, proxy=http_proxy.url)
            assert http_proxy.tunnels == 2


class TestSOCKS5:
    """ws:// and wss:// through a SOCKS5 proxy (RFC 1928, RFC 1929)."""

    async def test_tunnel(self, echo_server: Server, socks_proxy: SOCKS5Proxy) -> None:
        await exchange(uri(echo_server), proxy=socks_proxy.url)
        assert socks_proxy.tunnels == 1
        assert socks_proxy.relayed > 200_000
        request = socks_proxy.requests[0]
        assert (request.address_type, request.host, request.port) == (
            1,
            "127.0.0.1",
            echo_server.port,
        )
        assert request.methods == b"\x00"

    async def test_local_resolution(self, socks_proxy: SOCKS5Proxy) -> None:
        """socks5://: the client resolves the name and sends the proxy an address."""
        family, *_, address = socket.getaddrinfo("localhost", 0, type=socket.SOCK_STREAM)[0]
        host = str(address[0])
        async with serve(echo, host, 0) as server:
            await exchange(f"ws://localhost:{server.port}/", proxy=socks_proxy.url)
        request = socks_proxy.requests[0]
        assert request.address_type == (1 if family == socket.AF_INET else 4)
        assert request.host == host

    async def test_remote_resolution(self, echo_server: Server) -> None:
        """socks5h://: the proxy gets the name and resolves it."""
        async with SOCKS5Proxy(remote_dns=True) as proxy:
            assert proxy.url.startswith("socks5h://")
            # The proxy tries each address of localhost, as a direct connection would.
            await exchange(f"ws://localhost:{echo_server.port}/", proxy=proxy.url)
        request = proxy.requests[0]
        assert (request.address_type, request.host) == (3, "localhost")

    async def test_username_password(self, echo_server: Server) -> None:
        async with SOCKS5Proxy(credentials=("bob", "p@ss")) as proxy:
            await exchange(uri(echo_server), proxy=f"socks5://bob:p%40ss@127.0.0.1:{proxy.port}")
        assert proxy.tunnels == 1
        assert proxy.requests[0].username == "bob"
        assert proxy.requests[0].methods == b"\x00\x02"

    async def test_wrong_password(self, echo_server: Server) -> None:
        async with SOCKS5Proxy(credentials=("bob", "secret")) as proxy:
            with pytest.raises(SOCKSProxyError, match="rejected the username") as info:
                await connect(uri(echo_server), proxy=f"socks5://bob:guess@127.0.0.1:{proxy.port}")
        assert not is_retryable(info.value)
        assert proxy.tunnels == 0

    async def test_credentials_missing(self, echo_server: Server) -> None:
        async with SOCKS5Proxy(credentials=("bob", "secret")) as proxy:
            with pytest.raises(SOCKSProxyError, match="none of the offered"):
                await connect(uri(echo_server), proxy=f"socks5://127.0.0.1:{proxy.port}")

    async def test_server_unreachable(self, socks_proxy: SOCKS5Proxy) -> None:
        with refused_port() as sock:
            port = sock.getsockname()[1]
            with pytest.raises(SOCKSProxyError, match="connection refused") as info:
                await connect(f"ws://127.0.0.1:{port}/", proxy=socks_proxy.url)
        assert info.value.reply == 5
        assert is_retryable(info.value)

    async def test_refused_by_rule(self, echo_server: Server) -> None:
        async with SOCKS5Proxy(reply_code=2) as proxy:
            with pytest.raises(SOCKSProxyError, match="ruleset") as info:
                await connect(uri(echo_server), proxy=proxy.url)
        assert not is_retryable(info.value)

    @pytest.mark.parametrize(
        ("code", "retryable"),
        [(1, True), (2, False), (3, True), (4, True), (5, True), (6, True), (7, False), (8, False)],
    )
    async def test_every_failure_reply(
        self, echo_server: Server, code: int, retryable: bool
    ) -> None:
        async with SOCKS5Proxy(reply_code=code) as proxy:
            with pytest.raises(SOCKSProxyError) as info:
                await connect(uri(echo_server), proxy=proxy.url)
        assert info.value.reply == code
        assert is_retryable(info.value) is retryable

    async def test_wss(self, certificate: tuple[Path, Path]) -> None:
        cert, key = certificate
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(cert, key)
        client_context = ssl.create_default_context(cafile=str(cert))
        async with (
            serve(echo, "127.0.0.1", 0, ssl=server_context) as server,
            SOCKS5Proxy(remote_dns=True) as proxy,
        ):
            await exchange(f"wss://127.0.0.1:{server.port}/", proxy=proxy.url, ssl=client_context)
        assert proxy.tunnels == 1
        assert proxy.requests[0].address_type == 1  # an IP literal goes as an address


class TestEnvironment:
    """proxy=True (the default) takes the proxy from the environment."""

    async def test_http_proxy(
        self, echo_server: Server, http_proxy: HTTPConnectProxy, environment: pytest.MonkeyPatch
    ) -> None:
        environment.setenv("http_proxy", http_proxy.url)
        await exchange(uri(echo_server))
        assert http_proxy.tunnels == 1

    async def test_all_proxy_socks(
        self, echo_server: Server, socks_proxy: SOCKS5Proxy, environment: pytest.MonkeyPatch
    ) -> None:
        environment.setenv("ALL_PROXY", socks_proxy.url)
        await exchange(uri(echo_server))
        assert socks_proxy.tunnels == 1

    async def test_https_proxy_is_not_for_ws(
        self, echo_server: Server, http_proxy: HTTPConnectProxy, environment: pytest.MonkeyPatch
    ) -> None:
        environment.setenv("https_proxy", http_proxy.url)
        await exchange(uri(echo_server))
        assert http_proxy.connections == 0

    async def test_no_proxy(
        self, echo_server: Server, http_proxy: HTTPConnectProxy, environment: pytest.MonkeyPatch
    ) -> None:
        environment.setenv("http_proxy", http_proxy.url)
        environment.setenv("no_proxy", "localhost,127.0.0.1")
        await exchange(uri(echo_server))
        assert http_proxy.connections == 0

    async def test_disabled(
        self, echo_server: Server, http_proxy: HTTPConnectProxy, environment: pytest.MonkeyPatch
    ) -> None:
        environment.setenv("http_proxy", http_proxy.url)
        await exchange(uri(echo_server), proxy=None)
        assert http_proxy.connections == 0

    async def test_explicit_wins(
        self,
        echo_server: Server,
        http_proxy: HTTPConnectProxy,
        socks_proxy: SOCKS5Proxy,
        environment: pytest.MonkeyPatch,
    ) -> None:
        environment.setenv("http_proxy", http_proxy.url)
        await exchange(uri(echo_server), proxy=socks_proxy.url)
        assert (http_proxy.connections, socks_proxy.tunnels) == (0, 1)

    async def test_sock_bypasses_proxy(
        self, echo_server: Server, http_proxy: HTTPConnectProxy, environment: pytest.MonkeyPatch
    ) -> None:
        environment.setenv("http_proxy", http_proxy.url)
        sock = socket.create_connection(("127.0.0.1", echo_server.port), timeout=seconds(5))
        await exchange(uri(echo_server), sock=sock)
        assert http_proxy.connections == 0

    async def test_invalid(self, environment: pytest.MonkeyPatch) -> None:
        environment.setenv("http_proxy", "socks4://127.0.0.1:1080")
        with pytest.raises(ValueError, match="http_proxy"):
            connect("ws://127.0.0.1:1/")


class TestReconnectThroughProxy:
    """async for ws in connect(...) opens every connection through the proxy."""

    async def test_each_connection_tunnels(self, http_proxy: HTTPConnectProxy) -> None:
        handlers = Handlers()
        async with serve(handlers, "127.0.0.1", 0) as server:
            opened = 0
            async for ws in connect(uri(server), proxy=http_proxy.url, backoff_initial=0.01):
                opened += 1
                server_ws = await handlers.next()
                if opened == 3:
                    break
                await server_ws.close()
                with pytest.raises(ConnectionClosed):
                    await wait_for(ws.recv())
            await ws.close()
            handlers.release()
        assert http_proxy.tunnels == 3


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made with openssl: (cert, key)."""
    directory = tmp_path_factory.mktemp("proxy-tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "ec",
                "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", str(key), "-out", str(cert), "-days", "1",
                "-subj", "/CN=localhost",
                "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ],
            check=True,
            capture_output=True,
            timeout=seconds(60),
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"openssl could not make a certificate: {exc}")
    return cert, key
