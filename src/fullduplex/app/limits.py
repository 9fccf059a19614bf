"""Limits checked before the upgrade: a refused client costs an HTTP answer, not a session.

::

    from fullduplex.app import App, Limits

    app = App(limits=Limits(max_connections=10_000, max_per_ip=20, rate=200, burst=400))

Each check runs on the request head, before the 101, in this order: the connections of this
process (``max_connections``; **503**), of one client address (``max_per_ip``; **429**), of
one user (``max_per_user``, the user named by the ``user`` hook from the request, e.g. a
token's subject; **429**), and last the accept rate (a token bucket: ``rate`` new connections
per second, bursts of ``burst``; **429**), so that a request refused otherwise spends no
token. Every refusal carries ``Retry-After`` and a one-line reason. A
connection counts from its admission until its TCP connection is gone, so handshakes in
flight count too. A fallback session (:mod:`fullduplex.fallback`) is admitted the same way
when it opens, and counts until it ends.

Behind a proxy every connection comes from the proxy's address: list the proxies in
``trusted_proxies`` and the client's address is read from ``X-Forwarded-For`` (the rightmost
address that is not a trusted proxy, so that a client cannot choose its own by sending the
header itself).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .http import response

if TYPE_CHECKING:
    from ..asyncio.connection import WebSocket
    from ..protocol.handshake import Request, Response

__all__ = ["Admission", "Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """What an app admits before the upgrade (None: no limit of that kind).

    Attributes:
        max_connections: Open connections of this process, all endpoints together.
        max_per_ip: Open connections from one client address.
        max_per_user: Open connections of one user (as ``user`` names them).
        user: ``user(request) -> str | None``: who the request is from (None: nobody in
            particular, not limited by ``max_per_user``).
        rate: New connections admitted per second, on average.
        burst: How many may come at once (default: ``rate``, at least 1).
        trusted_proxies: Addresses of the proxies whose ``X-Forwarded-For`` is believed.
        retry_after: Seconds to tell a refused client to wait (``Retry-After``).
    """

    max_connections: int | None = None
    max_per_ip: int | None = None
    max_per_user: int | None = None
    user: Callable[[Request], str | None] | None = None
    rate: float | None = None
    burst: int | None = None
    trusted_proxies: Collection[str] = field(default_factory=frozenset)
    retry_after: float = 1.0

    def __post_init__(self) -> None:
        """Validate the values."""
        for name in ("max_connections", "max_per_ip", "max_per_user", "burst"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be positive")
        if self.max_per_user is not None and self.user is None:
            raise ValueError("max_per_user needs the user hook that names a request's user")
        if self.retry_after < 0:
            raise ValueError("retry_after must be 0 or more")


class Admission:
    """The counts behind :class:`Limits` for one app, and the check itself.

    Args:
        limits: The limits to enforce.
        clock: Seconds, monotonic (for tests).
    """

    __slots__ = (
        "_by_ip",
        "_by_user",
        "_clock",
        "_open",
        "_stamp",
        "_tokens",
        "last_refusal",
        "limits",
    )

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._open = 0
        self._by_ip: dict[str, int] = {}
        self._by_user: dict[str, int] = {}
        self._tokens = float(self._burst)
        self._stamp = clock()
        #: Why the last refusal was made: ``rate``, ``capacity``, ``per_ip`` or ``per_user``.
        self.last_refusal = ""

    @property
    def _burst(self) -> int:
        limits = self.limits
        if limits.burst is not None:
            return limits.burst
        return max(1, math.ceil(limits.rate or 1))

    @property
    def open(self) -> int:
        """Connections admitted and not closed yet."""
        return self._open

    def admit(self, ws: WebSocket, request: Request) -> Response | None:
        """Refuse the request (the Response to send), or count the connection in (None) until
        ``ws`` is closed."""
        admitted = self.acquire(ws, request)
        if not callable(admitted):
            return admitted
        previous = ws.on_close

        def release(closed: WebSocket) -> None:
            admitted()
            if previous is not None:
                previous(closed)

        ws.on_close = release
        return None

    def acquire(self, ws: WebSocket, request: Request) -> Response | Callable[[], None]:
        """Refuse the request (the Response to send), or count a session in: the function
        that counts it out, to call once it ends (a fallback session, whose requests come and
        go on connections of their own; later calls do nothing)."""
        limits = self.limits
        if limits.max_connections is not None and self._open >= limits.max_connections:
            return self._refuse(503, "the server is at capacity", "capacity")
        address = self.client_address(ws, request)
        if limits.max_per_ip is not None and self._by_ip.get(address, 0) >= limits.max_per_ip:
            return self._refuse(429, "too many connections from your address", "per_ip")
        user = limits.user(request) if limits.user is not None else None
        if (
            user is not None
            and limits.max_per_user is not None
            and self._by_user.get(user, 0) >= limits.max_per_user
        ):
            return self._refuse(429, "too many connections for this user", "per_user")
        # Last: a request refused for another reason spends no token.
        if limits.rate is not None and not self._take_token():
            return self._refuse(429, "too many new connections: slow down", "rate")
        self._open += 1
        self._by_ip[address] = self._by_ip.get(address, 0) + 1
        if user is not None:
            self._by_user[user] = self._by_user.get(user, 0) + 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._release(address, user)

        return release

    def client_address(self, ws: WebSocket, request: Request) -> str:
        """The client's address: the peer's, or from ``X-Forwarded-For`` when the peer is a
        trusted proxy."""
        peer = ws.remote_address
        address = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
        trusted = self.limits.trusted_proxies
        if address not in trusted:
            return address
        forwarded = ",".join(request.headers.get_all("X-Forwarded-For"))
        for hop in reversed([part.strip() for part in forwarded.split(",") if part.strip()]):
            if hop not in trusted:
                return hop
        return address

    def _take_token(self) -> bool:
        now = self._clock()
        rate = self.limits.rate
        assert rate is not None
        self._tokens = min(float(self._burst), self._tokens + (now - self._stamp) * rate)
        self._stamp = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def _release(self, address: str, user: str | None) -> None:
        self._open -= 1
        _decrement(self._by_ip, address)
        if user is not None:
            _decrement(self._by_user, user)

    def _refuse(self, status: int, reason: str, label: str) -> Response:
        self.last_refusal = label
        wait = max(1, math.ceil(self.limits.retry_after))
        return response(status, reason + "\n", headers=(("Retry-After", str(wait)),))


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
