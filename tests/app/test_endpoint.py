"""Tests for fullduplex.app.endpoint: the callbacks' life cycle, errors and per-endpoint limits,
over real connections on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import pytest

from fullduplex.app import (
    App,
    BytesCodec,
    CloseReason,
    DecodeError,
    Endpoint,
    EndpointConfig,
    JSONCodec,
    Session,
    TextCodec,
)
from fullduplex.app.endpoint import FunctionEndpoint
from fullduplex.asyncio.client import connect
from fullduplex.exceptions import ConnectionClosedError, ConnectionClosedOK
from tests.app.utils import Recorder, serving, url
from tests.asyncio.utils import wait_for
from tests.helpers import seconds


@dataclass
class Move:
    x: int
    y: int


class TestClassEndpoints:
    """@app.endpoint: one instance per session; on_open, on_message in order, on_close."""

    async def test_life_cycle_in_order(self) -> None:
        recorder = Recorder()
        app = App()
        app.endpoint("/x")(recorder.endpoint())
        async with serving(app) as server:
            async with connect(url(server, "/x")) as ws:
                session = await recorder.next_open()
                for message in ("a", b"b", "c"):
                    await ws.send(message)
            closed, reason = await recorder.next_close()
        assert closed is session
        assert reason == CloseReason(1000, "")
        assert recorder.events == [
            ("open", session),
            ("message", "a"),
            ("message", b"b"),
            ("message", "c"),
            ("close", reason),
        ]

    async def test_one_instance_per_session(self) -> None:
        app = App()

        @app.endpoint("/count")
        class Count(Endpoint):
            def on_open(self, session: Session) -> None:
                self.count = 0

            def on_message(self, session: Session, message: Any) -> str:
                self.count += 1
                return f"{self.count}"

        async with (
            serving(app) as server,
            connect(url(server, "/count")) as a,
            connect(url(server, "/count")) as b,
        ):
            for ws in (a, a, b, a):
                await ws.send("+")
            assert [await wait_for(a.recv()) for _ in range(3)] == ["1", "2", "3"]
            assert await wait_for(b.recv()) == "1"

    async def test_async_callbacks_and_returned_values(self) -> None:
        app = App()

        @app.endpoint("/upper")
        class Upper(Endpoint):
            async def on_open(self, session: Session) -> None:
                await session.send("welcome")

            async def on_message(self, session: Session, message: Any) -> str | None:
                await asyncio.sleep(0)
                # None: nothing is sent back.
                return None if message == "quiet" else message.upper()

        async with serving(app) as server, connect(url(server, "/upper")) as ws:
            assert await wait_for(ws.recv()) == "welcome"
            await ws.send("quiet")
            await ws.send("loud")
            assert await wait_for(ws.recv()) == "LOUD"

    async def test_only_endpoint_subclasses(self) -> None:
        app = App()
        with pytest.raises(TypeError):
            app.endpoint("/x")(object)  # type: ignore[type-var]

    async def test_unknown_option(self) -> None:
        app = App()
        with pytest.raises(TypeError):
            app.endpoint("/x", max_size=10)(Endpoint)

    async def test_duplicate_path(self) -> None:
        app = App()
        app.endpoint("/x")(Endpoint)
        with pytest.raises(ValueError):
            app.on_message("/x")(lambda session, message: None)

    async def test_factory_failure_closes_with_1011(self, caplog: pytest.LogCaptureFixture) -> None:
        app = App()

        class Broken(Endpoint):
            def __init__(self) -> None:
                raise RuntimeError("no")

        app.endpoint("/x")(Broken)
        async with serving(app) as server, connect(url(server, "/x")) as ws:
            with pytest.raises(ConnectionClosedError) as info:
                await wait_for(ws.recv())
        assert info.value.code == 1011
        assert any(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in caplog.records)


class TestFunctionEndpoints:
    """@app.on_message: a function per message; a returned value is sent back."""

    async def test_sync_and_async_functions(self) -> None:
        app = App()

        @app.on_message("/async")
        async def reverse(session: Session, message: Any) -> Any:
            return message[::-1]

        @app.on_message("/sync")
        def double(session: Session, message: Any) -> Any:
            return message * 2

        async with (
            serving(app) as server,
            connect(url(server, "/async")) as a,
            connect(url(server, "/sync")) as s,
        ):
            await a.send("abc")
            await a.send(b"\x01\x02")
            await s.send("ab")
            assert await wait_for(a.recv()) == "cba"
            assert await wait_for(a.recv()) == b"\x02\x01"
            assert await wait_for(s.recv()) == "abab"

    async def test_none_sends_nothing(self) -> None:
        app = App()

        @app.on_message("/x")
        def maybe(session: Session, message: Any) -> Any:
            return None if message == "skip" else message

        async with serving(app) as server, connect(url(server, "/x")) as ws:
            await ws.send("skip")
            await ws.send("keep")
            assert await wait_for(ws.recv()) == "keep"

    async def test_decorator_returns_the_function(self) -> None:
        app = App()

        def handler(session: Session, message: Any) -> Any:
            return message

        assert app.on_message("/x")(handler) is handler

    def test_function_endpoint(self) -> None:
        endpoint = FunctionEndpoint(lambda session, message: ("called", message))
        assert endpoint.on_message(None, "m") == ("called", "m")  # type: ignore[arg-type]


class TestCodecErrors:
    """Undecodable messages: on_error, close with the codec's code; the server goes on."""

    async def test_invalid_json_closes_with_1007(self) -> None:
        recorder = Recorder()
        replies: list[Any] = []

        def on_message(self: Endpoint, session: Session, message: Move) -> Move:
            replies.append(message)
            return Move(message.y, message.x)

        app = App()
        app.endpoint("/move", codec=JSONCodec(Move))(recorder.endpoint(on_message=on_message))
        async with serving(app) as server:
            async with connect(url(server, "/move")) as other, connect(url(server, "/move")) as ws:
                await ws.send('{"x": 1, "y": 2}')
                assert await wait_for(ws.recv()) == '{"x":2,"y":1}'
                await ws.send('{"x": 1')
                with pytest.raises(ConnectionClosedError) as info:
                    await wait_for(ws.recv())
                assert info.value.code == 1007
                assert info.value.reason == "invalid data"
                session, error = await recorder.next_error()
                assert isinstance(error, DecodeError) and error.close_code == 1007
                closed, reason = await recorder.next_close()
                assert closed is session and reason.code == 1007
                # Other sessions, open before or opened after, are served as before.
                await other.send('{"x": 3, "y": 4}')
                assert await wait_for(other.recv()) == '{"x":4,"y":3}'
            async with connect(url(server, "/move")) as again:
                await again.send('{"x": 5, "y": 6}')
                assert await wait_for(again.recv()) == '{"x":6,"y":5}'
        assert replies == [Move(1, 2), Move(3, 4), Move(5, 6)]

    async def test_wrong_fields_close_with_1007(self) -> None:
        app = App()
        app.on_message("/move", codec=JSONCodec(Move))(lambda session, message: message)
        async with serving(app) as server, connect(url(server, "/move")) as ws:
            await ws.send('{"x": 1, "z": 2}')
            with pytest.raises(ConnectionClosedError) as info:
                await wait_for(ws.recv())
        assert info.value.code == 1007

    async def test_binary_to_a_text_endpoint_closes_with_1003(self) -> None:
        recorder = Recorder()
        app = App()
        app.endpoint("/text", codec=TextCodec())(recorder.endpoint())
        async with serving(app) as server, connect(url(server, "/text")) as ws:
            await ws.send("fine")
            await ws.send(b"not text")
            with pytest.raises(ConnectionClosedError) as info:
                await wait_for(ws.recv())
            _, error = await recorder.next_error()
        assert info.value.code == 1003
        assert isinstance(error, DecodeError) and error.close_code == 1003
        assert ("message", "fine") in recorder.events
        assert ("message", b"not text") not in recorder.events

    async def test_text_to_a_binary_endpoint_closes_with_1003(self) -> None:
        app = App()
        app.on_message("/bin", codec=BytesCodec())(lambda session, message: message)
        async with serving(app) as server, connect(url(server, "/bin")) as ws:
            await ws.send(b"\x00")
            assert await wait_for(ws.recv()) == b"\x00"
            await ws.send("text")
            with pytest.raises(ConnectionClosedError) as info:
                await wait_for(ws.recv())
        assert info.value.code == 1003

    async def test_user_code_may_reject_a_message(self) -> None:
        app = App()

        @app.on_message("/x")
        def strict(session: Session, message: Any) -> Any:
            raise DecodeError("not what I expected", 1003)

        async with serving(app) as server, connect(url(server, "/x")) as ws:
            await ws.send("?")
            with pytest.raises(ConnectionClosedError) as info:
                await wait_for(ws.recv())
        assert info.value.code == 1003


class TestUserErrors:
    """An exception in user code: on_error, close with 1011, one log record."""

    async def test_exception_in_on_message(self, caplog: pytest.LogCaptureFixture) -> None:
        recorder = Recorder()

        class Boom(Exception):
            pass

        def on_message(self: Endpoint, session: Session, message: Any) -> None:
            if message == "boom":
                raise Boom("boom")

        app = App()
        app.endpoint("/x")(recorder.endpoint(on_message=on_message))
        caplog.set_level(logging.DEBUG)
        async with serving(app) as server:
            async with connect(url(server, "/x")) as ws:
                await ws.send("boom")
                with pytest.raises(ConnectionClosedError) as info:
                    await wait_for(ws.recv())
            _, error = await recorder.next_error()
            _, reason = await recorder.next_close()
            # The server goes on.
            async with connect(url(server, "/x")) as ws:
                await recorder.next_open()
        assert info.value.code == 1011 and info.value.reason == "internal error"
        assert isinstance(error, Boom)
        assert reason == CloseReason(1011, "internal error")
        logged = [r for r in caplog.records if r.exc_info and r.exc_info[1] is error]
        assert len(logged) == 1
        assert logged[0].levelno == logging.ERROR and logged[0].name == "fullduplex.app"
        assert [r for r in caplog.records if r.levelno >= logging.WARNING] == logged

    async def test_exception_in_on_open(self, caplog: pytest.LogCaptureFixture) -> None:
        recorder = Recorder()

        def on_open(self: Endpoint, session: Session) -> None:
            raise KeyError("missing")

        app = App()
        app.endpoint("/x")(recorder.endpoint(on_open=on_open))
        async with serving(app) as server, connect(url(server, "/x")) as ws:
            with pytest.raises(ConnectionClosedError) as info:
                await wait_for(ws.recv())
            _, error = await recorder.next_error()
            _, reason = await recorder.next_close()
        assert info.value.code == 1011
        assert isinstance(error, KeyError)
        assert reason.code == 1011

    async def test_exception_in_on_error_is_logged_and_goes_no_further(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        calls: list[Exception] = []
        app = App()

        @app.endpoint("/x")
        class Bad(Endpoint):
            def on_message(self, session: Session, message: Any) -> None:
                raise ValueError("first")

            async def on_error(self, session: Session, error: Exception) -> None:
                calls.append(error)
                raise RuntimeError("second")

        async with serving(app) as server, connect(url(server, "/x")) as ws:
            await ws.send("x")
            with pytest.raises(ConnectionClosedError) as info:
                await wait_for(ws.recv())
        assert info.value.code == 1011
        assert len(calls) == 1 and isinstance(calls[0], ValueError)
        errors = [r.exc_info[1] for r in caplog.records if r.exc_info]
        assert [type(e) for e in errors] == [ValueError, RuntimeError]

    async def test_exception_in_on_close_reaches_on_error(self) -> None:
        recorder = Recorder()

        def on_close(self: Endpoint, session: Session, reason: CloseReason) -> None:
            raise RuntimeError("close")

        app = App()
        app.endpoint("/x")(recorder.endpoint(on_close=on_close))
        async with serving(app) as server:
            async with connect(url(server, "/x")):
                await recorder.next_open()
            _, error = await recorder.next_error()
        assert isinstance(error, RuntimeError)

    async def test_default_on_error_does_not_log_again(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        app = App()

        @app.on_message("/x")
        def fail(session: Session, message: Any) -> None:
            raise ZeroDivisionError

        async with serving(app) as server, connect(url(server, "/x")) as ws:
            await ws.send("x")
            with pytest.raises(ConnectionClosedError):
                await wait_for(ws.recv())
        logged = [r for r in caplog.records if r.exc_info]
        assert len(logged) == 1 and isinstance(logged[0].exc_info[1], ZeroDivisionError)  # type: ignore[index]


class TestLimits:
    """Per-endpoint max_message_size (1009) and idle timeout."""

    async def test_max_message_size_is_per_endpoint(self) -> None:
        recorder = Recorder()
        app = App()
        app.endpoint("/small", max_message_size=100)(recorder.endpoint())
        app.on_message("/large", max_message_size=10_000)(lambda s, message: str(len(message)))
        async with serving(app) as server:
            async with connect(url(server, "/large")) as ws:
                await ws.send("x" * 5000)
                assert await wait_for(ws.recv()) == "5000"
            async with connect(url(server, "/small")) as ws:
                await ws.send("x" * 100)
                await ws.send("x" * 101)
                with pytest.raises(ConnectionClosedError) as info:
                    await wait_for(ws.recv())
                _, reason = await recorder.next_close()
        assert info.value.code == 1009
        assert reason.code == 1009
        assert ("message", "x" * 100) in recorder.events

    async def test_limit_applies_to_decompressed_size(self) -> None:
        app = App()
        app.on_message("/small", max_message_size=1000)(lambda session, message: "ok")
        async with serving(app) as server, connect(url(server, "/small")) as ws:
            assert ws.response is not None
            assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
            await ws.send("a" * 5000)  # compresses to a few bytes
            with pytest.raises(ConnectionClosedError) as info:
                await wait_for(ws.recv())
        assert info.value.code == 1009

    async def test_idle_session_is_closed(self) -> None:
        recorder = Recorder()
        app = App()
        app.endpoint("/idle", idle_timeout=0.2)(recorder.endpoint())
        async with serving(app) as server, connect(url(server, "/idle")) as ws:
            with pytest.raises(ConnectionClosedOK) as info:
                await wait_for(ws.recv(), 5)
            _, reason = await recorder.next_close()
        assert info.value.code == 1001 and info.value.reason == "idle timeout"
        assert reason == CloseReason(1001, "idle timeout")

    async def test_activity_keeps_a_session_open(self) -> None:
        app = App()
        app.on_message("/idle", idle_timeout=seconds(0.5))(lambda session, message: message)
        async with serving(app) as server, connect(url(server, "/idle")) as ws:
            loop = asyncio.get_running_loop()
            start = loop.time()
            # Twice the idle timeout, with a message every fifth of it.
            while loop.time() - start < seconds(1):
                await ws.send("ping")
                assert await wait_for(ws.recv()) == "ping"
                await asyncio.sleep(seconds(0.1))
            with pytest.raises(ConnectionClosedOK):
                await wait_for(ws.recv(), 5)
        assert ws.close_code == 1001


class TestEndpointConfig:
    """EndpointConfig validates its values."""

    @pytest.mark.parametrize(
        "options",
        [
            {"max_message_size": 0},
            {"idle_timeout": 0},
            {"max_buffered": -1},
            {"overflow": "block"},
            {"compression": "gzip"},
        ],
    )
    def test_invalid_values(self, options: dict[str, Any]) -> None:
        with pytest.raises(ValueError):
            EndpointConfig("/x", Endpoint, **options)

    def test_subprotocols_become_a_tuple(self) -> None:
        config = EndpointConfig("/x", Endpoint, subprotocols=["a", "b"])
        assert config.subprotocols == ("a", "b")
        with pytest.raises(TypeError):
            EndpointConfig("/x", Endpoint, subprotocols="chat")

    def test_defaults(self) -> None:
        config = EndpointConfig("/x", Endpoint)
        assert config.max_message_size == 2**20
        assert config.max_buffered == 2**20
        assert config.overflow == "drop"
        assert config.idle_timeout is None
        assert config.compression == "deflate"
