"""A fullduplex :class:`~fullduplex.app.App` as an ASGI 3 application.

::

    app = App()

    @app.on_message("/echo")
    async def echo(session, message):
        return message

    asgi_app = app.asgi()               # or ASGIApp(app)
    # uvicorn mymodule:asgi_app   |   hypercorn   |   granian --interface asgi   |   daphne
    # Starlette(routes=[Mount("/ws", app=asgi_app)])

The same endpoints, codecs, message size limits, groups and GET/static routes run under any
ASGI server (the admission :class:`~fullduplex.app.limits.Limits` are not applied there: the
ASGI server admits connections):

* ``websocket`` scopes are routed on the path below ``root_path`` (so a ``Mount("/ws", ...)``
  in Starlette or FastAPI works with either meaning of ``path``: the full path since Starlette
  0.33, the rest of it before). A request ``process_request`` denies, or one for no endpoint
  (404), is answered with its HTTP status and body through the ``websocket.http.response``
  extension when the server offers it, else closed before the accept (the server answers 403).
  The endpoint's ``subprotocols`` pick the one sent in ``websocket.accept``.
* Each session runs in the ASGI call's task, as on fullduplex's own server: ``on_open``,
  ``on_message`` per message in order, ``on_close``. A message longer than the endpoint's
  ``max_message_size`` closes the session with 1009 (the ASGI server has read it whole by
  then: its own limit, e.g. uvicorn's ``--ws-max-size``, bounds memory before ours).
* Broadcasts encode each message once per codec and hand the same str or bytes to every
  member's ``websocket.send``; framing is the server's job there, so there is no prepared
  frame. Messages sent without waiting (broadcasts, ``send_nowait``) go into the session's
  queue, which one writer task drains while it is not empty.
* ``http`` scopes get the app's GET routes and static files (404 otherwise).
* ``lifespan`` starts and closes the app's broker; under a server without lifespan (daphne)
  the first request starts it.

Compression is the ASGI server's choice; the endpoint's ``compression`` does not apply.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

from ..app.http import response
from ..exceptions import ConnectionClosed, ProtocolError
from ..protocol.closes import CloseRecord
from ..protocol.connection import State
from ..protocol.frames import serialize_close
from ..protocol.handshake import Request, Response
from ._types import Message, Receive, Scope, Send, asgi_headers, headers_from_asgi

if TYPE_CHECKING:
    from ..app.app import App
    from ..asyncio.connection import WebSocket

__all__ = ["ASGIApp", "ASGIProcessRequest", "ASGIWebSocket"]

ASGIProcessRequest = Callable[
    ["ASGIWebSocket", Request], "Response | Awaitable[Response | None] | None"
]
"""``process_request(ws, request)``: return a Response to deny the connection, or None."""

_logger = logging.getLogger("fullduplex.asgi")

_OPEN = State.OPEN
_CLOSED = State.CLOSED
_DENIAL = "websocket.http.response"
# What the router's templates leave unescaped (fullduplex.app.routing): the decoded ASGI path
# is quoted back the same way, so templates match it as they match a raw request target.
_SAFE = "/:@!$&'()*+,;=-._~"


def local_path(scope: Scope) -> str:
    """The scope's path below its ``root_path``, percent-encoded as the router expects.

    ASGI's ``path`` includes ``root_path`` (www spec 2.x, Starlette 0.33 and later); some
    servers and older frameworks strip it instead, so a path that does not start with it is
    taken as already below it.
    """
    path: str = scope.get("path") or "/"
    root: str = (scope.get("root_path") or "").rstrip("/")
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :] or "/"
    return quote(path, safe=_SAFE)


def request_from_scope(scope: Scope) -> Request:
    """The :class:`Request` an ASGI scope describes (what ``session.request`` returns)."""
    path: str = scope.get("path") or "/"
    query = scope.get("query_string") or b""
    target = quote(path, safe=_SAFE) + ("?" + bytes(query).decode("latin-1") if query else "")
    return Request(
        scope.get("method", "GET"),
        target,
        headers_from_asgi(scope.get("headers")),
        scope.get("http_version", "1.1"),
    )


def _respond(status: int, body: str | bytes, headers: Iterable[tuple[str, str]] = ()) -> Response:
    return response(status, body, headers=headers)


class _Responder:
    """What the App's HTTP side calls ``ws.respond`` on, for an ``http`` scope."""

    __slots__ = ()

    def respond(
        self, status: int, body: str | bytes, headers: Iterable[tuple[str, str]] = ()
    ) -> Response:
        """Build an HTTP response."""
        return _respond(status, body, headers)


class ASGIWebSocket(CloseRecord):
    """One ASGI WebSocket as a :class:`~fullduplex.app.Session` drives it.

    It offers what sessions use of :class:`~fullduplex.asyncio.connection.WebSocket`
    (``recv``, ``send``, ``send_nowait``, ``close``, ``state``, ``buffered_amount``...),
    turned into ASGI events. ``process_request`` receives it before the accept, for
    :meth:`respond`.

    Attributes:
        id: Identifies the connection in the log.
        request: The opening handshake request, from the scope.
        scope: The ASGI scope.
        subprotocol: The subprotocol accepted, or None.
        max_message_size: The largest message accepted (None: no limit); a larger one closes
            with 1009.
    """

    __slots__ = (
        "_buffered",
        "_drained",
        "_queue",
        "_receive",
        "_send",
        "_state",
        "_writer",
        "id",
        "max_message_size",
        "request",
        "scope",
        "subprotocol",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send, request: Request) -> None:
        super().__init__()
        self.id = os.urandom(4).hex()
        self.scope = scope
        self.request = request
        self.subprotocol: str | None = None
        self.max_message_size: int | None = None
        self._receive = receive
        self._send = send
        self._state = State.CONNECTING
        # Messages sent without waiting, and their total length (str: characters).
        self._queue: deque[str | bytes] = deque()
        self._buffered = 0
        self._writer: asyncio.Task[None] | None = None
        self._drained: list[asyncio.Future[None]] | None = None

    def __repr__(self) -> str:
        return f"<ASGIWebSocket {self.id} {self._state.name}>"

    # ---- what sessions read --------------------------------------------------------------------

    @property
    def state(self) -> State:
        """CONNECTING until the accept, OPEN, LOCAL_CLOSING once this side closed, CLOSED."""
        return self._state

    @property
    def compressed(self) -> bool:
        """Always True: the ASGI server frames (and maybe compresses) each message, so a
        broadcast hands it the encoded message, never a frame serialized once."""
        return True

    @property
    def buffered_amount(self) -> int:
        """The length of the messages queued and not yet handed to the server."""
        return self._buffered

    @property
    def remote_address(self) -> Any:
        """The scope's ``client`` as a ``(host, port)`` tuple, or None."""
        client = self.scope.get("client")
        return tuple(client) if client else None

    def respond(
        self, status: int, body: str | bytes, headers: Iterable[tuple[str, str]] = ()
    ) -> Response:
        """Build the HTTP response for ``process_request`` to return instead of the accept."""
        return _respond(status, body, headers)

    # ---- receiving -----------------------------------------------------------------------------

    async def recv(self) -> str | bytes:
        """Return the next message.

        Raises:
            ConnectionClosed: The connection closed (the server sent ``websocket.disconnect``,
                or this side closed it, or the message was too big: 1009).
        """
        if self._state is not _OPEN:
            raise self._closed()
        event = await self._receive()
        kind = event["type"]
        if kind == "websocket.receive":
            message: str | bytes | None = event.get("text")
            if message is None:
                message = event.get("bytes") or b""
            limit = self.max_message_size
            # A str's length in characters is at most its length in UTF-8: encode only when
            # it could be over.
            if (
                limit is not None
                and len(message) * (4 if isinstance(message, str) else 1) > limit
                and len(message.encode() if isinstance(message, str) else message) > limit
            ):
                _logger.info("[%s] message over %d bytes: closing with 1009", self.id, limit)
                await self.close(1009, "message too big")
                raise self._closed()
            return message
        if kind == "websocket.disconnect":
            self._disconnected(event)
            raise self._closed()
        raise RuntimeError(f"unexpected ASGI event {kind!r} on an open WebSocket")

    def _disconnected(self, event: Message) -> None:
        self._state = _CLOSED
        self._close_code = int(event.get("code") or 1005)
        self._close_reason = event.get("reason") or ""
        self._queue.clear()
        self._buffered = 0

    # ---- sending -------------------------------------------------------------------------------

    def send_nowait(self, message: str | bytes) -> None:
        """Queue ``message``; the connection's writer hands it to the server in order.

        Raises:
            ConnectionClosed: The connection is closing or closed.
        """
        if self._state is not _OPEN:
            raise self._closed()
        self._queue.append(message)
        self._buffered += len(message)
        if self._writer is None:
            # One task per burst of queued messages (the server's send is awaitable), not
            # one per message: the writer takes everything queued meanwhile.
            self._writer = asyncio.get_running_loop().create_task(self._write())

    def flush(self) -> None:
        """Hand the server what :meth:`send_nowait` queued: start the writer if messages
        wait and none runs.

        The broker's deliveries call it once per loop turn after queueing a burst
        (:meth:`GroupRegistry.dispatch <fullduplex.app.groups.GroupRegistry.dispatch>`), as
        they do :meth:`WebSocket.flush <fullduplex.asyncio.connection.WebSocket.flush>`.
        There is no prepared frame here (:attr:`compressed` is True), so the burst is
        already in the queue; the one writer task hands it over in order, so a flush only
        needs to make sure that writer exists.
        """
        if self._queue and self._writer is None and self._state is not _CLOSED:
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def send(self, message: str | bytes) -> None:
        """Send ``message``, after those queued before it.

        Raises:
            ConnectionClosed: The connection is closing or closed.
        """
        if self._state is not _OPEN:
            raise self._closed()
        if self._writer is None and not self._queue:
            await self._hand(message)
            return
        self.send_nowait(message)
        await self._wait_drained()

    async def _hand(self, message: str | bytes) -> None:
        event: Message = (
            {"type": "websocket.send", "text": message}
            if isinstance(message, str)
            else {"type": "websocket.send", "bytes": message}
        )
        try:
            await self._send(event)
        except Exception as exc:
            # The server refuses once the client is gone (uvicorn: ClientDisconnected; others:
            # RuntimeError or their own): the connection is closed as far as we can tell.
            _logger.debug("[%s] send failed: %r", self.id, exc)
            if self._state is not _CLOSED:
                self._state = _CLOSED
                self._queue.clear()
                self._buffered = 0
            raise self._closed() from None

    async def _write(self) -> None:
        queue = self._queue
        try:
            while queue:
                message = queue.popleft()
                self._buffered -= len(message)
                await self._hand(message)
        except ConnectionClosed:
            pass
        finally:
            self._writer = None
            waiters, self._drained = self._drained, None
            for waiter in waiters or ():
                if not waiter.done():
                    waiter.set_result(None)

    async def _wait_drained(self) -> None:
        if self._writer is None:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._drained is None:
            self._drained = []
        self._drained.append(waiter)
        await waiter
        if self._state is _CLOSED:
            raise self._closed()

    # ---- opening and closing -------------------------------------------------------------------

    async def accept(self, subprotocol: str | None = None) -> None:
        """Send ``websocket.accept`` (with ``subprotocol``); the connection is then open."""
        self.subprotocol = subprotocol
        await self._send({"type": "websocket.accept", "subprotocol": subprotocol})
        self._state = _OPEN

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection with ``code`` and ``reason``, after the queued messages.

        Safe to call more than once and once closed (later calls do nothing).

        Raises:
            ValueError: The code may not be sent or the reason is too long (nothing is sent).
        """
        if self._state is not _OPEN:
            return
        try:
            serialize_close(code, reason)
        except ProtocolError as exc:
            raise ValueError(str(exc)) from None
        self._state = State.LOCAL_CLOSING
        self._sent_code, self._sent_reason = code, reason
        await self._wait_drained()
        try:
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except Exception as exc:
            _logger.debug("[%s] close failed: %r", self.id, exc)
            self._state = _CLOSED

    async def finish(self) -> None:
        """The session is over: wait for the writer, close if nothing did."""
        if self._writer is not None:
            await self._wait_drained()
        if self._state is _OPEN:
            await self.close(1000)

    async def deny(self, response: Response) -> None:
        """Refuse the connection before the accept, with ``response``'s status and body when
        the server offers the ``websocket.http.response`` extension."""
        self._state = _CLOSED
        extensions = self.scope.get("extensions") or {}
        if _DENIAL in extensions:
            headers = asgi_headers(response.headers)
            if not any(name == b"content-length" for name, _ in headers):
                headers.append((b"content-length", str(len(response.body)).encode()))
            await self._send(
                {"type": f"{_DENIAL}.start", "status": response.status, "headers": headers}
            )
            await self._send({"type": f"{_DENIAL}.body", "body": response.body})
        else:
            # Closing before the accept makes the server answer 403 (www spec).
            await self._send({"type": "websocket.close", "code": 1008, "reason": ""})


class ASGIApp:
    """An :class:`~fullduplex.app.App` as an ASGI 3 application (also: ``app.asgi()``).

    Args:
        app: The App: its endpoints, GET routes, static files and broker.
        process_request: Called as ``process_request(ws, request)`` (sync or async) before
            routing each WebSocket; return ``ws.respond(status, body)`` to deny it, or None.
            The same hook as :meth:`App.serve <fullduplex.app.App.serve>`'s.
    """

    def __init__(self, app: App, *, process_request: ASGIProcessRequest | None = None) -> None:
        self.app = app
        self._process_request = process_request
        self._started = False
        self._starting: asyncio.Lock | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI 3 entry point."""
        kind = scope["type"]
        if kind == "websocket":
            await self._ensure_started()
            await self._websocket(scope, receive, send)
        elif kind == "http":
            await self._ensure_started()
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:
            raise ValueError(f"unsupported ASGI scope type {kind!r}")

    # ---- lifespan ------------------------------------------------------------------------------

    async def _ensure_started(self) -> None:
        if self._started:
            return
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if not self._started:
                await self.app.startup()
                self._started = True

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                try:
                    await self._ensure_started()
                except Exception as exc:
                    _logger.error("starting the broker failed", exc_info=True)
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                try:
                    if self._started:
                        await self.app.shutdown()
                        self._started = False
                except Exception as exc:
                    _logger.error("closing the broker failed", exc_info=True)
                    await send({"type": "lifespan.shutdown.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ---- websocket -----------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        event = await receive()
        if event["type"] != "websocket.connect":
            return  # websocket.disconnect before anything: nothing to do
        request = request_from_scope(scope)
        ws = ASGIWebSocket(scope, receive, send, request)
        if self._process_request is not None:
            answer = self._process_request(ws, request)
            if inspect.isawaitable(answer):
                answer = await answer
            if answer is not None:
                await ws.deny(answer)
                return
        app = self.app
        path = local_path(scope)
        found = app._endpoints.match(path)
        if found is None:
            await ws.deny(_respond(404, "Not Found\n"))
            return
        config = found[0].target
        offered = scope.get("subprotocols") or ()
        chosen = next((name for name in config.subprotocols if name in offered), None)
        ws.max_message_size = config.max_message_size
        await ws.accept(chosen)
        query = bytes(scope.get("query_string") or b"").decode("latin-1")
        # The adapter offers what Session and the App use of a WebSocket (see its docstring).
        try:
            await app._run_matched(cast("WebSocket", ws), path, query, found)
        finally:
            await ws.finish()

    # ---- http ----------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = request_from_scope(scope)
        path = local_path(scope)
        app = self.app
        found = app._endpoints.match(path)
        result = await app._http.respond(
            cast(Any, _Responder()), request, path, endpoint=found is not None
        )
        headers = asgi_headers(result.headers)
        if not any(name == b"content-length" for name, _ in headers):
            headers.append((b"content-length", str(len(result.body)).encode()))
        await send({"type": "http.response.start", "status": result.status, "headers": headers})
        await send({"type": "http.response.body", "body": result.body})
