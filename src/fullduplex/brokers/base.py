"""The broker interface, and the values that cross it.

A broker carries group messages between the processes of an application. The app layer
(:mod:`fullduplex.app`) tells it which groups this process has members in
(:meth:`Broker.interest` / :meth:`Broker.disinterest`), publishes messages already encoded
(:meth:`Broker.publish`), and receives every publication of its groups, in offset order, through
the ``deliver`` callback given to :meth:`Broker.attach`. Gaps it could not repair reach the
``on_gap`` callback: a broker never loses a message silently.

Every group has a :class:`Position`: an ``epoch`` (a string that changes when the group's state
was lost, e.g. Redis restarted empty) and an ``offset`` (increased by one by each publish). A
client that kept the position of the last message it saw can ask for what it missed
(:meth:`Broker.recover`); the answer is all of it, in order, or ``recovered=False`` with a
reason, never a part.

This module imports nothing of the app layer, of asyncio's I/O or of Redis.
"""

from __future__ import annotations

import fnmatch
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = [
    "NO_POSITION",
    "Broker",
    "Gap",
    "GroupOptions",
    "GroupPolicies",
    "Position",
    "Presence",
    "Publication",
    "Recovery",
    "Stamp",
    "judge_recovery",
    "new_node_id",
]


class Position(NamedTuple):
    """Where a group's stream of messages stands: what a client keeps to recover later.

    Attributes:
        epoch: Identifies one life of the group's state; a new epoch means the history of
            the old one is gone.
        offset: The offset of the last message (1 for the first one of an epoch; 0: none yet).
    """

    epoch: str
    offset: int


NO_POSITION = Position("", 0)
"""The position of a group nothing was published to, or that is unknown."""


class Publication(NamedTuple):
    """One message published to a group, as the broker hands it to each process.

    Attributes:
        group: The group's name.
        epoch: The group's epoch when it was published.
        offset: Its offset in the group (one more than the previous publication's).
        data: The message, encoded once by the publisher (UTF-8 for a text message).
        text: True for a text message, False for a binary one.
        node: The id of the process that published it ("" when published from outside).
        exclude: Ids of sessions of ``node`` that must not get it (e.g. the sender).
    """

    group: str
    epoch: str
    offset: int
    data: bytes
    text: bool
    node: str = ""
    exclude: tuple[str, ...] = ()

    @property
    def position(self) -> Position:
        """The publication's position, ``(epoch, offset)``."""
        return Position(self.epoch, self.offset)


class Recovery(NamedTuple):
    """The answer to :meth:`Broker.recover`: what a reconnecting client missed, or why not.

    Attributes:
        recovered: True when ``publications`` is exactly what followed the client's position.
        reason: Why not, when ``recovered`` is False: ``"epoch_changed"`` (the group's state
            was lost since), ``"too_old"`` (history no longer holds the first missed message),
            ``"too_many"`` (more were missed than the group's ``max_recovery``),
            ``"no_history"`` (the group keeps none), ``"unavailable"`` (the broker did not
            answer), ``"no_position"`` (the client gave none: a first join, which learns
            the position to keep from ``position``). "" when recovered.
        publications: The missed messages, in order (empty unless recovered).
        position: The group's position after them: what the client keeps from now on.
    """

    recovered: bool
    reason: str
    publications: tuple[Any, ...]
    position: Position


class Gap(NamedTuple):
    """Messages of a group that this process did not receive, as ``on_gap`` reports them.

    Attributes:
        group: The group's name.
        epoch: The epoch the missing offsets belong to.
        first: The first missing offset, or None when unknown.
        last: The last missing offset, or None when unknown.
        reason: ``"offset"`` (a publication skipped offsets), ``"epoch_changed"`` (the
            group's state was lost), ``"reconnect"`` (found missing after a reconnect to the
            broker), ``"overflow"`` (this process could not buffer them while repairing),
            ``"rewound"`` (Redis forgot offsets ``first``-``last`` after they were delivered,
            e.g. a failover lost writes: the group gets a new epoch).
    """

    group: str
    epoch: str
    first: int | None
    last: int | None
    reason: str


class Presence(NamedTuple):
    """Who is in a group, across every process.

    Attributes:
        sessions: Session id -> the user id the application gave it (None if none).
        users: The distinct user ids among them.
    """

    sessions: Mapping[str, str | None]
    users: frozenset[str]


Stamp = Callable[[str | bytes, Position], str | bytes]
"""Rewrites a message with its position: ``stamp(message, position) -> message``."""


@dataclass(frozen=True, slots=True)
class GroupOptions:
    """How the broker treats the groups whose names match one pattern.

    Attributes:
        history_size: How many of the latest messages are kept for recovery (0: none).
        history_ttl: Seconds the history lives after the group's last publish.
        max_recovery: The most messages one recovery replays; a client that missed more is
            told ``recovered=False`` (``"too_many"``) rather than flooded.
        presence: Track who is in the group (:meth:`Broker.presence`).
        presence_ttl: Seconds after which the members of a process that stopped refreshing
            them (it was killed) are gone from presence.
        meta_ttl: Seconds a group's position (epoch and offset) outlives its last publish.
        stamp: For the app layer: rewrites each message of the group with its position,
            once per process, before it is framed (e.g.
            :func:`fullduplex.app.stamp_json` adds ``"epoch"`` and ``"offset"`` to JSON
            objects), so that clients learn where they are. None: sent as published.
    """

    history_size: int = 0
    history_ttl: float = 300.0
    max_recovery: int = 300
    presence: bool = False
    presence_ttl: float = 30.0
    meta_ttl: float = 30 * 24 * 3600.0
    stamp: Stamp | None = None

    def __post_init__(self) -> None:
        """Validate the values."""
        if self.history_size < 0:
            raise ValueError("history_size must be 0 or more")
        for name in ("history_ttl", "presence_ttl", "meta_ttl"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_recovery < 0:
            raise ValueError("max_recovery must be 0 or more")


_DEFAULT_OPTIONS = GroupOptions()
_CACHE_LIMIT = 4096


class GroupPolicies:
    """Group name patterns (``fnmatch`` style, e.g. ``chat:*``) -> their options.

    The first pattern added that matches a name decides; a name no pattern matches gets the
    defaults (no history, no presence).
    """

    __slots__ = ("_cache", "_patterns")

    def __init__(self) -> None:
        self._patterns: list[tuple[str, GroupOptions]] = []
        self._cache: dict[str, GroupOptions] = {}

    def add(self, pattern: str, options: GroupOptions) -> None:
        """Give the groups matching ``pattern`` these options (after earlier patterns)."""
        self._patterns.append((pattern, options))
        self._cache.clear()

    def configured(self, group: str) -> GroupOptions | None:
        """The options of ``group`` when a pattern matches it, else None."""
        options = self(group)
        return None if options is _DEFAULT_OPTIONS else options

    def __call__(self, group: str) -> GroupOptions:
        """The options of ``group``."""
        options = self._cache.get(group)
        if options is None:
            options = _DEFAULT_OPTIONS
            for pattern, candidate in self._patterns:
                if fnmatch.fnmatchcase(group, pattern):
                    options = candidate
                    break
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()  # bounded: groups may be numberless
            self._cache[group] = options
        return options


def judge_recovery(
    options: GroupOptions, since: Position, current: Position, items: Sequence[Any]
) -> Recovery:
    """The one rule of every broker: replay exactly what followed ``since``, or say why not.

    Args:
        options: The group's options (history, ``max_recovery``).
        since: The client's last position.
        current: The group's position now.
        items: What the history holds after ``since``, in order (each with ``.position``).
    """
    if not since.epoch:
        return Recovery(False, "no_position", (), current)
    if not options.history_size:
        return Recovery(False, "no_history", (), current)
    if since.epoch != current.epoch or since.offset > current.offset:
        return Recovery(False, "epoch_changed", (), current)
    if current.offset - since.offset > options.max_recovery:
        return Recovery(False, "too_many", (), current)
    wanted = tuple(item for item in items if item.position.offset > since.offset)
    # Every offset up to now, none missing (trimmed, expired, or trimming raced the read).
    if [item.position.offset for item in wanted] != list(
        range(since.offset + 1, current.offset + 1)
    ):
        return Recovery(False, "too_old", (), current)
    return Recovery(True, "", wanted, current)


def new_node_id() -> str:
    """A random id for one process: in published messages, session ids and presence."""
    return os.urandom(6).hex()


Deliver = Callable[[Publication], object]
OnGap = Callable[[Gap], None]


class Broker(ABC):
    """Carries group messages between processes (and machines).

    The app layer calls :meth:`attach` once, then the other methods from its event loop.

    Attributes:
        node_id: This process's id among every process using the broker.
        local: True when publications never leave this process (the app then delivers
            them itself, synchronously, as :class:`~fullduplex.brokers.MemoryBroker` does).
        policies: The options of each group (history, presence), by name pattern.
    """

    local = False

    def __init__(self) -> None:
        self.node_id = new_node_id()
        self.policies = GroupPolicies()
        self._deliver: Deliver | None = None
        self._on_gap: OnGap | None = None

    def attach(self, deliver: Deliver, on_gap: OnGap) -> None:
        """Set where publications and gaps go; called once by the app before serving.

        ``deliver`` is called in the event loop with each publication of a group this
        process has interest in, in offset order; ``on_gap`` with each gap (before the
        publication that follows it).
        """
        self._deliver = deliver
        self._on_gap = on_gap

    def health(self) -> str | None:
        """Why this broker cannot carry messages now (for readiness checks), or None when it
        can. The in-process broker always can."""
        return None

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect, if the broker needs to (the app calls it before listening)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop: drop every subscription and connection (the app calls it after closing)."""

    async def __aenter__(self) -> Broker:
        """``async with broker:`` starts it (e.g. to publish from a script)."""
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close the broker."""
        await self.close()

    @abstractmethod
    def interest(self, group: str) -> None:
        """This process has a member of ``group`` now: receive its publications."""

    @abstractmethod
    def disinterest(self, group: str) -> None:
        """This process has no member of ``group`` any more: stop receiving them."""

    @abstractmethod
    async def publish(
        self,
        group: str,
        data: bytes,
        *,
        text: bool,
        exclude: Collection[str] = (),
        idempotency_key: str | None = None,
    ) -> Position:
        """Publish one encoded message to every process with members of ``group``.

        Args:
            group: The group's name.
            data: The message (UTF-8 for text).
            text: True for a text message.
            exclude: Ids of sessions of this process not to deliver it to.
            idempotency_key: When given, a second publish with the same key within the
                idempotency window is not delivered again (its first position is returned).

        Returns:
            The publication's position.

        Raises:
            BrokerError: The broker did not take it.
        """

    @abstractmethod
    def publish_nowait(
        self, group: str, data: bytes, *, text: bool, exclude: Collection[str] = ()
    ) -> None:
        """Publish without waiting; a failure is logged and counted, not raised."""

    @abstractmethod
    async def recover(self, group: str, since: Position) -> Recovery:
        """What ``group`` published after ``since``, once this process receives the group
        live (call :meth:`interest` first): all of it, or ``recovered=False``."""

    @abstractmethod
    def presence_add(self, group: str, session_id: str, user_id: str | None) -> None:
        """Record that session ``session_id`` (of user ``user_id``) is in ``group``."""

    @abstractmethod
    def presence_remove(self, group: str, session_id: str) -> None:
        """Record that session ``session_id`` left ``group``."""

    @abstractmethod
    async def presence(self, group: str) -> Presence:
        """Who is in ``group`` across every process.

        Raises:
            ValueError: Presence is not enabled for ``group`` (see :class:`GroupOptions`).
            BrokerError: The broker did not answer.
        """

    def stats(self) -> dict[str, int]:
        """Counters of what the broker did (publishes, deliveries, gaps, reconnects...)."""
        return {}

    def _report_gap(self, gap: Gap) -> None:
        if self._on_gap is not None:
            self._on_gap(gap)
