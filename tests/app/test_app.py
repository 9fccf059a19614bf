"""Tests for fullduplex.app.app: routing before the upgrade, per-endpoint handshake options,
serving and stopping."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fullduplex.app import App, CloseReason, Request
from fullduplex.app.app import BROKER_ENV
from fullduplex.asyncio.client import connect
from fullduplex.asyncio.server import Server, ServerWebSocket
from fullduplex.brokers import MemoryBroker
from fullduplex.exceptions import ConnectionClosedOK, InvalidStatus
from fullduplex.protocol.frames import Opcode, serialize_frame
from fullduplex.protocol.handshake import Response
from tests.app.utils import Recorder, serving, url
from tests.asyncio.utils import RawClient, wait_for
from tests.helpers import seconds

ROOT = Path(__file__).resolve().parents[2]


class TestRouting:
    """An unknown path is answered with 404 before any upgrade."""

    async def test_unknown_path_is_404_before_upgrade(self) -> None:
        recorder = Recorder()
        app = App()
        app.endpoint("/chat/{room}")(recorder.endpoint())
        app.get("/health")(lambda request: "ok")
        async with serving(app) as server:
            for path in ("/nope", "/chat", "/chat/a/b", "/health"):
                raw = await RawClient.open(server.port)
                status, headers, _ = await raw.http(raw.request(path))
                await raw.close()
                assert status == 404, path
                assert "sec-websocket-accept" not in headers
            with pytest.raises(InvalidStatus) as info:
                await connect(url(server, "/nope"))
            assert info.value.status_code == 404
            assert server.connections == frozenset()
            # A known path upgrades.
            async with connect(url(server, "/chat/a")):
                await recorder.next_open()
        assert [kind for kind, _ in recorder.events] == ["open", "close"]

    async def test_compression_per_endpoint(self) -> None:
        app = App()
        app.on_message("/plain", compression=None)(lambda session, message: message)
        app.on_message("/deflate")(lambda session, message: message)
        async with serving(app) as server:
            async with connect(url(server, "/plain")) as ws:
                assert ws.response is not None
                assert "Sec-WebSocket-Extensions" not in ws.response.headers
                await ws.send("x" * 1000)
                assert await wait_for(ws.recv()) == "x" * 1000
            async with connect(url(server, "/deflate")) as ws:
                assert ws.response is not None
                assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
        async with serving(app, compression=None) as server, connect(url(server, "/deflate")) as ws:
            # The server's setting wins over the endpoint's.
            assert ws.response is not None
            assert "Sec-WebSocket-Extensions" not in ws.response.headers

    async def test_subprotocols_per_endpoint(self) -> None:
        app = App()
        app.on_message("/a", subprotocols=["a.v2", "a.v1"])(lambda s, m: s.subprotocol)
        app.on_message("/b")(lambda s, m: str(s.subprotocol))
        async with serving(app) as server:
            async with connect(url(server, "/a"), subprotocols=["a.v1", "a.v2"]) as ws:
                assert ws.subprotocol == "a.v2"
                await ws.send("?")
                assert await wait_for(ws.recv()) == "a.v2"
            async with connect(url(server, "/a"), subprotocols=["a.v1"]) as ws:
                assert ws.subprotocol == "a.v1"
            async with connect(url(server, "/b"), subprotocols=["a.v1"]) as ws:
                assert ws.subprotocol is None

    async def test_user_select_subprotocol_replaces(self) -> None:
        app = App()
        app.on_message("/a", subprotocols=["x"])(lambda s, m: m)

        def choose(request: Request, offered: Any) -> str | None:
            return offered[-1] if offered else None

        async with (
            serving(app, select_subprotocol=choose) as server,
            connect(url(server, "/a"), subprotocols=["x", "y"]) as ws,
        ):
            assert ws.subprotocol == "y"

    async def test_user_process_request_runs_first(self) -> None:
        app = App()
        app.on_message("/echo")(lambda session, message: message)
        seen: list[str] = []

        async def authenticate(ws: ServerWebSocket, request: Request) -> Response | None:
            seen.append(request.path)
            if request.headers.get("Authorization") != "Bearer ok":
                return ws.respond(403, "Forbidden\n")
            return None

        async with serving(app, process_request=authenticate) as server:
            with pytest.raises(InvalidStatus) as info:
                await connect(url(server, "/echo"))
            assert info.value.status_code == 403
            headers = [("Authorization", "Bearer ok")]
            async with connect(url(server, "/echo"), additional_headers=headers) as ws:
                await ws.send("in")
                assert await wait_for(ws.recv()) == "in"
            with pytest.raises(InvalidStatus) as info:
                await connect(url(server, "/nope"), additional_headers=headers)
            assert info.value.status_code == 404
        assert seen == ["/echo", "/echo", "/nope"]


class TestStopping:
    """Stopping the server closes every session with 1001."""

    async def test_serve_block_end_closes_sessions_with_1001(self) -> None:
        recorder = Recorder()
        app = App()
        app.endpoint("/x")(recorder.endpoint())
        async with serving(app) as server:
            clients = [await connect(url(server, "/x")) for _ in range(3)]
            for _ in clients:
                await recorder.next_open()
        for ws in clients:
            with pytest.raises(ConnectionClosedOK):
                await wait_for(ws.recv())
            assert ws.close_code == 1001
        reasons = [(await recorder.next_close())[1] for _ in clients]
        assert reasons == [CloseReason(1001, "server shutting down")] * 3

    async def test_serve_forever_until_cancelled(self) -> None:
        app = App()
        app.on_message("/echo")(lambda session, message: message)
        listening: asyncio.Queue[Server] = asyncio.Queue()
        task = asyncio.create_task(
            app.serve_forever("127.0.0.1", 0, on_listening=listening.put_nowait)
        )
        server = await wait_for(listening.get())
        async with connect(url(server, "/echo")) as ws:
            await ws.send("hi")
            assert await wait_for(ws.recv()) == "hi"
            task.cancel()
            with pytest.raises(ConnectionClosedOK):
                await wait_for(ws.recv())
        assert ws.close_code == 1001
        with pytest.raises(asyncio.CancelledError):
            await task
        # The signal handlers it installed are gone.
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL

    @pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
    async def test_run_stops_on_signals(self, signum: int) -> None:
        code = "from tests.app.sample_app import app; app.run('127.0.0.1', 0)"
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.to_thread(proc.stdout.readline)
            found = re.fullmatch(r"fullduplex app listening on http://(\S+) and ws://(\S+)\n", line)
            assert found is not None, line
            async with connect(f"ws://{found[2]}/count/10") as ws:
                await ws.send("+")
                assert await wait_for(ws.recv()) == "11"
                proc.send_signal(signum)
                with pytest.raises(ConnectionClosedOK):
                    await wait_for(ws.recv())
            assert ws.close_code == 1001
            assert await asyncio.to_thread(proc.wait, seconds(10)) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=seconds(10))


class TestBrokerFromEnvironment:
    """``FULLDUPLEX_BROKER`` chooses the broker of an App created without one (the Redis
    half, with a real Redis, is in tests/brokers/test_redis.py)."""

    def test_unset_or_empty_gives_a_memory_broker(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv(BROKER_ENV, raising=False)
        assert type(App().broker) is MemoryBroker
        monkeypatch.setenv(BROKER_ENV, "")
        assert type(App().broker) is MemoryBroker
        monkeypatch.setenv(BROKER_ENV, "memory://")
        assert type(App().broker) is MemoryBroker

    def test_an_explicit_broker_wins_over_the_variable(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(BROKER_ENV, "http://nowhere")  # would raise if it were read
        broker = MemoryBroker()
        assert App(broker=broker).broker is broker

    @pytest.mark.parametrize(
        ("url", "why"),
        [
            ("http://127.0.0.1:6379", "unknown broker URL 'http://127.0.0.1:6379'"),
            ("redis:/127.0.0.1", "unknown broker URL"),
            ("redis://127.0.0.1:port/0", "invalid Redis URL .*Port could not be cast"),
            ("redis://127.0.0.1:6379/zero", "invalid Redis URL .*database must be a number"),
            ("redis+cluster://127.0.0.1:70000", "invalid Redis URL 'redis\\+cluster://.*range"),
        ],
    )
    def test_an_invalid_url_is_refused_naming_the_variable(
        self, monkeypatch: pytest.MonkeyPatch, url: str, why: str
    ) -> None:
        """Refused when the App is created, not at its first connection to Redis."""
        monkeypatch.setenv(BROKER_ENV, url)
        with pytest.raises(ValueError, match=f"^{BROKER_ENV}: {why}"):
            App()


class TestConfigureGroups:
    """``App.configure_groups``: the first pattern configured that matches a group decides."""

    def test_the_first_matching_pattern_wins(self) -> None:
        app = App(broker=MemoryBroker())
        app.configure_groups("chat:vip", history_size=5)
        app.configure_groups("chat:*", history_size=100, presence=True)
        policies = app.broker.policies
        assert (policies("chat:vip").history_size, policies("chat:vip").presence) == (5, False)
        assert (policies("chat:lobby").history_size, policies("chat:lobby").presence) == (
            100,
            True,
        )
        assert policies("news").history_size == 0  # no pattern: the defaults

    def test_a_later_more_specific_pattern_does_not_override(self) -> None:
        """Order decides, not specificity: configure the special cases first."""
        app = App(broker=MemoryBroker())
        app.configure_groups("chat:*", history_size=100)
        app.configure_groups("chat:vip", history_size=5)
        assert app.broker.policies("chat:vip").history_size == 100

    def test_a_group_looked_up_before_it_was_configured_gets_the_new_options(self) -> None:
        app = App(broker=MemoryBroker())
        assert app.broker.policies("chat:vip").history_size == 0  # now cached
        app.configure_groups("chat:*", history_size=100)
        assert app.broker.policies("chat:vip").history_size == 100

    def test_the_order_survives_a_change_of_broker(self) -> None:
        app = App(broker=MemoryBroker())
        app.configure_groups("chat:vip", history_size=5)
        app.configure_groups("chat:*", history_size=100)
        other = MemoryBroker()
        app.use_broker(other)
        assert other.policies("chat:vip").history_size == 5
        assert other.policies("chat:lobby").history_size == 100

    async def test_the_winning_pattern_decides_recovery(self) -> None:
        """Behaviour, not only lookup: the history of 5 of ``chat:vip`` (first) applies, not
        the 100 of ``chat:*``: a member that missed 6 is told ``too_old``."""
        broker = MemoryBroker()
        app = App(broker=broker)
        app.configure_groups("chat:vip", history_size=5)
        app.configure_groups("chat:*", history_size=100)
        for group in ("chat:vip", "chat:lobby"):
            broker.interest(group)
            seen = await broker.publish(group, b"seen", text=True)
            for _ in range(6):
                await broker.publish(group, b"missed", text=True)
            recovery = await broker.recover(group, seen)
            assert recovery.recovered == (group == "chat:lobby"), (group, recovery.reason)
            assert recovery.reason == ("" if group == "chat:lobby" else "too_old")

    def test_an_unknown_option_is_refused(self) -> None:
        app = App(broker=MemoryBroker())
        with pytest.raises(TypeError):
            app.configure_groups("chat:*", histroy_size=5)
        with pytest.raises(ValueError, match="history_size"):
            app.configure_groups("chat:*", history_size=-1)
        assert app.broker.policies("chat:x").history_size == 0  # nothing was added


class TestRepliesBeforeTheFailure:
    """RFC 6455 7.1.7 in the App: a message and a violation in one read; the endpoint's reply
    reaches the peer before the close frame (1002)."""

    async def test_on_message_reply_then_close(self) -> None:
        app = App()
        app.on_message("/echo")(lambda session, message: message)
        hello = serialize_frame(Opcode.TEXT, b"hello", mask=b"abcd")
        bad = bytes([hello[0] | 0x20]) + hello[1:]  # RSV2
        async with serving(app) as server:
            raw = await RawClient.open(server.port)
            await raw.handshake("/echo")
            raw.writer.write(hello + bad)
            first = await raw.read_frame()
            second = await raw.read_frame()
            await raw.close()
        assert (first.opcode, first.payload) == (1, b"hello")
        assert (second.opcode, second.payload[:2]) == (8, b"\x03\xea")
