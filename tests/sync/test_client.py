"""Tests for fullduplex.sync.client: connect(), TLS, proxies and reconnection.

Every server runs on 127.0.0.1 on a free port: a fullduplex asyncio server in a background
thread (:class:`ServerThread`), the ``python -m fullduplex echo`` process, or a raw TCP server.
"""

from __future__ import annotations

import base64
import logging
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import fullduplex.asyncio.client as asyncio_client
from fullduplex.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidMessage,
    InvalidProxyMessage,
    InvalidProxyStatus,
    InvalidResponse,
    InvalidStatus,
    InvalidURI,
    NegotiationError,
    SecurityError,
    SOCKSProxyError,
)
from fullduplex.protocol.connection import State
from fullduplex.protocol.handshake import USER_AGENT
from fullduplex.sync import Connect, WebSocket, backoff_delays, connect, is_retryable
from tests.helpers import seconds
from tests.proxy_servers import HTTPConnectProxy, SOCKS5Proxy
from tests.sync.utils import RawServer, ServerThread, read_request, switching_protocols


async def echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


async def echo_request(ws: Any) -> None:
    """Send back what the client's opening handshake said: path and headers."""
    headers = "\n".join(f"{name}: {value}" for name, value in ws.request.headers.raw_items())
    await ws.send(f"{ws.request.path}\n{headers}")
    async for _ in ws:
        pass


class TestConnect:
    """connect() opens a connection; the options shape the opening handshake."""

    def test_with_block(self, echo_url: str) -> None:
        with connect(echo_url) as ws:
            assert isinstance(ws, WebSocket)
            state_inside = ws.state
            ws.send("hi")
            assert ws.recv(timeout=seconds(5)) == "hi"
        assert state_inside is State.OPEN
        assert ws.state is State.CLOSED

    def test_open(self, echo_url: str) -> None:
        ws = connect(echo_url).open()
        try:
            ws.send(b"hi")
            assert ws.recv(timeout=seconds(5)) == b"hi"
        finally:
            ws.close()

    def test_request_headers(self) -> None:
        with (
            ServerThread(echo_request) as server,
            connect(
                f"ws://alice:s%20cret@127.0.0.1:{server.port}/path?x=1",
                origin="https://example.com",
                additional_headers=[("X-Test", "yes")],
                user_agent="test-agent/1",
            ) as ws,
        ):
            path, *lines = str(ws.recv(timeout=seconds(5))).split("\n")
        headers = dict(line.split(": ", 1) for line in lines)
        assert path == "/path?x=1"
        assert headers["Host"] == f"127.0.0.1:{server.port}"
        assert headers["Origin"] == "https://example.com"
        assert headers["X-Test"] == "yes"
        assert headers["User-Agent"] == "test-agent/1"
        assert headers["Authorization"] == "Basic " + base64.b64encode(b"alice:s cret").decode()

    def test_default_user_agent_and_none(self) -> None:
        with ServerThread(echo_request) as server:
            with connect(server.url) as ws:
                assert f"User-Agent: {USER_AGENT}" in str(ws.recv(timeout=seconds(5)))
            with connect(server.url, user_agent=None) as ws:
                assert "User-Agent" not in str(ws.recv(timeout=seconds(5)))

    def test_subprotocol(self) -> None:
        with ServerThread(echo, subprotocols=["chat", "superchat"]) as server:
            with connect(server.url, subprotocols=["superchat", "other"]) as ws:
                assert ws.subprotocol == "superchat"
            with connect(server.url) as ws:
                assert ws.subprotocol is None

    def test_compression_negotiated(self, echo_url: str) -> None:
        # RFC 7692: the server accepted the offer; compressible messages round-trip.
        message = "compress me " * 10_000
        with connect(echo_url) as ws:
            assert ws.response is not None
            assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
            assert ws._conn.compressed
            ws.send(message)
            assert ws.recv(timeout=seconds(5)) == message
        with connect(echo_url, compression=None) as ws:
            assert ws.response is not None
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            assert not ws._conn.compressed
            ws.send(message)
            assert ws.recv(timeout=seconds(5)) == message

    def test_max_message_size(self, echo_url: str) -> None:
        with connect(echo_url, max_message_size=1000) as ws:
            ws.send("x" * 1000)
            assert ws.recv(timeout=seconds(5)) == "x" * 1000
            ws.send("x" * 1001)
            with pytest.raises(ConnectionClosed) as exc_info:
                ws.recv(timeout=seconds(5))
            assert exc_info.value.sent_code == 1009

    def test_sock(self, echo_url: str) -> None:
        host, port = echo_url.removeprefix("ws://").split(":")
        sock = socket.create_connection((host, int(port)), seconds(5))
        with connect("ws://example.invalid/", sock=sock) as ws:
            ws.send("through my socket")
            assert ws.recv(timeout=seconds(5)) == "through my socket"
        assert sock.fileno() == -1  # the connection owned it, and closed it


class TestErrors:
    """What connect() raises, and when."""

    def test_invalid_uri_at_once(self) -> None:
        with pytest.raises(InvalidURI):
            connect("http://127.0.0.1/")

    def test_invalid_options_at_once(self) -> None:
        with pytest.raises(ValueError, match="wss://"):
            connect("ws://127.0.0.1/", ssl=ssl.create_default_context())
        with pytest.raises(ValueError, match="compression"):
            connect("ws://127.0.0.1/", compression="zstd")
        with pytest.raises(ValueError):
            connect("ws://127.0.0.1/", subprotocols=["not a token"])
        with pytest.raises(ValueError):
            connect("ws://127.0.0.1/", additional_headers=[("X", "a\r\nb")])
        with pytest.raises(ValueError):
            connect("ws://127.0.0.1/", max_queue=0)
        with pytest.raises(ValueError):
            connect("ws://127.0.0.1/", backoff_factor=0.5)

    def test_connection_refused(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            connect(f"ws://127.0.0.1:{port}/").open()

    def test_open_timeout(self) -> None:
        # The TCP handshake completes in the listen backlog; nobody ever answers.
        with RawServer(None) as server:
            start = time.monotonic()
            with pytest.raises(TimeoutError):
                connect(server.url, open_timeout=0.2).open()
            elapsed = time.monotonic() - start
        assert 0.2 <= elapsed < 0.2 + seconds(2)

    def test_rejected_with_status(self) -> None:
        def process_request(ws: Any, request: Any) -> Any:
            return ws.respond(403, "go away\n")

        with (
            ServerThread(echo, process_request=process_request) as server,
            pytest.raises(InvalidStatus) as exc_info,
        ):
            connect(server.url).open()
        assert exc_info.value.status_code == 403
        assert exc_info.value.body == b"go away\n"

    def test_server_closes_during_handshake(self) -> None:
        def hang_up(conn: socket.socket, server: RawServer) -> None:
            read_request(conn)

        with RawServer(hang_up) as server, pytest.raises(InvalidMessage):
            connect(server.url).open()

    def test_bad_accept_key(self) -> None:
        def wrong_key(conn: socket.socket, server: RawServer) -> None:
            read_request(conn)
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: bm90IHRoZSByaWdodCBrZXk=\r\n\r\n"
            )

        with RawServer(wrong_key) as server, pytest.raises(InvalidResponse):
            connect(server.url).open()

    def test_frames_right_after_the_101(self) -> None:
        # A server may send frames in the same packet as its 101: they are the first message.
        def eager(conn: socket.socket, server: RawServer) -> None:
            conn.sendall(switching_protocols(read_request(conn)) + b"\x81\x05early")
            server.signal.wait(seconds(10))

        with RawServer(eager) as server:
            with connect(server.url, close_timeout=0.1) as ws:
                assert ws.recv(timeout=seconds(5)) == "early"
            server.signal.set()


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made with the openssl CLI."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=seconds(30),
    )
    return cert, key


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting the server's self-signed certificate)."""
    cert, key = make_certificate(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    return server_context, client_context


class TestTLS:
    """wss:// (RFC 6455 section 3): TLS first, then the opening handshake."""

    def test_wss_echo(self, tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
        server_context, client_context = tls
        with ServerThread(echo, ssl=server_context) as server:
            uri = f"wss://127.0.0.1:{server.port}/"
            with connect(uri, ssl=client_context) as ws:
                assert isinstance(ws._sock, ssl.SSLSocket)
                ws.send("secret")
                assert ws.recv(timeout=seconds(5)) == "secret"
                payload = bytes(range(256)) * 4096  # 1 MiB: many TLS records, partial writes
                ws.send(payload)
                assert ws.recv(timeout=seconds(10)) == payload
                assert ws.ping().wait(seconds(5)) > 0
            assert ws.close_code == 1000

    def test_wss_server_hostname(self, tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
        server_context, client_context = tls
        with ServerThread(echo, ssl=server_context) as server:
            uri = f"wss://127.0.0.1:{server.port}/"
            with connect(uri, ssl=client_context, server_hostname="localhost") as ws:
                ws.send("by name")
                assert ws.recv(timeout=seconds(5)) == "by name"
            with pytest.raises(ssl.SSLCertVerificationError):
                connect(uri, ssl=client_context, server_hostname="example.com").open()

    def test_wss_concurrent_readers_and_writers(
        self, tls: tuple[ssl.SSLContext, ssl.SSLContext]
    ) -> None:
        # The reader thread and several writers share one TLS connection.
        server_context, client_context = tls
        payload = b"y" * 50_000
        with ServerThread(echo, ssl=server_context) as server:
            uri = f"wss://127.0.0.1:{server.port}/"
            with connect(uri, ssl=client_context, compression=None) as ws:
                errors: list[BaseException] = []

                def writer() -> None:
                    try:
                        for _ in range(50):
                            ws.send(payload)
                    except BaseException as exc:
                        errors.append(exc)

                writers = [threading.Thread(target=writer) for _ in range(3)]
                for thread in writers:
                    thread.start()
                received = [ws.recv(timeout=seconds(10)) for _ in range(150)]
                for thread in writers:
                    thread.join(seconds(10))
                assert not any(thread.is_alive() for thread in writers)
                assert errors == []
                assert received == [payload] * 150

    def test_untrusted_certificate(self, tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
        server_context, _ = tls
        with ServerThread(echo, ssl=server_context) as server:
            uri = f"wss://127.0.0.1:{server.port}/"
            # The default context does not trust a self-signed certificate.
            with pytest.raises(ssl.SSLCertVerificationError) as exc_info:
                connect(uri).open()
        assert not is_retryable(exc_info.value)


class RecordingHandler(logging.Handler):
    """Collects log records; calls ``on_retry`` on each "retrying" record."""

    def __init__(self, on_retry: Any = None) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.on_retry = on_retry

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if "retrying" in record.getMessage() and self.on_retry is not None:
            self.on_retry()

    @property
    def retries(self) -> int:
        return sum("retrying" in record.getMessage() for record in self.records)


def reconnect_logger(handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(f"tests.sync.reconnect.{id(handler)}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    return logger


FAST_BACKOFF: dict[str, Any] = {"backoff_initial": 0.01, "backoff_factor": 2, "backoff_max": 0.05}


class TestReconnect:
    """``for ws in connect(...)``: reconnection with backoff, until a fatal error."""

    def test_reconnects_after_a_restart_and_stops_on_403(self) -> None:
        attempts: list[str] = []

        def process_request(ws: Any, request: Any) -> Any:
            attempts.append(request.path)
            if len(attempts) >= 3:
                return ws.respond(403, "no more\n")
            return None

        server = ServerThread(echo, process_request=process_request).start()
        port = server.port
        restarted: list[ServerThread] = []

        def restart() -> None:
            # The first failed attempt (connection refused) brings the server back.
            if not restarted:
                restarted.append(ServerThread(echo, port, process_request=process_request))
                restarted[0].start()

        handler = RecordingHandler(on_retry=restart)
        connections = 0
        try:
            with pytest.raises(InvalidStatus) as exc_info:
                for ws in connect(server.url, logger=reconnect_logger(handler), **FAST_BACKOFF):
                    connections += 1
                    ws.send(f"connection {connections}")
                    assert ws.recv(timeout=seconds(5)) == f"connection {connections}"
                    if connections == 1:
                        server.stop()  # closes the connection with 1001
                        assert list(ws) == []  # ends quietly: 1001 is a normal close
                        assert ws.close_code == 1001
                    elif connections > 2:  # pragma: no cover - the 403 must stop the loop
                        break
                    # connections == 2: moving on closes this connection and reconnects.
        finally:
            server.stop()
            for thread in restarted:
                thread.stop()
        assert exc_info.value.status_code == 403
        assert connections == 2
        assert len(attempts) == 3
        assert restarted and restarted[0].port == port
        assert handler.retries >= 1  # connection refused while the server was down

    def test_retries_5xx(self) -> None:
        statuses = [503, 500]

        def process_request(ws: Any, request: Any) -> Any:
            return ws.respond(statuses.pop(0), "later\n") if statuses else None

        handler = RecordingHandler()
        with ServerThread(echo, process_request=process_request) as server:
            for ws in connect(server.url, logger=reconnect_logger(handler), **FAST_BACKOFF):
                ws.send("finally")
                assert ws.recv(timeout=seconds(5)) == "finally"
                break
        assert handler.retries == 2
        # Leaving the loop closed the connection.
        assert ws.state is State.CLOSED

    @pytest.mark.parametrize("status", [400, 401, 404])
    def test_stops_on_4xx(self, status: int) -> None:
        def process_request(ws: Any, request: Any) -> Any:
            return ws.respond(status, "no\n")

        handler = RecordingHandler()
        with (
            ServerThread(echo, process_request=process_request) as server,
            pytest.raises(InvalidStatus) as exc_info,
        ):
            for _ in connect(server.url, logger=reconnect_logger(handler), **FAST_BACKOFF):
                pytest.fail("connected")  # pragma: no cover
        assert exc_info.value.status_code == status
        assert handler.retries == 0

    def test_stops_on_negotiation_error(self) -> None:
        def bad_subprotocol(conn: socket.socket, server: RawServer) -> None:
            response = switching_protocols(read_request(conn))
            conn.sendall(response[:-2] + b"Sec-WebSocket-Protocol: unoffered\r\n\r\n")

        with RawServer(bad_subprotocol) as server, pytest.raises(NegotiationError):
            for _ in connect(server.url, **FAST_BACKOFF):
                pytest.fail("connected")  # pragma: no cover
        assert server.accepted == 1

    def test_sock_cannot_reconnect(self) -> None:
        with socket.socket() as sock, pytest.raises(ValueError):
            next(iter(connect("ws://127.0.0.1/", sock=sock)))


class TestRetryRule:
    """The reconnection rule and delays are the asyncio client's (one rule for both)."""

    @pytest.mark.parametrize(
        "exc",
        [
            ConnectionRefusedError(),
            TimeoutError(),
            OSError("network unreachable"),
            EOFError(),
            InvalidMessage("garbled"),
            InvalidStatus(502),
            InvalidStatus(503),
            InvalidStatus(403),
            InvalidStatus(407),
            InvalidStatus(301),
            InvalidResponse("bad accept"),
            NegotiationError("bad extension"),
            SecurityError("too many headers"),
            InvalidHandshake("refusal"),
            InvalidProxyStatus(407),
            InvalidProxyStatus(502),
            InvalidProxyMessage("garbled"),
            SOCKSProxyError("refused", 5),
            SOCKSProxyError("ruleset", 2),
            SOCKSProxyError("bad credentials"),
            ssl.SSLCertVerificationError("untrusted"),
            ValueError("bad option"),
        ],
    )
    def test_same_rule_as_asyncio(self, exc: BaseException) -> None:
        # One rule for both clients: they import it from fullduplex.retry.
        assert is_retryable is asyncio_client.is_retryable
        assert is_retryable(exc) is asyncio_client.is_retryable(exc)

    def test_transient_and_fatal(self) -> None:
        assert is_retryable(ConnectionRefusedError())
        assert is_retryable(InvalidStatus(503))
        assert not is_retryable(InvalidStatus(403))
        assert not is_retryable(NegotiationError("x"))
        assert not is_retryable(InvalidURI("x", "y"))

    def test_backoff_grows_to_the_cap_with_full_jitter(self) -> None:
        bounds: list[float] = []

        def uniform(low: float, high: float) -> float:
            assert low == 0.0
            bounds.append(high)
            return high / 2

        delays = backoff_delays(0.5, 2.0, 3.0, uniform=uniform)
        assert [next(delays) for _ in range(6)] == [0.25, 0.5, 1.0, 1.5, 1.5, 1.5]
        assert bounds == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]

    def test_backoff_defaults_match_asyncio(self) -> None:
        def top(low: float, high: float) -> float:
            return high

        assert backoff_delays is asyncio_client.backoff_delays
        delays = backoff_delays(uniform=top)
        assert [next(delays) for _ in range(8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]

    def test_backoff_is_random_within_its_bound(self) -> None:
        delays = [next(backoff_delays(1.0, 2.0, 60.0)) for _ in range(200)]
        assert all(0.0 <= delay <= 1.0 for delay in delays)
        assert len(set(delays)) > 100

    def test_backoff_rejects_bad_parameters(self) -> None:
        with pytest.raises(ValueError):
            next(backoff_delays(-1.0))
        with pytest.raises(ValueError):
            next(backoff_delays(1.0, 0.9))


class TestProxy:
    """Connections through an HTTP CONNECT or SOCKS5 proxy (see fullduplex.proxy).

    The proxies are the shared test proxies of tests/proxy_servers.py, each on an event loop
    in a thread of its own.
    """

    @pytest.fixture(autouse=True)
    def clean_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("ws", "wss", "http", "https", "all", "no"):
            monkeypatch.delenv(f"{name}_proxy", raising=False)
            monkeypatch.delenv(f"{name.upper()}_PROXY", raising=False)

    def test_http_connect(self, echo_url: str) -> None:
        port = echo_url.rsplit(":", 1)[1]
        with (
            HTTPConnectProxy().running_in_thread() as proxy,
            connect(echo_url, proxy=proxy.url) as ws,
        ):
            ws.send("via proxy")
            assert ws.recv(timeout=seconds(5)) == "via proxy"
        assert proxy.tunnels == 1
        assert proxy.requests[0][0] == f"127.0.0.1:{port}"
        assert proxy.relayed > 0

    def test_http_connect_with_credentials(self, echo_url: str) -> None:
        with HTTPConnectProxy(credentials=("user", "secret")).running_in_thread() as proxy:
            with connect(echo_url, proxy=proxy.url) as ws:
                ws.send("authenticated")
                assert ws.recv(timeout=seconds(5)) == "authenticated"
            expected = "Basic " + base64.b64encode(b"user:secret").decode()
            assert proxy.requests[0][1]["proxy-authorization"] == expected
            with pytest.raises(InvalidProxyStatus) as exc_info:
                connect(echo_url, proxy=f"http://127.0.0.1:{proxy.port}").open()
        assert exc_info.value.status_code == 407
        assert not is_retryable(exc_info.value)

    def test_http_proxy_cannot_reach_the_server(self, echo_url: str) -> None:
        with (
            HTTPConnectProxy(status=502).running_in_thread() as proxy,
            pytest.raises(InvalidProxyStatus) as exc_info,
        ):
            connect(echo_url, proxy=proxy.url).open()
        assert exc_info.value.status_code == 502
        assert is_retryable(exc_info.value)

    def test_socks5(self, echo_url: str) -> None:
        port = int(echo_url.rsplit(":", 1)[1])
        with (
            SOCKS5Proxy().running_in_thread() as proxy,
            connect(echo_url, proxy=proxy.url) as ws,
        ):
            ws.send("via socks")
            assert ws.recv(timeout=seconds(5)) == "via socks"
        assert proxy.tunnels == 1
        assert [(r.address_type, r.host, r.port) for r in proxy.requests] == [
            (1, "127.0.0.1", port)
        ]

    def test_socks5_with_credentials(self, echo_url: str) -> None:
        with SOCKS5Proxy(credentials=("user", "secret")).running_in_thread() as proxy:
            with connect(echo_url, proxy=proxy.url) as ws:
                ws.send("authenticated")
                assert ws.recv(timeout=seconds(5)) == "authenticated"
            assert proxy.requests[0].username == "user"
            wrong = f"socks5://user:wrong@127.0.0.1:{proxy.port}"
            with pytest.raises(SOCKSProxyError) as exc_info:
                connect(echo_url, proxy=wrong).open()
        assert exc_info.value.reply is None
        assert not is_retryable(exc_info.value)

    def test_socks5_refusals(self, echo_url: str) -> None:
        # A server the proxy cannot reach is worth a retry; a rule that refuses is not.
        with (
            SOCKS5Proxy(reply_code=5).running_in_thread() as proxy,
            pytest.raises(SOCKSProxyError, match="connection refused") as refused,
        ):
            connect(echo_url, proxy=proxy.url).open()
        assert is_retryable(refused.value)
        with (
            SOCKS5Proxy(reply_code=2).running_in_thread() as proxy,
            pytest.raises(SOCKSProxyError, match="ruleset") as forbidden,
        ):
            connect(echo_url, proxy=proxy.url).open()
        assert not is_retryable(forbidden.value)

    def test_socks5h_sends_the_host_name(self, echo_url: str) -> None:
        port = int(echo_url.rsplit(":", 1)[1])
        with (
            SOCKS5Proxy(remote_dns=True).running_in_thread() as proxy,
            connect(f"ws://localhost:{port}/", proxy=proxy.url) as ws,
        ):
            ws.send("resolved by the proxy")
            assert ws.recv(timeout=seconds(5)) == "resolved by the proxy"
        assert [(r.address_type, r.host, r.port) for r in proxy.requests] == [
            (3, "localhost", port)
        ]

    def test_wss_through_the_tunnel(self, tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
        server_context, client_context = tls
        with (
            ServerThread(echo, ssl=server_context) as server,
            HTTPConnectProxy().running_in_thread() as proxy,
        ):
            uri = f"wss://127.0.0.1:{server.port}/"
            with connect(uri, ssl=client_context, proxy=proxy.url) as ws:
                ws.send("TLS in the tunnel")
                assert ws.recv(timeout=seconds(5)) == "TLS in the tunnel"
        assert proxy.tunnels == 1

    def test_environment(self, echo_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        with HTTPConnectProxy().running_in_thread() as proxy:
            monkeypatch.setenv("http_proxy", proxy.url)
            with connect(echo_url) as ws:
                ws.send("from the environment")
                assert ws.recv(timeout=seconds(5)) == "from the environment"
            assert proxy.tunnels == 1
            # no_proxy wins; proxy=None connects directly whatever the environment says.
            monkeypatch.setenv("no_proxy", "127.0.0.1")
            with connect(echo_url) as ws:
                ws.send("direct")
                assert ws.recv(timeout=seconds(5)) == "direct"
            monkeypatch.delenv("no_proxy")
            with connect(echo_url, proxy=None) as ws:
                ws.send("direct")
                assert ws.recv(timeout=seconds(5)) == "direct"
            assert proxy.connections == 1

    def test_invalid_proxy_at_once(self, monkeypatch: pytest.MonkeyPatch) -> None:
        with pytest.raises(ValueError):
            connect("ws://127.0.0.1/", proxy="ftp://127.0.0.1:21")
        monkeypatch.setenv("http_proxy", "socks4://127.0.0.1:1080")
        with pytest.raises(ValueError):
            connect("ws://127.0.0.1/")

    def test_proxy_down_is_retryable(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with pytest.raises(ConnectionRefusedError) as exc_info:
            connect("ws://127.0.0.1:1/", proxy=f"http://127.0.0.1:{port}").open()
        assert is_retryable(exc_info.value)


def test_connect_returns_connect(echo_url: str) -> None:
    assert isinstance(connect(echo_url), Connect)


def test_sync_client_does_not_import_asyncio() -> None:
    # A program without an event loop does not pay for one (nor for the asyncio layer).
    code = "import sys, fullduplex.sync; print('asyncio' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=seconds(30),
        check=True,
    )
    assert result.stdout.strip() == "False"
