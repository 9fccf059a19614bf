"""Groups of sessions and broadcast that frames each message once, in one process or many.

A :class:`Group` is a named set of open sessions: ``session.join("lobby")`` puts a session in
it, ``session.group("lobby")`` or ``app.group("lobby")`` returns it, and ``app.sessions(path)``
is the group of every open session of one endpoint in this process. A session leaves all its
groups when its connection closes. Group objects are light views on the membership kept by the
app's :class:`GroupRegistry`, so one obtained before its group emptied still sees the members
that join later.

Every app has a broker (:mod:`fullduplex.brokers`). With the default
:class:`~fullduplex.brokers.MemoryBroker`, a broadcast encodes the object once per codec among
the members, serializes one unmasked, uncompressed frame once, and writes that same bytes
object to every member whose connection did not negotiate permessage-deflate (a member with
deflate gets its own compressed copy); all of it before ``broadcast`` returns. With a broker
that spans processes (:class:`~fullduplex.brokers.RedisBroker`), the object is encoded once by
the publisher, with the group's codec (the sender's, for ``session.group(name)``; ``codec=``
of ``app.group``; else str and bytes go as they are), and every process with members frames
it once when it comes back from the broker, local members included: they get it after the
same round trip as everyone, so that every member of a group, in every process, sees the
group's messages in the same order (the offset order).

No member waits for another: each write goes straight to the member's transport, and a member
whose outgoing buffer is over its endpoint's ``max_buffered`` gets its endpoint's overflow
policy instead (drop the message, or close with 1013).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Hashable, Iterator
from time import perf_counter
from typing import TYPE_CHECKING, Any

from ..brokers.base import Broker, Position, Publication
from ..brokers.memory import MemoryBroker, Recorded
from ..protocol.frames import Opcode, serialize_frame
from .metrics import Metrics

if TYPE_CHECKING:
    from .codecs import Codec
    from .session import Session

__all__ = ["Group", "GroupRegistry", "stamp_json"]

_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY


def stamp_json(message: str | bytes, position: Position) -> str | bytes:
    """Add ``"epoch"`` and ``"offset"`` to a message that is a JSON object; others unchanged.

    The stamp of groups whose clients recover: give it as ``stamp=`` to
    :meth:`App.configure_groups <fullduplex.app.App.configure_groups>`. A client keeps the
    last ``(epoch, offset)`` it received and reconnects with them. Costs one string
    concatenation per message per process, not a JSON encode.
    """
    if not isinstance(message, str) or not message.startswith("{"):
        return message
    rest = message[1:]
    separator = "" if rest.lstrip().startswith("}") else ","
    return f'{{"epoch":"{position.epoch}","offset":{position.offset}{separator}{rest}'


class GroupRegistry:
    """Group membership for one app, and the bridge between its sessions and its broker.

    Keys are group names (``str``) for user groups and ``("endpoint", template)`` tuples for
    the per-endpoint groups, so the two never collide; only named groups go through the
    broker (the first member of a group in this process makes it subscribe, the last one to
    leave makes it unsubscribe).
    """

    __slots__ = (
        "_floors",
        "_flush_scheduled",
        "_held",
        "_members",
        "_recovering",
        "broker",
        "metrics",
    )

    def __init__(self, broker: Broker | None = None) -> None:
        self._members: dict[Hashable, dict[Session, None]] = {}
        self.broker: Broker = broker if broker is not None else MemoryBroker()
        # Sessions rejoining a group: what arrives meanwhile waits for their replay.
        self._recovering: dict[str, dict[Session, list[Publication]]] = {}
        # Sessions that recovered up to a position the live stream has not passed yet.
        self._floors: dict[str, dict[Session, Position]] = {}
        # Sessions with broker messages queued but not written yet: see dispatch().
        self._held: dict[Session, None] = {}
        self._flush_scheduled = False
        #: The app's counters (broadcasts, deliveries, fan-out time, ...).
        self.metrics = Metrics()

    def add(self, key: Hashable, session: Session) -> None:
        """Put ``session`` in group ``key`` (no effect if it is there already)."""
        members = self._members.get(key)
        if members is None:
            self._members[key] = {session: None}
            if isinstance(key, str):
                self.broker.interest(key)
        elif session in members:
            return
        else:
            members[session] = None
        if isinstance(key, str) and self.broker.policies(key).presence:
            self.broker.presence_add(key, self.session_id(session), session.user_id)

    def discard(self, key: Hashable, session: Session) -> None:
        """Take ``session`` out of group ``key``; drop the group when it becomes empty."""
        members = self._members.get(key)
        if members is None or session not in members:
            return
        del members[session]
        if not isinstance(key, str):
            if not members:
                del self._members[key]
            return
        floors = self._floors.get(key)
        if floors is not None:
            floors.pop(session, None)
            if not floors:
                del self._floors[key]
        if self.broker.policies(key).presence:
            self.broker.presence_remove(key, self.session_id(session))
        if not members:
            del self._members[key]
            self.broker.disinterest(key)

    def members(self, key: Hashable) -> dict[Session, None] | None:
        """The members of group ``key`` (the live dict: do not change it), or None if empty."""
        return self._members.get(key)

    def group_keys(self) -> list[Hashable]:
        """The keys of the groups that have members."""
        return list(self._members)

    def session_id(self, session: Session) -> str:
        """The id of ``session`` among every process of the broker (for presence)."""
        return f"{self.broker.node_id}.{session.id}"

    # ---- delivery ------------------------------------------------------------------------------

    def dispatch(self, publication: Publication) -> int:
        """Deliver a publication to this process's members: the broker's ``deliver``.

        Framed once for every member; returns how many sessions it was given to. The frames
        are queued on each connection and written once per turn of the event loop: a broker
        hands over what one read from Redis brought in one go, so a burst of N messages costs
        each member one write (one system call), not N. Order is kept (a connection's queue
        is written in order, before anything sent later).
        """
        group = publication.group
        members = self._members.get(group)
        if not members:
            return 0
        started = perf_counter()
        message: str | bytes = publication.data.decode() if publication.text else publication.data
        stamp = self.broker.policies(group).stamp
        if stamp is not None:
            message = stamp(message, publication.position)
        frame = _frame(message)
        size = len(frame)
        excluded = publication.exclude if publication.node == self.broker.node_id else ()
        recovering = self._recovering.get(group)
        floors = self._floors.get(group)
        count = 0
        held = self._held
        for session in tuple(members):
            if excluded and session.id in excluded:
                continue
            if recovering is not None and session in recovering:
                recovering[session].append(publication)
                continue
            if (
                floors is not None
                and session in floors
                and self._below_floor(group, floors, session, publication.position)
            ):
                continue
            if session._offer(frame, message, size, True):
                count += 1
                held[session] = None
        if held and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_held)
        self.metrics.timed_broadcast(started, count, count * size)
        return count

    def _flush_held(self) -> None:
        self._flush_scheduled = False
        held, self._held = self._held, {}
        for session in held:
            session._flush()

    def _below_floor(
        self, group: str, floors: dict[Session, Position], session: Session, position: Position
    ) -> bool:
        floor = floors[session]
        if position.epoch == floor.epoch and position.offset <= floor.offset:
            return True  # already replayed to it
        del floors[session]
        if not floors:
            del self._floors[group]
        return False

    def deliver_local(
        self, key: Hashable, obj: Any, excluded: Collection[Session], position: Position | None
    ) -> int:
        """Deliver ``obj`` to this process's members now, encoded once per codec among them.

        The path of every broadcast with the in-process broker (and of endpoint groups).
        """
        members = self._members.get(key)
        if not members:
            return 0
        started = perf_counter()
        stamp = (
            self.broker.policies(key).stamp
            if position is not None and isinstance(key, str)
            else None
        )
        count = volume = 0
        # Encoded once per codec; the last one is kept at hand since there is usually one.
        codec: Codec | None = None
        message: str | bytes = b""
        frame = b""
        encoded: dict[Codec, tuple[str | bytes, bytes]] = {}
        for session in tuple(members):
            if excluded and session in excluded:
                continue
            session_codec = session._codec
            if session_codec is not codec:
                codec = session_codec
                cached = encoded.get(codec)
                if cached is None:
                    message = codec.encode(obj)
                    if stamp is not None:
                        assert position is not None
                        message = stamp(message, position)
                    frame = _frame(message)
                    encoded[codec] = (message, frame)
                else:
                    message, frame = cached
            if session._offer(frame, message, len(frame)):
                count += 1
                volume += len(frame)  # codecs may differ: each delivery adds its own
        self.metrics.timed_broadcast(started, count, volume)
        return count

    def deliver_one(self, group: str, session: Session, item: Any) -> bool:
        """Write one replayed item of ``group`` (a :class:`Publication`, or an object this
        process recorded) to ``session``."""
        message: str | bytes
        if isinstance(item, Recorded):
            message = session._codec.encode(item.obj)
        else:
            message = item.data.decode() if item.text else item.data
        stamp = self.broker.policies(group).stamp
        if stamp is not None:
            message = stamp(message, item.position)
        return session._write(_frame(message), message)

    # ---- recovery --------------------------------------------------------------------------

    def start_recovery(self, group: str, session: Session) -> None:
        """Join ``session`` to ``group``, holding what arrives until its replay is written."""
        self._recovering.setdefault(group, {})[session] = []
        self.add(group, session)

    def end_recovery(self, group: str, session: Session) -> list[Publication]:
        """Stop holding for ``session``: return what arrived meanwhile."""
        waiting = self._recovering.get(group)
        if waiting is None:
            return []
        held = waiting.pop(session, [])
        if not waiting:
            del self._recovering[group]
        return held

    def set_floor(self, group: str, session: Session, position: Position) -> None:
        """``session`` has everything up to ``position``: skip those if they come live."""
        if session in (self._members.get(group) or ()):
            self._floors.setdefault(group, {})[session] = position


class Group:
    """A set of open sessions that receive broadcasts together.

    Attributes:
        name: The group's name (for ``app.sessions(path)``, the endpoint's path template).
        codec: Encodes what is broadcast when the broker spans processes (None: str and
            bytes as they are); see the module docstring.
    """

    __slots__ = ("_key", "_registry", "codec", "name")

    def __init__(
        self, registry: GroupRegistry, key: Hashable, name: str, codec: Codec | None = None
    ) -> None:
        self._registry = registry
        self._key = key
        self.name = name
        self.codec = codec

    def __len__(self) -> int:
        """The number of sessions of the group in this process."""
        members = self._registry.members(self._key)
        return 0 if members is None else len(members)

    def __iter__(self) -> Iterator[Session]:
        """Iterate over this process's open sessions of the group, in the order they joined
        (a snapshot: the group may change while you iterate)."""
        members = self._registry.members(self._key)
        if members is None:
            return iter(())
        return iter([session for session in members if not session.closed])

    def __contains__(self, session: object) -> bool:
        """Tell whether ``session`` is in the group."""
        members = self._registry.members(self._key)
        return members is not None and session in members

    def __repr__(self) -> str:
        return f"<Group {self.name!r} ({len(self)} sessions here)>"

    def broadcast_nowait(
        self, obj: Any, *, exclude: Session | Collection[Session] | None = None
    ) -> int:
        """Send ``obj`` to every open session of the group, without waiting.

        Args:
            obj: What to send (see the module docstring for how it is encoded).
            exclude: A session, or a collection of sessions, not to send to (e.g. the sender).

        Returns:
            The number of sessions the message was written to in this call: with the
            in-process broker, every member reached (closed sessions and those whose
            overflow policy applied are not counted); with a broker that spans processes,
            0, since members get it when it comes back from the broker. A failed publish
            is then logged and counted by the broker (``await broadcast(...)`` raises it).

        Raises:
            TypeError: The codec cannot encode ``obj`` (nothing is sent to its members).
        """
        excluded = _excluded(exclude)
        broker = self._registry.broker
        if not isinstance(self._key, str):
            return self._registry.deliver_local(self._key, obj, excluded, None)
        if isinstance(broker, MemoryBroker):
            position = broker.advance(self.name, obj)
            return self._registry.deliver_local(self._key, obj, excluded, position)
        data, text = self._encode(obj)
        broker.publish_nowait(self.name, data, text=text, exclude=[s.id for s in excluded])
        return 0

    async def broadcast(
        self, obj: Any, *, exclude: Session | Collection[Session] | None = None
    ) -> int:
        """Send ``obj`` to every open session of the group, in every process.

        It never waits for a slow member (that is what the overflow policy is for). With a
        broker that spans processes it waits until the broker took the message, so that an
        error reaches the caller.

        Args:
            obj: What to send (see the module docstring for how it is encoded).
            exclude: A session, or a collection of sessions, not to send to.

        Returns:
            As :meth:`broadcast_nowait`.

        Raises:
            TypeError: The codec cannot encode ``obj``.
            BrokerError: The broker did not take the message.
        """
        broker = self._registry.broker
        if broker.local or not isinstance(self._key, str):
            return self.broadcast_nowait(obj, exclude=exclude)
        excluded = _excluded(exclude)
        data, text = self._encode(obj)
        await broker.publish(self.name, data, text=text, exclude=[s.id for s in excluded])
        return 0

    def _encode(self, obj: Any) -> tuple[bytes, bool]:
        message = self.codec.encode(obj) if self.codec is not None else obj
        if isinstance(message, str):
            return message.encode(), True
        if isinstance(message, bytes | bytearray | memoryview):
            return bytes(message), False
        raise TypeError(
            f"cannot broadcast a {type(obj).__name__} to group {self.name!r} across processes "
            "without a codec: use session.group(name) (the session's codec) or "
            "app.group(name, codec=...)"
        )


def _excluded(exclude: Session | Collection[Session] | None) -> Collection[Session]:
    if exclude is None:
        return ()
    if isinstance(exclude, Collection):
        return exclude
    return (exclude,)


def _frame(message: str | bytes) -> bytes:
    """The one unmasked, uncompressed frame of a whole message, as every server sends it."""
    if isinstance(message, str):
        return serialize_frame(_TEXT, message.encode())
    return serialize_frame(_BINARY, message)
