"""Tests for fullduplex.asyncio.client: connect() against real and raw servers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

import fullduplex
from fullduplex.asyncio.client import connect
from fullduplex.asyncio.connection import WebSocket
from fullduplex.asyncio.server import Server, serve
from fullduplex.exceptions import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidMessage,
    InvalidResponse,
    InvalidStatus,
    InvalidURI,
    PayloadTooBig,
)
from fullduplex.protocol.frames import Opcode, apply_mask, parse_close, serialize_frame
from fullduplex.protocol.handshake import accept_key
from tests.asyncio.utils import Handlers, uri, wait_for
from tests.helpers import seconds

Respond = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(respond: Respond) -> AsyncIterator[int]:
    """A TCP server that reads one request head and lets ``respond`` answer it byte by byte.

    Yields the port; stops the server and its connection tasks on exit.
    """
    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            await respond(head, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            # Stopped by the test's exit: end quietly, as asyncio's stream callback would
            # otherwise log the cancellation as an error.
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def switching_protocols(head: bytes, extra: bytes = b"") -> bytes:
    """A valid 101 answering the request ``head``, followed by ``extra``."""
    match = re.search(rb"Sec-WebSocket-Key: (\S+)", head)
    assert match is not None
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(match.group(1).decode()).encode() + b"\r\n\r\n"
    ) + extra


class TestConnect:
    """connect(): awaitable and async context manager."""

    async def test_await_and_close(self, echo_server: Server) -> None:
        ws = await connect(uri(echo_server))
        assert isinstance(ws, WebSocket)
        await ws.send("x")
        assert await wait_for(ws.recv()) == "x"
        await ws.close()
        assert ws.close_code == 1000

    async def test_context_manager_closes_on_error(self, echo_server: Server) -> None:
        with pytest.raises(RuntimeError):
            async with connect(uri(echo_server)) as ws:
                raise RuntimeError("in the block")
        assert ws.close_code == 1000

    async def test_top_level_names(self, echo_server: Server) -> None:
        async with fullduplex.connect(uri(echo_server)) as ws:
            assert isinstance(ws, fullduplex.WebSocket)

    async def test_request_headers(self) -> None:
        handlers = Handlers()
        async with serve(handlers, "127.0.0.1", 0) as server:
            async with connect(
                uri(server),
                origin="https://example.com",
                user_agent="tester/1",
                additional_headers=[("X-One", "1"), ("X-Two", "2")],
            ):
                headers = (await handlers.next()).request.headers
                assert headers["Origin"] == "https://example.com"
                assert headers["User-Agent"] == "tester/1"
                assert (headers["X-One"], headers["X-Two"]) == ("1", "2")
                assert headers["Host"] == f"127.0.0.1:{server.port}"
            async with connect(uri(server), user_agent=None):
                headers = (await handlers.next()).request.headers
                assert "User-Agent" not in headers
            async with connect(uri(server)):
                headers = (await handlers.next()).request.headers
                assert "fullduplex" in headers["User-Agent"]
            handlers.release()

    async def test_basic_auth_from_uri(self) -> None:
        handlers = Handlers()
        async with serve(handlers, "127.0.0.1", 0) as server:
            async with connect(f"ws://al%40ice:open%20sesame@127.0.0.1:{server.port}/"):
                headers = (await handlers.next()).request.headers
            handlers.release()
        expected = base64.b64encode(b"al@ice:open sesame").decode()
        assert headers["Authorization"] == f"Basic {expected}"


class TestErrors:
    """What connect() raises, and when."""

    def test_invalid_uri(self) -> None:
        with pytest.raises(InvalidURI):
            connect("http://127.0.0.1/")

    def test_ssl_for_ws(self) -> None:
        with pytest.raises(ValueError, match="wss"):
            connect("ws://127.0.0.1:1/", ssl=ssl.create_default_context())

    async def test_connection_refused(self) -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        with pytest.raises(OSError):
            await connect(f"ws://127.0.0.1:{port}/")

    async def test_open_timeout(self) -> None:
        closed = asyncio.Event()

        async def never(head: bytes, reader: asyncio.StreamReader, _: object) -> None:
            await reader.read()  # until the client gives up
            closed.set()

        async with raw_server(never) as port:
            with pytest.raises(TimeoutError):
                await connect(f"ws://127.0.0.1:{port}/", open_timeout=seconds(0.1))
            await wait_for(closed.wait())  # the client dropped the connection

    async def test_invalid_status(self) -> None:
        async def refuse(head: bytes, _: object, writer: asyncio.StreamWriter) -> None:
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno\n")

        async with raw_server(refuse) as port:
            with pytest.raises(InvalidStatus) as info:
                await connect(f"ws://127.0.0.1:{port}/")
        assert info.value.status_code == 403
        assert info.value.body == b"no\n"

    async def test_invalid_status_with_body_until_eof(self) -> None:
        async def refuse(head: bytes, _: object, writer: asyncio.StreamWriter) -> None:
            writer.write(b"HTTP/1.1 500 Oops\r\nConnection: close\r\n\r\nbroken")
            writer.write_eof()

        async with raw_server(refuse) as port:
            with pytest.raises(InvalidStatus) as info:
                await connect(f"ws://127.0.0.1:{port}/")
        assert (info.value.status_code, info.value.body) == (500, b"broken")

    async def test_wrong_accept_key(self) -> None:
        async def wrong(head: bytes, _: object, writer: asyncio.StreamWriter) -> None:
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: bm90IGl0\r\n\r\n"
            )
            await asyncio.sleep(seconds(5))

        async with raw_server(wrong) as port:
            with pytest.raises(InvalidResponse):
                await connect(f"ws://127.0.0.1:{port}/")

    async def test_server_closes_during_handshake(self) -> None:
        async def hang_up(head: bytes, _: object, writer: asyncio.StreamWriter) -> None:
            writer.close()

        async with raw_server(hang_up) as port:
            with pytest.raises(InvalidMessage):
                await connect(f"ws://127.0.0.1:{port}/")

    async def test_not_http(self) -> None:
        async def garbage(head: bytes, _: object, writer: asyncio.StreamWriter) -> None:
            writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
            await asyncio.sleep(seconds(5))

        async with raw_server(garbage) as port:
            with pytest.raises(InvalidHandshake):
                await connect(f"ws://127.0.0.1:{port}/")


async def echo_bigger(ws: WebSocket) -> None:
    """Echo every message; the connection ending first is fine."""
    with contextlib.suppress(ConnectionClosedError):
        async for message in ws:
            await ws.send(message)


class TestLocalLimit:
    """A message over the client's own max_message_size (RFC 6455 sections 7.1.5 and 7.1.7)."""

    @pytest.mark.parametrize("compression", ["deflate", None])
    async def test_failure_reads_as_local_and_close_code_is_final(
        self, compression: str | None
    ) -> None:
        # The server takes 4 MiB; the client keeps its default of 1 MiB.
        async with (
            serve(echo_bigger, "127.0.0.1", 0, max_message_size=4 * 2**20) as server,
            connect(uri(server), compression=compression) as ws,
        ):
            # Random bytes: compression must not bring the message under the limit.
            await ws.send(os.urandom(2 * 2**20))
            with pytest.raises(ConnectionClosedError) as info:
                await wait_for(ws.recv(), 10)
            # Final at the moment of the exception: no close frame will be read any more.
            assert ws.close_code == 1006
            assert ws.close_reason == ""
            await wait_for(ws.wait_closed(), 10)
            assert ws.close_code == 1006
        closed = info.value
        assert isinstance(closed.failure, PayloadTooBig)
        assert (closed.code, closed.sent_code, closed.sent_reason) == (
            1006,
            1009,
            "message too big",
        )
        text = str(closed)
        assert "over the local limit (1048576 bytes)" in text
        assert text.endswith(": sent 1009 (message too big)")

    async def test_peer_close_has_no_failure(self) -> None:
        async def close_4000(ws: WebSocket) -> None:
            await ws.close(4000, "bye")

        async with serve(close_4000, "127.0.0.1", 0) as server, connect(uri(server)) as ws:
            with pytest.raises(ConnectionClosedError) as info:
                await wait_for(ws.recv())
            assert (ws.close_code, ws.close_reason) == (4000, "bye")
        assert info.value.failure is None
        assert str(info.value) == "received 4000 (bye); sent 4000 (bye)"


class TestRawServer:
    """The client against a server written byte by byte."""

    async def test_frames_right_after_the_101(self) -> None:
        async def eager(head: bytes, reader: asyncio.StreamReader, writer: object) -> None:
            assert isinstance(writer, asyncio.StreamWriter)
            hello = serialize_frame(Opcode.TEXT, b"welcome")
            writer.write(switching_protocols(head, hello))
            await reader.read(100)  # the client's close frame: hang up

        async with raw_server(eager) as port, connect(f"ws://127.0.0.1:{port}/") as ws:
            assert await wait_for(ws.recv()) == "welcome"

    async def test_ping_is_answered(self) -> None:
        pong: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def pinger(head: bytes, reader: asyncio.StreamReader, writer: object) -> None:
            assert isinstance(writer, asyncio.StreamWriter)
            writer.write(switching_protocols(head, serialize_frame(Opcode.PING, b"hi")))
            data = await reader.read(100)
            pong.set_result(data)
            await reader.read(100)  # the client's close frame: hang up

        async with raw_server(pinger) as port, connect(f"ws://127.0.0.1:{port}/"):
            data = await wait_for(pong)
        assert data[0] == 0x80 | Opcode.PONG
        assert data[1] & 0x80  # masked, as client frames must be

    async def test_masked_server_frame_fails_with_1002(self) -> None:
        close: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def masked(head: bytes, reader: asyncio.StreamReader, writer: object) -> None:
            assert isinstance(writer, asyncio.StreamWriter)
            frame = serialize_frame(Opcode.TEXT, b"x", mask=b"abcd")
            writer.write(switching_protocols(head, frame))
            close.set_result(await reader.read(100))
            await reader.read()

        async with raw_server(masked) as port:
            ws = await connect(f"ws://127.0.0.1:{port}/", close_timeout=seconds(0.2))
            with pytest.raises(ConnectionClosedError) as info:
                await wait_for(ws.recv())
            assert info.value.sent_code == 1002
            data = await wait_for(close)
            assert data[0] == 0x80 | Opcode.CLOSE
            await wait_for(ws.close())

    async def test_close_timeout_when_the_server_never_answers(self) -> None:
        async def mute(head: bytes, reader: asyncio.StreamReader, writer: object) -> None:
            assert isinstance(writer, asyncio.StreamWriter)
            writer.write(switching_protocols(head))
            await reader.read()

        async with raw_server(mute) as port:
            ws = await connect(f"ws://127.0.0.1:{port}/", close_timeout=seconds(0.1))
            await wait_for(ws.close(1000, "bye"))
            assert ws.close_code == 1006

    async def test_server_initiated_close(self) -> None:
        async def closer(head: bytes, reader: asyncio.StreamReader, writer: object) -> None:
            assert isinstance(writer, asyncio.StreamWriter)
            writer.write(switching_protocols(head, serialize_frame(Opcode.CLOSE, b"\x03\xe9bye")))
            data = await reader.read(100)  # the client's reply
            assert data[0] == 0x80 | Opcode.CLOSE
            writer.close()

        async with raw_server(closer) as port:
            ws = await connect(f"ws://127.0.0.1:{port}/")
            with pytest.raises(ConnectionClosedOK) as info:
                await wait_for(ws.recv())
            assert (info.value.code, info.value.reason, info.value.sent_code) == (1001, "bye", 1001)
            await wait_for(ws.wait_closed())

    async def test_client_waits_for_the_server_to_end_tcp(self) -> None:
        """RFC 6455 7.1.1: after the close handshake the server closes TCP first."""
        server_eof = asyncio.Event()
        received: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

        async def polite(head: bytes, reader: asyncio.StreamReader, writer: object) -> None:
            assert isinstance(writer, asyncio.StreamWriter)
            writer.write(switching_protocols(head))
            data = await reader.read(100)
            assert data[0] == 0x80 | Opcode.CLOSE
            length = data[1] & 0x7F
            received.set_result(parse_close(apply_mask(data[6 : 6 + length], data[2:6])))
            writer.write(serialize_frame(Opcode.CLOSE, b"\x03\xe8"))
            server_eof.set()
            writer.close()

        async with raw_server(polite) as port:
            ws = await connect(f"ws://127.0.0.1:{port}/")
            await wait_for(ws.close(4100, "done"))
            assert server_eof.is_set()
            assert ws.close_code == 1000
            assert received.result() == (4100, "done")
