"""The redis-py clients of a broker URL: one Redis or a Redis Cluster, without retries.

``redis://HOST:PORT/DB`` and ``rediss://...`` (TLS) name one Redis; ``redis+cluster://HOST:PORT``
and ``rediss+cluster://...`` name a Redis Cluster by any of its nodes (the others are found
from it). ``unix:///path`` names one Redis on a Unix socket.

No client retries a command by itself: a publish retried after a lost reply could run twice,
and a lost pub/sub connection must be seen by the broker to check what it missed. Cluster
redirections (MOVED, ASK) are still followed: they are answers, not failures.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["SCHEMES", "async_client", "async_node_client", "split_url", "sync_client"]

_CLUSTER_SCHEMES = {"redis+cluster://": "redis://", "rediss+cluster://": "rediss://"}
SCHEMES = ("redis://", "rediss://", "unix://", *_CLUSTER_SCHEMES)
"""The URL schemes of Redis brokers."""


def split_url(url: str) -> tuple[str, bool]:
    """The redis-py URL of a broker URL, and whether it names a cluster.

    Raises:
        ValueError: Not a Redis URL, or an invalid one (port or database not a number).
    """
    shown, cluster = url, False
    for scheme, plain in _CLUSTER_SCHEMES.items():
        if url.startswith(scheme):
            url, cluster = plain + url[len(scheme) :], True
            break
    else:
        if not url.startswith(SCHEMES):
            raise ValueError(f"not a Redis URL: {url!r} (redis://, rediss://, redis+cluster://)")
    _check(url, shown)
    return url, cluster


def _check(url: str, shown: str) -> None:
    # Found here rather than at the first connection, which comes after the app started
    # listening: a port that is not a number, or a database that is not one (redis-py would
    # quietly use database 0).
    from redis.connection import parse_url  # noqa: PLC0415 - the optional extra

    try:
        parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as error:
        raise ValueError(f"invalid Redis URL {shown!r}: {error}") from None
    if not url.startswith("unix://"):
        database = urlsplit(url).path.strip("/")
        if database and not database.isdigit():
            raise ValueError(f"invalid Redis URL {shown!r}: the database must be a number")


def _no_retry() -> dict[str, Any]:
    from redis.asyncio.retry import Retry  # noqa: PLC0415 - the optional extra
    from redis.backoff import NoBackoff  # noqa: PLC0415

    # The asyncio flavour: redis-py converts a synchronous Retry given to an asyncio client,
    # with a UserWarning per client.
    return {"retry": Retry(NoBackoff(), 0)}


def async_client(url: str, *, timeout: float | None) -> Any:
    """A ``redis.asyncio.Redis`` or ``RedisCluster`` for commands (``timeout`` per command)."""
    import redis.asyncio  # noqa: PLC0415

    plain, cluster = split_url(url)
    options: dict[str, Any] = {
        **_no_retry(),
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "socket_keepalive": True,
    }
    if cluster:
        return redis.asyncio.RedisCluster.from_url(plain, **options)
    return redis.asyncio.Redis.from_url(plain, **options)


def async_node_client(
    url: str, *, connect_timeout: float, host: str | None = None, port: int | None = None
) -> Any:
    """A ``redis.asyncio.Redis`` for pub/sub: no read timeout (a quiet channel is not a
    failure; the broker's probe finds a deaf one), on the URL's node or ``host``:``port``."""
    import redis.asyncio  # noqa: PLC0415

    plain, _ = split_url(url)
    options: dict[str, Any] = {
        **_no_retry(),
        "socket_timeout": None,
        "socket_connect_timeout": connect_timeout,
        "socket_keepalive": True,
    }
    if host is not None and port is not None:
        plain = _with_address(plain, host, port)
    return redis.asyncio.Redis.from_url(plain, **options)


def _with_address(url: str, host: str, port: int) -> str:
    # The URL's host wins over keyword arguments in redis-py: put the node's in the URL.
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    netloc = f"{credentials}@{address}" if credentials else address
    return urlunsplit(parts._replace(netloc=netloc))


def sync_client(url: str, *, timeout: float) -> Any:
    """A blocking ``redis.Redis`` or ``redis.cluster.RedisCluster``."""
    import redis  # noqa: PLC0415
    import redis.cluster  # noqa: PLC0415

    plain, cluster = split_url(url)
    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if cluster:
        return redis.cluster.RedisCluster.from_url(plain, **options)
    return redis.Redis.from_url(plain, **options)
