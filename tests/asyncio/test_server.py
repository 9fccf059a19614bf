"""Tests for fullduplex.asyncio.server: serve(), Server, handshakes, limits, shutdown, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fullduplex.asyncio.client import connect
from fullduplex.asyncio.connection import WebSocket
from fullduplex.asyncio.server import Server, ServerWebSocket, serve
from fullduplex.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
    InvalidStatus,
)
from fullduplex.protocol.frames import Frame, Opcode, serialize_frame
from fullduplex.protocol.handshake import Request, Response
from tests.asyncio.utils import (
    Handlers,
    RawClient,
    echo,
    frames_after,
    until,
    uri,
    violation_after,
    wait_for,
)


class TestCallbackHandler:
    """A plain ``def`` handler: the connection lives on its callbacks, with no task."""

    async def test_echo_without_a_task(self) -> None:
        opened: list[ServerWebSocket] = []

        def echo_callbacks(ws: WebSocket) -> None:
            assert isinstance(ws, ServerWebSocket)
            opened.append(ws)
            ws.on_message = ws.send_nowait

        async with serve(echo_callbacks, "127.0.0.1", 0) as server, connect(uri(server)) as ws:
            for message in ("hello", b"\x00\x01"):
                await ws.send(message)
                assert await wait_for(ws.recv()) == message
            # The handler returned long ago, and the connection is still open and taskless.
            assert server._tasks == set()
            assert len(opened) == 1 and opened[0]._task is None
            assert server.connections == {opened[0]}

    async def test_on_close_reports_the_close(self) -> None:
        closed: asyncio.Queue[tuple[int | None, str | None]] = asyncio.Queue()

        def handler(ws: WebSocket) -> None:
            ws.on_close = lambda ws: closed.put_nowait((ws.close_code, ws.close_reason))

        async with serve(handler, "127.0.0.1", 0) as server:
            async with connect(uri(server)) as ws:
                await ws.close(4000, "bye")
            assert await wait_for(closed.get()) == (4000, "bye")

    async def test_server_close_sends_1001(self) -> None:
        async with serve(lambda ws: None, "127.0.0.1", 0) as server, connect(uri(server)) as ws:
            await until(lambda: len(server.connections) == 1)
            server.close()
            with pytest.raises(ConnectionClosedOK) as info:
                await wait_for(ws.recv())
            assert info.value.code == 1001
            await wait_for(server.wait_closed())

    async def test_exception_closes_with_1011(self, caplog: pytest.LogCaptureFixture) -> None:
        def broken(ws: WebSocket) -> None:
            raise RuntimeError("boom")

        caplog.set_level(logging.INFO, logger="fullduplex.server")
        async with serve(broken, "127.0.0.1", 0) as server, connect(uri(server)) as ws:
            with pytest.raises(ConnectionClosedError) as info:
                await wait_for(ws.recv())
            assert (info.value.code, info.value.reason) == (1011, "internal error")
        assert any("connection handler failed" in r.getMessage() for r in caplog.records)

    async def test_async_process_request_still_works(self) -> None:
        async def refuse_secret(ws: ServerWebSocket, request: Request) -> Response | None:
            await asyncio.sleep(0)
            return ws.respond(403, "no\n") if request.path == "/secret" else None

        def handler(ws: WebSocket) -> None:
            ws.on_message = ws.send_nowait

        async with serve(handler, "127.0.0.1", 0, process_request=refuse_secret) as server:
            with pytest.raises(InvalidStatus) as info:
                await connect(uri(server, "/secret"))
            assert info.value.status_code == 403
            async with connect(uri(server)) as ws:
                await ws.send("still here")
                assert await wait_for(ws.recv()) == "still here"

    async def test_frames_sent_with_the_request_reach_the_callback(self) -> None:
        def echo_callbacks(ws: WebSocket) -> None:
            ws.on_message = ws.send_nowait

        async with serve(echo_callbacks, "127.0.0.1", 0) as server:
            raw = await RawClient.open(server.port)
            try:
                # One write: the request, then a frame before the 101 came back.
                raw.writer.write(
                    RawClient.request() + serialize_frame(Opcode.TEXT, b"early", mask=b"abcd")
                )
                await wait_for(raw.reader.readuntil(b"\r\n\r\n"))
                assert await raw.read_frame() == Frame(Opcode.TEXT, b"early", True, False)
            finally:
                await raw.close()

    async def test_an_exception_in_on_message_closes_with_1011(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        def handler(ws: WebSocket) -> None:
            def on_message(message: Any) -> None:
                ws.send_nowait(f"reply-{message}")
                if message == "boom":
                    raise RuntimeError("boom")

            ws.on_message = on_message

        caplog.set_level(logging.INFO, logger="fullduplex.server")
        async with serve(handler, "127.0.0.1", 0) as server, connect(uri(server)) as ws:
            await ws.send("ok")
            assert await wait_for(ws.recv()) == "reply-ok"
            await ws.send("boom")
            # The reply queued before the exception still goes out, then the close.
            assert await wait_for(ws.recv()) == "reply-boom"
            with pytest.raises(ConnectionClosedError) as info:
                await wait_for(ws.recv())
            assert (info.value.code, info.value.reason) == (1011, "internal error")
        failures = [r for r in caplog.records if "on_message callback failed" in r.getMessage()]
        assert len(failures) == 1 and failures[0].exc_info is not None

    async def test_a_function_that_returns_a_coroutine_runs_as_a_task(self) -> None:
        def wrapper(ws: WebSocket) -> Any:
            return echo(ws)

        async with serve(wrapper, "127.0.0.1", 0) as server, connect(uri(server)) as ws:
            await ws.send("x")
            assert await wait_for(ws.recv()) == "x"
            assert len(server._tasks) == 1


class TestHandler:
    """The handler runs once per connection; its end decides the close code."""

    async def test_return_closes_with_1000(self) -> None:
        async def quick(ws: WebSocket) -> None:
            pass

        async with serve(quick, "127.0.0.1", 0) as server, connect(uri(server)) as ws:
            with pytest.raises(ConnectionClosedOK) as info:
                await wait_for(ws.recv())
            assert info.value.code == 1000

    async def test_exception_closes_with_1011_and_logs_once(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        async def broken(ws: WebSocket) -> None:
            raise RuntimeError("boom")

        caplog.set_level(logging.INFO, logger="fullduplex.server")
        async with serve(broken, "127.0.0.1", 0) as server, connect(uri(server)) as ws:
            with pytest.raises(ConnectionClosedError) as info:
                await wait_for(ws.recv())
            assert (info.value.code, info.value.reason) == (1011, "internal error")
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1
        assert "connection handler failed" in errors[0].getMessage()
        assert errors[0].exc_info is not None
        assert "boom" in str(errors[0].exc_info[1])

    async def test_connection_closed_in_handler_is_not_an_error(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        done = asyncio.Event()

        async def reader(ws: WebSocket) -> None:
            try:
                await ws.recv()  # raises ConnectionClosedOK, uncaught
            finally:
                done.set()

        caplog.set_level(logging.INFO, logger="fullduplex.server")
        async with serve(reader, "127.0.0.1", 0) as server:
            async with connect(uri(server)):
                pass
            await wait_for(done.wait())
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    async def test_one_task_per_connection(self) -> None:
        handlers = Handlers()
        async with serve(handlers, "127.0.0.1", 0) as server:
            clients = [await connect(uri(server)) for _ in range(3)]
            seen = {await handlers.next() for _ in range(3)}
            assert seen == set(server.connections)
            assert len(server._tasks) == 3
            handlers.release()
            for ws in clients:
                await wait_for(ws.close())
            await until(lambda: not server._tasks)


class TestProcessRequest:
    """process_request answers plain HTTP requests: health checks, 404s, authentication."""

    @staticmethod
    def routes(ws: ServerWebSocket, request: Request) -> Response | None:
        if request.path == "/health":
            return ws.respond(200, "OK\n")
        if request.path != "/ws":
            return ws.respond(404, "not found\n", [("X-Test", "yes")])
        return None

    async def test_health_check(self) -> None:
        async with serve(echo, "127.0.0.1", 0, process_request=self.routes) as server:
            raw = await RawClient.open(server.port)
            request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            status, headers, body = await raw.http(request)
            await raw.close()
        assert status == 200
        assert body == b"OK\n"
        assert headers["content-length"] == "3"

    async def test_not_found(self) -> None:
        async with serve(echo, "127.0.0.1", 0, process_request=self.routes) as server:
            with pytest.raises(InvalidStatus) as info:
                await connect(uri(server, "/elsewhere"))
        assert info.value.status_code == 404
        assert info.value.body == b"not found\n"
        assert ("X-Test", "yes") in info.value.headers

    async def test_upgrade_goes_on(self) -> None:
        async with (
            serve(echo, "127.0.0.1", 0, process_request=self.routes) as server,
            connect(uri(server, "/ws")) as ws,
        ):
            await ws.send("through")
            assert await wait_for(ws.recv()) == "through"

    async def test_async_process_request_sees_headers(self) -> None:
        async def authenticate(ws: ServerWebSocket, request: Request) -> Response | None:
            await asyncio.sleep(0)
            if request.headers.get("Authorization") != "Bearer sesame":
                return ws.respond(403, "forbidden\n")
            return None

        async with serve(echo, "127.0.0.1", 0, process_request=authenticate) as server:
            with pytest.raises(InvalidStatus) as info:
                await connect(uri(server))
            assert info.value.status_code == 403
            headers = [("Authorization", "Bearer sesame")]
            async with connect(uri(server), additional_headers=headers) as ws:
                await ws.send("in")
                assert await wait_for(ws.recv()) == "in"

    async def test_failing_process_request_answers_500(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        def broken(ws: ServerWebSocket, request: Request) -> None:
            raise ValueError("oops")

        caplog.set_level(logging.INFO, logger="fullduplex.server")
        async with serve(echo, "127.0.0.1", 0, process_request=broken) as server:
            with pytest.raises(InvalidStatus) as info:
                await connect(uri(server))
        assert info.value.status_code == 500
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and errors[0].exc_info is not None


class TestBadHandshakes:
    """RFC 6455 4.2.1 and 4.4: a bad request gets an HTTP error with a one-line reason."""

    @pytest.mark.parametrize(
        ("headers", "status", "reason"),
        [
            ({"Sec-WebSocket-Key": ""}, 400, b"missing Sec-WebSocket-Key"),
            ({"Sec-WebSocket-Key": "short"}, 400, b"Sec-WebSocket-Key"),
            ({"Sec-WebSocket-Version": "8"}, 426, b"Sec-WebSocket-Version must be 13"),
            ({"Upgrade": "", "Connection": ""}, 426, b"missing Upgrade"),
            ({"Connection": "keep-alive"}, 426, b"Connection header"),
        ],
    )
    async def test_rejected(
        self,
        echo_server: Server,
        caplog: pytest.LogCaptureFixture,
        headers: dict[str, str],
        status: int,
        reason: bytes,
    ) -> None:
        caplog.set_level(logging.INFO, logger="fullduplex.server")
        raw = await RawClient.open(echo_server.port)
        got_status, got_headers, body = await raw.http(RawClient.request(headers=headers))
        await raw.close()
        assert got_status == status
        assert reason in body
        assert body.count(b"\n") == 1  # one line
        if status == 426:
            assert got_headers["upgrade"] == "websocket"
        if "Sec-WebSocket-Version" in headers:
            assert got_headers["sec-websocket-version"] == "13"
        logged = [r for r in caplog.records if "invalid opening handshake" in r.getMessage()]
        assert len(logged) == 1
        assert logged[0].levelno == logging.INFO

    async def test_plain_get(self, echo_server: Server) -> None:
        raw = await RawClient.open(echo_server.port)
        status, headers, body = await raw.http(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await raw.close()
        assert status == 426
        assert headers["upgrade"] == "websocket"
        assert b"Upgrade" in body

    async def test_not_http(self, echo_server: Server) -> None:
        raw = await RawClient.open(echo_server.port)
        status, _, body = await raw.http(b"HELLO\r\n\r\n")
        await raw.close()
        assert status == 400
        assert body

    @pytest.mark.parametrize(
        "request_bytes",
        [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"junk" * 5000, b"BAD\r\n\r\n" + b"junk" * 5000],
    )
    async def test_connection_ends_after_a_rejection(self, request_bytes: bytes) -> None:
        """Bytes after a rejected request are discarded, and the server notices the client's
        close at once instead of waiting for close_timeout."""
        async with serve(echo, "127.0.0.1", 0, close_timeout=30) as server:
            raw = await RawClient.open(server.port)
            status, _, _ = await raw.http(request_bytes)
            assert status in (400, 426)
            await raw.close()
            await until(lambda: not server._protocols, timeout=2)

    async def test_headers_too_large(self) -> None:
        async with serve(echo, "127.0.0.1", 0, max_header_size=1024) as server:
            raw = await RawClient.open(server.port)
            request = RawClient.request(headers={"X-Big": "x" * 2000})
            status, _, _ = await raw.http(request)
            await raw.close()
        assert status == 431

    async def test_post(self, echo_server: Server) -> None:
        raw = await RawClient.open(echo_server.port)
        request = RawClient.request().replace(b"GET", b"POST", 1)
        status, headers, _ = await raw.http(request)
        await raw.close()
        assert status == 405
        assert headers["allow"] == "GET"


class TestOpenTimeout:
    """open_timeout bounds the opening handshake: silent or slow clients are dropped."""

    async def test_silent_client(self) -> None:
        async with serve(echo, "127.0.0.1", 0, open_timeout=0.1) as server:
            raw = await RawClient.open(server.port)
            assert await raw.read_until_eof() == b""
            await raw.close()
            await until(lambda: not server._protocols)

    async def test_incomplete_request(self) -> None:
        async with serve(echo, "127.0.0.1", 0, open_timeout=0.1) as server:
            raw = await RawClient.open(server.port)
            raw.writer.write(RawClient.request()[:30])
            assert await raw.read_until_eof() == b""
            await raw.close()

    async def test_timer_stops_once_open(self) -> None:
        async with (
            serve(echo, "127.0.0.1", 0, open_timeout=0.05) as server,
            connect(uri(server)) as ws,
        ):
            server_ws = next(iter(server.connections))
            assert server_ws._open_handle is None
            await ws.send("alive")
            assert await wait_for(ws.recv()) == "alive"


class TestMaxConnections:
    """Beyond max_connections, the server answers 503."""

    async def test_limit(self) -> None:
        async with serve(echo, "127.0.0.1", 0, max_connections=1) as server:
            first = await connect(uri(server))
            with pytest.raises(InvalidStatus) as info:
                await connect(uri(server))
            assert info.value.status_code == 503
            await first.close()
            await until(lambda: not server.connections)
            async with connect(uri(server)) as ws:
                await ws.send("room again")
                assert await wait_for(ws.recv()) == "room again"


class TestShutdown:
    """server.close() stops accepting, closes every connection with 1001, waits for handlers."""

    async def test_close_sends_1001_to_every_client(self) -> None:
        server = await serve(echo, "127.0.0.1", 0)
        port = server.port
        clients = [await connect(uri(server)) for _ in range(3)]
        await wait_for(server.close())
        for ws in clients:
            with pytest.raises(ConnectionClosedOK) as info:
                await wait_for(ws.recv())
            assert (info.value.code, info.value.reason) == (1001, "server shutting down")
        assert not server._tasks and not server.connections
        await wait_for(server.wait_closed())
        with pytest.raises(OSError):
            await connect(f"ws://127.0.0.1:{port}/")

    async def test_close_waits_for_handlers(self) -> None:
        finished = []

        async def slow_exit(ws: WebSocket) -> None:
            try:
                await ws.recv()
            finally:
                await asyncio.sleep(0.01)
                finished.append(ws)

        server = await serve(slow_exit, "127.0.0.1", 0)
        client = await connect(uri(server))
        await until(lambda: len(server.connections) == 1)
        await wait_for(server.close())
        assert len(finished) == 1
        await client.wait_closed()

    async def test_close_without_closing_connections(self) -> None:
        server = await serve(echo, "127.0.0.1", 0)
        ws = await connect(uri(server))
        closing = server.close(close_connections=False)
        await ws.send("still served")
        assert await wait_for(ws.recv()) == "still served"
        await ws.close()
        await wait_for(closing)

    async def test_serve_forever_until_cancelled(self) -> None:
        server = serve(echo, "127.0.0.1", 0)
        task = asyncio.create_task(server.serve_forever())
        await until(lambda: bool(server.sockets))
        async with connect(uri(server)) as ws:
            await ws.send("x")
            assert await wait_for(ws.recv()) == "x"
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            with pytest.raises(ConnectionClosedOK):
                await wait_for(ws.recv())
        await wait_for(server.wait_closed())

    async def test_serve_forever_returns_after_close(self) -> None:
        server = await serve(echo, "127.0.0.1", 0)
        task = asyncio.create_task(server.serve_forever())
        await asyncio.sleep(0)
        server.close()
        await wait_for(task)

    async def test_clients_in_the_handshake_are_dropped(self) -> None:
        server = await serve(echo, "127.0.0.1", 0)
        raw = await RawClient.open(server.port)
        await until(lambda: len(server._protocols) == 1)
        await wait_for(server.close())
        assert await raw.read_until_eof() == b""
        await raw.close()


class TestListening:
    """Where the server listens: port 0, a given socket, IPv6."""

    async def test_port_and_sockets(self) -> None:
        server = serve(echo, "127.0.0.1", 0)
        assert server.sockets == ()
        with pytest.raises(RuntimeError):
            _ = server.port
        async with server:
            assert server.port > 0
            assert server.sockets[0].getsockname() == ("127.0.0.1", server.port)

    async def test_sock(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        async with serve(echo, sock=sock) as server:
            assert server.port == port
            async with connect(uri(server)) as ws:
                await ws.send("via sock")
                assert await wait_for(ws.recv()) == "via sock"

    async def test_ipv6(self) -> None:
        if not socket.has_ipv6:
            pytest.skip("no IPv6")
        try:
            server = await serve(echo, "::1", 0)
        except OSError:
            pytest.skip("::1 is not available")
        async with server, connect(f"ws://[::1]:{server.port}/") as ws:
            await ws.send("v6")
            assert await wait_for(ws.recv()) == "v6"


class TestNegotiation:
    """RFC 6455 4.2.2 subprotocols and RFC 7692 compression, seen from both sides."""

    async def test_subprotocol(self) -> None:
        handlers = Handlers()
        async with serve(handlers, "127.0.0.1", 0, subprotocols=["chat", "superchat"]) as server:
            async with connect(uri(server), subprotocols=["superchat", "other"]) as ws:
                server_ws = await handlers.next()
                assert ws.subprotocol == server_ws.subprotocol == "superchat"
            async with connect(uri(server)) as ws:
                server_ws = await handlers.next()
                assert ws.subprotocol is None and server_ws.subprotocol is None
            handlers.release()

    async def test_select_subprotocol(self) -> None:
        def last(request: Request, offered: Any) -> str | None:
            return offered[-1] if offered else None

        async with (
            serve(echo, "127.0.0.1", 0, select_subprotocol=last) as server,
            connect(uri(server), subprotocols=["a", "b"]) as ws,
        ):
            assert ws.subprotocol == "b"

    @pytest.mark.parametrize(
        ("server_compression", "client_compression", "negotiated"),
        [("deflate", "deflate", True), (None, "deflate", False), ("deflate", None, False)],
    )
    async def test_compression(
        self, server_compression: str | None, client_compression: str | None, negotiated: bool
    ) -> None:
        handlers = Handlers()
        async with (
            serve(handlers, "127.0.0.1", 0, compression=server_compression) as server,
            connect(uri(server), compression=client_compression) as ws,
        ):
            server_ws = await handlers.next()
            for side in (ws, server_ws):
                header = side.response.headers.get("Sec-WebSocket-Extensions", "")
                assert ("permessage-deflate" in header) is negotiated
                assert (side._conn._deflate is not None) is negotiated
            text = "compressible " * 1000
            await ws.send(text)
            assert await wait_for(server_ws.recv()) == text
            await server_ws.send(text)
            assert await wait_for(ws.recv()) == text
            handlers.release()

    async def test_unknown_compression(self) -> None:
        with pytest.raises(ValueError):
            serve(echo, "127.0.0.1", 0, compression="brotli")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made with openssl: (cert, key)."""
    directory = tmp_path_factory.mktemp("tls")
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
            timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"openssl could not make a certificate: {exc}")
    return cert, key


class TestTLS:
    """wss:// with a self-signed certificate."""

    async def test_wss(self, certificate: tuple[Path, Path]) -> None:
        cert, key = certificate
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(cert, key)
        client_context = ssl.create_default_context(cafile=str(cert))
        handlers = Handlers()
        async with serve(handlers, "127.0.0.1", 0, ssl=server_context) as server:
            async with connect(f"wss://127.0.0.1:{server.port}/", ssl=client_context) as ws:
                server_ws = await handlers.next()
                assert ws._transport.get_extra_info("ssl_object") is not None
                await ws.send("secret")
                assert await wait_for(server_ws.recv()) == "secret"
                await server_ws.send(b"\x00" * 100_000)
                assert await wait_for(ws.recv()) == b"\x00" * 100_000
                handlers.release()
            assert ws.close_code == 1000

            # The default context does not trust a self-signed certificate.
            with pytest.raises(ssl.SSLCertVerificationError):
                await connect(f"wss://127.0.0.1:{server.port}/")

            # server_hostname picks the name checked against the certificate.
            async with connect(
                f"wss://127.0.0.1:{server.port}/", ssl=client_context, server_hostname="localhost"
            ) as ws:
                assert ws.response is not None and ws.response.status == 101
                assert ws._transport.get_extra_info("ssl_object").server_hostname == "localhost"


class TestPerConnectionLimit:
    """process_request may give one connection its own max_message_size."""

    async def test_max_message_size_set_in_process_request(self) -> None:
        def limit(ws: ServerWebSocket, request: Request) -> None:
            assert ws.max_message_size == 2**20  # the server's
            if request.path == "/small":
                ws.max_message_size = 10

        async with serve(echo, "127.0.0.1", 0, process_request=limit) as server:
            async with connect(uri(server, "/large")) as ws:
                await ws.send("x" * 11)
                assert await wait_for(ws.recv()) == "x" * 11
            async with connect(uri(server, "/small")) as ws:
                await ws.send("x" * 10)
                assert await wait_for(ws.recv()) == "x" * 10
                await ws.send("x" * 11)
                with pytest.raises(ConnectionClosedError) as info:
                    await wait_for(ws.recv())
            assert info.value.code == 1009

    async def test_fixed_once_open(self) -> None:
        handlers = Handlers()
        async with serve(handlers, "127.0.0.1", 0) as server, connect(uri(server)):
            server_ws = await handlers.next()
            with pytest.raises(InvalidState):
                server_ws.max_message_size = 10
            assert server_ws.max_message_size == 2**20
            handlers.release()


def _hello_then_violation() -> bytes:
    """TEXT("hello"), TEXT("hello") with RSV2 (a violation), PING("after"): one client write."""
    bad = bytearray(serialize_frame(Opcode.TEXT, b"hello", mask=b"abcd"))
    bad[0] |= 0x20
    return (
        serialize_frame(Opcode.TEXT, b"hello", mask=b"abcd")
        + bytes(bad)
        + serialize_frame(Opcode.PING, b"after", mask=b"abcd")
    )


class TestSection7_1_7RepliesBeforeTheFailure:
    """Valid messages, then a violation in the same read: the messages reach the handler, its
    replies reach the peer, and only then the close frame (1002); nothing after it."""

    EXPECTED = [(Opcode.TEXT, b"hello"), (Opcode.CLOSE, b"\x03\xea")]

    async def test_callback_handler(self) -> None:
        def echo_callbacks(ws: WebSocket) -> None:
            ws.on_message = ws.send_nowait

        async with serve(echo_callbacks, "127.0.0.1", 0) as server:
            assert await frames_after(server.port, _hello_then_violation()) == self.EXPECTED

    async def test_async_for_handler(self) -> None:
        async with serve(echo, "127.0.0.1", 0) as server:
            assert await frames_after(server.port, _hello_then_violation()) == self.EXPECTED

    async def test_handler_that_replies_later(self) -> None:
        async def slow_echo(ws: Any) -> None:
            async for message in ws:
                await asyncio.sleep(0.01)
                await ws.send(message)

        async with serve(slow_echo, "127.0.0.1", 0) as server:
            assert await frames_after(server.port, _hello_then_violation()) == self.EXPECTED

    async def test_async_for_handler_answers_every_message(self) -> None:
        # The first reply must not take the close frame with it: b and c are answered too.
        async def reply(ws: Any) -> None:
            async for message in ws:
                await ws.send("re:" + message)

        async with serve(reply, "127.0.0.1", 0) as server:
            frames = await frames_after(server.port, violation_after(b"a", b"b", b"c"))
        assert frames == [
            (Opcode.TEXT, b"re:a"),
            (Opcode.TEXT, b"re:b"),
            (Opcode.TEXT, b"re:c"),
            (Opcode.CLOSE, b"\x03\xea"),
        ]

    async def test_peer_half_closes_after_the_violation(self) -> None:
        # The peer's EOF ends the wait: the close frame still leaves (after any reply).
        async def slow_echo(ws: Any) -> None:
            with contextlib.suppress(ConnectionClosed):
                async for message in ws:
                    await asyncio.sleep(0.01)
                    await ws.send(message)

        async with serve(slow_echo, "127.0.0.1", 0) as server:
            frames = await frames_after(server.port, _hello_then_violation(), eof=True)
        assert frames[-1] == (Opcode.CLOSE, b"\x03\xea")
        assert frames[:-1] in ([], [(Opcode.TEXT, b"hello")])

    async def test_handler_back_in_recv_without_replying(self) -> None:
        received: list[Any] = []

        async def mute(ws: Any) -> None:
            async for message in ws:
                received.append(message)

        async with serve(mute, "127.0.0.1", 0) as server:
            frames = await frames_after(server.port, _hello_then_violation())
        assert frames == self.EXPECTED[1:]
        assert received == ["hello"]

    @pytest.mark.parametrize("reads", [False, True], ids=["never-reads", "reads-then-stalls"])
    async def test_the_wait_is_bounded(self, reads: bool) -> None:
        # A handler that never takes the message, or takes it and never comes back: the close
        # frame still leaves (after FAILURE_GRACE at most), and the connection ends.
        stall = asyncio.Event()

        async def stuck(ws: Any) -> None:
            if reads:
                await ws.recv()
            await stall.wait()

        async with serve(stuck, "127.0.0.1", 0) as server:
            try:
                frames = await frames_after(server.port, _hello_then_violation())
            finally:
                stall.set()  # the server waits for its handlers when it stops
        assert frames == self.EXPECTED[1:]
