"""Groups of sessions and broadcast that frames each message once.

A :class:`Group` is a named set of open sessions: ``session.join("lobby")`` puts a session in
it, ``session.group("lobby")`` or ``app.group("lobby")`` returns it, and ``app.sessions(path)``
is the group of every open session of one endpoint. A session leaves all its groups when its
connection closes; a group with no member is dropped. Group objects are light views on the
membership kept by the app's :class:`GroupRegistry`, so one obtained before its group was
dropped still sees the members that join later.

Broadcast encodes the object once with the codec, serializes one unmasked, uncompressed frame
once, and writes that same bytes object to every member whose connection did not negotiate
permessage-deflate; a member with deflate gets its own compressed copy (its compression
context is its own). No member waits for another: each write goes straight to the member's
transport, and a member whose outgoing buffer is over its endpoint's ``max_buffered`` gets its
endpoint's overflow policy instead (drop the message, or close with 1013).
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterator
from typing import TYPE_CHECKING, Any

from ..protocol.frames import Opcode, serialize_frame

if TYPE_CHECKING:
    from .codecs import Codec
    from .session import Session

__all__ = ["Group", "GroupRegistry"]

_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY


class GroupRegistry:
    """Group membership for one app: group key -> its sessions, in the order they joined.

    Keys are group names (``str``) for user groups and ``("endpoint", template)`` tuples for
    the per-endpoint groups, so the two never collide.
    """

    __slots__ = ("_members",)

    def __init__(self) -> None:
        self._members: dict[Hashable, dict[Session, None]] = {}

    def add(self, key: Hashable, session: Session) -> None:
        """Put ``session`` in group ``key`` (no effect if it is there already)."""
        members = self._members.get(key)
        if members is None:
            self._members[key] = {session: None}
        else:
            members[session] = None

    def discard(self, key: Hashable, session: Session) -> None:
        """Take ``session`` out of group ``key``; drop the group when it becomes empty."""
        members = self._members.get(key)
        if members is not None:
            members.pop(session, None)
            if not members:
                del self._members[key]

    def members(self, key: Hashable) -> dict[Session, None] | None:
        """The members of group ``key`` (the live dict: do not change it), or None if empty."""
        return self._members.get(key)

    def group_keys(self) -> list[Hashable]:
        """The keys of the groups that have members."""
        return list(self._members)


class Group:
    """A set of open sessions that receive broadcasts together.

    Attributes:
        name: The group's name (for ``app.sessions(path)``, the endpoint's path template).
    """

    __slots__ = ("_key", "_registry", "name")

    def __init__(self, registry: GroupRegistry, key: Hashable, name: str) -> None:
        self._registry = registry
        self._key = key
        self.name = name

    def __len__(self) -> int:
        """The number of sessions in the group."""
        members = self._registry.members(self._key)
        return 0 if members is None else len(members)

    def __iter__(self) -> Iterator[Session]:
        """Iterate over the open sessions of the group, in the order they joined (a snapshot:
        the group may change while you iterate)."""
        members = self._registry.members(self._key)
        if members is None:
            return iter(())
        return iter([session for session in members if not session.closed])

    def __contains__(self, session: object) -> bool:
        """Tell whether ``session`` is in the group."""
        members = self._registry.members(self._key)
        return members is not None and session in members

    def __repr__(self) -> str:
        return f"<Group {self.name!r} ({len(self)} sessions)>"

    def broadcast_nowait(
        self, obj: Any, *, exclude: Session | Collection[Session] | None = None
    ) -> int:
        """Send ``obj`` to every open session of the group now, without waiting.

        The object is encoded once per codec among the members (once in the usual case of one
        endpoint) and framed once; see the module docstring.

        Args:
            obj: What to send, encoded by each member's endpoint codec.
            exclude: A session, or a collection of sessions, not to send to (e.g. the sender).

        Returns:
            The number of sessions the message was written to: closed sessions and those
            whose overflow policy applied are not counted.

        Raises:
            TypeError: A codec cannot encode ``obj`` (nothing is sent to that codec's members).
        """
        members = self._registry.members(self._key)
        if not members:
            return 0
        if exclude is None:
            excluded: Collection[Session] = ()
        elif isinstance(exclude, Collection):
            excluded = exclude
        else:
            excluded = (exclude,)
        count = 0
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
                    frame = _frame(message)
                    encoded[codec] = (message, frame)
                else:
                    message, frame = cached
            if session._offer(frame, message, len(frame)):
                count += 1
        return count

    async def broadcast(
        self, obj: Any, *, exclude: Session | Collection[Session] | None = None
    ) -> int:
        """Send ``obj`` to every open session of the group.

        It never waits for a slow member (that is what the overflow policy is for): it is
        :meth:`broadcast_nowait`, awaitable so that endpoints write ``await`` as for every
        other send, and so that fan-out through a broker between processes can hook in here.

        Args:
            obj: What to send, encoded by each member's endpoint codec.
            exclude: A session, or a collection of sessions, not to send to.

        Returns:
            The number of sessions the message was written to.

        Raises:
            TypeError: A codec cannot encode ``obj``.
        """
        return self.broadcast_nowait(obj, exclude=exclude)


def _frame(message: str | bytes) -> bytes:
    """The one unmasked, uncompressed frame of a whole message, as every server sends it."""
    if isinstance(message, str):
        return serialize_frame(_TEXT, message.encode())
    return serialize_frame(_BINARY, message)
