"""The asyncio WebSocket server: :func:`serve`, :class:`Server` and the server-side connection.

::

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async with fullduplex.serve(echo, "127.0.0.1", 8765) as server:
        await server.serve_forever()

An ``async def`` handler runs in one task per connection, after the opening handshake; messages
themselves cost no task. When it returns, the connection closes with 1000; when it raises, the
error is logged with its traceback and the connection closes with 1011.

A plain ``def`` handler is the callback style: it is called once the connection is open, sets
``ws.on_message`` (and whatever else it needs) and returns; the connection then lives on its
callbacks until either side closes it. Such a connection has no task at all (when
``process_request`` is absent or synchronous), which is what keeps a server with many idle
connections small.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import math
import os
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable, Sequence
from types import TracebackType
from typing import Any, Protocol, cast

from ..exceptions import ConnectionClosed, InvalidHandshake, InvalidState
from ..protocol.connection import Connection, Role
from ..protocol.deflate import deflate_options
from ..protocol.frames import is_valid_close_code
from ..protocol.handshake import Request, Response, ServerHandshake
from .connection import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_OPEN_TIMEOUT,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    DEFAULT_WRITE_LIMIT,
    LoggerLike,
    WebSocket,
)
from .timers import Deadline

__all__ = [
    "Handler",
    "HeldBody",
    "ProcessRequest",
    "ResponseStream",
    "Server",
    "ServerWebSocket",
    "serve",
]

Handler = Callable[[WebSocket], "Awaitable[None] | None"]
"""The connection handler: ``async def handler(ws)``, or a plain ``def`` (the callback style)."""

ProcessRequest = Callable[
    ["ServerWebSocket", Request], "Response | Awaitable[Response | None] | None"
]
"""``process_request(ws, request)``: return a Response to send instead of the upgrade, or None."""

SelectSubprotocol = Callable[[Request, Sequence[str]], "str | None"]

_logger = logging.getLogger("fullduplex.server")
# A drain closes one batch of connections about this often (seconds).
_DRAIN_TICK = 0.1
# How long a drain waits for the request of a client accepted before the listener closed.
_LATE_REQUEST_GRACE = 1.0


class HeldBody(Protocol):
    """The body of a held response (:meth:`ServerWebSocket.respond_held`), written over time."""

    def start(self, stream: ResponseStream) -> None:
        """The head is written: write the body with ``stream`` now or later, then end it."""

    def lost(self) -> None:
        """The connection is gone (the client left, or :meth:`ResponseStream.end` ran)."""


class ResponseStream:
    """Writes the body of a held response; the body ends when the connection does.

    The response has no Content-Length: its end is the end of the connection (RFC 9112
    section 6.3), which every HTTP/1.1 client and proxy understands, and which needs no
    chunked encoding.
    """

    __slots__ = ("_ws",)

    def __init__(self, ws: ServerWebSocket) -> None:
        self._ws = ws

    @property
    def closed(self) -> bool:
        """True once the connection is gone or :meth:`end` was called."""
        ws = self._ws
        return ws._lost or ws._held is None or ws._transport is None

    @property
    def buffered(self) -> int:
        """Bytes written that the network has not taken yet."""
        transport = self._ws._transport
        return 0 if transport is None or self.closed else transport.get_write_buffer_size()

    def write(self, data: bytes) -> bool:
        """Write ``data``; return False (writing nothing) once the connection is gone."""
        ws = self._ws
        if self.closed:
            return False
        assert ws._transport is not None
        ws._transport.write(data)
        return True

    def end(self) -> None:
        """End the body: the connection is half-closed, then closed (safe to call twice)."""
        ws = self._ws
        body = ws._held
        if body is None:
            return
        ws._held = None
        ws._server._held.discard(ws)
        ws._end_http()
        body.lost()


class ServerWebSocket(WebSocket):
    """The server side of a connection: a :class:`WebSocket` that runs the server handshake.

    Applications receive it in the handler and in ``process_request``; only :meth:`respond` is
    specific to it.
    """

    __slots__ = (
        "_handshake",
        "_held",
        "_open_handle",
        "_open_timeout",
        "_server",
        "_task",
        "accept_headers",
    )

    def __init__(self, server: Server, *, open_timeout: float | None, **options: Any) -> None:
        super().__init__(**options)
        self._server = server
        self._open_timeout = open_timeout
        self._open_handle: Deadline | None = None
        # Released once the connection is open (its request stays, as ws.request).
        self._handshake: ServerHandshake | None = server._new_handshake()
        self._task: asyncio.Task[None] | None = None
        self._held: HeldBody | None = None
        #: Extra header fields for the 101 response; ``process_request`` may set them.
        self.accept_headers: Sequence[tuple[str, str]] = ()

    def respond(
        self, status: int, body: str | bytes, headers: Iterable[tuple[str, str]] = ()
    ) -> Response:
        """Build an HTTP response for ``process_request`` to return instead of the upgrade.

        Args:
            status: The HTTP status code, e.g. 200, 404, 403.
            body: The body; a str is encoded to UTF-8 (and served as text/plain).
            headers: Extra headers.
        """
        return self._hs().reject(status, body, headers=tuple(headers))

    def respond_held(
        self, status: int, body: HeldBody, headers: Iterable[tuple[str, str]] = ()
    ) -> Response:
        """Build a response for ``process_request`` whose body is written over time.

        Once the head is written, ``body.start(stream)`` is called with a
        :class:`ResponseStream`; the connection stays open (no open timeout) until
        ``stream.end()`` or until the client leaves (``body.lost()``). The response carries
        ``Connection: close`` and no Content-Length: for HTTP streaming and long-polling.
        """
        self._held = body
        return self._hs().reject(status, b"", headers=tuple(headers))

    def _hs(self) -> ServerHandshake:
        handshake = self._handshake
        if handshake is None:
            raise InvalidState(
                "the opening handshake is over: respond() is for process_request only"
            )
        return handshake

    @property
    def max_message_size(self) -> int | None:
        """The largest message this connection accepts, in bytes (None: no limit).

        It starts as the server's ``max_message_size``. ``process_request`` may set it, before
        the connection opens, to give this connection its own limit (e.g. per endpoint).

        Raises:
            InvalidState: On assignment, once the connection is open.
        """
        return self._max_message_size

    @max_message_size.setter
    def max_message_size(self, value: int | None) -> None:
        if self._conn is not None:
            raise InvalidState("max_message_size cannot change once the connection is open")
        self._max_message_size = value

    # ---- opening handshake ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Called by asyncio when a client connects; not for applications."""
        super().connection_made(transport)
        self._server._protocols.add(self)
        if self._open_timeout is not None:
            self._open_handle = self._timers.call_later(self._open_timeout, self._open_timed_out)

    def _handshake_data_received(self, data: bytes) -> None:
        if self._response is not None:
            return  # answered with an HTTP error: the rest is of no interest
        if self._request is not None:
            # The request is complete and being answered. A client may not send frames before
            # the 101 (RFC 6455 section 4.1); the handshake keeps what comes anyway, and
            # reading stops until the answer is sent.
            self._hs().receive_data(data)
            assert self._transport is not None
            self._transport.pause_reading()
            return
        try:
            request = self._hs().receive_data(data)
        except InvalidHandshake as exc:
            self._reject(exc)
            return
        if request is not None:
            self._request = request
            if self._server._handler_is_async:
                self._start_task(self._run(request))
            else:
                self._open_inline(request)

    def _start_task(self, coro: Coroutine[Any, Any, None]) -> None:
        self._task = task = self._loop.create_task(coro)
        tasks = self._server._tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _open_inline(self, request: Request) -> None:
        """Answer the request and run a plain handler without a task, unless something awaits."""
        server = self._server
        try:
            response = None
            if server._process_request is not None:
                result = server._process_request(self, request)
                if inspect.isawaitable(result):
                    self._start_task(self._run(request, result))
                    return
                response = result
            trailing = self._respond_to(request, response)
            if trailing is None:
                return
        except Exception:
            self._handshake_failed()
            return
        try:
            handled = server._handler(self)
        except Exception:
            self._logger.error("[%s] connection handler failed", self.id, exc_info=True)
            self._start_close(1011, "internal error")
            return
        if inspect.isawaitable(handled):
            # A plain function that returned an awaitable after all (e.g. a partial of an
            # async function): run it like an async handler.
            self._start_task(self._handle(handled))
        if trailing:
            # Frames that came with the request go to the callbacks the handler just set.
            self.data_received(trailing)

    def _handshake_eof_received(self) -> None:
        if self._request is None and self._debug:
            # No one to answer: asyncio closes the transport when this returns.
            self._logger.debug("[%s] EOF before a complete request", self.id)

    def _reject(self, exc: InvalidHandshake) -> None:
        """Answer a bad handshake with its HTTP status and one-line reason, then close."""
        self._logger.info("[%s] invalid opening handshake: %s", self.id, exc)
        self._server._count_refusal(_refusal(exc))
        self._send_response(self._hs().reject_for(exc))
        self._end_http()

    def _send_response(self, response: Response) -> None:
        held = self._held is not None and response.status != 101
        data = self._hs().serialize(response, held=held)
        self._response = response
        if not self._lost and self._transport is not None:
            self._transport.write(data)

    def _end_http(self) -> None:
        """End an HTTP-only exchange: half-close so that the client reads all the response."""
        self._cancel_open_timer()
        transport = self._transport
        if transport is None or self._lost:
            return
        if transport.can_write_eof():
            try:
                transport.write_eof()
            except OSError:
                # The client is already gone (it read the response and reset): nothing to end.
                transport.close()
                return
            # The client closes once it has read the response; reading again (input is now
            # discarded) lets that EOF be seen, and if it does not come, the timer drops it.
            transport.resume_reading()
            self._arm_close_timer()
        else:
            transport.close()

    def _open_timed_out(self) -> None:
        self._open_handle = None
        if not self._lost and self._transport is not None:
            self._logger.info("[%s] opening handshake timed out", self.id)
            self._server._count_refusal("open_timeout")
            self._transport.abort()

    def _cancel_open_timer(self) -> None:
        if self._open_handle is not None:
            self._open_handle.cancel()
            self._open_handle = None

    async def _answer(
        self, request: Request, pending: Awaitable[Response | None] | None = None
    ) -> bytes | None:
        """Answer the request: a process_request response, a rejection, or the 101. Return
        what :meth:`_respond_to` returns.

        Args:
            request: The request.
            pending: What process_request returned, when it was called already and must be
                awaited.
        """
        server = self._server
        response: Response | None = None
        if pending is not None:
            response = await pending
        elif server._process_request is not None:
            result = server._process_request(self, request)
            if inspect.isawaitable(result):
                result = await result
            response = result
        return self._respond_to(request, response)

    def _respond_to(self, request: Request, response: Response | None) -> bytes | None:
        """Send ``response``, or the 101 (or the rejection) when it is None.

        Returns:
            None when the connection did not open; else the bytes that came after the
            request, which the caller passes to data_received once the handler has run (so
            that a callback-style handler's on_message sees them).
        """
        server = self._server
        if response is None and server._closing and not server._draining:
            # While draining, a handshake already under way completes: its client reached
            # this process before the listener closed, and is closed with the rest at the end.
            response = self.respond(503, "server shutting down\n")
            server._count_refusal("shutting_down")
        if response is None and request.discarded:
            response = self.respond(
                413,
                f"Content Too Large: a request body of {request.discarded} bytes"
                f" (limit {self._hs().max_body_size})\n",
            )
            server._count_refusal("body_too_large")
        limit = server._max_connections
        if response is None and limit is not None and server._count_open() >= limit:
            self._logger.info("[%s] too many connections: 503", self.id)
            server._count_refusal("capacity")
            response = self.respond(503, "too many connections\n", [("Retry-After", "5")])
        if response is None:
            try:
                response = self._hs().accept(request, extra_headers=self.accept_headers)
            except InvalidHandshake as exc:
                self._logger.info("[%s] invalid opening handshake: %s", self.id, exc)
                server._count_refusal(_refusal(exc))
                response = self._hs().reject_for(exc)
        if self._lost:
            return None
        self._send_response(response)
        if response.status != 101:
            body = self._held
            if body is None:
                self._end_http()
            else:
                self._cancel_open_timer()
                server._held.add(self)
                body.start(ResponseStream(self))
            return None
        self._cancel_open_timer()
        conn = Connection(
            Role.SERVER,
            deflate=self._hs().deflate_extension,
            max_message_size=self._max_message_size,
            max_frame_size=self._max_frame_size,
            logger=self._logger,
        )
        handshake = self._hs()
        self._subprotocol = handshake.subprotocol
        server._open.add(self)
        # HTTP is over: what the handshake held for it would stay for the connection's life.
        self._handshake = None
        self._connection_open(conn, b"")
        assert self._transport is not None
        if not self._lost and not self._reading_paused:
            self._transport.resume_reading()
        if self._debug:
            self._logger.debug("[%s] connection open: %s", self.id, request.path)
        return handshake.trailing_data

    async def _run(
        self, request: Request, pending: Awaitable[Response | None] | None = None
    ) -> None:
        """The connection's task: the opening handshake, then the handler, then close."""
        try:
            try:
                trailing = await self._answer(request, pending)
                if trailing is None:
                    return
            except Exception:
                self._handshake_failed()
                return
            try:
                handled = self._server._handler(self)
            except Exception:
                self._logger.error("[%s] connection handler failed", self.id, exc_info=True)
                await self.close(1011, "internal error")
                return
            if trailing:
                self.data_received(trailing)
            if inspect.isawaitable(handled):
                await self._handle(handled)
        except BaseException:
            # Cancelled (the loop is shutting down): do not leave the socket behind.
            if not self._lost and self._transport is not None:
                self._transport.abort()
            raise

    def _handshake_failed(self) -> None:
        """process_request or the handshake raised: log it, answer 500, end HTTP."""
        self._logger.error("[%s] opening handshake failed", self.id, exc_info=True)
        if self._response is None:
            with contextlib.suppress(Exception):
                self._send_response(self.respond(500, "internal server error\n"))
        self._end_http()

    async def _handle(self, handled: Awaitable[None]) -> None:
        """Await an async handler, then close: 1000 when it returns, 1011 when it raises."""
        code, reason = 1000, ""
        try:
            await handled
        except ConnectionClosed as exc:
            # The peer went away while the handler was using the connection: already
            # logged once by connection_lost if it was abnormal.
            if self._debug:
                self._logger.debug("[%s] handler ended by the close: %s", self.id, exc)
        except Exception:
            self._logger.error("[%s] connection handler failed", self.id, exc_info=True)
            code, reason = 1011, "internal error"
        await self.close(code, reason)

    def _lost_hook(self, exc: Exception | None) -> None:
        self._cancel_open_timer()
        server = self._server
        server._protocols.discard(self)
        server._open.discard(self)
        body = self._held
        if body is not None:
            self._held = None
            server._held.discard(self)
            try:
                body.lost()
            except Exception:
                self._logger.error("[%s] held response's lost() failed", self.id, exc_info=True)
        # The task of a handshake waiting on process_request sees _lost and stops by itself.


# Handshake refusals by HTTP status, as bounded labels (Server.refusals).
_REFUSALS = {400: "bad_request", 426: "upgrade_required", 431: "headers_too_large"}


def _refusal(exc: InvalidHandshake) -> str:
    return _REFUSALS.get(exc.status, "other")


class Server:
    """A WebSocket server, as returned by :func:`serve`.

    Await it (``server = await serve(...)``) or use it as an async context manager
    (``async with serve(...) as server``) to start listening; leaving the block closes it.
    """

    def __init__(
        self,
        handler: Handler,
        host: str | Sequence[str] | None = None,
        port: int | None = None,
        *,
        process_request: ProcessRequest | None = None,
        subprotocols: Sequence[str] | None = None,
        select_subprotocol: SelectSubprotocol | None = None,
        compression: str | None = "deflate",
        max_message_size: int | None = 2**20,
        max_frame_size: int | None = None,
        max_queue: int | None = DEFAULT_MAX_QUEUE,
        write_limit: int = DEFAULT_WRITE_LIMIT,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
        open_timeout: float | None = DEFAULT_OPEN_TIMEOUT,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
        max_connections: int | None = None,
        max_header_size: int = 16384,
        max_header_count: int = 128,
        max_body_size: int = 0,
        body_allowed: Callable[[str, str], bool] | None = None,
        ssl: ssl_module.SSLContext | None = None,
        sock: socket.socket | None = None,
        reuse_port: bool | None = None,
        backlog: int = 100,
        logger: LoggerLike | None = None,
        on_start: Callable[[], Awaitable[None]] | None = None,
        on_closed: Callable[[], Awaitable[None]] | None = None,
        on_closing: Callable[[], object] | None = None,
    ) -> None:
        self._handler = handler
        self._on_start = on_start
        self._on_closed = on_closed
        self._on_closing = on_closing
        # Decided once: an async handler gets a task per connection, a plain one none.
        self._handler_is_async = _is_async_callable(handler)
        self._host = host
        self._port = port
        self._process_request = process_request
        self._max_connections = max_connections
        self._ssl = ssl
        self._sock = sock
        self._reuse_port = reuse_port
        self._backlog = backlog
        self._handshake_options: dict[str, Any] = {
            "subprotocols": subprotocols,
            "select_subprotocol": select_subprotocol,
            "deflate": deflate_options(compression),
            "max_header_size": max_header_size,
            "max_header_count": max_header_count,
            "max_body_size": max_body_size,
            "body_allowed": body_allowed,
        }
        self._logger: LoggerLike = logger if logger is not None else _logger
        self._options: dict[str, Any] = {
            "logger": self._logger,
            "max_message_size": max_message_size,
            "max_frame_size": max_frame_size,
            "max_queue": max_queue,
            "write_limit": write_limit,
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "close_timeout": close_timeout,
            "open_timeout": open_timeout,
        }
        self._server: asyncio.Server | None = None
        # Every connection with a transport; those past the handshake; their tasks.
        self._protocols: set[ServerWebSocket] = set()
        self._open: set[ServerWebSocket] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # Connections answering with a held response (respond_held).
        self._held: set[ServerWebSocket] = set()
        self._closing = False
        self._draining = False
        self._drain_deadline = 0.0
        self._close_task: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._refusals: dict[str, int] = {}
        # Sessions of other transports (the fallback's) counted toward max_connections.
        self._sessions = 0

    @property
    def refusals(self) -> dict[str, int]:
        """Handshakes this server refused itself, by reason (a copy): ``bad_request`` (400),
        ``upgrade_required`` (426), ``headers_too_large`` (431), ``body_too_large`` (413),
        ``capacity`` (503 beyond ``max_connections``), ``shutting_down`` (503),
        ``open_timeout`` (dropped); not those ``process_request`` answered. Counted on those
        paths only, never per message."""
        return dict(self._refusals)

    def _count_open(self) -> int:
        return len(self._open) + self._sessions

    def open_session(self) -> Callable[[], None] | None:
        """Count a session that has no connection of its own (a fallback transport's) toward
        ``max_connections``, as an open WebSocket.

        Returns:
            None when the server is at capacity (refuse the session: 503); else the function
            to call once when the session ends (later calls do nothing).
        """
        limit = self._max_connections
        if limit is not None and self._count_open() >= limit:
            self._count_refusal("capacity")
            return None
        self._sessions += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._sessions -= 1

        return release

    def _count_refusal(self, reason: str) -> None:
        self._refusals[reason] = self._refusals.get(reason, 0) + 1

    def _new_handshake(self) -> ServerHandshake:
        return ServerHandshake(**self._handshake_options)

    def _new_connection(self) -> ServerWebSocket:
        return ServerWebSocket(self, **self._options)

    # ---- starting --------------------------------------------------------------------------

    async def start(self) -> Server:
        """Start listening (what awaiting the server does). Returns the server."""
        if self._server is None:
            if self._on_start is not None:
                await self._on_start()
            loop = asyncio.get_running_loop()
            # host/port and sock exclude each other; pass only what was given.
            where: dict[str, Any] = (
                {"sock": self._sock}
                if self._sock is not None
                else {"host": self._host, "port": self._port}
            )
            self._server = await loop.create_server(
                # WebSocket is an asyncio protocol by its methods, not by its base class.
                cast("Callable[[], asyncio.Protocol]", self._new_connection),
                ssl=self._ssl,
                reuse_port=self._reuse_port,
                backlog=self._backlog,
                **where,
            )
            self._logger.info("server listening on %s", ", ".join(self._addresses()))
        return self

    def __await__(self) -> Generator[Any, None, Server]:
        """``server = await serve(...)`` starts the server."""
        return self.start().__await__()

    async def __aenter__(self) -> Server:
        """Start the server."""
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the server and every connection, and wait until they are closed."""
        self.close()
        await self.wait_closed()

    def _addresses(self) -> list[str]:
        addresses = []
        for sock in self.sockets:
            name = sock.getsockname()
            if isinstance(name, tuple):
                host = f"[{name[0]}]" if ":" in name[0] else name[0]
                addresses.append(f"{host}:{name[1]}")
            else:
                addresses.append(str(name))
        return addresses

    # ---- properties ------------------------------------------------------------------------

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (empty before the server starts)."""
        if self._server is None:
            return ()
        return tuple(self._server.sockets)

    @property
    def port(self) -> int:
        """The port of the first listening socket: the real one when started with port 0."""
        sockets = self.sockets
        if not sockets:
            raise RuntimeError("the server is not listening")
        port: int = sockets[0].getsockname()[1]
        return port

    @property
    def closing(self) -> bool:
        """True once :meth:`close` or :meth:`drain` was called."""
        return self._closing

    @property
    def connections(self) -> frozenset[WebSocket]:
        """The connections past the opening handshake and not yet closed."""
        return frozenset(self._open)

    # ---- running and closing ---------------------------------------------------------------

    async def serve_forever(self) -> None:
        """Serve until :meth:`close` is called; when cancelled, close the server and re-raise."""
        await self.start()
        try:
            await self._closed.wait()
        except asyncio.CancelledError:
            self.close()
            raise

    def close(self, close_connections: bool = True) -> Awaitable[None]:
        """Stop accepting connections and close the server.

        Args:
            close_connections: Close every open connection with 1001 ("server shutting down")
                and drop connections still in the opening handshake. When False, open
                connections keep running until their handlers end.

        Returns:
            An awaitable that waits until the server is closed and every handler has
            returned (the same as :meth:`wait_closed`); it need not be awaited.
        """
        self._closing = True
        if self._close_task is None:
            self._close_task = asyncio.get_running_loop().create_task(
                self._close(close_connections)
            )
        return asyncio.shield(self._close_task)

    def drain(
        self,
        duration: float = 10.0,
        *,
        code: int = 1001,
        reason: str = "server shutting down",
        timeout: float = 30.0,
    ) -> Awaitable[None]:
        """Stop accepting, close the open connections gradually, then close the server.

        The listening socket closes at once, so that servers sharing the port
        (``SO_REUSEPORT``) take the new connections; the open connections are closed with
        ``code`` in batches spread over ``duration`` seconds (about one batch every 0.1 s),
        so that their clients reconnect gradually rather than all at once; those still open
        ``timeout`` seconds after the start are cut (a ``duration`` beyond it is cut short).
        Calling it while the server is already closing or draining just waits for that.

        Args:
            duration: Seconds over which to spread the closes (0: all at once).
            code: The close code: 1001 (going away), 1012 (service restart), or a code of
                your own (4000-4999) that your clients take as "reconnect elsewhere".
            reason: The close reason.
            timeout: Seconds after which whatever is still open is cut.

        Returns:
            An awaitable that waits until the server is closed (it need not be awaited).

        Raises:
            ValueError: ``code`` is not one an endpoint may send.
        """
        if not is_valid_close_code(code):
            raise ValueError(f"{code} is not a close code an endpoint may send")
        self._closing = True
        if self._close_task is None:
            self._draining = True
            self._close_task = asyncio.get_running_loop().create_task(
                self._drain(duration, code, reason, timeout)
            )
        return asyncio.shield(self._close_task)

    async def _drain(self, duration: float, code: int, reason: str, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._drain_deadline = deadline
        duration = min(duration, timeout)  # the timeout bounds the whole drain
        await self._stop_listening()
        pending = list(self._open)
        batches = max(1, min(len(pending), math.ceil(duration / _DRAIN_TICK)))
        closing: list[asyncio.Task[None]] = []
        for index in range(batches):
            if index:
                await asyncio.sleep(duration / batches)
            first, last = index * len(pending) // batches, (index + 1) * len(pending) // batches
            # Started now (a task each), not when gathered: that is what spreads them.
            closing.extend(
                loop.create_task(ws.close(code, reason))
                for ws in pending[first:last]
                if ws in self._open
            )
        if closing:
            left = max(0.0, deadline - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), left)
        # Past the timeout: cut what is left (connections that opened during the drain are
        # closed by _close below, with 1001).
        for ws in pending:
            if ws in self._open and ws._transport is not None:
                ws._transport.abort()
        await self._close(close_connections=True)

    async def _stop_listening(self) -> None:
        """Close the listening sockets without losing a connection already accepted.

        asyncio accepts a connection in one turn of the loop and makes its transport in the
        next; a server closed in between refuses to attach it (Python 3.11), and its client
        is reset. So: stop accepting first, let the accepted ones attach, then close. While
        draining, the connections still in the kernel's queue of a socket this server made
        are taken too (closing it would reset them); a socket handed in (``sock=``, e.g. a
        supervisor's, shared with the next worker) keeps its queue for whoever serves it next.
        """
        server = self._server
        if server is None or not server.is_serving():
            if server is not None:
                server.close()
            return
        loop = asyncio.get_running_loop()
        for sock in server.sockets:
            loop.remove_reader(sock.fileno())
        await asyncio.sleep(0)  # the transports of connections just accepted are made now
        if self._draining and self._sock is None:
            for sock in server.sockets:
                self._take_queued(sock.fileno())
        server.close()

    def _take_queued(self, fileno: int) -> None:
        """Accept what the kernel queued on the listening socket ``fileno``, without waiting."""
        loop = asyncio.get_running_loop()
        with socket.socket(fileno=os.dup(fileno)) as listening:
            listening.setblocking(False)
            for _ in range(max(self._backlog, 1) * 2):  # the queue holds at most ~backlog
                try:
                    conn, _ = listening.accept()
                except OSError:  # BlockingIOError: nothing left
                    return
                conn.setblocking(False)
                task = loop.create_task(self._attach(conn))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _attach(self, conn: socket.socket) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                cast("Callable[[], asyncio.Protocol]", self._new_connection), conn, ssl=self._ssl
            )
        except (OSError, ssl_module.SSLError):  # the client left, or TLS failed: nothing to keep
            conn.close()

    def _handshaking(self) -> bool:
        """Whether a connection has been accepted but has not sent its whole request yet."""
        return any(ws._request is None and ws._transport is not None for ws in self._protocols)

    def create_task(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` in a task that closing the server waits for, as for handlers (e.g. a
        session over a fallback transport, which has no connection of its own)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _close(self, close_connections: bool) -> None:
        await self._stop_listening()
        if close_connections and self._on_closing is not None:
            try:
                self._on_closing()
            except Exception:
                self._logger.error("the server's on_closing hook failed", exc_info=True)
        if close_connections and not self._draining:
            for ws in list(self._protocols):
                if ws._request is None and ws._transport is not None:
                    # Not even a request yet: nothing to tell this client.
                    ws._transport.close()
        if close_connections:
            closing = [ws.close(1001, "server shutting down") for ws in list(self._open)]
            if closing:
                await asyncio.gather(*closing, return_exceptions=True)
        # Handlers see ConnectionClosed and return; wait for them so that nothing outlives
        # the server. While draining, connections accepted before the listener closed reached
        # this process rather than a sibling: each may still send its request, open, and be
        # closed with the rest (up to the drain's deadline), rather than be refused.
        loop = asyncio.get_running_loop()
        # A request still to come is waited for briefly: a client accepted just before the
        # listener closed sends it at once; one that never does (a browser's preconnect)
        # must not hold the shutdown until the drain's deadline.
        requests_until = min(self._drain_deadline, loop.time() + _LATE_REQUEST_GRACE)
        late: set[ServerWebSocket] = set()
        closing_late: list[asyncio.Task[None]] = []
        while True:
            # Before each look at what is left, with no await in between: a connection that
            # opened meanwhile (a plain handler starts no task) is closed too.
            for ws in list(self._open) if self._draining else ():
                if ws not in late:
                    late.add(ws)
                    closing_late.append(loop.create_task(ws.close(1001, "server shutting down")))
            waiting = self._draining and self._handshaking() and loop.time() < requests_until
            if not self._tasks and not waiting:
                break
            if self._tasks:
                await asyncio.wait(
                    list(self._tasks), timeout=_DRAIN_TICK if self._draining else None
                )
            else:
                await asyncio.sleep(_DRAIN_TICK / 10)
        for ws in list(self._protocols) if self._draining else ():
            if ws._request is None and ws._transport is not None:
                ws._transport.abort()  # still no request: nothing to tell this client
        if closing_late:
            await asyncio.gather(*closing_late, return_exceptions=True)
        # Held responses whose owner did not end them: the listener's wait_closed would wait
        # for their connections.
        for ws in list(self._held):
            ResponseStream(ws).end()
        if self._server is not None:
            await self._server.wait_closed()
        if self._on_closed is not None:
            try:
                await self._on_closed()
            except Exception:
                self._logger.error("closing the server's on_closed hook failed", exc_info=True)
        self._closed.set()
        self._logger.info("server closed")

    async def wait_closed(self) -> None:
        """Wait until the server is closed: after :meth:`close` and every handler are done."""
        await self._closed.wait()


def _is_async_callable(func: object) -> bool:
    """Tell whether calling ``func`` returns a coroutine (an async function, maybe wrapped)."""
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


def serve(
    handler: Handler,
    host: str | Sequence[str] | None = None,
    port: int | None = None,
    **options: Any,
) -> Server:
    """Create a WebSocket server; await it or use it with ``async with`` to start it.

    Args:
        handler: ``async def handler(ws)``, run once per connection in its own task. When it
            returns the connection is closed with 1000; when it raises, with 1011. Or a
            plain ``def handler(ws)`` (the callback style): called once the connection is
            open, it sets ``ws.on_message`` and returns, and the connection stays open until
            either side closes it; when it raises, the connection closes with 1011.
        host: The interface(s) to listen on (None: all). See ``loop.create_server``.
        port: The TCP port; 0 picks a free one (then read :attr:`Server.port`).
        **options: Keyword arguments of :class:`Server`:

            - ``process_request(ws, request)`` (sync or async): return a Response (build it
              with ``ws.respond(status, body, headers)``) to answer with it instead of the
              upgrade, e.g. a health check or a 403; return None to go on.
            - ``subprotocols``, ``select_subprotocol(request, offered)``: subprotocol choice.
            - ``compression``: "deflate" (default) or None.
            - ``max_message_size`` (1 MiB), ``max_frame_size``, ``max_queue`` (16 messages),
              ``write_limit`` (32 KiB), ``max_header_size``, ``max_header_count``,
              ``max_body_size`` (0: plain requests may not have a body; else the largest:
              a longer one is read and dropped, and answered 413 unless ``process_request``
              answers it, seeing ``request.discarded``), ``body_allowed(method, target)``
              (which plain requests may have a body; others get 400 before it is read),
              ``max_connections`` (None; beyond it, HTTP 503): limits; None disables one.
            - ``ping_interval``/``ping_timeout`` (20 s each), ``open_timeout`` and
              ``close_timeout`` (10 s each); None disables one.
            - ``ssl``, ``sock``, ``reuse_port``, ``backlog``: passed to ``create_server``.
            - ``logger``: defaults to ``logging.getLogger("fullduplex.server")``.
            - ``on_start()``, ``on_closed()``: awaited before listening, and once every
              connection and handler is done (the App starts and closes its broker so).
            - ``on_closing()``: called when closing starts, before connections are closed
              (the App closes its fallback sessions so).

    Returns:
        The :class:`Server`, not yet listening.
    """
    return Server(handler, host, port, **options)
