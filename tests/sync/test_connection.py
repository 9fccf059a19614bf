"""Tests for fullduplex.sync.connection: the thread-based WebSocket against real servers.

Servers run on 127.0.0.1: the ``python -m fullduplex echo`` process (``echo_url``), a
fullduplex asyncio server in a background thread (:class:`ServerThread`) with a handler made
for the test, or a raw TCP server that plays a misbehaving peer (:class:`RawServer`).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fullduplex.exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    PayloadTooBig,
)
from fullduplex.protocol.connection import Connection, Role, State
from fullduplex.protocol.frames import Opcode, parse_close
from fullduplex.sync import Data, PongWaiter, WebSocket, connect
from tests.helpers import seconds
from tests.sync.utils import RawServer, ServerThread, read_request, switching_protocols, until


@pytest.fixture
def ws(echo_url: str) -> Iterator[WebSocket]:
    """A connection to the echo server process, closed after the test."""
    with connect(echo_url) as ws:
        yield ws


class TestEcho:
    """Messages go out and come back whole, of the right kind (RFC 6455 section 5.6)."""

    def test_text(self, ws: WebSocket) -> None:
        ws.send("hello, wörld")
        assert ws.recv(timeout=seconds(5)) == "hello, wörld"

    def test_binary(self, ws: WebSocket) -> None:
        ws.send(b"\x00\xff\x10")
        assert ws.recv(timeout=seconds(5)) == b"\x00\xff\x10"

    def test_bytearray_and_memoryview_go_as_binary(self, ws: WebSocket) -> None:
        ws.send(bytearray(b"abc"))
        ws.send(memoryview(b"defg")[1:])
        assert ws.recv(timeout=seconds(5)) == b"abc"
        assert ws.recv(timeout=seconds(5)) == b"efg"

    def test_empty_messages(self, ws: WebSocket) -> None:
        ws.send("")
        ws.send(b"")
        assert ws.recv(timeout=seconds(5)) == ""
        assert ws.recv(timeout=seconds(5)) == b""

    def test_one_mebibyte(self, ws: WebSocket) -> None:
        # The default max_message_size is exactly this: the largest message accepted.
        payload = bytes(range(256)) * 4096
        ws.send(payload)
        assert ws.recv(timeout=seconds(10)) == payload

    def test_many_messages_keep_their_order(self, ws: WebSocket) -> None:
        for i in range(500):
            ws.send(str(i))
        assert [ws.recv(timeout=seconds(5)) for _ in range(500)] == [str(i) for i in range(500)]

    def test_fragmented_send(self, ws: WebSocket) -> None:
        ws.send(["frag", "men", "ted"])
        binary: list[Data] = [b"a", bytearray(b"b"), memoryview(b"c")]
        ws.send(iter(binary))
        ws.send([])  # sends nothing
        ws.send(["whole"])
        assert ws.recv(timeout=seconds(5)) == "fragmented"
        assert ws.recv(timeout=seconds(5)) == b"abc"
        assert ws.recv(timeout=seconds(5)) == "whole"

    def test_send_rejects_other_types(self, ws: WebSocket) -> None:
        with pytest.raises(TypeError):
            ws.send(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            ws.send({"a": 1})  # a Mapping is iterable, but not a message
        with pytest.raises(TypeError):
            ws.send([1, 2])  # type: ignore[list-item]
        # Nothing was started: the connection is still usable.
        ws.send("still open")
        assert ws.recv(timeout=seconds(5)) == "still open"

    def test_iterator_error_before_the_first_frame_sends_nothing(self, ws: WebSocket) -> None:
        def fragments() -> Iterator[str]:
            yield "one"
            raise RuntimeError("producer failed")

        with pytest.raises(RuntimeError):
            ws.send(fragments())
        ws.send("still open")
        assert ws.recv(timeout=seconds(5)) == "still open"

    def test_mixed_fragments_fail_the_connection(self, ws: WebSocket) -> None:
        with pytest.raises(TypeError):
            ws.send(["text", b"bytes"])
        # Half a message went out: the only way out was to fail with 1011.
        with pytest.raises(ConnectionClosedError) as exc_info:
            ws.recv(timeout=seconds(5))
        assert exc_info.value.sent_code == 1011

    def test_iterator_error_fails_the_connection(self, ws: WebSocket) -> None:
        def fragments() -> Iterator[str]:
            yield "one"
            yield "two"
            raise RuntimeError("producer failed")

        with pytest.raises(RuntimeError):
            ws.send(fragments())
        assert ws.wait_closed(seconds(5))
        assert ws._conn.close_sent is not None
        assert ws._conn.close_sent.code == 1011


async def echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


async def fragments_handler(ws: Any) -> None:
    await ws.send(["frag", "men", "ted"])
    await ws.send([b"bin", b"ary"])
    await ws.close()


async def goodbye_handler(ws: Any) -> None:
    for i in range(3):
        await ws.send(f"message {i}")
    await ws.close(4000, "goodbye")


async def three_messages_handler(ws: Any) -> None:
    for i in range(3):
        await ws.send(f"message {i}")
    # Returning closes with 1000.


class TestReceive:
    """recv(), iteration and how they end."""

    def test_fragmented_messages_arrive_whole(self) -> None:
        # RFC 6455 section 5.4: the receiver reassembles fragments into one message.
        with ServerThread(fragments_handler) as server, connect(server.url) as ws:
            assert ws.recv(timeout=seconds(5)) == "fragmented"
            assert ws.recv(timeout=seconds(5)) == b"binary"

    def test_recv_times_out_and_loses_nothing(self, ws: WebSocket) -> None:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.1)
        assert time.monotonic() - start >= 0.1
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0)
        ws.send("late")
        assert ws.recv(timeout=seconds(5)) == "late"

    def test_iteration_ends_on_normal_close(self) -> None:
        with ServerThread(three_messages_handler) as server, connect(server.url) as ws:
            assert list(ws) == ["message 0", "message 1", "message 2"]
            assert ws.close_code == 1000
            # After the end, recv() says why.
            with pytest.raises(ConnectionClosedOK):
                ws.recv(timeout=seconds(5))

    def test_server_close_code_and_reason(self) -> None:
        # Messages sent before the close frame are all delivered first (RFC 6455 7.1.6).
        with ServerThread(goodbye_handler) as server, connect(server.url) as ws:
            received = []
            with pytest.raises(ConnectionClosedError) as exc_info:
                for message in ws:
                    received.append(message)
            assert received == ["message 0", "message 1", "message 2"]
            assert exc_info.value.code == 4000
            assert exc_info.value.reason == "goodbye"
            # The client echoed the code (RFC 6455 section 5.5.1).
            assert exc_info.value.sent_code == 4000
            assert ws.close_code == 4000
            assert ws.close_reason == "goodbye"
            assert ws.wait_closed(seconds(5))
            assert ws.state is State.CLOSED

    def test_message_before_a_violation_then_the_failure(self) -> None:
        # A message and a violation (RSV2) in one write: the message is delivered, then the
        # failure; this API answers in the application's thread, so the close leaves at once.
        sent: list[bytes] = []

        def respond(conn: socket.socket, server: RawServer) -> None:
            conn.sendall(switching_protocols(read_request(conn)))
            conn.sendall(b"\x81\x05hello" + b"\xa1\x05hello")
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
            sent.extend(frame.payload[:2] for frame in server.frames(data))

        with RawServer(respond) as server, connect(server.url, close_timeout=seconds(2)) as ws:
            assert ws.recv(timeout=seconds(5)) == "hello"
            with pytest.raises(ConnectionClosedError) as exc_info:
                ws.recv(timeout=seconds(5))
            assert exc_info.value.sent_code == 1002
        assert sent == [b"\x03\xea"]

    def test_close_code_is_none_while_open(self, ws: WebSocket) -> None:
        assert ws.state is State.OPEN
        assert ws.close_code is None
        assert ws.close_reason is None

    def test_concurrent_recv_is_refused(self, ws: WebSocket) -> None:
        errors: list[BaseException] = []

        def receive() -> None:
            try:
                ws.recv(timeout=seconds(5))
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=receive)
        thread.start()
        until(lambda: ws._recv_waiting)
        with pytest.raises(ConcurrencyError):
            ws.recv(timeout=seconds(1))
        ws.send("for the first")
        thread.join(seconds(5))
        assert not thread.is_alive()
        assert errors == []

    def test_backpressure_stops_reading_when_the_queue_is_full(self) -> None:
        payload = b"x" * 100_000  # more than one read (64 KiB): at most one message per read

        async def flood(server_ws: Any) -> None:
            for _ in range(40):
                await server_ws.send(payload)
            await server_ws.wait_closed()

        with (
            ServerThread(flood) as server,
            connect(server.url, max_queue=4, compression=None) as ws,
        ):
            until(lambda: ws._reader_waiting)
            assert len(ws._messages) == 4
            received = [ws.recv(timeout=seconds(5)) for _ in range(40)]
            assert received == [payload] * 40


class TestPing:
    """ping() and the pong waiter (RFC 6455 sections 5.5.2 and 5.5.3)."""

    def test_ping_measures_the_round_trip(self, ws: WebSocket) -> None:
        assert ws.latency == 0.0
        waiter = ws.ping()
        assert isinstance(waiter, PongWaiter)
        rtt = waiter.wait(seconds(5))
        assert 0 < rtt < seconds(5)
        assert waiter.done()
        assert ws.latency == rtt
        # Waiting again returns the same value at once.
        assert waiter.wait(0) == rtt

    def test_ping_with_data(self, ws: WebSocket) -> None:
        assert ws.ping("ping data").wait(seconds(5)) > 0
        assert ws.ping(b"\x00\x01").wait(seconds(5)) > 0

    def test_ping_payload_too_long(self, ws: WebSocket) -> None:
        with pytest.raises(ValueError):
            ws.ping(b"x" * 126)

    def test_keepalive_pings_measure_latency(self, echo_url: str) -> None:
        with connect(echo_url, ping_interval=0.05, ping_timeout=seconds(5)) as ws:
            until(lambda: ws.latency > 0)

    def test_unanswered_ping(self) -> None:
        with (
            RawServer(ignore_everything) as server,
            connect(server.url, close_timeout=0.1) as ws,
        ):
            waiter = ws.ping("same")
            with pytest.raises(ConcurrencyError):
                ws.ping("same")
            with pytest.raises(TimeoutError):
                waiter.wait(0.05)
            assert not waiter.done()
            ws.close()
            server.stopping.set()
            with pytest.raises(ConnectionClosed):
                waiter.wait(seconds(5))

    def test_ping_after_close(self, ws: WebSocket) -> None:
        ws.close()
        with pytest.raises(ConnectionClosedOK):
            ws.ping()


def ignore_everything(conn: socket.socket, server: RawServer) -> None:
    """Complete the opening handshake, then read and ignore everything until EOF or stop."""
    conn.sendall(switching_protocols(read_request(conn)))
    conn.settimeout(0.05)
    received = b""
    while not server.stopping.is_set():
        try:
            data = conn.recv(65536)
        except TimeoutError:
            continue
        if not data:
            break
        received += data
    server.received = received


class TestKeepalive:
    """Keepalive pings detect a peer that stopped answering."""

    def test_server_that_ignores_pings_is_dropped_with_1011(self) -> None:
        ping_interval, ping_timeout = 0.2, 0.3
        with RawServer(ignore_everything) as server:
            with connect(
                server.url,
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
                close_timeout=0.3,
            ) as ws:
                start = time.monotonic()
                with pytest.raises(ConnectionClosedError) as exc_info:
                    ws.recv(timeout=seconds(10))
                elapsed = time.monotonic() - start
                assert exc_info.value.sent_code == 1011
                assert exc_info.value.code == 1006  # the server never sent a close frame
                assert ping_interval + ping_timeout - 0.05 <= elapsed
                assert elapsed < ping_interval + ping_timeout + seconds(1)
                # The server does not close the TCP connection: close_timeout does.
                assert ws.wait_closed(seconds(5))
            server.stopping.set()
        frames = RawServer.frames(server.received)
        assert frames[0].opcode == Opcode.PING
        assert frames[-1].opcode == Opcode.CLOSE
        assert parse_close(frames[-1].payload) == (1011, "keepalive ping timeout")

    def test_no_keepalive(self) -> None:
        with (
            RawServer(ignore_everything) as server,
            connect(server.url, ping_interval=None) as ws,
        ):
            assert ws._next_deadline is None
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.2)
            assert ws.state is State.OPEN
            server.stopping.set()


def test_keepalive_runs_while_the_reader_waits_to_write() -> None:
    # The peer reads nothing and the socket's buffer is full: the reader, writing its own
    # keepalive ping, is stuck in that write. Its timers must still run: the pong timeout
    # fails the connection (1011), the close timeout drops it.
    client, peer = socket.socketpair()
    with peer:
        ws = WebSocket(
            client,
            Connection(Role.CLIENT),
            logger=logging.getLogger("test"),
            ping_interval=0.1,
            ping_timeout=0.1,
            close_timeout=0.2,
        )
        with ws._send_lock, contextlib.suppress(BlockingIOError):
            while True:
                client.send(b"\x00" * 65536)
        with pytest.raises(ConnectionClosedError) as exc_info:
            ws.recv(timeout=seconds(5))
        assert exc_info.value.sent_code == 1011
        assert ws.wait_closed(seconds(5))
        ws.close()
    assert not ws._reader.is_alive()


def stop_reading(conn: socket.socket, server: RawServer) -> None:
    """Complete the handshake, read 64 KiB of frames, then stop reading until released."""
    conn.sendall(switching_protocols(read_request(conn)))
    received = 0
    while received < 65536:
        data = conn.recv(65536)
        if not data:
            return
        received += len(data)
    server.signal.set()
    server.stopping.wait(seconds(10))
    conn.settimeout(seconds(5))
    while conn.recv(65536):
        pass


class TestThreads:
    """Several threads use one connection; close() unblocks every one of them."""

    def test_recv_send_and_close_in_three_threads(self) -> None:
        # A server of its own, with a short close_timeout: the asyncio server may keep a
        # connection whose receive queue was full until that timeout after the close
        # handshake (its reading stays paused, so it does not see the client's FIN).
        with ServerThread(echo, close_timeout=seconds(1)) as server:
            self._recv_send_and_close_in_three_threads(server.url)

    def _recv_send_and_close_in_three_threads(self, url: str) -> None:
        ws = connect(url).open()
        sent = threading.Event()
        outcomes: dict[str, Any] = {}

        def receiver() -> None:
            received = 0
            try:
                for _ in ws:
                    received += 1
            except BaseException as exc:
                outcomes["recv error"] = exc
            outcomes["received"] = received

        def sender() -> None:
            try:
                for i in range(100_000):
                    ws.send(f"message {i}")
                    if i == 100:
                        sent.set()
            except ConnectionClosed as exc:
                outcomes["send"] = exc

        def closer() -> None:
            sent.wait(seconds(10))
            start = time.monotonic()
            ws.close()
            outcomes["close time"] = time.monotonic() - start

        threads = [threading.Thread(target=f) for f in (receiver, sender, closer)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(seconds(20))
        assert not any(thread.is_alive() for thread in threads)
        assert not ws._reader.is_alive()
        # A normal close: iteration ended quietly, after at least the first echoes.
        assert "recv error" not in outcomes
        assert outcomes["received"] > 0
        assert isinstance(outcomes["send"], ConnectionClosedOK)
        assert outcomes["close time"] < seconds(5)
        assert ws.state is State.CLOSED
        assert ws.close_code == 1000

    def test_close_unblocks_a_send_the_network_does_not_take(self) -> None:
        # A peer that stops reading: a large send blocks until close() gives up on the close
        # handshake (close_timeout) and shuts the socket down.
        close_timeout = 0.3
        with RawServer(stop_reading, rcvbuf=4096) as server:
            ws = connect(server.url, close_timeout=close_timeout).open()
            outcomes: dict[str, BaseException] = {}

            def receiver() -> None:
                try:
                    ws.recv()
                except BaseException as exc:
                    outcomes["recv"] = exc

            def sender() -> None:
                try:
                    ws.send(b"x" * 32 * 2**20)
                except BaseException as exc:
                    outcomes["send"] = exc

            threads = [threading.Thread(target=f) for f in (receiver, sender)]
            for thread in threads:
                thread.start()
            assert server.signal.wait(seconds(10))
            until(lambda: ws._recv_waiting)
            start = time.monotonic()
            ws.close()
            elapsed = time.monotonic() - start
            for thread in threads:
                thread.join(seconds(5))
            assert not any(thread.is_alive() for thread in threads)
            server.stopping.set()
        assert close_timeout <= elapsed < close_timeout + seconds(2)
        assert isinstance(outcomes["recv"], ConnectionClosedError)
        assert isinstance(outcomes["send"], ConnectionClosedError)
        assert outcomes["recv"].code == 1006
        assert not ws._reader.is_alive()
        assert ws.state is State.CLOSED

    def test_pings_from_many_threads(self, ws: WebSocket) -> None:
        rtts: list[float] = []

        def pinger() -> None:
            for _ in range(20):
                rtts.append(ws.ping().wait(seconds(5)))

        threads = [threading.Thread(target=pinger) for _ in range(4)]
        for thread in threads:
            thread.start()
        # Messages are read as they come: a full receive queue would stop reading, pongs
        # included.
        received = []
        for i in range(50):
            ws.send(str(i))
            received.append(ws.recv(timeout=seconds(5)))
        for thread in threads:
            thread.join(seconds(10))
        assert not any(thread.is_alive() for thread in threads)
        assert len(rtts) == 80
        assert received == [str(i) for i in range(50)]


class TestLocalLimit:
    """A message over the client's own limit fails the connection; close_code is final."""

    def test_failure_reads_as_local(self, echo_url: str) -> None:
        # The echo process takes 64 MiB; this client, 1,000 bytes.
        with connect(echo_url, max_message_size=1000) as ws:
            ws.send("x" * 2000)
            with pytest.raises(ConnectionClosedError) as info:
                ws.recv(timeout=seconds(10))
            assert ws.close_code == 1006  # at once, not only once the socket is closed
        assert isinstance(info.value.failure, PayloadTooBig)
        assert info.value.sent_code == 1009
        assert "over the local limit (1000 bytes): sent 1009 (message too big)" in str(info.value)


class TestClose:
    """close() runs the closing handshake (RFC 6455 section 7)."""

    def test_close_is_normal_and_idempotent(self, echo_url: str) -> None:
        ws = connect(echo_url).open()
        ws.close()
        assert ws.state is State.CLOSED
        assert ws.close_code == 1000
        assert not ws._reader.is_alive()
        ws.close()  # again: nothing to do
        with pytest.raises(ConnectionClosedOK):
            ws.send("too late")
        with pytest.raises(ConnectionClosedOK):
            ws.recv()

    def test_close_with_code_and_reason(self) -> None:
        seen: list[tuple[int | None, str | None]] = []

        async def handler(server_ws: Any) -> None:
            try:
                async for _ in server_ws:
                    pass
            finally:
                seen.append((server_ws.close_code, server_ws.close_reason))

        with ServerThread(handler) as server:
            ws = connect(server.url).open()
            ws.close(4321, "done here")
            with pytest.raises(ConnectionClosedError) as exc_info:
                ws.recv()
            assert exc_info.value.sent_code == 4321
            until(lambda: bool(seen))
        assert seen == [(4321, "done here")]

    def test_invalid_close_code(self, ws: WebSocket) -> None:
        with pytest.raises(ValueError):
            ws.close(1005)
        assert ws.state is State.OPEN

    def test_close_times_out_against_a_silent_server(self) -> None:
        with RawServer(ignore_everything) as server:
            ws = connect(server.url, close_timeout=0.2).open()
            start = time.monotonic()
            ws.close()
            elapsed = time.monotonic() - start
            server.stopping.set()
        assert 0.2 <= elapsed < 0.2 + seconds(2)
        assert ws.state is State.CLOSED
        assert ws.close_code == 1006

    def test_close_does_not_hang_on_a_full_socket(self) -> None:
        # The peer reads nothing and the socket's buffer is full, with no other writer:
        # close() writes its close frame itself, and that write is bounded by close_timeout.
        client, peer = socket.socketpair()
        with peer:
            conn = Connection(Role.CLIENT)
            ws = WebSocket(
                client,
                conn,
                logger=logging.getLogger("test"),
                ping_interval=None,
                close_timeout=0.2,
            )
            # Fill the buffer behind the protocol's back: the peer never parses it.
            with ws._send_lock, contextlib.suppress(BlockingIOError):
                while True:
                    client.send(b"\x00" * 65536)
            start = time.monotonic()
            ws.close()
            elapsed = time.monotonic() - start
        assert 0.2 <= elapsed < 0.2 + seconds(2)
        assert ws.state is State.CLOSED
        assert not ws._reader.is_alive()

    def test_with_block_closes(self, echo_url: str) -> None:
        with connect(echo_url).open() as ws:
            ws.send("x")
        assert ws.state is State.CLOSED
        assert not ws._reader.is_alive()

    def test_properties(self, echo_url: str) -> None:
        with connect(echo_url + "/some/path?q=1") as ws:
            assert ws.request is not None
            assert ws.request.path == "/some/path?q=1"
            assert ws.response is not None
            assert ws.response.status == 101
            assert ws.subprotocol is None
            host, port = ws.remote_address
            assert (host, f"{port}") == ("127.0.0.1", echo_url.rsplit(":", 1)[1])
            assert ws.local_address[0] == "127.0.0.1"
            assert ws.id in repr(ws)
            assert "OPEN" in repr(ws)
