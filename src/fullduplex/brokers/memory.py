"""MemoryBroker: groups within one process, the default broker of every App.

Nothing leaves the process, so nothing can be lost between publish and delivery; offsets,
history and presence follow the same rules as with Redis, so an app and its browser pages
behave the same on one process as on many. The history lives as long as the process: after a
restart every group has a new epoch, and a client recovering across it is told
``recovered=False`` (``"epoch_changed"``).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Collection
from typing import Any, NamedTuple

from .base import (
    NO_POSITION,
    Broker,
    Position,
    Presence,
    Publication,
    Recovery,
    judge_recovery,
)

__all__ = ["MemoryBroker", "Recorded"]


class Recorded(NamedTuple):
    """An object the app broadcast in this process, as its history keeps it.

    Attributes:
        position: Its position in the group.
        obj: The object, not encoded: each recovering session's codec encodes it.
    """

    position: Position
    obj: Any


class _GroupState:
    """One group's position, its history, and whether this process still has members."""

    __slots__ = ("epoch", "history", "interested", "offset", "published_at")

    def __init__(self, epoch: str) -> None:
        self.epoch = epoch
        self.offset = 0
        self.interested = False
        self.published_at = 0.0
        # (offset, time, item): item is a Publication, or an object the app encodes itself.
        self.history: deque[tuple[int, float, Any]] = deque()


class MemoryBroker(Broker):
    """Groups of one process: publications are delivered synchronously, in order.

    Group state (offset, history) is kept while the process has members of the group or
    holds history for it; a group's history expires ``history_ttl`` after its last publish.
    """

    local = True

    def __init__(self) -> None:
        super().__init__()
        self._groups: dict[str, _GroupState] = {}
        self._epochs = itertools.count(1)
        self._presence: dict[str, dict[str, str | None]] = {}
        self._published = 0

    def __repr__(self) -> str:
        return f"<MemoryBroker {len(self._groups)} groups>"

    # ---- positions and history -----------------------------------------------------------

    def _state(self, group: str) -> _GroupState:
        state = self._groups.get(group)
        if state is None:
            # A new epoch per life of the group: a client's offset from an earlier life
            # cannot be mistaken for one of this life.
            state = self._groups[group] = _GroupState(f"{self.node_id}-{next(self._epochs)}")
        return state

    def advance(self, group: str, obj: Any) -> Position:
        """Give the next offset of ``group`` to ``obj`` and keep it in the history.

        The app's own path for broadcasts, which it delivers itself (encoding ``obj`` once
        per codec among the members); a recovery returns it as a :class:`Recorded`.
        """
        return self._advance(group, lambda position: Recorded(position, obj))

    def _advance(self, group: str, item: Callable[[Position], Any]) -> Position:
        state = self._state(group)
        state.offset += 1
        position = Position(state.epoch, state.offset)
        options = self.policies(group)
        if options.history_size:
            now = time.monotonic()
            history = state.history
            history.append((state.offset, now, item(position)))
            while len(history) > options.history_size:
                history.popleft()
            state.published_at = now
        self._published += 1
        return position

    def position(self, group: str) -> Position:
        """The position of ``group`` now (``NO_POSITION`` when it has no state)."""
        state = self._groups.get(group)
        return NO_POSITION if state is None else Position(state.epoch, state.offset)

    def _forget_if_unused(self, group: str) -> None:
        state = self._groups.get(group)
        if state is None or state.interested:
            return
        options = self.policies(group)
        if not state.history or time.monotonic() - state.published_at > options.history_ttl:
            del self._groups[group]

    # ---- the Broker interface ------------------------------------------------------------

    def interest(self, group: str) -> None:
        """Keep the group's state while it has members."""
        self._state(group).interested = True

    def disinterest(self, group: str) -> None:
        """The last member left: drop the group's state unless its history is still alive."""
        state = self._groups.get(group)
        if state is not None:
            state.interested = False
            self._forget_if_unused(group)

    async def publish(
        self,
        group: str,
        data: bytes,
        *,
        text: bool,
        exclude: Collection[str] = (),
        idempotency_key: str | None = None,
    ) -> Position:
        """Deliver ``data`` to this process's members of ``group`` now (see :class:`Broker`).

        ``idempotency_key`` is accepted for the interface and ignored: a call within one
        process either happened or raised.
        """
        self.publish_nowait(group, data, text=text, exclude=exclude)
        return self.position(group)

    def publish_nowait(
        self, group: str, data: bytes, *, text: bool, exclude: Collection[str] = ()
    ) -> None:
        """Deliver ``data`` to this process's members of ``group`` now."""
        excluded = tuple(exclude)
        position = self._advance(
            group,
            lambda position: Publication(group, *position, data, text, self.node_id, excluded),
        )
        publication = Publication(group, *position, data, text, self.node_id, excluded)
        if self._deliver is not None:
            self._deliver(publication)
        self._forget_if_unused(group)

    async def recover(self, group: str, since: Position) -> Recovery:
        """What ``group`` published after ``since``, from this process's history."""
        return self.recover_now(group, since)

    def recover_now(self, group: str, since: Position) -> Recovery:
        """:meth:`recover`, synchronously (nothing to wait for in one process)."""
        state = self._groups.get(group)
        current = NO_POSITION if state is None else Position(state.epoch, state.offset)
        history = state.history if state is not None else deque()
        now = time.monotonic()
        ttl = self.policies(group).history_ttl
        while history and now - history[0][1] > ttl:
            history.popleft()
        items = [item for _, _, item in history]
        return judge_recovery(self.policies(group), since, current, items)

    def presence_add(self, group: str, session_id: str, user_id: str | None) -> None:
        """Record the session in the group's presence."""
        self._presence.setdefault(group, {})[session_id] = user_id

    def presence_remove(self, group: str, session_id: str) -> None:
        """Take the session out of the group's presence."""
        members = self._presence.get(group)
        if members is not None:
            members.pop(session_id, None)
            if not members:
                del self._presence[group]

    async def presence(self, group: str) -> Presence:
        """Who is in ``group`` (in this process: there is no other)."""
        if not self.policies(group).presence:
            raise ValueError(f"presence is not enabled for group {group!r}")
        members = dict(self._presence.get(group, {}))
        users = frozenset(user for user in members.values() if user is not None)
        return Presence(members, users)

    def stats(self) -> dict[str, int]:
        """``published``: messages given an offset; ``groups``: groups with state."""
        return {"published": self._published, "groups": len(self._groups)}
