"""Tests for fullduplex.app.inline: sessions of the App's own server run from the connection's
callbacks, with a task only while a callback is suspended; over real connections."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from fullduplex.app import App, CloseReason, Endpoint, JSONCodec, Session
from fullduplex.app.inline import can_suspend
from fullduplex.asyncio import connection as connection_module
from fullduplex.asyncio.client import connect
from fullduplex.exceptions import ConnectionClosedError
from fullduplex.protocol.frames import Opcode
from tests.app.utils import Recorder, serving, url
from tests.asyncio.utils import frames_after, violation_after, wait_for


async def _no_await(session: Session, message: Any) -> Any:
    return message


async def _awaits(session: Session, message: Any) -> Any:
    await asyncio.sleep(0)
    return message


async def _async_with(session: Session, message: Any) -> Any:
    async with asyncio.timeout(1):
        return message


def _plain(session: Session, message: Any) -> Any:
    return message


class TestCanSuspend:
    """Which callbacks need a task from their first step."""

    def test_plain_and_await_free_coroutines_cannot(self) -> None:
        assert not can_suspend(_plain)
        assert not can_suspend(_no_await)
        assert not can_suspend(Endpoint().on_message)

    def test_coroutines_that_await_can(self) -> None:
        assert can_suspend(_awaits)
        assert can_suspend(_async_with)

    def test_bound_methods_and_async_callables(self) -> None:
        class Callable:
            async def __call__(self, session: Session, message: Any) -> None:
                pass

        class Handlers:
            async def on_message(self, session: Session, message: Any) -> None:
                await asyncio.sleep(0)

        assert can_suspend(Callable())
        assert can_suspend(Handlers().on_message)


class TestOrder:
    """Per-session order holds whether a handler returns at once or suspends."""

    @pytest.mark.parametrize("style", ["def returning an awaitable", "async def"])
    async def test_handler_that_sometimes_awaits(self, style: str) -> None:
        async def later(message: str) -> str:
            await asyncio.sleep(0.001)
            return message

        if style == "async def":

            async def handler(session: Session, message: str) -> str:
                if int(message) % 3 == 0:
                    await asyncio.sleep(0.001)
                return message

        else:

            def handler(session: Session, message: str) -> Any:  # type: ignore[misc]
                return later(message) if int(message) % 3 == 0 else message

        app = App()
        app.on_message("/echo")(handler)
        async with serving(app) as server, connect(url(server, "/echo")) as ws:
            for n in range(200):
                await ws.send(str(n))
            replies = [await wait_for(ws.recv()) for _ in range(200)]
        assert replies == [str(n) for n in range(200)]

    async def test_messages_wait_for_a_suspended_on_open(self) -> None:
        recorder = Recorder()

        async def on_open(self: Endpoint, session: Session) -> None:
            await asyncio.sleep(0.05)
            recorder.events.append(("open", session))
            recorder.opened.put_nowait(session)

        def on_message(self: Endpoint, session: Session, message: Any) -> Any:
            recorder.events.append(("message", message))
            return message

        app = App()
        app.endpoint("/x", codec=JSONCodec())(
            recorder.endpoint(on_open=on_open, on_message=on_message)
        )
        async with serving(app) as server, connect(url(server, "/x")) as ws:
            for n in range(20):
                await ws.send(str(n))
            replies = [await wait_for(ws.recv()) for _ in range(20)]
        assert replies == [str(n) for n in range(20)]
        assert [kind for kind, _ in recorder.events[:2]] == ["open", "message"]
        assert [value for kind, value in recorder.events if kind == "message"] == list(range(20))

    async def test_replies_wait_for_the_write_buffer(self) -> None:
        # Replies far above the write limit: later ones wait for the buffer to drain, in order.
        app = App()

        @app.on_message("/big")
        def big(session: Session, message: str) -> str:
            return message * 20_000

        async with (
            serving(app, write_limit=1024) as server,
            connect(url(server, "/big"), max_message_size=None) as ws,
        ):
            for n in range(30):
                await ws.send(f"{n:03}")
            replies = [await wait_for(ws.recv()) for _ in range(30)]
        assert [reply[:3] for reply in replies] == [f"{n:03}" for n in range(30)]
        assert all(len(reply) == 60_000 for reply in replies)


class TestAsyncHandlers:
    """An async callback that suspends runs inside a task of its own from its first step."""

    async def test_current_task_and_timeout_in_on_message(self) -> None:
        app = App()
        seen: list[asyncio.Task[Any] | None] = []

        @app.on_message("/t")
        async def handler(session: Session, message: str) -> str:
            task = asyncio.current_task()
            seen.append(task)
            if message == "cancel":
                try:
                    async with asyncio.timeout(0.01):
                        await asyncio.sleep(10)
                except TimeoutError:
                    return "timed out"
                return "not timed out"
            async with asyncio.timeout(5):
                await asyncio.sleep(0)
            return "same task" if asyncio.current_task() is task else "other task"

        async with serving(app) as server, connect(url(server, "/t")) as ws:
            await ws.send("one")
            assert await wait_for(ws.recv()) == "same task"
            await ws.send("cancel")
            assert await wait_for(ws.recv()) == "timed out"
            # The session goes on after the timeout's cancellation.
            await ws.send("two")
            assert await wait_for(ws.recv()) == "same task"
        assert all(task is not None for task in seen)

    async def test_current_task_and_timeout_in_on_open(self) -> None:
        recorder = Recorder()

        async def on_open(self: Endpoint, session: Session) -> None:
            assert asyncio.current_task() is not None
            async with asyncio.timeout(5):
                await asyncio.sleep(0)
            recorder.opened.put_nowait(session)

        app = App()
        app.endpoint("/x")(recorder.endpoint(on_open=on_open))
        async with serving(app) as server, connect(url(server, "/x")):
            await recorder.next_open()


class TestErrors:
    """An exception in a handler run inline: on_error, then the 1011 close, then on_close."""

    @pytest.mark.parametrize("kind", ["def", "async def without await"])
    async def test_exception_in_inline_handler(
        self, kind: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        recorder = Recorder()

        class Boom(Exception):
            pass

        def raising(self: Endpoint, session: Session, message: Any) -> None:
            recorder.events.append(("message", message))
            if message == "boom":
                raise Boom("boom")

        async def raising_async(self: Endpoint, session: Session, message: Any) -> None:
            raising(self, session, message)

        handler = raising if kind == "def" else raising_async
        assert not can_suspend(handler)
        app = App()
        app.endpoint("/x")(recorder.endpoint(on_message=handler))
        caplog.set_level(logging.INFO)
        async with serving(app) as server:
            async with connect(url(server, "/x")) as ws:
                await ws.send("ok")
                await ws.send("boom")
                await ws.send("never handled")
                with pytest.raises(ConnectionClosedError) as info:
                    await wait_for(ws.recv())
            _, error = await recorder.next_error()
            _, reason = await recorder.next_close()
        assert info.value.code == 1011
        assert isinstance(error, Boom)
        assert reason == CloseReason(1011, "internal error")
        kinds = [name for name, _ in recorder.events]
        assert kinds == ["open", "message", "message", "error", "close"]
        logged = [r for r in caplog.records if r.exc_info and r.exc_info[1] is error]
        assert len(logged) == 1


class TestIdle:
    """An idle session of the App's own server holds no task."""

    @pytest.mark.parametrize("kind", ["def", "async def"])
    async def test_idle_sessions_hold_no_task(self, kind: str) -> None:
        recorder = Recorder()

        async def on_open(self: Endpoint, session: Session) -> None:
            await asyncio.sleep(0)
            recorder.opened.put_nowait(session)

        async def on_message(self: Endpoint, session: Session, message: Any) -> Any:
            await asyncio.sleep(0)
            return message

        def echo(self: Endpoint, session: Session, message: Any) -> Any:
            return message

        overrides: dict[str, Any] = {"on_message": echo}
        if kind == "async def":
            overrides = {"on_open": on_open, "on_message": on_message}
        app = App()
        app.endpoint("/idle")(recorder.endpoint(**overrides))
        async with serving(app) as server:
            before = len(asyncio.all_tasks())
            clients = [await connect(url(server, "/idle")) for _ in range(100)]
            try:
                for _ in clients:
                    await recorder.next_open()
                # Each session handles one message (async: in a task), then idles.
                for ws in clients:
                    await ws.send("hello")
                for ws in clients:
                    await wait_for(ws.recv())
                for _ in range(3):
                    await asyncio.sleep(0)
                assert len(server.connections) == 100
                assert len(asyncio.all_tasks()) == before
            finally:
                for ws in clients:
                    await ws.close()


class TestServerClose:
    """The server waits for sessions on callbacks as it waited for their tasks."""

    async def test_close_without_closing_sessions_waits_for_them(self) -> None:
        recorder = Recorder()

        def echo(self: Endpoint, session: Session, message: Any) -> Any:
            return message

        app = App()
        app.endpoint("/x")(recorder.endpoint(on_message=echo))
        async with serving(app) as server:
            ws = await connect(url(server, "/x"))
            await recorder.next_open()
            closing = server.close(close_connections=False)
            await ws.send("still served")
            assert await wait_for(ws.recv()) == "still served"
            await asyncio.sleep(0.05)
            assert not closing.done()
            await ws.close()
            await wait_for(closing)
            # on_close ran before the server (and the app's broker) closed.
            assert [kind for kind, _ in recorder.events] == ["open", "close"]


class TestMoreEdges:
    """Replies the codec refuses, and an on_close that awaits."""

    async def test_unencodable_reply_is_an_error(self) -> None:
        recorder = Recorder()

        def reply(self: Endpoint, session: Session, message: Any) -> Any:
            return object()

        app = App()
        app.endpoint("/x", codec=JSONCodec())(recorder.endpoint(on_message=reply))
        async with serving(app) as server:
            async with connect(url(server, "/x")) as ws:
                await ws.send("1")
                with pytest.raises(ConnectionClosedError) as info:
                    await wait_for(ws.recv())
            _, error = await recorder.next_error()
            _, reason = await recorder.next_close()
        assert info.value.code == 1011
        assert isinstance(error, TypeError)
        assert reason.code == 1011

    async def test_awaiting_on_close_ends_before_the_server(self) -> None:
        recorder = Recorder()

        async def on_close(self: Endpoint, session: Session, reason: CloseReason) -> None:
            await asyncio.sleep(0.01)
            recorder.events.append(("close", reason))

        app = App()
        app.endpoint("/x")(recorder.endpoint(on_close=on_close))
        async with serving(app) as server:
            ws = await connect(url(server, "/x"))
            await recorder.next_open()
        # Leaving the block closed the session with 1001 and waited for its on_close.
        assert recorder.events[-1] == ("close", CloseReason(1001, "server shutting down"))
        await ws.close()

    @pytest.mark.parametrize("fails", [False, True], ids=["awaitable", "raises"])
    async def test_on_close_returning_an_awaitable_ends_before_the_server(
        self, fails: bool
    ) -> None:
        # A plain def on_close that returns an awaitable: the session ends when it is done,
        # and a server closing without closing connections waits for that.
        started = asyncio.Event()
        gate = asyncio.Event()
        done: list[str] = []

        async def later() -> None:
            started.set()
            await gate.wait()
            done.append("on_close")
            if fails:
                raise RuntimeError("on_close failed late")

        class Later(Endpoint):
            def on_message(self, session: Session, message: Any) -> Any:
                return message

            def on_close(self, session: Session, reason: CloseReason) -> Any:
                return later()

        app = App()
        app.endpoint("/x")(Later)
        async with serving(app) as server:
            ws = await connect(url(server, "/x"))
            closing = asyncio.ensure_future(server.close(close_connections=False))
            await ws.close()
            await wait_for(started.wait())
            await asyncio.sleep(0.05)
            assert not closing.done()
            gate.set()
            await wait_for(closing)
            assert done == ["on_close"]


CLOSE_1002 = (Opcode.CLOSE, b"\x03\xea")


async def _nothing() -> None:
    await asyncio.sleep(0)


def _reply_inline(session: Session, message: Any) -> Any:
    return "re:" + message


async def _reply_without_await(session: Session, message: Any) -> Any:
    return "re:" + message


async def _reply_after_await(session: Session, message: Any) -> Any:
    await asyncio.sleep(0)
    return "re:" + message


async def _reply_after_slow_await(session: Session, message: Any) -> Any:
    await asyncio.sleep(0.01)
    return "re:" + message


async def _answer_nothing_after_await(session: Session, message: Any) -> Any:
    await asyncio.sleep(0)
    return None


def _inline_then_awaitable(session: Session, message: Any) -> Any:
    # "a" is answered inline; any other message by an awaitable that answers nothing (a task).
    return "re:a" if message == "a" else _nothing()


class TestViolationAfterMessages:
    """Messages, then a protocol violation in the same read: each message is answered, then
    the close frame (1002) leaves, without waiting for FAILURE_GRACE once all are answered."""

    @pytest.fixture(autouse=True)
    def _long_grace(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # A grace far longer than a read of the raw client may wait (5 s): a close frame that
        # waits for it fails the test rather than arriving late.
        monkeypatch.setattr(connection_module, "FAILURE_GRACE", 60.0)

    @pytest.mark.parametrize(
        "handler",
        [_reply_inline, _reply_without_await, _reply_after_await],
        ids=["inline", "async-without-await", "awaits"],
    )
    async def test_every_message_is_answered_before_the_close(self, handler: Any) -> None:
        app = App()
        app.on_message("/x")(handler)
        async with serving(app, close_timeout=60) as server:
            frames = await frames_after(
                server.port, path="/x", data=violation_after(b"a", b"b", b"c")
            )
        assert frames == [
            (Opcode.TEXT, b"re:a"),
            (Opcode.TEXT, b"re:b"),
            (Opcode.TEXT, b"re:c"),
            CLOSE_1002,
        ]

    async def test_close_leaves_when_the_session_is_handed_back(self) -> None:
        # The task that had the session answered nothing and handed it back: nothing is left
        # to answer, so the close frame leaves then, not after the grace.
        app = App()
        app.on_message("/x")(_answer_nothing_after_await)
        async with serving(app, close_timeout=60) as server:
            frames = await frames_after(
                server.port, path="/x", data=violation_after(b"a", b"b", b"c")
            )
        assert frames == [CLOSE_1002]

    async def test_inline_reply_is_not_held_behind_a_task(self) -> None:
        app = App()
        app.on_message("/x")(_inline_then_awaitable)
        async with serving(app, close_timeout=60) as server:
            frames = await frames_after(server.port, path="/x", data=violation_after(b"a", b"b"))
        assert frames == [(Opcode.TEXT, b"re:a"), CLOSE_1002]

    @pytest.mark.parametrize(
        ("handler", "replies"),
        [
            (_inline_then_awaitable, [[(Opcode.TEXT, b"re:a")]]),
            (_reply_after_slow_await, [[], [(Opcode.TEXT, b"re:a")]]),
        ],
        ids=["inline-reply-then-task", "slow"],
    )
    async def test_peer_half_closes_after_the_violation(
        self, handler: Any, replies: list[Any]
    ) -> None:
        # The peer's EOF ends the wait: what was answered leaves, then the close frame.
        app = App()
        app.on_message("/x")(handler)
        async with serving(app, close_timeout=60) as server:
            frames = await frames_after(
                server.port, path="/x", data=violation_after(b"a", b"b"), eof=True
            )
        assert frames[-1] == CLOSE_1002
        assert frames[:-1] in replies
