"""fullduplex.asgi.server: ASGI applications on fullduplex's server. A table of www spec 2.5
scope keys and events (in-process server on 127.0.0.1), unmodified Starlette and FastAPI apps
on ``fullduplex serve --asgi``, hostile headers, and SIGTERM's 1001 with a disconnect."""

from __future__ import annotations

import asyncio
import functools
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import socketio

import fullduplex
from fullduplex.asgi import Message, Receive, Scope, Send
from fullduplex.asgi.server import DEFAULT_MAX_BODY_SIZE, serve_asgi
from fullduplex.exceptions import ConnectionClosed, InvalidStatus
from tests.asgi.servers import run_server
from tests.asgi.test_application import _http_get
from tests.helpers import seconds


class Recorder:
    """An ASGI app that records its scope and events, and follows a script for its answers."""

    def __init__(self, script: Callable[[Scope, Receive, Send], Any]) -> None:
        self.script = script
        self.scope: Scope | None = None
        self.events: list[Message] = []
        self.done = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return  # no lifespan: the server goes on without it
        self.scope = scope

        async def recording_receive() -> Message:
            event = await receive()
            self.events.append(event)
            return event

        try:
            await self.script(scope, recording_receive, send)
        finally:
            self.done.set()


async def _accept_echo_once(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()  # connect
    subprotocol = "b" if "b" in scope["subprotocols"] else None
    await send(
        {
            "type": "websocket.accept",
            "subprotocol": subprotocol,
            "headers": [(b"x-extra", b"yes")],
        }
    )
    event = await receive()
    if "text" in event and event["text"] is not None:
        await send({"type": "websocket.send", "text": event["text"]})
    await send({"type": "websocket.send", "bytes": b"\x00bin"})
    event = await receive()  # the client's close
    assert event["type"] == "websocket.disconnect"


@pytest.fixture
async def recorded() -> AsyncIterator[tuple[Recorder, str]]:
    """A Recorder of _accept_echo_once behind serve_asgi; (app, host:port)."""
    app = Recorder(_accept_echo_once)
    async with serve_asgi(app, "127.0.0.1", 0) as server:
        yield app, f"127.0.0.1:{server.port}"


SCOPE_KEYS: list[tuple[str, Callable[[Any], bool]]] = [
    ("type", lambda v: v == "websocket"),
    ("asgi", lambda v: v == {"version": "3.0", "spec_version": "2.5"}),
    ("http_version", lambda v: v == "1.1"),
    ("scheme", lambda v: v == "ws"),
    ("path", lambda v: v == "/a b/ü"),
    ("raw_path", lambda v: v == b"/a%20b/%C3%BC"),
    ("query_string", lambda v: v == b"x=1&y=%20"),
    ("root_path", lambda v: v == ""),
    (
        "headers",
        lambda v: (
            all(isinstance(n, bytes) and n == n.lower() for n, _ in v)
            and (b"x-custom", b"Value") in v
        ),
    ),
    ("client", lambda v: isinstance(v, tuple) and v[0] == "127.0.0.1"),
    ("server", lambda v: isinstance(v, tuple) and v[0] == "127.0.0.1"),
    ("subprotocols", lambda v: v == ["a", "b"]),
    ("state", lambda v: isinstance(v, dict)),
    ("extensions", lambda v: "websocket.http.response" in v),
]


@pytest.mark.parametrize(("key", "check"), SCOPE_KEYS, ids=[key for key, _ in SCOPE_KEYS])
async def test_websocket_scope_key(
    recorded: tuple[Recorder, str], key: str, check: Callable[[Any], bool]
) -> None:
    app, where = recorded
    url = f"ws://{where}/a%20b/%C3%BC?x=1&y=%20"
    async with fullduplex.connect(
        url, subprotocols=["a", "b"], additional_headers=[("X-Custom", "Value")]
    ) as ws:
        await ws.send("hi")
        await asyncio.wait_for(ws.recv(), seconds(5))
    assert app.scope is not None
    assert check(app.scope[key]), app.scope.get(key)


async def test_events_accept_send_receive_disconnect(recorded: tuple[Recorder, str]) -> None:
    app, where = recorded
    async with fullduplex.connect(f"ws://{where}/", subprotocols=["a", "b"]) as ws:
        assert ws.subprotocol == "b"  # websocket.accept subprotocol
        assert ws.response is not None and ws.response.headers["X-Extra"] == "yes"
        await ws.send("text")
        assert await asyncio.wait_for(ws.recv(), seconds(5)) == "text"
        assert await asyncio.wait_for(ws.recv(), seconds(5)) == b"\x00bin"
        await ws.close(4005, "done here")
    await asyncio.wait_for(app.done.wait(), seconds(5))
    assert [event["type"] for event in app.events] == [
        "websocket.connect",
        "websocket.receive",
        "websocket.disconnect",
    ]
    assert app.events[1]["text"] == "text"
    assert (app.events[2]["code"], app.events[2]["reason"]) == (4005, "done here")


async def _close_with_reason(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": 4321, "reason": "app says bye"})


async def _deny_with_body(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send(
        {
            "type": "websocket.http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "websocket.http.response.body", "body": b"who ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"are you?"})


async def _close_before_accept(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.close"})


async def test_close_with_reason() -> None:
    async with serve_asgi(Recorder(_close_with_reason), "127.0.0.1", 0) as server:
        ws = await fullduplex.connect(f"ws://127.0.0.1:{server.port}/")
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), seconds(5))
        assert (info.value.code, info.value.reason) == (4321, "app says bye")


@pytest.mark.parametrize(
    ("script", "status", "body"),
    [(_deny_with_body, 401, b"who are you?"), (_close_before_accept, 403, b"")],
    ids=["http.response extension", "close before accept"],
)
async def test_denial(script: Callable[..., Any], status: int, body: bytes) -> None:
    async with serve_asgi(Recorder(script), "127.0.0.1", 0) as server:
        with pytest.raises(InvalidStatus) as info:
            await fullduplex.connect(f"ws://127.0.0.1:{server.port}/")
        assert (info.value.status_code, info.value.body) == (status, body)


async def test_http_body_reaches_the_app_and_a_slow_answer_is_not_cut() -> None:
    """An http scope gets its request body in one ``http.request``; an application that
    takes longer than the opening timeout to answer (a long-poll) still answers."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        message = await receive()
        await asyncio.sleep(1.5)  # past open_timeout=1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"got " + message["body"]})

    async with serve_asgi(app, "127.0.0.1", 0, lifespan=False, open_timeout=1) as server:
        assert await _http_post(f"127.0.0.1:{server.port}", "/", b'{"a": 1}') == (
            200,
            b'got {"a": 1}',
        )


# (header, value, statuses): a field value may hold obs-text (bytes 0x80-0xFF, RFC 9110
# section 5.5), so an X- header with them is valid and opens; a NUL is never valid in a value;
# a 64 KiB field is over the head limit; Sec-WebSocket-Protocol holds tokens only (RFC 6455
# section 4.1), which neither non-ASCII bytes nor a NUL are.
HOSTILE_HEADERS: list[tuple[str, str, tuple[int, ...]]] = [
    ("X-Hostile", "caf\xe9", (101,)),
    ("X-Hostile", "\xff\xfe", (101,)),
    ("X-Hostile", "a\x00b", (400,)),
    ("X-Hostile", "x" * 65536, (400, 431)),
    ("Sec-WebSocket-Protocol", "caf\xe9", (400,)),
    ("Sec-WebSocket-Protocol", "\xff\xfe", (400,)),
    ("Sec-WebSocket-Protocol", "a\x00b", (400,)),
    ("Sec-WebSocket-Protocol", "x" * 65536, (400, 431)),
]
HOSTILE_IDS = [
    f"{header}-{kind}"
    for header in ("other", "subprotocol")
    for kind in ("latin-1", "high bytes", "nul", "64KiB")
]


async def hostile_status(where: str, path: str, header: str, value: str) -> int:
    """Send an opening handshake with ``header: value`` (latin-1 bytes); return the status."""
    host, port = where.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"{header}: {value}\r\n\r\n"
        )
        writer.write(request.encode("latin-1"))
        status = await asyncio.wait_for(reader.readline(), seconds(5))
    finally:
        writer.close()
    return int(status.split()[1])


@pytest.mark.parametrize(("header", "value", "statuses"), HOSTILE_HEADERS, ids=HOSTILE_IDS)
async def test_hostile_header_never_crashes(
    recorded: tuple[Recorder, str], header: str, value: str, statuses: tuple[int, ...]
) -> None:
    app, where = recorded
    assert await hostile_status(where, "/", header, value) in statuses
    if statuses == (101,):
        # Accepted: the scope has the very bytes sent.
        assert app.scope is not None
        assert (header.lower().encode(), value.encode("latin-1")) in app.scope["headers"]
    # The server still serves.
    async with fullduplex.connect(f"ws://{where}/") as ws:
        await ws.send("still here")
        assert await asyncio.wait_for(ws.recv(), seconds(5)) == "still here"


async def _http_post(where: str, path: str, body: bytes) -> tuple[int, bytes]:
    """POST ``body`` as JSON; return the status and the response body."""
    host, port = where.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {where}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        data = await asyncio.wait_for(reader.read(), seconds(10))
    finally:
        writer.close()
    head, _, reply = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), reply


class TestFrameworksOnAsgi:
    """Unmodified Starlette and FastAPI apps on ``fullduplex serve --asgi``."""

    async def test_starlette_websocket_endpoint(self) -> None:
        with run_server("fullduplex", "tests.asgi.frameworks:starlette_app") as (where, _):
            async with fullduplex.connect(f"ws://{where}/echo") as ws:
                await ws.send("hi")
                assert await asyncio.wait_for(ws.recv(), seconds(5)) == "starlette: hi"

    async def test_fastapi_websocket_and_http_routes(self) -> None:
        with run_server("fullduplex", "tests.asgi.frameworks:fastapi_app") as (where, _):
            assert await _http_get(where, "/items/7") == (200, b'{"item":7}')
            posted = json.dumps({"name": "lamp", "price": 12}).encode()
            assert await _http_post(where, "/items", posted) == (
                200,
                b'{"created":{"name":"lamp","price":12}}',
            )
            status, _ = await _http_post(where, "/items", b"x" * (DEFAULT_MAX_BODY_SIZE + 1))
            assert status == 413
            status, _ = await _http_get(where, "/nothing")
            assert status == 404
            async with fullduplex.connect(f"ws://{where}/ws/zoe") as ws:
                await ws.send(json.dumps([1, 2]))
                reply = await asyncio.wait_for(ws.recv(), seconds(5))
                assert json.loads(reply) == {"name": "zoe", "data": [1, 2]}
                await ws.send(json.dumps("bye"))
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), seconds(5))
                assert (info.value.code, info.value.reason) == (4000, "bye")

    async def test_channels_consumer_with_in_memory_layer(self) -> None:
        target = "tests.asgi.channels_app:application"
        with run_server("fullduplex", target) as (where, _):
            url = f"ws://{where}/chat/lobby/"
            async with fullduplex.connect(url) as a, fullduplex.connect(url) as b:
                await a.send("hello")
                # Through the channel layer to every consumer of the room, the sender too.
                for ws in (a, b):
                    assert await asyncio.wait_for(ws.recv(), seconds(5)) == "chat_lobby: hello"

    async def test_socketio_asgi_app_with_its_client(self) -> None:
        with run_server("fullduplex", "tests.asgi.socketio_app:application") as (where, _):
            clients = [socketio.AsyncClient(reconnection=False) for _ in range(2)]
            inboxes: list[asyncio.Queue[tuple[str, Any]]] = []
            for client in clients:
                inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
                inboxes.append(inbox)
                for event in ("echoed", "shouted"):
                    client.on(event, functools.partial(_put, inbox, event))
            try:
                for client in clients:
                    # The first client upgrades from long-polling (GETs and POSTs with
                    # bodies) to WebSocket; the second stays on long-polling.
                    transports = ["polling", "websocket"] if client is clients[0] else ["polling"]
                    await asyncio.wait_for(
                        client.connect(f"http://{where}", transports=transports), seconds(10)
                    )
                assert clients[1].transport() == "polling"
                await clients[0].emit("echo", {"n": 1})
                kind, data = await asyncio.wait_for(inboxes[0].get(), seconds(5))
                assert (kind, data) == ("echoed", {"sid": clients[0].get_sid(), "data": {"n": 1}})
                await clients[1].emit("shout", "all of you")
                for inbox in inboxes:
                    assert await asyncio.wait_for(inbox.get(), seconds(5)) == (
                        "shouted",
                        "all of you",
                    )
            finally:
                await asyncio.wait_for(clients[0].disconnect(), seconds(5))
                # A graceful disconnect of a long-polling client waits for its pending poll,
                # up to 30 s (python-socketio's client does so under uvicorn too): abort it.
                await asyncio.wait_for(clients[1].eio.disconnect(abort=True), seconds(5))

    async def test_sigterm_closes_1001_and_exits(self) -> None:
        with run_server("fullduplex", "tests.asgi.apps:asgi_app") as (where, proc):
            async with fullduplex.connect(f"ws://{where}/life/sam") as ws:
                proc.send_signal(signal.SIGTERM)
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), seconds(10))
                assert info.value.code == 1001
            returncode = await asyncio.to_thread(proc.wait, seconds(10))
            assert returncode == 0


class TestShutdownOnAsgi:
    """SIGTERM on ``fullduplex serve --asgi``: the drain's close code reaches the client and
    the application, and an application that ignores its disconnect is cancelled on time."""

    async def test_drain_code_1012_reaches_client_and_app(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        log = tmp_path / "events"
        monkeypatch.setenv("STUBBORN_LOG", str(log))
        target = "tests.asgi.frameworks:late_app"
        with run_server("fullduplex", target, "--drain-code", "1012") as (where, proc):
            async with fullduplex.connect(f"ws://{where}/", open_timeout=seconds(10)) as ws:
                proc.send_signal(signal.SIGTERM)
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), seconds(10))
                assert info.value.code == 1012
            returncode = await asyncio.to_thread(proc.wait, seconds(15))
        assert returncode == 0
        assert log.read_text() == "websocket.disconnect 1012\n"

    async def test_app_ignoring_its_disconnect_does_not_hang_sigterm(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # stubborn_app never returns after its disconnect: only --drain-timeout (1 s here,
        # 30 s by default) ends the shutdown, well before the test's own bound.
        log = tmp_path / "events"
        monkeypatch.setenv("STUBBORN_LOG", str(log))
        target = "tests.asgi.frameworks:stubborn_app"
        with run_server("fullduplex", target, "--drain-timeout", "1") as (where, proc):
            async with fullduplex.connect(f"ws://{where}/") as ws:
                started = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), seconds(10))
                assert info.value.code == 1001
            returncode = await asyncio.to_thread(proc.wait, seconds(15))
            elapsed = time.monotonic() - started
        assert returncode == 0
        assert elapsed < seconds(8)
        assert log.read_text() == "websocket.disconnect 1001\n"


async def _put(inbox: asyncio.Queue[tuple[str, Any]], event: str, data: Any) -> None:
    """A socket.io client's handler: queue the event and its data for the test."""
    await inbox.put((event, data))


async def _wait_forever(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    event = await receive()
    assert event["type"] == "websocket.disconnect"
    await asyncio.sleep(3600)  # ignores the disconnect: the drain bound must end it


async def test_server_close_delivers_1001_disconnect_within_the_drain() -> None:
    app = Recorder(_wait_forever)
    server = serve_asgi(app, "127.0.0.1", 0, drain_timeout=seconds(0.5))
    await server
    ws = await fullduplex.connect(f"ws://127.0.0.1:{server.port}/")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(server.close(), seconds(10))  # what SIGTERM does
    assert loop.time() - started < seconds(5)
    assert app.events[-1]["type"] == "websocket.disconnect"
    assert app.events[-1]["code"] == 1001
    assert app.done.is_set()  # cancelled after the drain
    with pytest.raises(ConnectionClosed) as info:
        await ws.recv()
    assert info.value.code == 1001


async def _accept_late(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()  # connect
    await asyncio.sleep(seconds(0.5))  # the client is gone meanwhile
    await send({"type": "websocket.accept"})
    event = await receive()
    assert event["type"] == "websocket.disconnect"


async def test_client_gone_before_the_accept_gets_a_disconnect() -> None:
    # The connection is lost while the application decides: its accept opens nothing, and
    # its next receive must say so at once (not wait for an opening that never comes).
    app = Recorder(_accept_late)
    async with serve_asgi(app, "127.0.0.1", 0) as server:
        _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await writer.drain()
        await asyncio.sleep(seconds(0.1))
        writer.close()
        await asyncio.wait_for(app.done.wait(), seconds(5))
        assert [event["type"] for event in app.events] == [
            "websocket.connect",
            "websocket.disconnect",
        ]
        assert app.events[-1]["code"] == 1006
