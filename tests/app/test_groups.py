"""Tests for fullduplex.app.groups: membership, broadcast framed once, and slow consumers."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from fullduplex.app import App, Endpoint, JSONCodec, Session
from fullduplex.asyncio.client import connect
from fullduplex.asyncio.connection import WebSocket
from fullduplex.asyncio.server import ServerWebSocket
from fullduplex.protocol.connection import State
from fullduplex.protocol.frames import Opcode, parse_close, serialize_frame
from tests.app.utils import Recorder, listening_socket, raw_session, serving, url
from tests.asyncio.utils import RawClient, wait_for


def _rooms(recorder: Recorder, **config: Any) -> App:
    """An app whose sessions at /room/{name} join group {name}."""

    def on_open(self: Endpoint, session: Session) -> None:
        session.join(session.path_params["name"])
        recorder.opened.put_nowait(session)

    app = App()
    app.endpoint("/room/{name}", **config)(recorder.endpoint(on_open=on_open))
    return app


class CountingCodec:
    """A passthrough codec that counts its encode calls."""

    def __init__(self) -> None:
        self.encoded = 0

    def encode(self, obj: Any) -> str | bytes:
        self.encoded += 1
        return str(obj)

    def decode(self, message: str | bytes) -> Any:
        return message


@pytest.fixture
def prepared_frames(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Every frame a server connection sends as prepared bytes (the shared-bytes path), in order.

    The spy sits on ServerWebSocket, a Python class: the compiled WebSocket and Connection are
    extension types, whose methods cannot be replaced.
    """
    frames: list[bytes] = []
    original = ServerWebSocket.send_prepared_nowait

    def spy(self: ServerWebSocket, frame: bytes) -> None:
        frames.append(frame)
        original(self, frame)

    monkeypatch.setattr(ServerWebSocket, "send_prepared_nowait", spy)
    yield frames


@pytest.fixture
def own_sends(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every message a server connection sends with send_nowait (the per-connection path)."""
    sent: list[Any] = []
    original = ServerWebSocket.send_nowait

    def spy(self: ServerWebSocket, message: Any) -> None:
        sent.append(message)
        original(self, message)

    monkeypatch.setattr(ServerWebSocket, "send_nowait", spy)
    yield sent


class TestMembership:
    """Broadcast reaches exactly the members of a group, in order."""

    async def test_broadcast_reaches_exactly_the_members_in_order(self) -> None:
        recorder = Recorder()
        app = _rooms(recorder)
        async with (
            serving(app) as server,
            connect(url(server, "/room/a")) as a1,
            connect(url(server, "/room/a"), compression=None) as a2,
            connect(url(server, "/room/b")) as b1,
        ):
            for _ in range(3):
                await recorder.next_open()
            group = app.group("a")
            assert len(group) == 2 and len(app.group("b")) == 1
            counts = [await group.broadcast(f"m{i}") for i in range(50)]
            assert counts == [2] * 50
            assert app.group("b").broadcast_nowait("marker") == 1
            for ws in (a1, a2):
                assert [await wait_for(ws.recv()) for _ in range(50)] == [
                    f"m{i}" for i in range(50)
                ]
            # b1's first message is the marker: nothing sent to "a" reached it.
            assert await wait_for(b1.recv()) == "marker"

    async def test_exclude(self) -> None:
        recorder = Recorder()
        app = _rooms(recorder)
        async with (
            serving(app) as server,
            connect(url(server, "/room/a")) as ws1,
            connect(url(server, "/room/a")) as ws2,
            connect(url(server, "/room/a")) as ws3,
        ):
            s1, s2, _ = [await recorder.next_open() for _ in range(3)]
            assert app.group("a").broadcast_nowait("not to 1", exclude=s1) == 2
            assert app.group("a").broadcast_nowait("to 3 only", exclude=[s1, s2]) == 1
            assert app.group("a").broadcast_nowait("all") == 3
            assert await wait_for(ws1.recv()) == "all"
            assert [await wait_for(ws2.recv()) for _ in range(2)] == ["not to 1", "all"]
            assert [await wait_for(ws3.recv()) for _ in range(3)] == [
                "not to 1",
                "to 3 only",
                "all",
            ]

    async def test_sessions_of_an_endpoint(self) -> None:
        recorder = Recorder()
        app = _rooms(recorder)
        app.on_message("/other")(lambda session, message: None)
        async with (
            serving(app) as server,
            connect(url(server, "/room/a")) as a,
            connect(url(server, "/room/b")) as b,
            connect(url(server, "/other")) as other,
        ):
            sessions = [await recorder.next_open() for _ in range(2)]
            everyone = app.sessions("/room/{name}")
            assert everyone.name == "/room/{name}"
            assert sorted(everyone, key=sessions.index) == sessions
            assert await everyone.broadcast("hi all") == 2
            assert await wait_for(a.recv()) == "hi all"
            assert await wait_for(b.recv()) == "hi all"
            assert app.sessions("/other").broadcast_nowait("other") == 1
            assert await wait_for(other.recv()) == "other"
        with pytest.raises(KeyError):
            app.sessions("/room/a")

    async def test_group_views(self) -> None:
        recorder = Recorder()
        app = _rooms(recorder)
        early = app.group("a")  # obtained before the group exists
        assert len(early) == 0 and list(early) == [] and early.broadcast_nowait("x") == 0
        async with serving(app) as server, connect(url(server, "/room/a")):
            session = await recorder.next_open()
            assert len(early) == 1 and list(early) == [session] and session in early
            assert "a" in repr(early)
            session.leave("a")
            assert len(early) == 0 and session not in early

    async def test_closed_sessions_are_skipped(self) -> None:
        recorder = Recorder()
        app = _rooms(recorder)
        async with serving(app) as server, connect(url(server, "/room/a")) as stays:
            async with connect(url(server, "/room/a")):
                await recorder.next_open()
                leaving = await recorder.next_open()
                await leaving.close()
            assert leaving.closed
            assert app.group("a").broadcast_nowait("after") == 1
            assert list(app.group("a")) != [] and leaving not in list(app.group("a"))
            assert await wait_for(stays.recv()) == "after"


class TestEncodeOnce:
    """One encode and one frame per broadcast; deflate connections get their own copy."""

    async def test_same_bytes_to_uncompressed_connections(
        self, prepared_frames: list[bytes], own_sends: list[Any]
    ) -> None:
        codec = CountingCodec()
        recorder = Recorder()
        app = _rooms(recorder, codec=codec)
        async with serving(app) as server:
            plain = [await connect(url(server, "/room/a"), compression=None) for _ in range(3)]
            deflate = await connect(url(server, "/room/a"))
            try:
                for _ in range(4):
                    await recorder.next_open()
                message = "broadcast " * 20
                assert await app.group("a").broadcast(message) == 4
                for ws in [*plain, deflate]:
                    assert await wait_for(ws.recv()) == message
            finally:
                for ws in [*plain, deflate]:
                    await ws.close()
        assert codec.encoded == 1
        assert len(prepared_frames) == 3
        assert all(frame is prepared_frames[0] for frame in prepared_frames)
        assert prepared_frames[0] == serialize_frame(Opcode.TEXT, message.encode())
        # The deflate connection compressed its own copy.
        assert own_sends == [message]

    async def test_compressed_copy_is_a_valid_compressed_message(self) -> None:
        """A raw look at what the deflate client receives: RSV1 set, and it decompresses."""
        recorder = Recorder()
        app = _rooms(recorder)
        async with serving(app) as server:
            raw = await RawClient.open(server.port)
            status, headers, _ = await raw.http(
                raw.request("/room/a", headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
            )
            assert status == 101 and "permessage-deflate" in headers["sec-websocket-extensions"]
            await recorder.next_open()
            message = "compress me " * 50
            assert app.group("a").broadcast_nowait(message) == 1
            frame = await raw.read_frame()
            await raw.close()
        assert frame.rsv1 and frame.opcode == Opcode.TEXT
        assert len(frame.payload) < len(message)
        assert zlib.decompressobj(-15).decompress(frame.payload + b"\x00\x00\xff\xff") == (
            message.encode()
        )

    async def test_binary_broadcast(self, prepared_frames: list[bytes]) -> None:
        recorder = Recorder()
        app = _rooms(recorder)
        async with serving(app) as server, connect(url(server, "/room/a"), compression=None) as ws:
            await recorder.next_open()
            assert app.group("a").broadcast_nowait(b"\x00\x01") == 1
            assert await wait_for(ws.recv()) == b"\x00\x01"
        assert prepared_frames == [serialize_frame(Opcode.BINARY, b"\x00\x01")]

    async def test_members_with_different_codecs(self) -> None:
        recorder = Recorder()
        app = App()

        def on_open(self: Endpoint, session: Session) -> None:
            session.join("mixed")
            recorder.opened.put_nowait(session)

        app.endpoint("/json", codec=JSONCodec())(recorder.endpoint(on_open=on_open))
        app.endpoint("/text")(recorder.endpoint(on_open=on_open))
        async with (
            serving(app) as server,
            connect(url(server, "/json")) as json_ws,
            connect(url(server, "/text")) as text_ws,
        ):
            await recorder.next_open()
            await recorder.next_open()
            assert app.group("mixed").broadcast_nowait("hi") == 2
            assert await wait_for(json_ws.recv()) == '"hi"'
            assert await wait_for(text_ws.recv()) == "hi"


async def _lockstep(app: App, fast: list[WebSocket], count: int, size: int) -> list[int]:
    """Broadcast ``count`` messages of ``size`` bytes to room "a"; after each, wait until
    every fast client has it (they keep their buffers empty). Return the broadcast counts."""
    counts = []
    for i in range(count):
        counts.append(app.group("a").broadcast_nowait(f"{i:05d}" + "x" * size))
        for ws in fast:
            received = await wait_for(ws.recv())
            assert received[:5] == f"{i:05d}"
    return counts


async def _read_messages(raw: RawClient, count: int) -> list[int]:
    """The indexes of the next ``count`` text messages the raw client reads."""
    indexes = []
    while len(indexes) < count:
        frame = await raw.read_frame()
        assert frame.opcode == Opcode.TEXT, frame
        indexes.append(int(frame.payload[:5]))
    return indexes


class TestBursts:
    @pytest.mark.asyncio_loop_only
    async def test_a_burst_from_the_broker_is_one_write_per_member(self) -> None:
        """What one read from the broker brings (here: 20 publications in one turn of the
        loop) reaches each member in order, in one write (one system call), not 20."""
        recorder = Recorder()
        app = _rooms(recorder)
        async with serving(app) as server, connect(url(server, "/room/a"), compression=None) as ws:
            session = await recorder.next_open()
            transport = session._ws._transport  # private: count the writes
            writes: list[int] = []
            original = transport.write

            def counting(data: Any) -> None:
                writes.append(len(data))
                original(data)

            transport.write = counting
            for i in range(20):
                app.broker.publish_nowait("a", f"m{i}".encode(), text=True)
            assert writes == []  # queued: written once the loop turns
            assert [await wait_for(ws.recv()) for _ in range(20)] == [f"m{i}" for i in range(20)]
            assert len(writes) == 1


class TestHeldBursts:
    async def test_a_burst_counts_against_the_buffer_bound(self) -> None:
        """Frames queued in one turn count toward max_buffered before any is written: a burst
        far over the bound is cut by the overflow policy, not queued whole."""
        recorder = Recorder()
        app = _rooms(recorder, max_buffered=16 * 1024, overflow="drop")
        async with serving(app) as server, connect(url(server, "/room/a"), compression=None):
            session = await recorder.next_open()
            for _ in range(200):
                app.broker.publish_nowait("a", b"x" * 1024, text=True)
            assert 0 < session.dropped < 200
            assert session.dropped >= 200 - 17  # about 16 KiB of it was taken


class TestSlowConsumers:
    """A client that does not read fills its own buffer only; its overflow policy applies
    while the others get every message."""

    async def test_drop(self) -> None:
        recorder = Recorder()
        app = _rooms(recorder, max_buffered=16 * 1024, overflow="drop")
        async with serving(app, sock=listening_socket(4096)) as server:
            slow = await raw_session(server.port, "/room/a", receive_buffer=4096)
            slow_session = await recorder.next_open()
            fast = [
                await connect(url(server, "/room/a"), compression=None),
                await connect(url(server, "/room/a")),
            ]
            try:
                for _ in fast:
                    await recorder.next_open()
                counts = await _lockstep(app, fast, 200, 4096)
                assert set(counts) == {2, 3}, counts
                delivered = sum(counts) - 2 * 200
                assert slow_session.dropped == 200 - delivered > 0
                assert not slow_session.closed
                # What it got is in order; once it reads, it gets messages again.
                indexes = await _read_messages(slow, delivered)
                assert indexes == sorted(indexes)
                assert app.group("a").broadcast_nowait("00999 after") == 3
                assert await _read_messages(slow, 1) == [999]
            finally:
                await slow.close()
                for ws in fast:
                    await ws.close()

    async def test_close(self) -> None:
        recorder = Recorder()
        app = _rooms(recorder, max_buffered=16 * 1024, overflow="close")
        async with serving(app, sock=listening_socket(4096)) as server:
            slow = await raw_session(server.port, "/room/a", receive_buffer=4096)
            slow_session = await recorder.next_open()
            fast = [await connect(url(server, "/room/a"), compression=None)]
            try:
                await recorder.next_open()
                counts = await _lockstep(app, fast, 200, 4096)
                assert slow_session.closed
                delivered = sum(counts) - 200
                assert 0 < delivered < 200
                # It reads its backlog, then the close frame: 1013, try again later.
                await _read_messages(slow, delivered)
                frame = await slow.read_frame()
                assert frame.opcode == Opcode.CLOSE
                assert parse_close(frame.payload) == (1013, "try again later")
                slow.send_frame(Opcode.CLOSE, frame.payload)
                closed, reason = await recorder.next_close()
                assert closed is slow_session and reason.code == 1013
                # The fast client was never affected.
                assert fast[0].state is State.OPEN
            finally:
                await slow.close()
                for ws in fast:
                    await ws.close()
