"""fullduplex.brokers: groups and broadcast across processes and machines.

::

    from fullduplex.app import App
    from fullduplex.brokers import RedisBroker

    app = App(broker=RedisBroker("redis://127.0.0.1:6379/0"))

Every App has a broker: :class:`MemoryBroker` (one process, the default) unless given one, or
unless ``FULLDUPLEX_BROKER`` names a URL (``fullduplex serve --broker URL`` sets it for the
app). :class:`RedisBroker` needs the ``redis`` extra (``pip install 'fullduplex[redis]'``).

Modules: :mod:`~.base` (the interface and its values), :mod:`~.memory`, :mod:`~.redis`,
:mod:`~.sequencer` (ordering and gaps, sans-I/O), :mod:`~.wire` (what is written in Redis),
:mod:`~.scripts` (Lua), :mod:`~.commands` (the batched command queue), :mod:`~.publisher`
(publishing from a process that serves nothing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import (
    NO_POSITION,
    Broker,
    Gap,
    GroupOptions,
    Position,
    Presence,
    Publication,
    Recovery,
)
from .memory import MemoryBroker

if TYPE_CHECKING:
    from .publisher import Publisher
    from .redis import RedisBroker

__all__ = [
    "NO_POSITION",
    "Broker",
    "Gap",
    "GroupOptions",
    "MemoryBroker",
    "Position",
    "Presence",
    "Publication",
    "Publisher",
    "Recovery",
    "RedisBroker",
    "broker_from_url",
]

_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")


def broker_from_url(url: str | None) -> Broker:
    """The broker a URL names: ``memory://`` (or empty), ``redis://...``/``rediss://...`` (one
    Redis) or ``redis+cluster://...``/``rediss+cluster://...`` (a Redis Cluster).

    Raises:
        ValueError: The URL names no broker fullduplex has.
    """
    if not url or url == "memory://":
        return MemoryBroker()
    if url.startswith(_SCHEMES):
        from .redis import RedisBroker  # noqa: PLC0415 - the optional extra

        return RedisBroker(url)
    raise ValueError(
        f"unknown broker URL {url!r}: use redis://HOST:PORT/DB, redis+cluster://HOST:PORT"
        " or memory://"
    )


def __getattr__(name: str) -> Any:
    # RedisBroker and Publisher import redis-py, an optional extra: only when asked for.
    if name == "RedisBroker":
        from .redis import RedisBroker  # noqa: PLC0415

        return RedisBroker
    if name == "Publisher":
        from .publisher import Publisher  # noqa: PLC0415

        return Publisher
    raise AttributeError(f"module 'fullduplex.brokers' has no attribute {name!r}")
