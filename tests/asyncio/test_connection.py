"""Tests for fullduplex.asyncio.connection: WebSocket over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from fullduplex.asyncio.client import connect
from fullduplex.asyncio.connection import WebSocket
from fullduplex.asyncio.server import Server, serve
from fullduplex.exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
)
from fullduplex.protocol.connection import Connection, Role, State
from fullduplex.protocol.frames import Opcode, parse_close, serialize_frame
from tests.asyncio.utils import Handlers, RawClient, echo, until, uri, wait_for
from tests.helpers import seconds


class TestDataFrames:
    """RFC 6455 5.6. Data frames: messages arrive whole, with their type."""

    @pytest.mark.parametrize("message", ["hello", "", "caf\u00e9 \U0001f600", b"\x00\xff", b""])
    async def test_echo(self, echo_server: Server, message: str | bytes) -> None:
        async with connect(uri(echo_server)) as ws:
            await ws.send(message)
            reply = await wait_for(ws.recv())
        assert reply == message
        assert type(reply) is type(message)

    @pytest.mark.parametrize("compression", ["deflate", None])
    async def test_one_mebibyte(self, compression: str | None) -> None:
        text = "x" * 2**20
        data = os.urandom(2**20)
        async with (
            serve(echo, "127.0.0.1", 0, compression=compression) as server,
            connect(uri(server), compression=compression) as ws,
        ):
            await ws.send(text)
            await ws.send(data)
            assert await wait_for(ws.recv()) == text
            assert await wait_for(ws.recv()) == data

    async def test_bytes_like(self, echo_server: Server) -> None:
        async with connect(uri(echo_server)) as ws:
            await ws.send(bytearray(b"abc"))
            await ws.send(memoryview(b"defg")[1:])
            assert await wait_for(ws.recv()) == b"abc"
            assert await wait_for(ws.recv()) == b"efg"

    async def test_many_messages_keep_their_order(self, echo_server: Server) -> None:
        async with connect(uri(echo_server)) as ws:
            for i in range(200):
                await ws.send(str(i))
            received = [await wait_for(ws.recv()) for _ in range(200)]
        assert received == [str(i) for i in range(200)]

    @pytest.mark.parametrize("message", [42, None, {"a": "b"}, 1.5])
    async def test_other_types_are_refused(self, echo_server: Server, message: Any) -> None:
        async with connect(uri(echo_server)) as ws:
            with pytest.raises(TypeError):
                await ws.send(message)
            # Nothing was sent and the connection is still usable.
            await ws.send("after")
            assert await wait_for(ws.recv()) == "after"


class TestFragmentation:
    """RFC 6455 5.4. Fragmentation: an iterable is sent as one fragmented message."""

    async def test_text_fragments(self, echo_server: Server) -> None:
        async with connect(uri(echo_server)) as ws:
            await ws.send(["caf", "\u00e9", "!"])
            assert await wait_for(ws.recv()) == "caf\u00e9!"

    async def test_binary_fragments(self, echo_server: Server) -> None:
        async with connect(uri(echo_server)) as ws:
            await ws.send([b"a", bytearray(b"b"), memoryview(b"c")])
            assert await wait_for(ws.recv()) == b"abc"

    async def test_generator(self, echo_server: Server) -> None:
        def fragments() -> Iterator[bytes]:
            for i in range(5):
                yield bytes([i]) * 1000

        async with connect(uri(echo_server)) as ws:
            await ws.send(fragments())
            assert await wait_for(ws.recv()) == b"".join(bytes([i]) * 1000 for i in range(5))

    async def test_async_iterable(self, echo_server: Server) -> None:
        async def fragments() -> AsyncIterator[str]:
            for part in ("a", "b", "c"):
                await asyncio.sleep(0)
                yield part

        async with connect(uri(echo_server)) as ws:
            await ws.send(fragments())
            assert await wait_for(ws.recv()) == "abc"

    async def test_one_fragment(self, echo_server: Server) -> None:
        async with connect(uri(echo_server)) as ws:
            await ws.send(["only"])
            assert await wait_for(ws.recv()) == "only"

    async def test_empty_iterable_sends_nothing(self, echo_server: Server) -> None:
        async with connect(uri(echo_server)) as ws:
            await ws.send([])
            await ws.send("next")
            assert await wait_for(ws.recv()) == "next"

    async def test_first_fragment_of_another_type(self, echo_server: Server) -> None:
        async with connect(uri(echo_server)) as ws:
            with pytest.raises(TypeError):
                await ws.send([42, "a"])
            # Nothing went out, so the connection is intact.
            await ws.send("ok")
            assert await wait_for(ws.recv()) == "ok"

    async def test_mixed_fragments_fail_the_connection(self) -> None:
        handlers = Handlers()
        async with serve(handlers, "127.0.0.1", 0) as server, connect(uri(server)) as ws:
            server_ws = await handlers.next()
            with pytest.raises(TypeError):
                await ws.send(["text", b"bytes"])
            # Half a message went out: the only way out is to fail with 1011.
            with pytest.raises(ConnectionClosedError) as info:
                await wait_for(server_ws.recv())
            assert info.value.code == 1011
            assert info.value.reason == "error in fragmented message"

    async def test_other_sends_wait_for_the_fragmented_message(self, echo_server: Server) -> None:
        resume = asyncio.Event()

        async def fragments() -> AsyncIterator[str]:
            yield "first-"
            await resume.wait()
            yield "second"

        async with connect(uri(echo_server)) as ws:
            fragmented = asyncio.create_task(ws.send(fragments()))
            await until(lambda: ws._fragmenting is not None)
            single = asyncio.create_task(ws.send("single"))
            await asyncio.sleep(0)
            assert not single.done()
            resume.set()
            await wait_for(asyncio.gather(fragmented, single))
            assert await wait_for(ws.recv()) == "first-second"
            assert await wait_for(ws.recv()) == "single"


class TestIteration:
    """``async for`` yields messages; ends on a normal close, raises on an error close."""

    async def test_ends_on_normal_close(self) -> None:
        async def three_then_return(ws: WebSocket) -> None:
            for i in range(3):
                await ws.send(f"m{i}")

        async with serve(three_then_return, "127.0.0.1", 0) as server:
            async with connect(uri(server)) as ws:
                received = [message async for message in ws]
            assert received == ["m0", "m1", "m2"]
            assert ws.close_code == 1000

    async def test_raises_on_error_close(self) -> None:
        async def fail(ws: WebSocket) -> None:
            await ws.send("before")
            await ws.close(4001, "custom")

        async with serve(fail, "127.0.0.1", 0) as server, connect(uri(server)) as ws:
            received = []
            with pytest.raises(ConnectionClosedError) as info:
                async for message in ws:
                    received.append(message)
            assert received == ["before"]
            assert (info.value.code, info.value.reason) == (4001, "custom")


class TestRecv:
    """recv(): one waiter at a time, messages never lost, close reported after the queue."""

    async def test_concurrent_recv(self, echo_server: Server) -> None:
        async with connect(uri(echo_server)) as ws:
            first = asyncio.create_task(ws.recv())
            await asyncio.sleep(0)
            with pytest.raises(ConcurrencyError):
                await ws.recv()
            await ws.send("x")
            assert await wait_for(first) == "x"

    async def test_cancelled_recv_keeps_the_message(self, echo_server: Server) -> None:
        async with connect(uri(echo_server)) as ws:
            waiting = asyncio.create_task(ws.recv())
            await asyncio.sleep(0)
            # The message reaches the waiter, and the waiter is cancelled before it resumes.
            ws._deliver("kept")
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert await wait_for(ws.recv()) == "kept"

    async def test_messages_before_close_are_delivered(self) -> None:
        async def burst(ws: WebSocket) -> None:
            for i in range(5):
                await ws.send(str(i))

        async with serve(burst, "127.0.0.1", 0) as server, connect(uri(server)) as ws:
            await wait_for(ws.wait_closed())
            assert [await ws.recv() for _ in range(5)] == ["0", "1", "2", "3", "4"]
            with pytest.raises(ConnectionClosedOK):
                await ws.recv()


class TestPingPong:
    """RFC 6455 5.5.2 and 5.5.3: ping() resolves with the round-trip time."""

    async def test_latency(self, echo_server: Server) -> None:
        async with connect(uri(echo_server), ping_interval=None) as ws:
            assert ws.latency == 0.0
            rtt = await wait_for(ws.ping())
            assert 0 < rtt < seconds(5)
            assert ws.latency == rtt

    async def test_payloads(self, echo_server: Server) -> None:
        async with connect(uri(echo_server)) as ws:
            assert await wait_for(ws.ping("text")) > 0
            assert await wait_for(ws.ping(b"\x00" * 125)) > 0
            with pytest.raises(ValueError):
                ws.ping(b"\x00" * 126)

    async def test_same_payload_twice(self, echo_server: Server) -> None:
        async with connect(uri(echo_server)) as ws:
            first = ws.ping(b"same")
            with pytest.raises(ConcurrencyError):
                ws.ping(b"same")
            await wait_for(first)
            await wait_for(ws.ping(b"same"))  # answered, so the payload is free again

    async def test_a_pong_acknowledges_earlier_pings(self, echo_server: Server) -> None:
        async with connect(uri(echo_server)) as ws:
            waiters = [ws.ping() for _ in range(3)]
            rtts = await wait_for(asyncio.gather(*waiters))
            assert all(rtt > 0 for rtt in rtts)
            assert ws._pings == {}

    async def test_pongs_flow_while_the_handler_does_not_read(self) -> None:
        handlers = Handlers()
        async with serve(handlers, "127.0.0.1", 0) as server, connect(uri(server)) as ws:
            await handlers.next()
            for i in range(3):  # below max_queue: queued, not read
                await ws.send(str(i))
            assert await wait_for(ws.ping()) > 0
            handlers.release()

    async def test_ping_when_closed(self, echo_server: Server) -> None:
        async with connect(uri(echo_server)) as ws:
            pass
        with pytest.raises(ConnectionClosedOK):
            ws.ping()

    async def test_pending_ping_fails_when_the_connection_is_lost(self) -> None:
        handlers = Handlers()
        async with serve(handlers, "127.0.0.1", 0, ping_interval=None) as server:
            raw = await RawClient.open(server.port)
            await raw.handshake()
            server_ws = await handlers.next()
            pending = server_ws.ping()
            assert (await raw.read_frame()).opcode == Opcode.PING
            await raw.close()  # no pong, no close frame
            with pytest.raises(ConnectionClosedError) as info:
                await wait_for(pending)
            assert info.value.code == 1006


class TestClose:
    """RFC 6455 7. Closing the connection: codes and reasons both ways, timeouts, states."""

    async def test_client_closes_with_code_and_reason(self) -> None:
        handlers = Handlers()
        async with serve(handlers, "127.0.0.1", 0) as server:
            async with connect(uri(server)) as ws:
                server_ws = await handlers.next()
                assert ws.close_code is None
                await wait_for(ws.close(4000, "bye"))
            with pytest.raises(ConnectionClosedError) as info:
                await wait_for(server_ws.recv())
            assert (info.value.code, info.value.reason) == (4000, "bye")
            assert ws.close_code == 4000  # the server echoes the code
            await wait_for(server_ws.wait_closed())
            assert (server_ws.close_code, server_ws.close_reason) == (4000, "bye")
            assert ws.state is State.CLOSED

    async def test_server_closes_with_code_and_reason(self) -> None:
        async def going_away(ws: WebSocket) -> None:
            await ws.close(1001, "going away")

        async with serve(going_away, "127.0.0.1", 0) as server, connect(uri(server)) as ws:
            with pytest.raises(ConnectionClosedOK) as info:
                await wait_for(ws.recv())
            assert (info.value.code, info.value.reason) == (1001, "going away")
            # Known as soon as recv() reports the close, before TCP ends.
            assert (ws.close_code, ws.close_reason) == (1001, "going away")
            await wait_for(ws.wait_closed())
            assert (ws.close_code, ws.close_reason) == (1001, "going away")

    async def test_close_is_idempotent(self, echo_server: Server) -> None:
        async with connect(uri(echo_server)) as ws:
            await wait_for(asyncio.gather(ws.close(), ws.close(1001)))
            await wait_for(ws.close())
            assert ws.close_code == 1000
            assert ws.state is State.CLOSED

    @pytest.mark.parametrize(("code", "reason"), [(1005, ""), (999, ""), (1000, "x" * 124)])
    async def test_invalid_close(self, echo_server: Server, code: int, reason: str) -> None:
        async with connect(uri(echo_server)) as ws:
            with pytest.raises(ValueError):
                await ws.close(code, reason)
            await ws.send("still open")
            assert await wait_for(ws.recv()) == "still open"

    async def test_send_after_close(self, echo_server: Server) -> None:
        async with connect(uri(echo_server)) as ws:
            await ws.close()
            with pytest.raises(ConnectionClosedOK) as info:
                await ws.send("late")
            assert info.value.code == 1000
            assert info.value.sent_code == 1000

    async def test_close_timeout_drops_a_silent_peer(self) -> None:
        handlers = Handlers()
        async with serve(handlers, "127.0.0.1", 0, close_timeout=seconds(0.2)) as server:
            raw = await RawClient.open(server.port)
            await raw.handshake()
            server_ws = await handlers.next()
            await wait_for(server_ws.close(1000, "bye"))  # the peer never answers
            frame = await raw.read_frame()
            assert frame.opcode == Opcode.CLOSE
            assert parse_close(frame.payload) == (1000, "bye")
            assert server_ws.close_code == 1006
            assert server_ws.state is State.CLOSED
            await raw.close()

    async def test_peer_vanishes(self) -> None:
        handlers = Handlers()
        async with serve(handlers, "127.0.0.1", 0) as server:
            raw = await RawClient.open(server.port)
            await raw.handshake()
            server_ws = await handlers.next()
            await raw.close()
            with pytest.raises(ConnectionClosedError) as info:
                await wait_for(server_ws.recv())
            assert info.value.code == 1006
            assert info.value.sent_code is None

    async def test_send_before_open(self) -> None:
        seen: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

        async def process_request(ws: WebSocket, request: Any) -> None:
            try:
                await ws.send("too early")
            except InvalidState as exc:
                seen.set_result(exc)

        async with (
            serve(echo, "127.0.0.1", 0, process_request=process_request) as server,
            connect(uri(server)),
        ):
            assert isinstance(await wait_for(seen), InvalidState)


class TestLimits:
    """RFC 6455 7.4.1: a message over max_message_size closes with 1009."""

    async def test_server_limit(self) -> None:
        async with (
            serve(echo, "127.0.0.1", 0, max_message_size=1000) as server,
            connect(uri(server)) as ws,
        ):
            await ws.send(b"x" * 1000)
            assert await wait_for(ws.recv()) == b"x" * 1000
            await ws.send(b"x" * 1001)
            with pytest.raises(ConnectionClosedError) as info:
                await wait_for(ws.recv())
            assert info.value.code == 1009

    async def test_client_limit(self) -> None:
        async def big(ws: WebSocket) -> None:
            await ws.send("y" * 2000)
            await ws.wait_closed()

        async with (
            serve(big, "127.0.0.1", 0) as server,
            connect(uri(server), max_message_size=1000) as ws,
        ):
            with pytest.raises(ConnectionClosedError) as info:
                await wait_for(ws.recv())
            assert info.value.sent_code == 1009

    async def test_abnormal_close_is_logged_once(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, logger="fullduplex.server")
        async with (
            serve(echo, "127.0.0.1", 0, max_message_size=10) as server,
            connect(uri(server)) as ws,
        ):
            await ws.send("x" * 11)
            with pytest.raises(ConnectionClosedError):
                await wait_for(ws.recv())
        lines = [r for r in caplog.records if "closed abnormally" in r.getMessage()]
        assert len(lines) == 1
        assert "1009" in lines[0].getMessage()


class TestFlowControl:
    """A full receive queue pauses reading; a full write buffer makes send() wait."""

    async def test_reading_pauses_when_the_handler_does_not_read(self) -> None:
        handlers = Handlers()
        async with (
            serve(handlers, "127.0.0.1", 0, max_queue=4, compression=None) as server,
            connect(uri(server)) as ws,
        ):
            server_ws = await handlers.next()
            for i in range(50):
                await ws.send(str(i))
            await until(lambda: server_ws._reading_paused)
            assert not server_ws._transport.is_reading()
            assert 4 <= len(server_ws._messages or ()) < 50
            received = [await wait_for(server_ws.recv()) for _ in range(50)]
            assert received == [str(i) for i in range(50)]
            assert server_ws._transport.is_reading()
            handlers.release()

    async def test_both_sides_sending_big_messages_at_once_do_not_deadlock(self) -> None:
        """Each side sends more than its write buffer holds while the other does the same:
        both full buffers must not stop both sides reading (each waits for the other)."""
        payload = os.urandom(4 * 2**20)
        count = 5

        async def both_ways(ws: WebSocket) -> int:
            async def write() -> None:
                for _ in range(count):
                    await ws.send(payload)

            writer = asyncio.create_task(write())
            received = 0
            for _ in range(count):
                assert await ws.recv() == payload
                received += 1
            await writer
            return received

        results: list[int] = []

        async def handler(ws: WebSocket) -> None:
            results.append(await both_ways(ws))

        async with (
            serve(handler, "127.0.0.1", 0, max_message_size=None) as server,
            connect(uri(server), max_message_size=None) as client,
        ):
            assert await wait_for(both_ways(client), 30) == count
            await until(lambda: results == [count])

    async def test_pings_from_a_peer_that_does_not_read_pause_reading(self) -> None:
        """Pongs to a peer that never reads do not pile up: reading stops while the write
        buffer is over write_limit, and resumes (every ping answered) once the peer reads."""
        handlers = Handlers()
        # 10 MB of pongs: more than the kernel's socket buffers take (4 MiB at most for the
        # server's send buffer; the client's receive buffer grows only when it reads).
        pings = 80_000
        async with serve(handlers, "127.0.0.1", 0, compression=None) as server:
            client = await RawClient.open(server.port)
            await client.handshake()
            server_ws = await handlers.next()
            frame = serialize_frame(Opcode.PING, b"p" * 125, mask=b"abcd")
            client.writer.write(frame * pings)
            await until(lambda: server_ws._reading_paused)
            assert not server_ws._transport.is_reading()
            # At most write_limit (32 KiB) plus the pongs to one read (256 KiB at most).
            assert server_ws._transport.get_write_buffer_size() < 300 * 1024
            answered = 0
            while answered < pings:
                frame_in = await client.read_frame()
                assert frame_in.opcode == Opcode.PONG
                answered += 1
            assert server_ws._transport.is_reading()
            assert not server_ws._reading_paused
            handlers.release()
            await client.close()

    async def test_unbounded_queue(self) -> None:
        handlers = Handlers()
        async with (
            serve(handlers, "127.0.0.1", 0, max_queue=None) as server,
            connect(uri(server)) as ws,
        ):
            server_ws = await handlers.next()
            for i in range(100):
                await ws.send(str(i))
            await until(lambda: len(server_ws._messages or ()) == 100)
            assert not server_ws._reading_paused
            handlers.release()

    async def test_send_waits_for_a_client_that_does_not_read(self) -> None:
        """The server's send() blocks on a stalled client; other clients are still served."""
        chunk = os.urandom(256 * 1024)
        count = 200  # 50 MiB: more than the kernel buffers of both sockets hold
        progress: list[int] = []
        handlers = Handlers()

        async def handler(ws: WebSocket) -> None:
            if ws.request is not None and ws.request.path == "/echo":
                await echo(ws)
                return
            await handlers.connections.put(ws)
            for i in range(count):
                await ws.send(chunk)
                progress.append(i)

        async with (
            serve(handler, "127.0.0.1", 0, compression=None, write_limit=64 * 1024) as server,
            connect(uri(server), max_queue=1, compression=None) as slow,
        ):
            server_ws = await handlers.next()
            await until(lambda: server_ws._write_paused)
            stalled_at = len(progress)
            assert stalled_at < count
            assert server_ws._transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)

            # Another client is served normally meanwhile.
            async with connect(uri(server, "/echo")) as other:
                await other.send("ping?")
                assert await wait_for(other.recv()) == "ping?"
            assert len(progress) == stalled_at  # still stalled

            # Once the slow client reads, everything arrives.
            for _ in range(count):
                assert await wait_for(slow.recv()) == chunk
            assert len(progress) == count

    async def test_send_wakes_up_when_the_connection_is_lost(self) -> None:
        handlers = Handlers()
        async with serve(handlers, "127.0.0.1", 0, compression=None) as server:
            raw = await RawClient.open(server.port)
            await raw.handshake()
            server_ws = await handlers.next()
            sending = asyncio.create_task(server_ws.send(b"z" * 2**24))
            await until(lambda: server_ws._write_paused)
            raw.writer.transport.abort()
            await wait_for(sending)  # returns: the bytes are gone with the connection
            with pytest.raises(ConnectionClosedError):
                await server_ws.send("more")


class TestKeepalive:
    """Keepalive pings: a peer that never answers is closed with 1011."""

    async def test_missing_pong_closes_with_1011(self) -> None:
        async with serve(
            echo, "127.0.0.1", 0, ping_interval=seconds(0.05), ping_timeout=seconds(0.1)
        ) as server:
            raw = await RawClient.open(server.port)
            await raw.handshake()
            assert (await raw.read_frame()).opcode == Opcode.PING
            frame = await raw.read_frame()  # no pong from us
            assert frame.opcode == Opcode.CLOSE
            assert parse_close(frame.payload) == (1011, "keepalive ping timeout")
            assert await raw.read_until_eof() == b""
            await raw.close()

    async def test_answered_pings_keep_the_connection(self) -> None:
        async with serve(
            echo, "127.0.0.1", 0, ping_interval=seconds(0.05), ping_timeout=seconds(0.5)
        ) as server:
            raw = await RawClient.open(server.port)
            await raw.handshake()
            payloads = set()
            for _ in range(3):
                frame = await raw.read_frame()
                assert frame.opcode == Opcode.PING
                payloads.add(frame.payload)
                raw.send_frame(Opcode.PONG, frame.payload)
            assert len(payloads) == 3
            raw.send_frame(Opcode.TEXT, b"still here")
            frame = await raw.read_frame()
            assert (frame.opcode, frame.payload) == (Opcode.TEXT, b"still here")
            await raw.close()

    async def test_client_measures_latency(self, echo_server: Server) -> None:
        async with connect(uri(echo_server), ping_interval=seconds(0.02)) as ws:
            await until(lambda: ws.latency > 0)

    async def test_pings_without_timeout(self) -> None:
        async with serve(
            echo, "127.0.0.1", 0, ping_interval=seconds(0.02), ping_timeout=None
        ) as server:
            raw = await RawClient.open(server.port)
            await raw.handshake()
            # Unanswered pings keep coming, and nothing closes the connection.
            for _ in range(3):
                assert (await raw.read_frame()).opcode == Opcode.PING
            await raw.close()


class TestCallbackMode:
    """on_message receives messages straight from the transport callback."""

    async def test_on_message(self) -> None:
        async def two(ws: WebSocket) -> None:
            assert await ws.recv() == "go"
            await ws.send("a")
            await ws.send(b"b")
            await ws.wait_closed()

        async with serve(two, "127.0.0.1", 0) as server, connect(uri(server)) as ws:
            received: list[str | bytes] = []
            ws.on_message = received.append
            await ws.send("go")
            await until(lambda: len(received) == 2)
            assert received == ["a", b"b"]
            assert not ws._messages


class TestProperties:
    """Addresses, ids, handshake messages, state."""

    async def test_properties(self) -> None:
        handlers = Handlers()
        async with serve(handlers, "127.0.0.1", 0) as server:
            async with connect(uri(server, "/path?q=1")) as ws:
                server_ws = await handlers.next()
                assert ws.state is State.OPEN
                assert ws.remote_address[:2] == ("127.0.0.1", server.port)
                assert server_ws.remote_address == ws.local_address
                assert server_ws.local_address == ws.remote_address
                assert len(ws.id) == 8 and ws.id != server_ws.id
                assert ws.id in repr(ws) and "OPEN" in repr(ws)
                assert server_ws.request.path == "/path?q=1"
                assert server_ws.response.status == 101
                assert ws.response.status == 101
                assert ws.request.path == "/path?q=1"
                assert ws.close_code is None and ws.close_reason is None
                handlers.release()
            assert ws.state is State.CLOSED
            assert isinstance(ws, WebSocket) and isinstance(server_ws, WebSocket)

    def test_slots(self) -> None:
        assert not hasattr(WebSocket, "__dict__") or "__dict__" not in WebSocket.__dict__
        for cls in WebSocket.__mro__:
            if cls is not object:
                assert "__slots__" in cls.__dict__, cls

    async def test_closed_exception_without_handshake(self) -> None:
        ws = WebSocket(logger=logging.getLogger("test"))
        assert ws.state is State.CONNECTING
        assert isinstance(ws._closed_exception(), ConnectionClosed)
        with pytest.raises(InvalidState):
            ws.ping()


class TestSendNowait:
    """send_nowait, send_prepared_nowait, buffered_amount, compressed: what broadcast uses."""

    async def test_send_nowait(self, echo_server: Server) -> None:
        async with connect(uri(echo_server)) as ws:
            ws.send_nowait("text")
            ws.send_nowait(b"binary")
            ws.send_nowait(bytearray(b"ba"))
            assert [await wait_for(ws.recv()) for _ in range(3)] == ["text", b"binary", b"ba"]
            with pytest.raises(TypeError):
                ws.send_nowait(42)  # type: ignore[arg-type]

    @pytest.mark.parametrize("compression", ["deflate", None])
    async def test_send_prepared_nowait(self, compression: str | None) -> None:
        handlers = Handlers()
        async with (
            serve(handlers, "127.0.0.1", 0) as server,
            connect(uri(server), compression=compression) as ws,
        ):
            server_ws = await handlers.next()
            assert server_ws.compressed is (compression is not None)
            assert ws.compressed is (compression is not None)
            # An uncompressed frame is valid on a deflate connection too (RFC 7692 6).
            server_ws.send_prepared_nowait(serialize_frame(Opcode.TEXT, b"prepared"))
            server_ws.send_nowait("after")
            assert await wait_for(ws.recv()) == "prepared"
            assert await wait_for(ws.recv()) == "after"
            handlers.release()

    async def test_closed(self, echo_server: Server) -> None:
        async with connect(uri(echo_server)) as ws:
            pass
        with pytest.raises(ConnectionClosed):
            ws.send_nowait("late")
        with pytest.raises(ConnectionClosed):
            ws.send_prepared_nowait(serialize_frame(Opcode.TEXT, b"late"))
        assert ws.buffered_amount == 0

    async def test_before_the_handshake(self) -> None:
        ws = WebSocket(logger=logging.getLogger("test"))
        with pytest.raises(InvalidState):
            ws.send_nowait("x")
        with pytest.raises(InvalidState):
            ws.send_prepared_nowait(b"\x81\x00")
        assert ws.buffered_amount == 0 and not ws.compressed

    async def test_refused_during_a_fragmented_message(self, echo_server: Server) -> None:
        gate = asyncio.Event()

        async def fragments() -> AsyncIterator[str]:
            yield "a"
            await gate.wait()
            yield "b"

        async with connect(uri(echo_server)) as ws:
            sending = asyncio.ensure_future(ws.send(fragments()))
            await until(lambda: ws._fragmenting is not None)
            with pytest.raises(ConcurrencyError):
                ws.send_nowait("x")
            with pytest.raises(ConcurrencyError):
                ws.send_prepared_nowait(b"\x81\x00")
            gate.set()
            await wait_for(sending)
            assert await wait_for(ws.recv()) == "ab"

    async def test_buffered_amount_grows_when_the_peer_does_not_read(self) -> None:
        handlers = Handlers()
        async with serve(handlers, "127.0.0.1", 0, compression=None) as server:
            raw = await RawClient.open(server.port)
            await raw.handshake()
            server_ws = await handlers.next()
            assert server_ws.buffered_amount == 0
            chunk = b"x" * 65536
            # Never waits: the buffer takes what the kernel does not (bounded: 64 MiB at most).
            for _ in range(1024):
                server_ws.send_nowait(chunk)
                if server_ws.buffered_amount > 0:
                    break
            assert server_ws.buffered_amount > 0
            await raw.close()
            await wait_for(server_ws.wait_closed())
            assert server_ws.buffered_amount == 0
            handlers.release()


class _CountingTransport:
    """Just enough of a transport to count what a WebSocket writes."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def writelines(self, data: list[bytes]) -> None:
        self.writes.append(b"".join(data))

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


class TestOneWritePerRead:
    """Replies sent from on_message while one read is handled leave in one write."""

    async def test_callback_replies_are_written_together(self) -> None:
        transport = _CountingTransport()
        ws = WebSocket(logger=logging.getLogger("test"), ping_interval=None)
        ws.connection_made(transport)  # type: ignore[arg-type]
        ws._connection_open(Connection(Role.SERVER), b"")
        ws.on_message = ws.send_nowait
        messages = [f"m{i}" for i in range(16)]
        ws.data_received(
            b"".join(serialize_frame(Opcode.TEXT, m.encode(), mask=b"abcd") for m in messages)
        )
        assert transport.writes == [
            b"".join(serialize_frame(Opcode.TEXT, m.encode()) for m in messages)
        ]
        # Outside a read, a send is written at once.
        ws.send_nowait("later")
        assert transport.writes[-1] == serialize_frame(Opcode.TEXT, b"later")
