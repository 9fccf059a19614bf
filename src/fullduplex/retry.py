"""When a client reconnects: the retry rule and exponential backoff with full jitter.

Shared by the asyncio and the sync clients; it imports no I/O module.
"""

from __future__ import annotations

import random
import ssl as ssl_module
from collections.abc import Callable, Iterator
from typing import Final

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
