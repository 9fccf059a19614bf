"""The fallback transports' HTTP side: opening sessions, streaming, polling, POSTs.

Every App serves them below each endpoint's path, at ``<endpoint path>/_fd/<action>``:

========================  ======  ================================================================
action                    method  what it does
========================  ======  ================================================================
``open?<query>``          POST    opens a session of the endpoint: ``{"s": id, "h": ms, "t": ms,
                                  "p": bytes, "n": count}``
``stream?s=<id>&a=<n>``   GET     an endless response of NDJSON lines (:mod:`.wire`): the messages
                                  after number ``n``, then each new one, a heartbeat every ``h``
``poll?s=<id>&a=<n>``     GET     the same, but answered as soon as it has lines (or after ``h``)
``send?s=<id>``           POST    a batch of messages, an ack, a close (:func:`.wire.parse_batch`)
========================  ======  ================================================================

Streaming reads a fetch response as a stream rather than server-sent events: one line format
serves the stream and the poll; the client decides when to reconnect and with which ack
(EventSource reconnects on its own, with its own delay, and cannot send headers); and binary
messages need no second encoding. Both need a browser that can read a response as it comes.

``p`` and ``n`` in the open answer are the largest POST body and the most messages in one
batch (``max_post_size``, ``max_inbox``): the client splits its batches under both.

Opening a session is admitted as a WebSocket upgrade is: the App's ``Limits`` (503 or 429)
and the server's ``max_connections`` (503) count it until it ends, and ``max_sessions``
bounds the fallback sessions of the App (503).

Bad requests get a one-line plain-text reason: 400 (malformed or forged session id, bad
body), 404 (unknown endpoint or session), 405, 409 (a batch number skipped), 410 (the session
is closing), 413 (body, message or batch too big: the session closes with 1009), 421 (the
session belongs to another process), 503 (the session's inbox is full, or no more sessions
may open: retry).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol
from urllib.parse import parse_qs

from ..asyncio.timers import Deadline, timers_for
from ..protocol.connection import State
from ..protocol.frames import is_valid_close_code
from ..protocol.handshake import Request, Response
from .ids import SessionIds
from .socket import FallbackSocket, Receiver
from .wire import parse_batch

__all__ = ["MARKER", "FallbackOptions", "FallbackService", "Responder", "Target"]

MARKER = "/_fd/"
"""What separates an endpoint's path from a fallback action in a request path."""

_logger = logging.getLogger("fullduplex.fallback")

_ACTIONS = {"open": "POST", "stream": "GET", "poll": "GET", "send": "POST"}
# Never cached, never buffered by a proxy (nginx honours X-Accel-Buffering), never sniffed.
_STREAM_HEADERS = (
    ("Content-Type", "application/x-ndjson; charset=utf-8"),
    ("Cache-Control", "no-cache, no-store"),
    ("X-Accel-Buffering", "no"),
    ("X-Content-Type-Options", "nosniff"),
)
_NO_STORE = (("Cache-Control", "no-store"),)


@dataclass(frozen=True)
class FallbackOptions:
    """Settings of the fallback transports (``App(fallback=...)``).

    Attributes:
        heartbeat: Seconds between heartbeat lines on a stream, and how long a poll waits.
        disconnect_timeout: A client with no response attached and no request for this many
            seconds (or no request at all for ``heartbeat`` plus this) is gone: its session
            closes as a lost connection (1006).
        max_post_size: The largest POST body, in bytes (413 beyond, and the session closes
            with 1009): also the largest message a client can send this way (binary
            messages go as base64, a third larger).
        max_inbox: Messages a session may hold that its endpoint has not read yet; a POST
            that would pass it gets 503 and is retried by the client. Also the most messages
            in one POST (413 beyond, and the session closes with 1009).
        max_sessions: The most fallback sessions open at once (None: no limit but the
            App's ``Limits`` and the server's ``max_connections``, which count them too).
        key: The key that signs session ids (at least 16 bytes); None: random per process.
        owner: The process's name in session ids; None: the broker's node id.
    """

    heartbeat: float = 25.0
    disconnect_timeout: float = 10.0
    max_post_size: int = 2**20
    max_inbox: int = 1024
    max_sessions: int | None = None
    key: bytes | None = None
    owner: str | None = None

    def __post_init__(self) -> None:
        if not (self.heartbeat > 0 and self.disconnect_timeout > 0):
            raise ValueError("heartbeat and disconnect_timeout must be positive")
        if self.max_post_size <= 0 or self.max_inbox <= 0:
            raise ValueError("max_post_size and max_inbox must be positive")
        if self.max_sessions is not None and self.max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")


class Target(NamedTuple):
    """An endpoint as the fallback service opens sessions of it.

    Attributes:
        max_message_size: The endpoint's limit (None: none).
        max_buffered: The endpoint's outgoing buffer bound.
        run: ``run(socket, query)``: the coroutine of one session, from on_open to on_close.
    """

    max_message_size: int | None
    max_buffered: int
    run: Callable[[FallbackSocket, str], Coroutine[Any, Any, None]]


class Responder(Protocol):
    """What answers an HTTP request (the server's connection, or an adapter)."""

    @property
    def remote_address(self) -> Any:
        """The client's address."""

    def respond(
        self, status: int, body: str | bytes, headers: Iterable[tuple[str, str]] = ()
    ) -> Response:
        """A complete response."""

    def respond_held(
        self, status: int, body: Any, headers: Iterable[tuple[str, str]] = ()
    ) -> Response:
        """A response whose body (a :class:`Receiver`) is written over time."""


Admit = Callable[[Responder, Request], Response | Callable[[], None]]
"""``admit(ws, request)``: refuse a session (the Response), or count it in (the function that
counts it out when it ends)."""


def split_path(path: str) -> tuple[str, str] | None:
    """``(endpoint path, action)`` for a fallback request path, else None."""
    endpoint, marker, action = path.rpartition(MARKER)
    if not marker or "/" in action:
        return None
    return endpoint or "/", action


class FallbackService:
    """The sessions of one App's fallback transports, and the HTTP requests that drive them.

    Args:
        options: The settings.
        owner: This process's name in session ids (when ``options.owner`` is None).
        resolve: ``resolve(path)``: the endpoint serving ``path``, or None.
        spawn: Runs a session's coroutine in a task its server waits for at close.
        admit: Admits a session before it opens (the App's limits and the server's), or None.
    """

    def __init__(
        self,
        options: FallbackOptions,
        *,
        owner: str,
        resolve: Callable[[str], Target | None],
        spawn: Callable[[Coroutine[Any, Any, None]], object],
        admit: Admit | None = None,
    ) -> None:
        self.options = options
        self.ids = SessionIds(options.owner or owner, options.key)
        self._resolve = resolve
        self._spawn = spawn
        self._admit = admit
        self._live = 0  # sessions whose coroutine has not ended
        self._sockets: dict[str, FallbackSocket] = {}
        self._checks: dict[str, Deadline] = {}
        self._closing = False

    def __len__(self) -> int:
        return len(self._sockets)

    @property
    def live(self) -> int:
        """Sessions open or closing (not those kept a while after their close)."""
        return self._live

    @staticmethod
    def takes_body(method: str, target: str) -> bool:
        """Whether a request may have a body: only a POST to ``open`` or ``send``."""
        if method != "POST":
            return False
        found = split_path(target.partition("?")[0])
        return found is not None and found[1] in ("open", "send")

    # ---- HTTP ----------------------------------------------------------------------------------

    async def respond(
        self, ws: Responder, request: Request, endpoint: str, action: str
    ) -> Response:
        """Answer one fallback request (``endpoint`` and ``action`` from :func:`split_path`)."""
        method = _ACTIONS.get(action)
        if method is None:
            return ws.respond(404, f"Not Found: unknown fallback action {action!r}\n")
        if request.method != method:
            return ws.respond(
                405, f"Method Not Allowed: {action} takes {method}\n", [("Allow", method)]
            )
        query = request.path.partition("?")[2]
        if action == "open":
            return self._open(ws, request, endpoint, query)
        params = parse_qs(query)
        sid = (params.get("s") or [""])[0]
        try:
            owner = self.ids.owner_of(sid)
        except ValueError as exc:
            return ws.respond(400, f"Bad Request: {exc}\n")
        if owner != self.ids.owner:
            return ws.respond(421, f"Misdirected Request: session of process {owner}\n")
        socket = self._sockets.get(sid)
        if socket is None:
            return ws.respond(404, "Not Found: no such session (closed or expired)\n")
        socket.last_seen = asyncio.get_running_loop().time()
        if action == "send":
            return self._send(ws, socket, request)
        try:
            ack = int((params.get("a") or ["0"])[0])
        except ValueError:
            return ws.respond(400, 'Bad Request: "a" must be an integer\n')
        socket.acked(ack)
        receiver = Receiver(socket, poll=action == "poll", ack=ack)
        if socket.state is State.CLOSED:
            return ws.respond(200, socket.fetch_after_close(receiver), _STREAM_HEADERS)
        return ws.respond_held(200, receiver, _STREAM_HEADERS)

    def _open(self, ws: Responder, request: Request, endpoint: str, query: str) -> Response:
        if self._closing:
            return ws.respond(503, "Service Unavailable: server shutting down\n")
        options = self.options
        if request.discarded:
            return ws.respond(413, _too_large(request.discarded, options.max_post_size))
        target = self._resolve(endpoint)
        if target is None:
            return ws.respond(404, "Not Found: no endpoint at this path\n")
        if options.max_sessions is not None and self._live >= options.max_sessions:
            return ws.respond(
                503, "Service Unavailable: too many fallback sessions\n", [("Retry-After", "5")]
            )
        release: Callable[[], None] | None = None
        if self._admit is not None:
            admitted = self._admit(ws, request)
            if not callable(admitted):
                return admitted
            release = admitted
        opening = Request("GET", endpoint + ("?" + query if query else ""), request.headers)
        socket = FallbackSocket(
            opening,
            ws.remote_address,
            max_message_size=target.max_message_size,
            max_buffered=target.max_buffered,
            heartbeat=options.heartbeat,
            close_timeout=options.disconnect_timeout,
        )
        sid = self.ids.new()
        self._sockets[sid] = socket
        self._arm(sid)
        self._live += 1
        task = self._spawn(self._run(sid, socket, target, query))
        if isinstance(task, asyncio.Future):
            # Counted out when the session ends, even if its task never got to run.
            task.add_done_callback(lambda _: self._ended(release))
        else:  # pragma: no cover - spawn always returns the task
            self._ended(release)
        body = {
            "s": sid,
            "h": round(options.heartbeat * 1000),
            "t": round(options.disconnect_timeout * 1000),
            "p": options.max_post_size,
            "n": options.max_inbox,
        }
        return ws.respond(
            200,
            json.dumps(body).encode(),
            [("Content-Type", "application/json"), *_NO_STORE],
        )

    def _ended(self, release: Callable[[], None] | None) -> None:
        self._live -= 1
        if release is not None:
            release()

    def _refuse_batch(self, ws: Responder, socket: FallbackSocket, what: str) -> Response:
        """A batch that can never be delivered: the session closes with 1009 (nothing after
        it could be delivered in order either), and the client is told so."""
        _logger.info("[%s] %s: closing with 1009", socket.id, what)
        if socket.state is State.OPEN:
            self._spawn(_close(socket, 1009, "message too big"))
        return ws.respond(413, f"Content Too Large: {what}; the session is closed (1009)\n")

    def _send(self, ws: Responder, socket: FallbackSocket, request: Request) -> Response:
        if request.discarded:
            return self._refuse_batch(
                ws,
                socket,
                f"a batch of {request.discarded} bytes (limit {self.options.max_post_size})",
            )
        try:
            batch = parse_batch(request.body)
        except ValueError as exc:
            return ws.respond(400, f"Bad Request: {exc}\n")
        if batch.ack is not None:
            socket.acked(batch.ack)
        if batch.seq is not None:
            expected = socket.expected_seq
            if batch.seq < expected:
                return ws.respond(200, "ok: already delivered\n", _NO_STORE)
            if socket.state is not State.OPEN:
                return ws.respond(410, "Gone: the session is closing\n")
            if batch.seq > expected:
                return ws.respond(409, f"Conflict: batch {batch.seq} before {expected}\n")
            max_inbox = self.options.max_inbox
            if len(batch.messages) > max_inbox:
                return self._refuse_batch(
                    ws, socket, f"a batch of {len(batch.messages)} messages (limit {max_inbox})"
                )
            limit = socket.max_message_size
            for message in batch.messages:
                size = len(message.encode() if isinstance(message, str) else message)
                if limit is not None and size > limit:
                    _logger.info("[%s] message over %d bytes: closing with 1009", socket.id, limit)
                    self._spawn(_close(socket, 1009, "message too big"))
                    return ws.respond(
                        413, f"Content Too Large: a message of {size} bytes (limit {limit})\n"
                    )
            if socket.inbox_size + len(batch.messages) > self.options.max_inbox:
                return ws.respond(
                    503, "Service Unavailable: the session is busy, retry\n", [("Retry-After", "1")]
                )
            socket.expected_seq = expected + 1
            socket.deliver(batch.messages)
        if batch.close is not None:
            code, reason = batch.close
            if not (is_valid_close_code(code) and len(reason.encode()) <= 123):
                return ws.respond(400, "Bad Request: invalid close code or reason\n")
            socket.peer_closed(code, reason)
        return ws.respond(200, "ok\n", _NO_STORE)

    # ---- sessions ------------------------------------------------------------------------------

    async def _run(self, sid: str, socket: FallbackSocket, target: Target, query: str) -> None:
        try:
            await target.run(socket, query)
        finally:
            if socket.state is State.OPEN:
                await socket.close(1000)

    def _arm(self, sid: str) -> None:
        delay = max(0.05, min(self.options.disconnect_timeout, self.options.heartbeat) / 4)
        loop = asyncio.get_running_loop()
        self._checks[sid] = timers_for(loop).call_later(delay, lambda: self._check(sid))

    def _check(self, sid: str) -> None:
        """Every few seconds per session: is its client still there? Is it time to forget it?"""
        self._checks.pop(sid, None)
        socket = self._sockets.get(sid)
        if socket is None:
            return
        options = self.options
        idle = asyncio.get_running_loop().time() - socket.last_seen
        if socket.state is State.CLOSED:
            # Kept a while, so that a client whose last response was lost fetches the close.
            if idle > options.disconnect_timeout and not socket.attached:
                del self._sockets[sid]
                return
        elif idle > options.heartbeat + options.disconnect_timeout or (
            idle > options.disconnect_timeout and not socket.attached
        ):
            socket.vanished()
        self._arm(sid)

    def shutdown(self) -> None:
        """The server is closing: close every session with 1001, without waiting."""
        self._closing = True
        for socket in list(self._sockets.values()):
            socket.shutdown(1001, "server shutting down")
        for check in self._checks.values():
            check.cancel()
        self._checks.clear()
        self._sockets.clear()


def _too_large(size: int, limit: int) -> str:
    return f"Content Too Large: a request body of {size} bytes (limit {limit})\n"


async def _close(socket: FallbackSocket, code: int, reason: str) -> None:
    await socket.close(code, reason)
