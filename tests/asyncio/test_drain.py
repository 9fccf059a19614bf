"""Tests for Server.drain: the listener closes first, the open connections are closed with the
code given, spread over the duration, and whatever is still open at the timeout is cut."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from fullduplex.app import App
from fullduplex.asyncio.client import connect
from fullduplex.asyncio.connection import WebSocket
from fullduplex.asyncio.server import serve
from tests.app.utils import http_get
from tests.asyncio.utils import RawClient, until
from tests.helpers import seconds


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


async def test_closes_spread_over_the_duration() -> None:
    loop = asyncio.get_running_loop()
    async with serve(echo, "127.0.0.1", 0) as server:
        port = server.port
        clients = [await connect(f"ws://127.0.0.1:{port}/") for _ in range(20)]
        closed_at: list[float] = []

        async def watch(ws: WebSocket) -> None:
            await ws.wait_closed()
            closed_at.append(loop.time())

        watchers = [asyncio.create_task(watch(ws)) for ws in clients]
        started = loop.time()
        drained = server.drain(2.0, code=1012, reason="restarting")
        await asyncio.sleep(0.3)
        assert server.closing
        with pytest.raises(OSError):  # the listener is closed: siblings take new clients
            await connect(f"ws://127.0.0.1:{port}/", open_timeout=seconds(2))
        assert 0 < len(closed_at) < 20  # begun at once, but not all at once
        await asyncio.wait_for(drained, seconds(10))
        await asyncio.gather(*watchers)
    assert all((ws.close_code, ws.close_reason) == (1012, "restarting") for ws in clients)
    assert max(closed_at) - started >= 1.0  # the last batch near the end of the 2 s


async def test_what_is_still_open_at_the_timeout_is_cut() -> None:
    async with serve(echo, "127.0.0.1", 0, close_timeout=60) as server:
        raw = await RawClient.open(server.port)
        await raw.handshake()
        # This client never answers the close frame; the close timeout (60 s) would wait.
        await asyncio.wait_for(server.drain(0, timeout=0.5), seconds(5))
        assert await asyncio.wait_for(raw.reader.read(), seconds(5)) is not None
        await raw.close()


async def test_an_app_is_not_ready_while_draining() -> None:
    app = App()
    app.health_routes()

    @app.on_message("/echo")
    def reply(session: object, message: str | bytes) -> str | bytes:
        return message

    server = app.serve("127.0.0.1", 0)
    async with server:
        port = server.port
        client = await connect(f"ws://127.0.0.1:{port}/echo")
        assert (await http_get(port, "/readyz"))[0] == 200
        assert app.not_ready() is None
        drained = server.drain(1.0)
        await asyncio.sleep(0)
        assert app.not_ready() == "draining"
        await asyncio.wait_for(drained, seconds(10))
        assert client.close_code == 1001


# The drain test size. Both servers and every client run in this one process: about
# 4 x DRAINED client and server sockets at the peak.
DRAINED = 2_000


async def test_reconnections_spread_onto_a_sibling() -> None:
    """DRAINED (2,000) clients on a server with a sibling on the same port (SO_REUSEPORT);
    the server drains over 2 s: every client is closed with 1001 (none 1006), reconnects at
    once and is taken by the sibling (none refused), and the reconnections come spread out,
    not in one burst (counted per 0.2 s window)."""
    loop = asyncio.get_running_loop()
    first = serve(echo, "127.0.0.1", 0, reuse_port=True)
    async with first:
        port = first.port
        async with serve(echo, "127.0.0.1", port, reuse_port=True) as sibling:
            clients: list[WebSocket] = []
            while len(first.connections) < DRAINED and len(clients) < 4 * DRAINED:
                clients.append(await connect(f"ws://127.0.0.1:{port}/"))
            # The clients the kernel gave to the first server, by their own address.
            peers = {ws.remote_address for ws in first.connections}
            mine = [ws for ws in clients if ws.local_address in peers]
            assert len(mine) == DRAINED
            codes: list[int | None] = []
            reconnected_at: list[float] = []
            refused = 0

            async def follow(ws: WebSocket) -> None:
                nonlocal refused
                await ws.wait_closed()
                codes.append(ws.close_code)
                try:
                    again = await connect(f"ws://127.0.0.1:{port}/")
                except OSError:
                    refused += 1
                    return
                reconnected_at.append(loop.time())
                clients.append(again)

            followers = [asyncio.create_task(follow(ws)) for ws in mine]
            started = loop.time()
            await asyncio.wait_for(first.drain(2.0), seconds(30))
            await asyncio.wait_for(asyncio.gather(*followers), seconds(30))
            assert codes.count(1001) == DRAINED and refused == 0
            assert len(sibling.connections) >= DRAINED
            windows = [0] * 20
            for at in reconnected_at:
                windows[min(19, int((at - started) / 0.2))] += 1
            # ~200 per window, not 2,000 in one: spread, not a storm. Loose bounds, since a
            # busy machine may stall the loop and merge two or three batches into one window.
            assert max(windows) <= DRAINED // 3, windows
            assert sum(1 for count in windows if count) >= 5, windows
            for ws in clients:
                await ws.close()


async def test_a_handshake_that_completes_late_does_not_hold_the_drain() -> None:
    async def slow_check(ws: WebSocket, request: object) -> None:
        await asyncio.sleep(0.3)

    # It opens (its client reached the server before the listener closed) and is closed
    # too; one that does not answer the close is dropped after close_timeout.
    server = serve(echo, "127.0.0.1", 0, process_request=slow_check, close_timeout=1)
    async with server:
        raw = await RawClient.open(server.port)
        raw.writer.write(RawClient.request())
        await asyncio.sleep(0.05)  # the request is in, its process_request under way
        await asyncio.wait_for(server.drain(0, timeout=1), seconds(5))
        assert (await raw.reader.read()).startswith(b"HTTP/1.1 101")
        await raw.close()


async def test_a_client_accepted_before_its_request_opens_and_is_closed() -> None:
    """A client this process accepted just before the listener closed reached it, not a
    sibling: its request, sent during the drain, opens and is closed with the drain's code
    (a reset there was a refused connection during a zero-downtime reload)."""
    async with serve(echo, "127.0.0.1", 0) as server:
        raw = await RawClient.open(server.port)
        await until(lambda: len(server._protocols) == 1)  # accepted, no request yet
        drained = asyncio.ensure_future(server.drain(0, code=1012, timeout=seconds(5)))
        await asyncio.sleep(0.2)
        assert not drained.done()  # the drain waits for it
        status, _, _ = await raw.http(RawClient.request())
        assert status == 101
        frame = await raw.read_frame()
        assert frame.payload[:2] == (1001).to_bytes(2, "big")  # closed with the late ones
        raw.send_frame(0x8, frame.payload[:2])
        assert await raw.read_until_eof() == b""  # the server ends TCP; the client follows
        await raw.close()
        await asyncio.wait_for(drained, seconds(5))


async def test_a_client_that_never_sends_its_request_is_cut_at_the_drain_deadline() -> None:
    async with serve(echo, "127.0.0.1", 0, open_timeout=None) as server:
        raw = await RawClient.open(server.port)
        await until(lambda: len(server._protocols) == 1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(server.drain(0, timeout=0.5), seconds(5))
        assert loop.time() - started >= 0.4  # waited for its request until the deadline
        assert await raw.read_until_eof() == b""
        await raw.close()


async def test_close_drops_a_client_that_sent_no_request() -> None:
    """close(), unlike a drain, does not wait for requests still to come."""
    async with serve(echo, "127.0.0.1", 0, open_timeout=None) as server:
        raw = await RawClient.open(server.port)
        await until(lambda: len(server._protocols) == 1)
        await asyncio.wait_for(server.close(), seconds(2))
        assert await raw.read_until_eof() == b""
        await raw.close()


def _handshake_in_thread(port: int, results: list[str]) -> None:
    """Connect, send a request, record the status line (or the error)."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds(10)) as sock:
        try:
            sock.sendall(RawClient.request())
            line = sock.recv(100).split(b"\r\n")[0].decode()
            results.append(line or "EOF")
        except OSError as exc:
            results.append(type(exc).__name__)


async def test_clients_queued_by_the_kernel_are_served_not_reset() -> None:
    """Clients the kernel queued on the listener while the loop was busy, when the drain
    begins: each is accepted, opens and is closed, rather than reset with the listener."""
    async with serve(echo, "127.0.0.1", 0) as server:
        results: list[str] = []
        threads = [
            threading.Thread(target=_handshake_in_thread, args=(server.port, results))
            for _ in range(10)
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # the loop is busy (as under load): the kernel queues them
        await asyncio.wait_for(server.drain(1.0, timeout=seconds(5)), seconds(10))
        await asyncio.to_thread(lambda: [thread.join() for thread in threads])
    assert results == ["HTTP/1.1 101 Switching Protocols"] * 10


async def test_a_connection_opening_during_the_last_closes_is_closed_too() -> None:
    """A plain handler starts no task: a connection that opens while the drain awaits the
    last closes is still closed before the server says it is closed."""

    def handler(ws: WebSocket) -> None:
        pass  # callback style: no task per connection

    async with serve(handler, "127.0.0.1", 0, close_timeout=2) as server:
        a, c, b = [await RawClient.open(server.port) for _ in range(3)]
        await a.handshake()  # open before the drain; never answers a close (2 s each)
        await until(lambda: len(server._protocols) == 3)
        drained = asyncio.ensure_future(server.drain(0, timeout=seconds(20)))
        await asyncio.sleep(0.3)
        assert (await c.http(RawClient.request()))[0] == 101  # late: closed after A's close
        await asyncio.sleep(2.2)  # A's close has timed out; the drain now waits on C's close
        assert (await b.http(RawClient.request()))[0] == 101
        await asyncio.wait_for(drained, seconds(20))
        assert not server._open
        frame = await b.read_frame()
        assert (frame.opcode, frame.payload[:2]) == (0x8, (1001).to_bytes(2, "big"))
        for raw in (a, b, c):
            await raw.close()


def test_drain_refuses_a_code_no_endpoint_may_send() -> None:
    server = serve(echo, "127.0.0.1", 0)
    with pytest.raises(ValueError, match="not a close code"):
        server.drain(code=1006)
