"""The Session: one client connection to one endpoint, as the endpoint's callbacks see it.

A session is small (``__slots__``; its ``state`` dict, its query dict and its set of groups
are created on first use), because a server may hold hundreds of thousands of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from ..asyncio.timers import Deadline, timers_for
from ..brokers.base import Position, Recovery
from ..exceptions import ConcurrencyError, ConnectionClosed
from ..protocol.connection import State
from .endpoint import OVERFLOW_CLOSE_CODE, CloseReason, EndpointConfig
from .groups import Group, GroupRegistry

if TYPE_CHECKING:
    from ..asyncio.connection import WebSocket
    from ..protocol.handshake import Headers, Request
    from .codecs import Codec

__all__ = ["IDLE_CLOSE_CODE", "Session"]

#: The close code of the idle timeout: 1001 Going Away, the server leaves the conversation.
IDLE_CLOSE_CODE = 1001

_logger = logging.getLogger("fullduplex.app")
_OPEN = State.OPEN


class Session:
    """One client's conversation with an endpoint.

    Sessions are created by the framework; endpoints receive them in every callback.

    Attributes:
        id: Identifies the session (and its connection) in the log; unique among open ones.
        path: The request path, without the query string.
        path_params: The values of the path template's parameters, e.g. ``{"room": "a"}``.
        user_id: Who the client is, for the application to set (e.g. in ``on_open`` after
            authenticating it) before joining groups: presence counts distinct users by it.
            None until set.
    """

    __slots__ = (
        "_closer",
        "_closing",
        "_codec",
        "_compressed",
        "_config",
        "_dropped",
        "_groups",
        "_held",
        "_idle_handle",
        "_last_active",
        "_query",
        "_query_string",
        "_registry",
        "_sent",
        "_state",
        "_ws",
        "id",
        "path",
        "path_params",
        "user_id",
    )

    def __init__(
        self,
        ws: WebSocket,
        config: EndpointConfig,
        registry: GroupRegistry,
        *,
        path: str,
        path_params: dict[str, str],
        query_string: str,
    ) -> None:
        self._ws = ws
        self._config = config
        self._codec: Codec = config.codec
        # Fixed once the connection is open: decides prepared frame or own compressed copy.
        self._compressed = ws.compressed
        self._registry = registry
        self.id = ws.id
        self.path = path
        self.path_params = path_params
        self.user_id: str | None = None
        self._query_string = query_string
        self._query: dict[str, list[str]] | None = None
        self._state: dict[str, Any] | None = None
        self._groups: set[str] | None = None
        self._closing = False
        self._closer: asyncio.Task[None] | None = None
        self._sent: CloseReason | None = None
        self._held = 0
        self._dropped = 0
        self._idle_handle: Deadline | None = None
        self._last_active = 0.0

    # ---- what the request said -----------------------------------------------------------------

    @property
    def query(self) -> dict[str, list[str]]:
        """The query string's parameters: name -> every value, in order (blank ones kept)."""
        query = self._query
        if query is None:
            query = self._query = parse_qs(self._query_string, keep_blank_values=True)
        return query

    @property
    def headers(self) -> Headers:
        """The opening handshake request's headers (case-insensitive)."""
        return self.request.headers

    @property
    def request(self) -> Request:
        """The opening handshake request (method, path with query, headers)."""
        request = self._ws.request
        assert request is not None  # a session exists only after the handshake
        return request

    @property
    def subprotocol(self) -> str | None:
        """The negotiated subprotocol, or None."""
        return self._ws.subprotocol

    @property
    def remote_address(self) -> Any:
        """The client's address, as the socket reports it (e.g. ``(host, port)``)."""
        return self._ws.remote_address

    @property
    def state(self) -> dict[str, Any]:
        """A dict for the application's per-session data (created on first use)."""
        state = self._state
        if state is None:
            state = self._state = {}
        return state

    @property
    def closed(self) -> bool:
        """True once the session is closing or closed: nothing more can be sent."""
        return self._closing or self._ws.state is not _OPEN

    @property
    def dropped(self) -> int:
        """How many messages the "drop" overflow policy did not send to this session."""
        return self._dropped

    @property
    def buffered_amount(self) -> int:
        """Bytes sent to this session that the network has not taken yet."""
        return self._ws.buffered_amount

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.path}{' closed' if self.closed else ''}>"

    # ---- sending and closing -------------------------------------------------------------------

    async def send(self, obj: Any) -> None:
        """Send ``obj``, encoded by the endpoint's codec.

        Waits while the connection's write buffer is over its limit (backpressure for the
        caller); the overflow policy does not apply (see :meth:`send_nowait`).

        Raises:
            ConnectionClosed: The session is closed.
            TypeError: The codec cannot encode ``obj``.
        """
        message = self._codec.encode(obj)
        if self._idle_handle is not None:
            self._touch()
        await self._ws.send(message)
        self._registry.metrics.sent += 1

    def send_nowait(self, obj: Any) -> bool:
        """Send ``obj`` now, without waiting, under the endpoint's overflow policy.

        Returns:
            True when the message was written; False when the session is closed or the
            message was dropped (or the session closed) by the overflow policy.

        Raises:
            TypeError: The codec cannot encode ``obj``.
        """
        message = self._codec.encode(obj)
        if self._offer(None, message, len(message)):
            self._registry.metrics.sent += 1
            return True
        return False

    def _offer(
        self, frame: bytes | None, message: str | bytes, size: int, hold: bool = False
    ) -> bool:
        """Write one message unless closed or over the buffer bound; the broadcast hot path.

        ``frame`` is the message serialized once for every uncompressed connection (None:
        let the connection frame it); ``size`` is about its length in bytes. With ``hold``,
        a prepared frame is only queued: the caller flushes the connection later.
        """
        if self._closing:
            return False
        ws = self._ws
        # Frames queued but not written yet (see GroupRegistry.dispatch) count too.
        buffered = ws.buffered_amount + self._held
        # An empty buffer always takes one message, so that a message larger than the bound
        # still reaches a reader that keeps up.
        if buffered and buffered + size > self._config.max_buffered:
            self._overflowed()
            return False
        if hold and frame is not None and not self._compressed:
            self._held += size
        return self._write(frame, message, hold)

    def _write(self, frame: bytes | None, message: str | bytes, hold: bool = False) -> bool:
        """Write one message now, whatever the buffer holds (replays: bounded elsewhere)."""
        ws = self._ws
        try:
            if frame is None or self._compressed:
                ws.send_nowait(message)
            elif hold:
                ws.queue_prepared(frame)
            else:
                ws.send_prepared_nowait(frame)
        except (ConnectionClosed, ConcurrencyError):
            return False
        if self._idle_handle is not None:
            self._touch()
        return True

    def _flush(self) -> None:
        """Write what broadcasts queued on the connection (see GroupRegistry.dispatch)."""
        self._held = 0
        self._ws.flush()

    def _overflowed(self) -> None:
        self._registry.metrics.count(self._registry.metrics.slow_consumers, self._config.overflow)
        if self._config.overflow == "drop":
            if not self._dropped:
                _logger.info("[%s] slow consumer: dropping messages", self.id)
            self._dropped += 1
        else:
            _logger.info("[%s] slow consumer: closing with %d", self.id, OVERFLOW_CLOSE_CODE)
            self._close_soon(OVERFLOW_CLOSE_CODE, "try again later")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the session and wait until its connection is closed.

        Safe to call more than once and on a closed session (later calls just wait).

        Args:
            code: The close code (1000, 1001, 1003, 1007-1014, 3000-4999).
            reason: At most 123 bytes in UTF-8.

        Raises:
            ValueError: The code may not be sent or the reason is too long.
        """
        if self._sent is None and self._ws.state is _OPEN:
            self._sent = CloseReason(code, reason)
        self._closing = True
        try:
            await self._ws.close(code, reason)
        except ValueError:
            self._sent = None
            self._closing = self._ws.state is not _OPEN
            raise

    def _close_soon(self, code: int, reason: str) -> None:
        """Start closing from a callback that cannot wait (overflow, idle timer)."""
        if self._closing:
            return
        self._closing = True
        if self._ws.state is _OPEN:
            self._sent = CloseReason(code, reason)
        # One task per closed session, never per message.
        self._closer = asyncio.get_running_loop().create_task(self._ws.close(code, reason))

    # ---- groups --------------------------------------------------------------------------------

    def join(self, name: str) -> None:
        """Join group ``name`` (created if needed); no effect if already in it or closed."""
        if self.closed:
            return
        groups = self._groups
        if groups is None:
            groups = self._groups = set()
        groups.add(name)
        self._registry.add(name, self)

    def leave(self, name: str) -> None:
        """Leave group ``name``; no effect if not in it. An emptied group is dropped."""
        groups = self._groups
        if groups is not None and name in groups:
            groups.discard(name)
            self._registry.discard(name, self)

    async def rejoin(self, name: str, since: Position) -> Recovery:
        """Join group ``name`` and first get what it published after ``since``.

        For a client that reconnects with the position of the last message it received
        (see :func:`~fullduplex.app.stamp_json`): it gets exactly the messages it missed,
        in order, then the newer ones, without duplicates; or, when that is not possible
        (the group keeps no history, it no longer holds them, they are more than its
        ``max_recovery``, its state was lost), ``recovered=False`` with the reason and only
        the messages published from now on. Never a part of what it missed.

        Args:
            name: The group.
            since: The client's last position in it.

        Returns:
            The :class:`~fullduplex.brokers.Recovery`; its ``position`` is the group's
            position after the replay.
        """
        if self.closed:
            return Recovery(False, "unavailable", (), since)
        registry = self._registry
        groups = self._groups
        if groups is None:
            groups = self._groups = set()
        groups.add(name)
        registry.start_recovery(name, self)
        try:
            recovery = await registry.broker.recover(name, since)
        finally:
            held = registry.end_recovery(name, self)
        registry.metrics.count(
            registry.metrics.recoveries, "recovered" if recovery.recovered else recovery.reason
        )
        if recovery.recovered:
            # Bounded by the group's max_recovery, so written whatever the buffer holds.
            for item in recovery.publications:
                registry.deliver_one(name, self, item)
            top = recovery.position
            held = [
                publication
                for publication in held
                if publication.epoch != top.epoch or publication.offset > top.offset
            ]
            registry.set_floor(name, self, top)
        for publication in held:
            registry.deliver_one(name, self, publication)
        return recovery

    def group(self, name: str) -> Group:
        """Return group ``name`` (whether or not this session is in it); its broadcasts are
        encoded by this session's codec."""
        return Group(self._registry, name, name, self._codec)

    @property
    def groups(self) -> frozenset[str]:
        """The names of the groups this session joined (after it closed: those it was in)."""
        return frozenset(self._groups) if self._groups else frozenset()

    # ---- the framework's side ------------------------------------------------------------------

    def _opened(self, endpoint_key: Hashable) -> None:
        """Register the open session: its endpoint's group, its idle timer."""
        self._registry.add(endpoint_key, self)
        timeout = self._config.idle_timeout
        if timeout is not None:
            loop = asyncio.get_running_loop()
            self._last_active = loop.time()
            self._idle_handle = timers_for(loop).call_later(timeout, self._idle_check)

    def _ended(self, endpoint_key: Hashable) -> None:
        """The connection closed: leave every group (the names stay in :attr:`groups`)."""
        registry = self._registry
        registry.discard(endpoint_key, self)
        for name in self._groups or ():
            registry.discard(name, self)
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None

    def _touch(self) -> None:
        self._last_active = asyncio.get_running_loop().time()

    def _idle_check(self) -> None:
        # One timer per session, re-armed for the remaining time rather than reset on every
        # message: activity costs one float store, not a timer.
        timeout = self._config.idle_timeout
        assert timeout is not None
        loop = asyncio.get_running_loop()
        remaining = self._last_active + timeout - loop.time()
        if remaining > 0:
            self._idle_handle = timers_for(loop).call_later(remaining, self._idle_check)
            return
        self._idle_handle = None
        if not self.closed:
            _logger.info("[%s] idle for %ss: closing", self.id, timeout)
            self._close_soon(IDLE_CLOSE_CODE, "idle timeout")

    def _close_reason(self, closed: ConnectionClosed | None) -> CloseReason:
        """What ended the session: the peer's close frame, else the one this side sent."""
        if closed is not None:
            if closed.code != 1006 or closed.sent_code is None:
                return CloseReason(closed.code, closed.reason)
            return CloseReason(closed.sent_code, closed.sent_reason)
        code = self._ws.close_code
        if code is not None and code != 1006:
            return CloseReason(code, self._ws.close_reason or "")
        if self._sent is not None:
            return self._sent
        return CloseReason(1006, "")
