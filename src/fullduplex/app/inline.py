"""Sessions of the App's own server, run from the connection's callbacks: no task while idle.

On a native connection (:class:`~fullduplex.asyncio.server.ServerWebSocket`) a session is a
:class:`Conversation` set as the connection's ``on_message`` and ``on_end`` callbacks, the
callback style of :mod:`fullduplex.asyncio.server`. A message is handled right inside
``data_received``, and a returned value leaves with the one write of that read. A task exists
only while something has to wait:

* a callback that may suspend (an ``async def`` whose code awaits) runs in a task, because
  its first step must already run inside the task that finishes it: ``asyncio.current_task()``
  and ``asyncio.timeout()`` need it, and Python 3.11 cannot start a task eagerly. A plain
  ``def``, or an ``async def`` whose code never awaits (it cannot suspend), runs inline;
* a plain ``def`` that returns an awaitable, a reply while the write buffer is over its limit
  (``session.send`` waits then), an error (``on_error``, then the close) or the end of a
  session whose ``on_close`` or ``on_error`` may suspend.

While a task has the session, the connection queues the messages that arrive (bounded by
``max_queue``: reading pauses), and the task handles them in order; with the queue empty it
hands the session back to the callbacks and ends. So per-session order is kept, and an idle
session holds no task and no future.

What runs inline runs outside any task, as callback-style code does: there
``asyncio.current_task()`` is None (it was the session's task before), and context variables
are those of the connection's read callback (on asyncio's own loop, a copy made for each
transport's reader); a task started for a busy spell gets a copy of that context.

Adapters (ASGI, other transports) have no such callbacks: the App runs their sessions in one
task each (``App._run_matched``), with the same per-message code (:func:`handle_message`).
"""

from __future__ import annotations

import asyncio
import dis
import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from typing import TYPE_CHECKING, Any, Final, cast

from ..exceptions import ConcurrencyError, ConnectionClosed
from .codecs import PassthroughCodec
from .endpoint import CloseReason, Endpoint, FunctionEndpoint
from .session import Session

if TYPE_CHECKING:
    from ..asyncio.connection import Message, WebSocket
    from ..asyncio.server import ServerWebSocket
    from .app import App
    from .metrics import Metrics

__all__ = [
    "CONTINUE",
    "Conversation",
    "can_suspend",
    "closed_by",
    "count_latency",
    "handle_message",
    "invoke",
]

#: What :func:`handle_message` returns when the session goes on.
CONTINUE: Final = object()


def can_suspend(func: Callable[..., Any]) -> bool:
    """Tell whether calling ``func`` may suspend, so that it needs a task from its first step.

    False for a plain function (one that returns an awaitable is found out per call) and for a
    coroutine function whose code has no yield: every ``await``, ``async for`` and ``async
    with`` compiles to one, so such a coroutine runs to its end in one ``send(None)``.
    """
    # Bound methods are new objects on every access; their function is what is cached.
    target = getattr(func, "__func__", func)
    try:
        return _can_suspend(target)
    except TypeError:  # an unhashable callable
        return _can_suspend.__wrapped__(target)


@functools.lru_cache(maxsize=1024)
def _can_suspend(func: Callable[..., Any]) -> bool:
    target: Any = func
    while isinstance(target, functools.partial):
        target = target.func
    target = getattr(target, "__func__", target)
    if not inspect.iscoroutinefunction(target):
        return inspect.iscoroutinefunction(getattr(target, "__call__", None))  # noqa: B004
    code = getattr(target, "__code__", None)
    if code is None:  # pragma: no cover - a coroutine function is a Python function
        return True
    return any(instruction.opname == "YIELD_VALUE" for instruction in dis.get_instructions(code))


def _is_awaitable(value: object) -> bool:
    kind = type(value)
    if kind is str or kind is bytes or kind is dict or kind is list:
        return False
    return inspect.isawaitable(value)


def _finish(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that cannot suspend (see :func:`can_suspend`); return its value."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()  # pragma: no cover - can_suspend said it has no yield
    raise RuntimeError("a coroutine without await suspended")  # pragma: no cover


async def invoke(func: Callable[..., Any], *args: Any) -> Any:
    """Call ``func`` (sync or async) and return its result, awaited when it is awaitable."""
    result = func(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


def closed_by(closed: ConnectionClosed | None, session: Session) -> str:
    """Who started the close: ``peer`` (its close frame came first), ``server`` (this side
    sent the first close frame, or failed the connection), or ``none`` (no close frame either
    way: the TCP connection just ended)."""
    ws = session._ws
    conn = getattr(ws, "_conn", None)
    if conn is not None:
        sent, received = conn.close_sent, conn.close_rcvd
        if sent is None:
            return "peer" if received is not None else "none"
        # The protocol answers a peer's close frame by sending that very frame back (the
        # same object as close_rcvd); a close frame of this side's own came first.
        return "peer" if sent is received else "server"
    by = getattr(ws, "closed_by", None)  # a fallback transport's session knows
    if by is not None:
        return str(by)
    # Under ASGI the server answers the peer's close itself: a code sent here came first.
    sent_code = closed.sent_code if closed is not None else None
    if sent_code is not None or session._sent is not None:
        return "server"
    code = closed.code if closed is not None else ws.close_code
    return "peer" if code is not None and code != 1006 else "none"


def count_latency(metrics: Metrics, ws: object) -> None:
    """Record a session's last ping round trip, once, at its end: a scrape never walks the
    open sessions."""
    rtt = getattr(ws, "latency", 0.0)
    if rtt > 0:
        metrics.ping_rtt.observe(rtt)


def message_handler(endpoint: Endpoint) -> Callable[[Session, Any], Any]:
    """The endpoint's on_message, without FunctionEndpoint's extra call."""
    if type(endpoint) is FunctionEndpoint:
        return endpoint.handler
    return endpoint.on_message


async def handle_message(
    app: App,
    endpoint: Endpoint,
    session: Session,
    message: Message,
    *,
    on_message: Callable[[Session, Any], Any],
    decode: Callable[[Any], Any] | None,
) -> object:
    """Handle one message in a task: decode, on_message, send what it returns.

    Returns:
        :data:`CONTINUE`; or how the session ends: the ConnectionClosed that ended it, or
        None when this side closed it after an error.
    """
    metrics = session._registry.metrics
    metrics.received += 1
    metrics.traffic_of(session._config.path).bytes_in += len(message)
    if session._idle_handle is not None:
        session._touch()
    try:
        decoded = decode(message) if decode is not None else message
        result = on_message(session, decoded)
        if result is not None and _is_awaitable(result):
            result = await result
        if result is not None:
            await session.send(result)
    except ConnectionClosed as exc:
        if session.closed:
            return exc  # this session's connection closed while sending
        await app._error(endpoint, session, exc, "on_message")
        return None
    except Exception as exc:
        await app._error(endpoint, session, exc, "on_message")
        return None
    return CONTINUE


class Conversation:
    """One session of a native connection: the connection's on_message and on_end.

    Created by the App's connection handler, which calls :meth:`open`.
    """

    __slots__ = (
        "_app",
        "_busy",
        "_coroutine",
        "_decode",
        "_encode",
        "_endpoint",
        "_handler",
        "_inline",
        "_key",
        "_metrics",
        "_session",
        "_task",
        "_traffic",
        "_ws",
    )

    def __init__(
        self, app: App, ws: ServerWebSocket, endpoint: Endpoint, session: Session, key: Hashable
    ) -> None:
        self._app = app
        self._ws = ws
        self._endpoint = endpoint
        self._session = session
        self._key = key
        self._metrics = app.metrics
        self._traffic = app.metrics.traffic_of(session._config.path)
        codec = session._codec
        passthrough = type(codec) is PassthroughCodec
        self._decode = None if passthrough else codec.decode
        self._encode = None if passthrough else codec.encode
        self._handler = handler = message_handler(endpoint)
        self._inline = not can_suspend(handler)
        # An async def that cannot suspend: its coroutine is run to its end at once.
        self._coroutine = inspect.iscoroutinefunction(handler)
        # True while a task has the session: the connection queues messages meanwhile.
        self._busy = False
        self._task: asyncio.Task[None] | None = None

    # ---- opening -------------------------------------------------------------------------------

    def open(self) -> None:
        """Register the session and run on_open: inline when it cannot suspend."""
        session = self._session
        session._opened(self._key)
        self._app._native_sessions += 1
        metrics = self._app.metrics
        metrics.count(metrics.opened, session._config.path)
        # The conversation is both callbacks (see __call__): no bound method per session.
        self._ws.on_end = self
        on_open = self._endpoint.on_open
        if can_suspend(on_open):
            self._spawn(self._opening(None))
            return
        try:
            result = on_open(session)
            if result is not None and _is_awaitable(result):
                if inspect.iscoroutine(result) and inspect.iscoroutinefunction(on_open):
                    result = _finish(result)
                else:
                    self._spawn(self._opening(result))
                    return
        except Exception as exc:
            self._spawn(self._open_failed(exc))
            return
        self._ws.on_message = self

    async def _opening(self, pending: Awaitable[Any] | None) -> None:
        try:
            if pending is None:
                await invoke(self._endpoint.on_open, self._session)
            else:
                await pending
        except Exception as exc:
            await self._open_failed(exc)
            return
        await self._resume(None)

    async def _open_failed(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionClosed) and self._session.closed:
            await self._end(exc)
            return
        await self._app._error(self._endpoint, self._session, exc, "on_open")
        await self._end(None)

    # ---- messages ------------------------------------------------------------------------------

    def __call__(self, received: Message | WebSocket) -> None:
        """The connection's on_message and on_end: handle a message now, or start a task
        for it; called with the connection instead, end the session."""
        kind = type(received)
        if kind is not str and kind is not bytes:
            self._lost(cast("WebSocket", received))
            return
        message = cast("Message", received)
        if not self._inline:
            self._spawn(self._resume(message))
            return
        session = self._session
        metrics = self._metrics
        metrics.received += 1
        self._traffic.bytes_in += len(message)
        if session._idle_handle is not None:
            session._touch()
        try:
            decode = self._decode
            result = self._handler(session, message if decode is None else decode(message))
            if result is None:
                return
            kind = type(result)
            if kind is not str and kind is not bytes and _is_awaitable(result):
                if self._coroutine and inspect.iscoroutine(result):
                    result = _finish(result)
                    if result is None:
                        return
                else:
                    self._spawn(self._reply_later(result, True))
                    return
            # session.send(result), when it would not wait: the reply leaves with this read.
            ws = self._ws
            if ws._write_paused:
                self._spawn(self._reply_later(result, False))
                return
            encode = self._encode
            if encode is not None:
                data = encode(result)
            elif kind is str or kind is bytes:
                data = result  # what PassthroughCodec.encode returns
            else:
                data = session._codec.encode(result)
            try:
                ws.send_nowait(data)
            except (ConnectionClosed, ConcurrencyError):
                # Closing, or a fragmented message going: send() waits for either (and then
                # raises or sends); nothing was sent yet.
                self._spawn(self._reply_later(result, False))
                return
            metrics.sent += 1
            self._traffic.bytes_out += len(data)
        except Exception as exc:
            self._spawn(self._failed(exc))

    async def _reply_later(self, result: Any, pending: bool) -> None:
        session = self._session
        try:
            if pending:
                result = await result
                if result is None:
                    await self._resume(None)
                    return
            await session.send(result)
        except Exception as exc:
            await self._failed(exc)
            return
        await self._resume(None)

    async def _failed(self, exc: Exception) -> None:
        session = self._session
        if isinstance(exc, ConnectionClosed) and session.closed:
            await self._end(exc)
            return
        await self._app._error(self._endpoint, session, exc, "on_message")
        await self._end(None)

    async def _resume(self, message: Message | None) -> None:
        """Handle ``message`` (if any), then the queued messages in order; then give the
        session back to the callbacks, or end it."""
        ws = self._ws
        outcome: object = CONTINUE
        while True:
            if message is not None:
                outcome = await handle_message(
                    self._app,
                    self._endpoint,
                    self._session,
                    message,
                    on_message=self._handler,
                    decode=self._decode,
                )
                if outcome is not CONTINUE:
                    break
            if not ws._messages and not ws._eof:
                self._task = None
                self._busy = False
                ws.on_message = self
                if ws._failure_hold is not None:
                    # Every message before the peer's violation is answered: the close frame
                    # the connection holds for them leaves now (like a handler back in recv()).
                    ws._release_failure()
                return
            try:
                message = await ws.recv()
            except ConnectionClosed as exc:
                outcome = exc
                break
        await self._end(outcome)  # type: ignore[arg-type]

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Give the session to a task: messages wait in the connection's queue meanwhile.

        The server does not track these tasks (that costs a set entry and a done callback
        each): the App's shutdown waits for the sessions instead (see :meth:`_end`), and the
        conversation holds its task, since asyncio keeps only weak references to tasks.
        """
        self._busy = True
        ws = self._ws
        ws.on_message = None
        self._task = ws._loop.create_task(coro)

    # ---- closing -------------------------------------------------------------------------------

    def _lost(self, ws: WebSocket) -> None:
        """The connection's on_end: end the session, unless a task has it (it will)."""
        if self._busy:
            return
        self._busy = True  # ended: nothing more for the callbacks
        ws.on_message = None
        closed = ws._closed_exception()
        endpoint = self._endpoint
        if can_suspend(endpoint.on_close) or can_suspend(endpoint.on_error):
            self._ws._start_task(self._end(closed))
            return
        reason = self._ended(closed)
        try:
            result = endpoint.on_close(self._session, reason)
            if result is not None and _is_awaitable(result):
                if inspect.iscoroutine(result) and inspect.iscoroutinefunction(endpoint.on_close):
                    _finish(result)
                else:
                    # A plain def that returned an awaitable: the session ends when it does.
                    self._ws._start_task(self._counted(self._closing(result)))
                    return
        except Exception as exc:
            self._ws._start_task(self._counted(self._close_failed(exc)))
            return
        self._app._native_session_ended()

    async def _counted(self, work: Awaitable[None]) -> None:
        """Finish the end of a session in a task; the App's shutdown waits until it is done."""
        try:
            await work
        finally:
            self._app._native_session_ended()

    def _ended(self, closed: ConnectionClosed | None) -> CloseReason:
        """The session is over: leave its groups, count the close; return its reason."""
        session = self._session
        session._ended(self._key)
        reason = session._close_reason(closed)
        metrics = self._app.metrics
        metrics.count_close(reason.code, closed_by(closed, session))
        count_latency(metrics, self._ws)
        return reason

    async def _end(self, closed: ConnectionClosed | None) -> None:
        """End the session from a task: what App._run_matched does after the conversation.
        The App's shutdown waits until this is done."""
        try:
            reason = self._ended(closed)
            await self._closing(invoke(self._endpoint.on_close, self._session, reason))
        finally:
            self._task = None
            self._app._native_session_ended()

    async def _closing(self, pending: Awaitable[Any]) -> None:
        try:
            await pending
        except Exception as exc:
            await self._close_failed(exc)

    async def _close_failed(self, exc: Exception) -> None:
        self._app._logger.error("[%s] on_close failed", self._session.id, exc_info=exc)
        await self._app._report(self._endpoint, self._session, exc)
