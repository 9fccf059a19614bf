"""Tests for ``async for ws in connect(...)``: reconnection, backoff, and the retry rule."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from fullduplex.asyncio.client import (
    DEFAULT_BACKOFF_FACTOR,
    DEFAULT_BACKOFF_INITIAL,
    DEFAULT_BACKOFF_MAX,
    backoff_delays,
    connect,
    is_retryable,
)
from fullduplex.asyncio.connection import WebSocket
from fullduplex.asyncio.server import ServerWebSocket, serve
from fullduplex.exceptions import (
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidMessage,
    InvalidResponse,
    InvalidStatus,
    InvalidURI,
    NegotiationError,
    SecurityError,
)
from fullduplex.protocol.connection import State
from fullduplex.protocol.handshake import Request, Response, accept_key
from tests.asyncio.utils import Handlers, echo, uri, wait_for
from tests.helpers import seconds

# Small delays, so that retries happen within a test's time.
FAST = {"backoff_initial": 0.01, "backoff_factor": 2.0, "backoff_max": 0.04}


class Attempts(logging.Handler):
    """A logger for connect(): counts the failed attempts it logs, with their delays."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.failures: list[tuple[BaseException, float]] = []
        self.reconnect_delays: list[float] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.logger = logging.getLogger(f"tests.reconnect.{id(self)}")
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        assert isinstance(record.args, tuple)
        if record.msg.startswith("connection to %s failed"):
            _, exc, delay = record.args
            self.failures.append((exc, delay))  # type: ignore[arg-type]
        elif record.msg.startswith("connection to %s closed"):
            self.reconnect_delays.append(record.args[1])  # type: ignore[arg-type]
        for count, waiter in self._waiters:
            if len(self.failures) >= count and not waiter.done():
                waiter.set_result(None)

    async def wait(self, count: int) -> None:
        """Wait until ``count`` failed attempts were logged."""
        if len(self.failures) < count:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append((count, waiter))
            await wait_for(waiter)

    def close(self) -> None:
        self.logger.removeHandler(self)
        super().close()


@pytest.fixture
def attempts() -> Iterator[Attempts]:
    """A logger handler that counts failed connection attempts."""
    handler = Attempts()
    yield handler
    handler.close()


Respond = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(respond: Respond) -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP server on 127.0.0.1 that lets ``respond`` answer each connection byte by byte.

    Yields (port, [number of connections so far]); stops the server and its tasks on exit.
    """
    tasks: set[asyncio.Task[None]] = set()
    count = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        count[0] += 1
        try:
            await respond(reader, writer)
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], count
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=seconds(5))
        await wait_for(server.wait_closed())


def accepting(extra_headers: bytes = b"", key: Callable[[str], str] = accept_key) -> Respond:
    """A raw response: a 101 with ``extra_headers`` and the accept value ``key(client key)``."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        match = re.search(rb"Sec-WebSocket-Key: (\S+)", head)
        assert match is not None
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + key(match.group(1).decode()).encode() + b"\r\n"
            + extra_headers + b"\r\n"
        )  # fmt: skip
        await reader.read()

    return respond


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the request and close the connection without an answer."""
    await reader.readuntil(b"\r\n\r\n")


async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the request and never answer."""
    await reader.read()


def answering(status: int) -> Respond:
    """A raw response with ``status`` and a short body."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/1.1 {status} Test\r\nContent-Length: 2\r\n\r\nno".encode())
        await reader.read()

    return respond


class TestBackoffDelays:
    """backoff_delays(): exponential bounds, full jitter."""

    def test_bounds_grow_then_cap(self) -> None:
        draws: list[tuple[float, float]] = []

        def top(low: float, high: float) -> float:
            draws.append((low, high))
            return high

        delays = backoff_delays(0.5, 3.0, 10.0, uniform=top)
        assert [next(delays) for _ in range(6)] == [0.5, 1.5, 4.5, 10.0, 10.0, 10.0]
        assert all(low == 0.0 for low, _ in draws)

    def test_full_jitter(self) -> None:
        delays = backoff_delays(1.0, 2.0, 8.0)
        values = [next(delays) for _ in range(200)]
        bounds = [min(8.0, 2.0**n) for n in range(200)]
        assert all(0.0 <= value <= bound for value, bound in zip(values, bounds, strict=True))
        # Drawn, not fixed: 196 draws under a bound of 8 are not all equal.
        assert len(set(values[4:])) > 1

    def test_initial_above_max(self) -> None:
        delays = backoff_delays(5.0, 2.0, 1.0, uniform=lambda low, high: high)
        assert [next(delays) for _ in range(3)] == [1.0, 1.0, 1.0]

    def test_defaults(self) -> None:
        delays = backoff_delays(uniform=lambda low, high: high)
        first, second = next(delays), next(delays)
        assert (first, second) == (
            DEFAULT_BACKOFF_INITIAL,
            DEFAULT_BACKOFF_INITIAL * DEFAULT_BACKOFF_FACTOR,
        )
        for _ in range(30):
            last = next(delays)
        assert last == DEFAULT_BACKOFF_MAX

    @pytest.mark.parametrize(
        ("initial", "factor", "maximum"), [(-1.0, 2.0, 1.0), (1.0, 0.5, 1.0), (1.0, 2.0, -1.0)]
    )
    def test_invalid(self, initial: float, factor: float, maximum: float) -> None:
        with pytest.raises(ValueError, match="backoff"):
            next(backoff_delays(initial, factor, maximum))
        with pytest.raises(ValueError, match="backoff"):
            connect(
                "ws://127.0.0.1:1/",
                backoff_initial=initial,
                backoff_factor=factor,
                backoff_max=maximum,
            )


class TestIsRetryable:
    """The retry rule: transient failures yes, fatal ones no."""

    @pytest.mark.parametrize(
        "exc",
        [
            ConnectionRefusedError(),
            ConnectionResetError(),
            socket.gaierror(-3, "Temporary failure in name resolution"),
            TimeoutError(),
            OSError("network unreachable"),
            ssl.SSLEOFError(),
            EOFError(),
            InvalidMessage("the server closed the connection"),
            InvalidStatus(500),
            InvalidStatus(502),
            InvalidStatus(503),
            InvalidStatus(599),
        ],
        ids=repr,
    )
    def test_retryable(self, exc: BaseException) -> None:
        assert is_retryable(exc)

    @pytest.mark.parametrize(
        "exc",
        [
            InvalidStatus(400),
            InvalidStatus(401),
            InvalidStatus(403),
            InvalidStatus(404),
            InvalidStatus(407),
            InvalidStatus(429),
            InvalidStatus(600),
            InvalidResponse("bad accept"),
            NegotiationError("subprotocol"),
            SecurityError("too large"),
            InvalidHandshake("SOCKS refusal"),
            InvalidURI("http://x", "scheme"),
            ssl.SSLCertVerificationError(),
            ValueError(),
            RuntimeError(),
        ],
        ids=repr,
    )
    def test_fatal(self, exc: BaseException) -> None:
        assert not is_retryable(exc)


class TestReconnect:
    """A new connection each time the previous one closed."""

    async def test_new_connection_after_each_close(self, attempts: Attempts) -> None:
        handlers = Handlers()
        received: list[str] = []
        connections: list[WebSocket] = []
        async with serve(handlers, "127.0.0.1", 0) as server:
            async for ws in connect(uri(server), logger=attempts.logger, **FAST):
                connections.append(ws)
                server_ws = await handlers.next()
                await server_ws.send(f"connection {len(connections)}")
                if len(connections) == 3:
                    received.append(await wait_for(ws.recv()))  # type: ignore[arg-type]
                    break
                # The server goes away; the body catches that and goes on to the next one.
                await server_ws.close(1001, "restarting")
                try:
                    while True:
                        received.append(await wait_for(ws.recv()))  # type: ignore[arg-type]
                except ConnectionClosed as exc:
                    assert exc.code == 1001
                    continue
            await ws.close()
            handlers.release()
        assert received == ["connection 1", "connection 2", "connection 3"]
        assert len({id(ws) for ws in connections}) == 3
        # After a connection that was open, the next attempt waits at most the first bound.
        assert len(attempts.reconnect_delays) == 2
        assert all(0 <= delay <= FAST["backoff_initial"] for delay in attempts.reconnect_delays)
        assert attempts.failures == []

    async def test_abnormal_close(self) -> None:
        handlers = Handlers()
        opened = 0
        async with serve(handlers, "127.0.0.1", 0) as server:
            async for ws in connect(uri(server), **FAST):
                opened += 1
                server_ws = await handlers.next()
                if opened == 2:
                    break
                server_ws._transport.abort()  # no close frame: 1006
                try:
                    await wait_for(ws.recv())
                except ConnectionClosed as exc:
                    assert exc.code == 1006
                    continue
            await ws.close()
            handlers.release()
        assert opened == 2

    async def test_body_moves_on_while_open(self) -> None:
        """``continue`` with the connection still open: it is closed (1000) first."""
        handlers = Handlers()
        previous: WebSocket | None = None
        async with serve(handlers, "127.0.0.1", 0) as server:
            async for ws in connect(uri(server), **FAST):
                await handlers.next()
                if previous is not None:
                    assert previous.state is State.CLOSED
                    assert previous.close_code == 1000
                    break
                previous = ws
            await ws.close()
            handlers.release()

    async def test_break_closes(self) -> None:
        """Leaving the loop closes the last connection, when the iterator is finalized."""
        handlers = Handlers()
        async with serve(handlers, "127.0.0.1", 0) as server:
            async for _ws in connect(uri(server), **FAST):
                server_ws: ServerWebSocket = await handlers.next()
                break
            # The async generator is finalized as soon as the loop drops it.
            await wait_for(server_ws.wait_closed())
            assert server_ws.close_code == 1000
            handlers.release()

    async def test_server_starts_late(self, attempts: Attempts) -> None:
        """Refused while the server is down; connected once it listens on the same port."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
            port = sock.getsockname()[1]

            async def start_later() -> None:
                await attempts.wait(3)
                async with serve(echo, sock=sock):
                    await stop.wait()

            stop = asyncio.Event()
            server_task = asyncio.create_task(start_later())
            try:
                async for ws in connect(f"ws://127.0.0.1:{port}/", logger=attempts.logger, **FAST):
                    await ws.send("back")
                    assert await wait_for(ws.recv()) == "back"
                    break
                await ws.close()
            finally:
                stop.set()
                await wait_for(server_task)
        assert len(attempts.failures) >= 3
        assert all(isinstance(exc, ConnectionRefusedError) for exc, _ in attempts.failures)
        # Full jitter under bounds that double from backoff_initial up to backoff_max.
        for n, (_, delay) in enumerate(attempts.failures):
            bound = min(FAST["backoff_max"], FAST["backoff_initial"] * 2.0**n)
            assert 0 <= delay <= bound

    async def test_5xx_retried(self, attempts: Attempts) -> None:
        requests = 0

        def process_request(ws: ServerWebSocket, request: Request) -> Response | None:
            nonlocal requests
            requests += 1
            return ws.respond(503, "busy") if requests <= 2 else None

        async with serve(echo, "127.0.0.1", 0, process_request=process_request) as server:
            async for ws in connect(uri(server), logger=attempts.logger, **FAST):
                await ws.send("ok")
                assert await wait_for(ws.recv()) == "ok"
                break
            await ws.close()
        assert requests == 3
        statuses = [exc.status_code for exc, _ in attempts.failures]  # type: ignore[attr-defined]
        assert statuses == [503, 503]

    @pytest.mark.parametrize(
        ("respond", "kind"),
        [
            (hang_up, InvalidMessage),
            (answering(502), InvalidStatus),
            (mute, TimeoutError),
        ],
        ids=["hang-up", "502", "open-timeout"],
    )
    async def test_transient_failures_retried(
        self, attempts: Attempts, respond: Respond, kind: type[BaseException]
    ) -> None:
        async def iterate(port: int) -> None:
            async for _ in connect(
                f"ws://127.0.0.1:{port}/", logger=attempts.logger, open_timeout=0.1, **FAST
            ):
                pytest.fail("no connection can open")

        async with raw_server(respond) as (port, count):
            task = asyncio.create_task(iterate(port))
            await attempts.wait(3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert count[0] >= 3
        assert all(isinstance(exc, kind) for exc, _ in attempts.failures)

    @pytest.mark.parametrize(
        ("respond", "kind"),
        [
            (answering(403), InvalidStatus),
            (answering(404), InvalidStatus),
            (accepting(b"Sec-WebSocket-Protocol: chat\r\n"), NegotiationError),
            (accepting(key=lambda key: accept_key(key + "x")), InvalidResponse),
        ],
        ids=["403", "404", "subprotocol-not-offered", "bad-accept"],
    )
    async def test_fatal_failures_raised(
        self, attempts: Attempts, respond: Respond, kind: type[BaseException]
    ) -> None:
        async with raw_server(respond) as (port, count):
            with pytest.raises(kind):
                async for _ in connect(f"ws://127.0.0.1:{port}/", logger=attempts.logger, **FAST):
                    pytest.fail("no connection can open")
        assert count[0] == 1
        assert attempts.failures == []

    async def test_invalid_uri(self) -> None:
        with pytest.raises(InvalidURI):
            async for _ in connect("http://127.0.0.1:1/"):
                pytest.fail("no connection can open")

    async def test_sock_cannot_reconnect(self, echo_server: Any) -> None:
        with (
            socket.create_connection(("127.0.0.1", echo_server.port), seconds(5)) as sock,
            pytest.raises(ValueError, match="sock="),
        ):
            async for _ in connect(uri(echo_server), sock=sock):
                pytest.fail("not reached")

    async def test_normal_close_of_the_connection_itself(self, echo_server: Any) -> None:
        """The connections are ordinary: closing one ends its own message loop quietly."""
        async for ws in connect(uri(echo_server), **FAST):
            await ws.close()
            with pytest.raises(ConnectionClosedOK):
                await ws.recv()
            break
