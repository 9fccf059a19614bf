"""ASGI 3 applications on fullduplex's server: :func:`serve_asgi`, ``fullduplex serve --asgi``.

::

    from fastapi import FastAPI
    api = FastAPI()

    async with serve_asgi(api, "127.0.0.1", 8000) as server:
        await server.serve_forever()
    # or: fullduplex serve --asgi mymodule:api

WebSocket scopes run on fullduplex's protocol core (www spec 2.5): the scope is built from
the opening handshake, the application's first answer decides it (``websocket.accept`` with
its ``subprotocol`` and ``headers`` sends the 101; ``websocket.close`` a 403; the
``websocket.http.response`` extension any status and body), then ``receive`` awaits the
connection's next message directly (no queue, no task per message) and ``send`` writes
through it. ``websocket.disconnect`` carries the peer's close code and reason. Closing the
server (SIGTERM under ``fullduplex serve``) closes every WebSocket with 1001, so each
application gets its disconnect; one that does not return within ``drain_timeout`` is
cancelled.

HTTP scopes are read by the same HTTP/1.1 reader as the opening handshake
(:mod:`fullduplex.protocol.http11`, not h11): the request, its body included (up to
``max_body_size``, with a Content-Length; chunked requests get 411), is read whole before the
application runs, and its response is buffered and sent with ``Connection: close``. That is
enough for the HTTP routes beside WebSocket routes of a Starlette or FastAPI application, and
for python-socketio's long-polling, not for streaming responses or uploads larger than the
limit (use an HTTP server for those).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

from ..asyncio.connection import WebSocket
from ..asyncio.server import Server, ServerWebSocket, serve
from ..exceptions import ConnectionClosed
from ..protocol.handshake import Request, Response
from ._types import ASGIApplication, Message, Scope, headers_from_asgi

__all__ = ["DEFAULT_DRAIN_TIMEOUT", "DEFAULT_MAX_BODY_SIZE", "ASGIBridge", "serve_asgi"]

#: Seconds an ASGI application may take to return once its WebSocket closed at shutdown.
DEFAULT_DRAIN_TIMEOUT = 30.0
#: The largest HTTP request body an ASGI application gets by default (``max_body_size``).
DEFAULT_MAX_BODY_SIZE = 1 << 20

_logger = logging.getLogger("fullduplex.asgi")
_DENIAL = "websocket.http.response"


def _scope(
    ws: ServerWebSocket, request: Request, kind: str, scheme: str, root_path: str = ""
) -> Scope:
    """The ASGI scope of ``request``; any byte of a header survives (latin-1 both ways).

    ``root_path`` (a server behind a proxy that strips a prefix, uvicorn's ``--root-path``)
    is prepended to ``path`` and ``raw_path``, as uvicorn and the www spec since 2.3 do, so
    that routers below it (Starlette's Mount) see the full path.
    """
    target, _, query = request.path.partition("?")
    raw_path = (root_path + target).encode("latin-1", "replace")
    path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
    headers = [
        (name.lower().encode("latin-1", "replace"), value.encode("latin-1", "replace"))
        for name, value in request.headers.raw_items()
    ]
    transport = ws._transport
    client = transport.get_extra_info("peername") if transport is not None else None
    server = transport.get_extra_info("sockname") if transport is not None else None
    scope: Scope = {
        "type": kind,
        "asgi": {"version": "3.0", "spec_version": "2.5" if kind == "websocket" else "2.4"},
        "http_version": request.http_version,
        "scheme": scheme + ("s" if transport and transport.get_extra_info("sslcontext") else ""),
        "path": path,
        "raw_path": raw_path,
        "query_string": query.encode("latin-1", "replace"),
        "root_path": root_path,
        "headers": headers,
        "client": tuple(client[:2]) if client else None,
        "server": tuple(server[:2]) if server else None,
        "state": {},
    }
    if kind == "websocket":
        offered = [
            item.strip()
            for value in request.headers.get_all("Sec-WebSocket-Protocol")
            for item in value.split(",")
            if item.strip()
        ]
        scope["subprotocols"] = offered
        scope["extensions"] = {_DENIAL: {}}
    else:
        scope["method"] = request.method
    return scope


class _Session:
    """One ASGI WebSocket on one fullduplex connection: the application's receive and send."""

    __slots__ = (
        "accepted",
        "answered",
        "closed",
        "defaults",
        "denial",
        "first",
        "live",
        "opened",
        "task",
        "ws",
    )

    def __init__(self, ws: ServerWebSocket, defaults: Sequence[tuple[bytes, bytes]] = ()) -> None:
        self.ws = ws
        # The server's own fields for the 101 (uvicorn's Date and Server), before the app's.
        self.defaults = defaults
        self.first = True
        self.closed = False
        # Resolved with the application's answer to the handshake (a Response, or None to
        # accept), or with None when the connection is lost first.
        self.answered: asyncio.Future[Response | None] = asyncio.get_running_loop().create_future()
        self.accepted = False
        self.denial: tuple[int, list[tuple[str, str]], list[bytes]] | None = None
        self.task: asyncio.Task[None] | None = None
        # Resolved once the 101 is sent (live), or once the connection is lost before (not
        # live): what the application sends or receives after its accept waits for it.
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.live = False

    def answer(self, response: Response | None) -> None:
        if not self.answered.done():
            self.answered.set_result(response)

    def open(self) -> None:
        """The 101 is sent: the application's receive and send go to the connection."""
        self.live = True
        if not self.opened.done():
            self.opened.set_result(None)

    def lost(self) -> None:
        """The connection is gone. If it never opened, the application's next receive is its
        disconnect (and its sends fail), whatever it answers meanwhile: nothing waits for an
        opening that will not come. (Once open, messages still queued are read first.)"""
        if not self.live:
            self.closed = True
            # An application still deciding is answered too: a receive before its accept
            # returns the disconnect; the accept it may send later is a no-op.
            self.answer(None)
        if not self.opened.done():
            self.opened.set_result(None)

    async def receive(self) -> Message:
        if self.first:
            self.first = False
            return {"type": "websocket.connect"}
        if self.closed or not self.accepted:
            await self.answered
            if not self.accepted or self.closed:
                return self._disconnect()
        if not self.opened.done():
            await self.opened
        try:
            message = await self.ws.recv()
        except ConnectionClosed:
            self.closed = True
            return self._disconnect()
        if isinstance(message, str):
            return {"type": "websocket.receive", "text": message}
        return {"type": "websocket.receive", "bytes": message}

    def _disconnect(self) -> Message:
        ws = self.ws
        code = ws.close_code
        return {
            "type": "websocket.disconnect",
            "code": code if code is not None else 1006,
            "reason": ws.close_reason or "",
        }

    async def send(self, message: Message) -> None:
        kind = message["type"]
        ws = self.ws
        if self.accepted and not self.opened.done():
            await self.opened
        if kind == "websocket.send":
            if not self.accepted or self.closed:
                raise ConnectionClosed(1006)
            text = message.get("text")
            await ws.send(text if text is not None else message.get("bytes") or b"")
        elif kind == "websocket.accept":
            self.accepted = True
            subprotocol = message.get("subprotocol")
            headers = [
                (bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
                for pairs in (self.defaults, message.get("headers") or ())
                for name, value in pairs
            ]
            if subprotocol is not None:
                headers.append(("Sec-WebSocket-Protocol", subprotocol))
            ws.accept_headers = headers
            self.answer(None)
        elif kind == "websocket.close":
            if not self.accepted:
                self.closed = True
                self.answer(ws.respond(403, b""))
            elif not self.closed:
                self.closed = True
                await ws.close(int(message.get("code") or 1000), message.get("reason") or "")
        elif kind == f"{_DENIAL}.start":
            headers = headers_from_asgi(message.get("headers")).raw_items()
            self.denial = (int(message["status"]), headers, [])
        elif kind == f"{_DENIAL}.body":
            assert self.denial is not None, "websocket.http.response.body before its start"
            status, headers, parts = self.denial
            parts.append(bytes(message.get("body") or b""))
            if not message.get("more_body"):
                self.closed = True
                kept = [(n, v) for n, v in headers if n.lower() != "content-length"]
                self.answer(ws.respond(status, b"".join(parts), kept))
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")


async def _http(
    app: ASGIApplication, scope: Scope, ws: ServerWebSocket, request: Request
) -> Response:
    """Run an ``http`` scope to its end; return the buffered response."""
    if request.discarded:
        # Over max_body_size: read and dropped by the server; the application never sees it.
        return ws.respond(413, f"Content Too Large: a request body of {request.discarded} bytes\n")
    started: list[Any] = []
    body: list[bytes] = []
    sent_request = False

    async def receive() -> Message:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await asyncio.Event().wait()  # the client cannot disconnect before we answer
        raise AssertionError("unreachable")  # pragma: no cover

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            started.append(message)
        elif message["type"] == "http.response.body":
            body.append(bytes(message.get("body") or b""))

    try:
        await app(scope, receive, send)
    except Exception:
        _logger.error("ASGI application failed on %s", scope["path"], exc_info=True)
        if not started:
            return ws.respond(500, "Internal Server Error\n")
    if not started:
        return ws.respond(500, "Internal Server Error\n")
    headers = [
        (n, v)
        for n, v in headers_from_asgi(started[0].get("headers")).raw_items()
        if n.lower() not in ("content-length", "connection", "transfer-encoding")
    ]
    return ws.respond(int(started[0]["status"]), b"".join(body), headers)


async def _lifespan(
    app: ASGIApplication, state: dict[str, Any], internals: dict[str, Any]
) -> asyncio.Queue[Message] | None:
    """Start the application's lifespan; return its queue, or None if it does not do one."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})

    async def run() -> None:
        try:
            await app(
                {
                    "type": "lifespan",
                    "asgi": {"version": "3.0", "spec_version": "2.0"},
                    "state": state,
                },
                inbox.get,
                outbox.put,
            )
        except Exception:
            _logger.debug("the application does not support lifespan", exc_info=True)
        await outbox.put({"type": "lifespan.unsupported"})

    internals["lifespan_task"] = asyncio.get_running_loop().create_task(run())
    answer = await outbox.get()
    if answer["type"] == "lifespan.startup.failed":
        raise RuntimeError(f"ASGI lifespan startup failed: {answer.get('message', '')}")
    if answer["type"] != "lifespan.startup.complete":
        return None
    internals["lifespan_out"] = outbox
    return inbox


class ASGIBridge:
    """What runs ASGI scopes on fullduplex connections: the ``process_request`` and handler of
    a :class:`~fullduplex.asyncio.server.Server`. :func:`serve_asgi` and uvicorn's protocol
    class (:mod:`fullduplex.asgi.uvicorn`) share it; not for applications.

    Args:
        app: The ASGI 3 application.
        state: The lifespan state; each scope gets a shallow copy.
        drain_timeout: Seconds an application may take to return once its WebSocket closed;
            then it is cancelled. None: wait for ever.
        root_path: The scope's ``root_path``.
        defaults: Called at each accept: the server's own 101 fields (uvicorn's Date).
        tasks: A set that holds each application task while it runs (uvicorn's
            ``server_state.tasks``, which its graceful shutdown waits for and cancels).
    """

    __slots__ = ("app", "defaults", "drain_timeout", "root_path", "sessions", "state", "tasks")

    def __init__(
        self,
        app: ASGIApplication,
        *,
        state: dict[str, Any],
        drain_timeout: float | None = DEFAULT_DRAIN_TIMEOUT,
        root_path: str = "",
        defaults: Callable[[], Sequence[tuple[bytes, bytes]]] | None = None,
        tasks: set[asyncio.Task[None]] | None = None,
    ) -> None:
        self.app = app
        self.state = state
        self.drain_timeout = drain_timeout
        self.root_path = root_path
        self.defaults = defaults
        self.tasks = tasks
        self.sessions: dict[WebSocket, _Session] = {}

    async def process_request(self, ws: ServerWebSocket, request: Request) -> Response | None:
        """Run the scope up to the application's answer to the handshake."""
        app = self.app
        if not request.is_upgrade:
            # The request is in: how long the application takes to answer is its own
            # business (a long-poll waits for tens of seconds), not the opening timeout's.
            ws._cancel_open_timer()
            scope = _scope(ws, request, "http", "http", self.root_path)
            scope["state"] = dict(self.state)
            return await _http(app, scope, ws, request)
        scope = _scope(ws, request, "websocket", "ws", self.root_path)
        scope["state"] = dict(self.state)
        session = _Session(ws, self.defaults() if self.defaults is not None else ())
        sessions = self.sessions
        sessions[ws] = session
        loop = asyncio.get_running_loop()
        drain_timeout = self.drain_timeout

        def lost(_: WebSocket) -> None:
            # Called once the connection is gone, before or after its opening (by the peer,
            # or with 1001 by the server's close at SIGTERM): the application hears of it and
            # has drain_timeout to return, so a shutdown never hangs on one that ignores it.
            session.lost()
            if not session.live:
                sessions.pop(ws, None)
            if drain_timeout is not None and not task.done():
                loop.call_later(drain_timeout, task.cancel)

        async def run() -> None:
            try:
                await app(scope, session.receive, session.send)
            except Exception:
                _logger.error("[%s] ASGI application failed", ws.id, exc_info=True)
                if not session.answered.done():
                    session.answer(ws.respond(500, "Internal Server Error\n"))
            else:
                # Returned without a word: the www spec's answer is a 403. (Once answered,
                # the handshake is over and respond() is no longer possible.)
                if not session.answered.done():
                    session.answer(ws.respond(403, b""))

        session.task = task = loop.create_task(run())
        ws.on_close = lost
        if self.tasks is not None:
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        response = await session.answered
        if response is not None:
            sessions.pop(ws, None)
        return response

    @staticmethod
    def select_subprotocol(request: Request, offered: Sequence[str]) -> str | None:
        """None: the 101 carries the application's choice among accept_headers already."""
        return None

    def handler(self, ws: WebSocket) -> None:
        """The connection's handler once open (a plain function: the connection's own task
        ends with the handshake, so an open ASGI WebSocket costs one task, the
        application's). When the application returns, the connection closes with 1000 if
        it is still open, as an async handler's return would."""
        sessions = self.sessions
        session = sessions.get(ws)
        if session is None or session.task is None:
            return
        task = session.task
        session.open()
        # The server's close waits for its handlers' tasks: this one is the application's.
        tasks = ws._server._tasks if isinstance(ws, ServerWebSocket) else None
        if tasks is not None:
            tasks.add(task)

        def done(_: asyncio.Task[None]) -> None:
            sessions.pop(ws, None)
            if tasks is not None:
                tasks.discard(task)
            ws._start_close(1000, "")

        task.add_done_callback(done)


def serve_asgi(
    app: ASGIApplication,
    host: str | Sequence[str] | None = "127.0.0.1",
    port: int = 8000,
    *,
    drain_timeout: float | None = DEFAULT_DRAIN_TIMEOUT,
    lifespan: bool = True,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    **options: Any,
) -> Server:
    """Create a fullduplex server that runs the ASGI 3 application ``app``.

    Args:
        app: The ASGI application (Starlette, FastAPI, any ``async def app(scope, receive,
            send)``).
        host: The interface to listen on.
        port: The TCP port (0: a free one; read ``server.port``).
        drain_timeout: At shutdown, seconds an application may take to return after its
            WebSocket closed with 1001; then it is cancelled. None: wait for ever.
        lifespan: Run the application's ``lifespan`` startup and shutdown.
        max_body_size: The largest body of an HTTP request (a POST to an HTTP route), read
            whole before the application runs; a larger one is answered 413 without it. A
            body must come with a Content-Length (chunked requests get 411).
        **options: Options of :func:`fullduplex.serve` (limits, timeouts, ``ssl``...).

    Returns:
        The :class:`~fullduplex.asyncio.server.Server`, not yet listening.
    """
    state: dict[str, Any] = {}
    internals: dict[str, Any] = {}
    lifespan_inbox: list[asyncio.Queue[Message] | None] = [None]
    bridge = ASGIBridge(app, state=state, drain_timeout=drain_timeout)

    async def on_start() -> None:
        if lifespan:
            lifespan_inbox[0] = await _lifespan(app, state, internals)

    async def on_closed() -> None:
        inbox = lifespan_inbox[0]
        if inbox is None:
            return
        await inbox.put({"type": "lifespan.shutdown"})
        outbox: asyncio.Queue[Message] = internals["lifespan_out"]
        try:
            await asyncio.wait_for(outbox.get(), drain_timeout)
        except TimeoutError:
            _logger.info("lifespan shutdown did not complete within %ss", drain_timeout)

    options.setdefault("select_subprotocol", bridge.select_subprotocol)
    return serve(
        bridge.handler,
        host,
        port,
        max_body_size=max_body_size,
        process_request=bridge.process_request,
        on_start=on_start,
        on_closed=on_closed,
        **options,
    )
