"""When a client reconnects: the retry rule and exponential backoff with full jitter.

Shared by the asyncio and the sync clients; it imports no I/O module.
"""

from __future__ import annotations

import logging
import random
import ssl as ssl_module
from collections.abc import Callable, Iterator
from typing import Any, Final

from .exceptions import (
    InvalidMessage,
    InvalidProxyMessage,
    InvalidProxyStatus,
    InvalidStatus,
    SOCKSProxyError,
)

__all__ = [
    "DEFAULT_BACKOFF_FACTOR",
    "DEFAULT_BACKOFF_INITIAL",
    "DEFAULT_BACKOFF_MAX",
    "Reconnection",
    "backoff_delays",
    "is_retryable",
]

DEFAULT_BACKOFF_INITIAL: Final = 1.0
DEFAULT_BACKOFF_FACTOR: Final = 2.0
DEFAULT_BACKOFF_MAX: Final = 60.0

# SOCKS5 replies (RFC 1928 section 6) that say the proxy could not reach the server, as a
# direct connection might have failed: general failure, network or host unreachable,
# connection refused, TTL expired. The others (2, 7, 8) and failed authentication are final.
_TRANSIENT_SOCKS_REPLIES: Final = frozenset({1, 3, 4, 5, 6})


def is_retryable(exc: BaseException) -> bool:
    """Tell whether a failed connection attempt is worth retrying: the reconnection rule.

    Transient failures are retried: network errors (OSError, including a refused connection,
    a DNS failure and TimeoutError), a handshake cut short or garbled (InvalidMessage,
    InvalidProxyMessage), a 5xx status from the server (InvalidStatus) or from the HTTP proxy
    (InvalidProxyStatus: 502, 503...), and a SOCKS5 proxy that could not reach the server.
    Everything else is fatal, since trying again would fail the same way: a 4xx status from
    the server or the proxy (401, 403, 404, 407...), a response that breaks the protocol
    (InvalidResponse, NegotiationError, SecurityError), a SOCKS5 refusal by rule or failed
    proxy authentication, a certificate that does not verify, an invalid URI or option.

    Args:
        exc: What the attempt raised.

    Returns:
        True to retry after a delay; False to give up and raise ``exc``.
    """
    if isinstance(exc, ssl_module.SSLCertVerificationError):
        return False  # an OSError, but a configuration problem that time does not fix
    if isinstance(exc, (InvalidStatus, InvalidProxyStatus)):
        return 500 <= exc.status_code <= 599
    if isinstance(exc, SOCKSProxyError):
        return exc.reply in _TRANSIENT_SOCKS_REPLIES
    return isinstance(exc, (OSError, InvalidMessage, InvalidProxyMessage, EOFError))


def backoff_delays(
    initial: float = DEFAULT_BACKOFF_INITIAL,
    factor: float = DEFAULT_BACKOFF_FACTOR,
    maximum: float = DEFAULT_BACKOFF_MAX,
    *,
    uniform: Callable[[float, float], float] = random.uniform,
) -> Iterator[float]:
    """Yield the delays between consecutive attempts: exponential backoff with full jitter.

    The n-th delay (from 0) is drawn uniformly between 0 and ``min(maximum, initial *
    factor**n)`` ("full jitter"): clients that lost their server together spread their
    attempts instead of returning in waves.

    Args:
        initial: The bound of the first delay, in seconds.
        factor: How much the bound grows after each failed attempt (at least 1).
        maximum: The largest bound.
        uniform: The random draw, ``uniform(low, high)``; for tests.

    Yields:
        Delays in seconds, forever.

    Raises:
        ValueError: A bound is negative or the factor below 1 (at the first ``next()``).
    """
    if initial < 0 or maximum < 0 or factor < 1:
        raise ValueError("backoff needs initial >= 0, maximum >= 0 and factor >= 1")
    bound = min(initial, maximum)
    while True:
        yield uniform(0.0, bound)
        bound = min(bound * factor, maximum)


class Reconnection:
    """The decisions of a reconnecting loop, without its I/O: how long to wait, when to give up.

    Both clients' ``for ws in connect(...)`` loops drive one::

        schedule = Reconnection((initial, factor, maximum), uri, logger)
        while True:
            sleep(schedule.delay)              # 0 before the first attempt
            try:
                ws = open_connection()
            except Exception as exc:
                schedule.failed(exc)           # raises exc when it is not worth retrying
                continue
            ...                                # use ws, then close it
            schedule.reconnecting()

    Args:
        backoff: ``(initial, factor, maximum)`` for :func:`backoff_delays`.
        uri: What the log lines name.
        logger: Where failed attempts (INFO) and reconnections (DEBUG) are logged.
    """

    __slots__ = ("_backoff", "_delays", "_logger", "_uri", "delay")

    def __init__(
        self,
        backoff: tuple[float, float, float],
        uri: object,
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        self._backoff = backoff
        self._uri = uri
        self._logger = logger
        # Delays since the last open connection; None until an attempt fails.
        self._delays: Iterator[float] | None = None
        #: Seconds to wait before the next attempt.
        self.delay = 0.0

    def failed(self, exc: Exception) -> None:
        """An attempt failed: raise ``exc`` if it is final, else set :attr:`delay` and log."""
        if not is_retryable(exc):
            raise exc
        if self._delays is None:
            self._delays = backoff_delays(*self._backoff)
        self.delay = next(self._delays)
        self._logger.info(
            "connection to %s failed: %r; retrying in %.2f s", self._uri, exc, self.delay
        )

    def reconnecting(self) -> None:
        """An open connection ended: start a fresh sequence, so the next wait is a short one."""
        self._delays = backoff_delays(*self._backoff)
        self.delay = next(self._delays)
        self._logger.debug("connection to %s closed; reconnecting in %.2f s", self._uri, self.delay)
