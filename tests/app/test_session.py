"""Tests for fullduplex.app.session: what a session tells about its request, sending,
closing, and group membership."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fullduplex.app import App, CloseReason, Endpoint, JSONCodec, Session
from fullduplex.app.endpoint import DEFAULT_MAX_GROUPS, EndpointConfig
from fullduplex.app.session import Session as SessionClass
from fullduplex.asyncio.client import connect
from fullduplex.brokers import Position
from fullduplex.exceptions import ConnectionClosed, ConnectionClosedError, TooManyGroups
from tests.app.utils import Recorder, serving, url
from tests.asyncio.utils import wait_for


def _one_session(path: str = "/room/{name}", **config: Any) -> tuple[App, Recorder]:
    recorder = Recorder()
    app = App()
    app.endpoint(path, **config)(recorder.endpoint())
    return app, recorder


class TestRequestData:
    """Path parameters, query, headers, subprotocol and address reach the session."""

    async def test_path_params_and_query(self) -> None:
        app, recorder = _one_session("/room/{name}/{rest:path}")
        async with (
            serving(app) as server,
            connect(url(server, "/room/caf%C3%A9/a/b?x=1&x=2&empty=&y=%20z")),
        ):
            session = await recorder.next_open()
            assert session.path == "/room/caf%C3%A9/a/b"
            assert session.path_params == {"name": "café", "rest": "a/b"}
            assert session.query == {"x": ["1", "2"], "empty": [""], "y": [" z"]}
            assert session.request.path.endswith("?x=1&x=2&empty=&y=%20z")

    async def test_no_query(self) -> None:
        app, recorder = _one_session()
        async with serving(app) as server, connect(url(server, "/room/a")):
            session = await recorder.next_open()
            assert session.query == {}

    async def test_headers_subprotocol_address(self) -> None:
        app, recorder = _one_session(subprotocols=["v2", "v1"])
        async with (
            serving(app) as server,
            connect(
                url(server, "/room/a"),
                subprotocols=["v1", "v2"],
                additional_headers=[("X-Token", "secret")],
            ) as ws,
        ):
            session = await recorder.next_open()
            assert session.headers["x-token"] == "secret"
            # The endpoint's preference order decides.
            assert session.subprotocol == "v2" == ws.subprotocol
            assert session.remote_address == ws.local_address

    async def test_ids_are_distinct(self) -> None:
        app, recorder = _one_session()
        async with (
            serving(app) as server,
            connect(url(server, "/room/a")),
            connect(url(server, "/room/a")),
        ):
            first, second = await recorder.next_open(), await recorder.next_open()
            assert first.id != second.id
            assert first.id in repr(first)


class TestState:
    """Per-session state is tiny: slots, and a state dict created on first use."""

    def test_slots(self) -> None:
        assert "__dict__" not in dir(SessionClass)
        assert not hasattr(SessionClass, "__dict__") or "__dict__" not in SessionClass.__dict__

    async def test_state_is_lazy_and_per_session(self) -> None:
        app, recorder = _one_session()
        async with (
            serving(app) as server,
            connect(url(server, "/room/a")),
            connect(url(server, "/room/a")),
        ):
            first, second = await recorder.next_open(), await recorder.next_open()
            assert first._state is None and first._groups is None and first._query is None
            first.state["user"] = "ann"
            assert first.state == {"user": "ann"}
            assert second.state == {}


class TestSending:
    """send (awaits), send_nowait (never waits), both through the codec."""

    async def test_send_uses_the_codec(self) -> None:
        app, recorder = _one_session(codec=JSONCodec())
        async with serving(app) as server, connect(url(server, "/room/a")) as ws:
            session = await recorder.next_open()
            await session.send({"a": [1]})
            assert session.send_nowait([True, None])
            assert await wait_for(ws.recv()) == '{"a":[1]}'
            assert await wait_for(ws.recv()) == "[true,null]"
            with pytest.raises(TypeError):
                await session.send(object())
            with pytest.raises(TypeError):
                session.send_nowait(object())

    async def test_send_after_close(self) -> None:
        app, recorder = _one_session()
        async with serving(app) as server:
            async with connect(url(server, "/room/a")):
                session = await recorder.next_open()
            await recorder.next_close()
            assert session.closed
            assert session.send_nowait("late") is False
            with pytest.raises(ConnectionClosed):
                await session.send("late")


class TestClosing:
    """close(code, reason) reaches the client; on_close gets the reason."""

    async def test_close_with_code_and_reason(self) -> None:
        app, recorder = _one_session()
        async with serving(app) as server, connect(url(server, "/room/a")) as ws:
            session = await recorder.next_open()
            assert not session.closed
            await session.close(4000, "bye")
            assert session.closed
            with pytest.raises(ConnectionClosedError) as info:
                await wait_for(ws.recv())
            _, reason = await recorder.next_close()
            await session.close()  # again: no effect
        assert (info.value.code, info.value.reason) == (4000, "bye")
        assert reason == CloseReason(4000, "bye")

    async def test_invalid_close_code(self) -> None:
        app, recorder = _one_session()
        async with serving(app) as server, connect(url(server, "/room/a")) as ws:
            session = await recorder.next_open()
            with pytest.raises(ValueError):
                await session.close(1005)
            assert not session.closed
            await ws.send("still open")
            await session.close()

    async def test_client_close_reason(self) -> None:
        app, recorder = _one_session()
        async with serving(app) as server:
            async with connect(url(server, "/room/a")) as ws:
                await recorder.next_open()
                await ws.close(4321, "client says")
            _, reason = await recorder.next_close()
        assert reason == CloseReason(4321, "client says")


class TestGroupMembership:
    """join, leave, group, groups; a closed session leaves every group."""

    async def test_join_and_leave(self) -> None:
        app, recorder = _one_session()
        async with serving(app) as server, connect(url(server, "/room/a")):
            session = await recorder.next_open()
            session.join("red")
            session.join("blue")
            session.join("red")
            assert session.groups == {"red", "blue"}
            assert session in session.group("red") and session in app.group("blue")
            assert len(app.group("red")) == 1
            session.leave("red")
            session.leave("never joined")
            assert session.groups == {"blue"}
            assert session not in app.group("red")
            # The emptied group is dropped from the app.
            assert "red" not in app._registry.group_keys()

    async def test_closed_session_leaves_its_groups(self) -> None:
        seen: list[frozenset[str]] = []
        closed = asyncio.Event()

        def on_close(self: Endpoint, session: Session, reason: CloseReason) -> None:
            seen.append(session.groups)
            seen.append(frozenset(str(len(session.group(name))) for name in session.groups))
            closed.set()

        recorder = Recorder()
        app = App()
        app.endpoint("/x")(recorder.endpoint(on_close=on_close))
        async with serving(app) as server:
            async with connect(url(server, "/x")):
                session = await recorder.next_open()
                session.join("g")
                assert len(app.sessions("/x")) == 1
            await wait_for(closed.wait())
            assert app._registry.group_keys() == []
            session.join("again")  # closed: no effect
            assert len(app.group("again")) == 0
        # on_close still knows the names, and the groups no longer hold the session.
        assert seen == [frozenset({"g"}), frozenset({"0"})]


class TestGroupLimit:
    """max_groups: a session's group subscriptions are bounded; the one too many raises
    TooManyGroups and changes nothing, and uncaught it closes the session with 1008."""

    def test_default_and_validation(self) -> None:
        assert EndpointConfig("/x", Endpoint).max_groups == DEFAULT_MAX_GROUPS == 128
        assert EndpointConfig("/x", Endpoint, max_groups=None).max_groups is None
        for bad in (0, -1):
            with pytest.raises(ValueError, match="max_groups"):
                EndpointConfig("/x", Endpoint, max_groups=bad)

    async def test_join_beyond_the_limit_raises(self) -> None:
        app, recorder = _one_session(max_groups=2)
        async with serving(app) as server, connect(url(server, "/room/a")):
            session = await recorder.next_open()
            session.join("a")
            session.join("b")
            session.join("a")  # already in it: not one more
            with pytest.raises(TooManyGroups) as raised:
                session.join("c")
            assert (raised.value.limit, raised.value.group) == (2, "c")
            assert "at most 2 groups" in str(raised.value)
            assert session.groups == {"a", "b"}
            assert "c" not in app._registry.group_keys()
            with pytest.raises(TooManyGroups):
                await session.rejoin("c", Position("e", 0))
            assert "c" not in app._registry.group_keys()
            session.leave("a")
            session.join("c")  # room again
            assert session.groups == {"b", "c"}
            assert not session.closed

    async def test_uncaught_closes_with_1008(self) -> None:
        app = App()
        errors: list[Exception] = []

        @app.endpoint("/sub", max_groups=3)
        class Subscriber(Endpoint):
            def on_message(self, session: Session, message: str) -> str:
                session.join(message)
                return f"joined {message}"

            def on_error(self, session: Session, error: Exception) -> None:
                errors.append(error)

        async with serving(app) as server, connect(url(server, "/sub")) as ws:
            for name in ("a", "b", "c"):
                await ws.send(name)
                assert await wait_for(ws.recv()) == f"joined {name}"
            await ws.send("d")
            with pytest.raises(ConnectionClosedError):
                await wait_for(ws.recv())
            assert ws.close_code == 1008
        assert [type(error) for error in errors] == [TooManyGroups]

    async def test_no_limit(self) -> None:
        app, recorder = _one_session(max_groups=None)
        async with serving(app) as server, connect(url(server, "/room/a")):
            session = await recorder.next_open()
            for index in range(DEFAULT_MAX_GROUPS + 1):
                session.join(f"g{index}")
            assert len(session.groups) == DEFAULT_MAX_GROUPS + 1
