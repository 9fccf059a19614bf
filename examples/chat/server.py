"""The chat endpoint: rooms at ``/chat/{room}``, JSON messages decoded into a dataclass.

Clients connect to ``/chat/{room}?name=NAME`` and send ``{"username": ..., "message": ...}``;
the endpoint's :class:`~fullduplex.app.JSONCodec` decodes that into :class:`ChatMessage` (a
message it cannot decode closes the session with 1007) and the message is broadcast to the
room, stamped with the server's time. Everyone in the room also gets a notice when someone joins
or leaves, with the names of those present. Messages are limited to 64 KiB: a larger one closes
the sender's connection with 1009.

A room is the group ``chat:{room}``, configured (:meth:`App.configure_groups
<fullduplex.app.App.configure_groups>`) to keep its last 100 messages for 10 minutes, to track
presence and to stamp each message with its position (:func:`~fullduplex.app.groups.stamp_json`):
``epoch`` and ``offset``, the offset increasing by one per message of the room. A client that
lost its connection reconnects to ``/chat/{room}?name=NAME&epoch=E&offset=K`` with the position
of the last message it received: it first gets the messages it missed, in order, exactly as
they were sent, then a ``recovery`` notice (to it alone); or, when they cannot be replayed
(history expired, the server restarted: another epoch), the notice says why. An ``offset``
that is not a number is a fresh join.

The join and leave notices go through a second group, ``chat-notices:{room}``, that keeps no
history: they carry no position and are never replayed (the ``join`` notice a reconnecting
client gets lists who is there now). Their ``members`` come from the broker's presence, so they
are right when the room spans processes (with :class:`~fullduplex.brokers.RedisBroker`): the
distinct names, sorted; a name open in two tabs is listed once, as is ``anonymous``.

What the server sends (one JSON object per message, ``time`` is ISO 8601 in UTC)::

    {"epoch": "...", "offset": 7, "type": "message", "username": "ada", "message": "hi",
     "time": "..."}
    {"type": "join", "username": "ada", "members": ["ada", "bob"], "time": "..."}
    {"type": "leave", "username": "bob", "members": ["ada"], "time": "..."}
    {"type": "recovery", "recovered": true, "reason": "", "replayed": 3, "epoch": "...",
     "offset": 10}

``recovery`` follows the replayed messages; ``epoch``/``offset`` are the room's position after
them, the one to keep; ``reason`` (when ``recovered`` is false) is that of
:class:`~fullduplex.brokers.Recovery`, e.g. ``"epoch_changed"`` or ``"too_old"``.

Run it alone with ``fullduplex serve examples.chat:app`` (page at ``/chat.html``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fullduplex.app import App, CloseReason, Endpoint, JSONCodec, Session
from fullduplex.app.groups import stamp_json
from fullduplex.brokers import Position
from fullduplex.exceptions import BrokerError

from .._pages import mount_pages

__all__ = [
    "HISTORY_SIZE",
    "HISTORY_TTL",
    "MAX_MESSAGE_SIZE",
    "PATH",
    "STATIC",
    "ChatMessage",
    "app",
    "register",
]

PATH = "/chat/{room}"
"""Where the endpoint is served; ``room`` names the group a session joins."""

MAX_MESSAGE_SIZE = 64 * 1024
"""The largest message a client may send; a larger one closes its connection with 1009."""

HISTORY_SIZE = 100
"""How many of a room's latest messages are kept for clients that reconnect."""

HISTORY_TTL = 600.0
"""Seconds a room's history lives after its last message."""

STATIC = Path(__file__).parent / "static"
"""The directory of the page, ``chat.html``."""

_MAX_NAME = 32
_logger = logging.getLogger(__name__)


@dataclass
class ChatMessage:
    """What a client sends: who speaks and what they say (the seeds' ``Message`` entity)."""

    username: str
    message: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _group_name(session: Session) -> str:
    # Groups are shared by the whole App: a prefix keeps chat rooms apart from other groups.
    return "chat:" + session.path_params["room"]


def _notices_name(session: Session) -> str:
    # Not matched by "chat:*": no history, no stamp, so notices are neither replayed nor counted.
    return "chat-notices:" + session.path_params["room"]


def _name(session: Session) -> str:
    name: str = session.state.get("name", "")
    return name


def _position(session: Session) -> Position | None:
    """The position the client reconnects with (``?epoch=E&offset=K``), if it gave a valid one."""
    epochs = session.query.get("epoch")
    offsets = session.query.get("offset")
    if not epochs or not epochs[0] or not offsets:
        return None
    try:
        offset = int(offsets[0])
    except ValueError:
        return None
    return Position(epochs[0], offset) if offset >= 0 else None


def register(target: App, path: str = PATH) -> None:
    """Add the chat endpoint to ``target`` at ``path`` (a template with a ``{room}``)."""
    target.configure_groups(
        "chat:*",
        history_size=HISTORY_SIZE,
        history_ttl=HISTORY_TTL,
        presence=True,
        stamp=stamp_json,
    )

    async def members(session: Session) -> list[str]:
        group = _group_name(session)
        try:
            presence = await target.presence(group)
        except BrokerError:
            # The broker did not answer: those of this process, rather than no notice.
            _logger.warning("presence of %s failed: listing local members", group)
            return sorted({_name(member) for member in session.group(group)})
        return sorted(presence.users)

    @target.endpoint(path, codec=JSONCodec(ChatMessage), max_message_size=MAX_MESSAGE_SIZE)
    class Chat(Endpoint):
        """One chat participant; the room is the ``{room}`` of the path."""

        async def on_open(self, session: Session) -> None:
            names = session.query.get("name") or ["anonymous"]
            name = names[0].strip()[:_MAX_NAME] or "anonymous"
            session.state["name"] = name
            session.user_id = name  # what presence counts: set before joining
            since = _position(session)
            if since is None:
                session.join(_group_name(session))
            else:
                # Writes the missed messages first; the notice is for this session only.
                recovery = await session.rejoin(_group_name(session), since)
                await session.send(
                    {
                        "type": "recovery",
                        "recovered": recovery.recovered,
                        "reason": recovery.reason,
                        "replayed": len(recovery.publications),
                        "epoch": recovery.position.epoch,
                        "offset": recovery.position.offset,
                    }
                )
            session.join(_notices_name(session))
            await self._notice(session, "join")

        async def on_message(self, session: Session, message: ChatMessage) -> None:
            # The name given when joining is the one shown: a message cannot speak for
            # somebody else. Clients that did not give one speak under their own username.
            username = _name(session)
            if username == "anonymous" and message.username.strip():
                username = message.username.strip()[:_MAX_NAME]
            await session.group(_group_name(session)).broadcast(
                {
                    "type": "message",
                    "username": username,
                    "message": message.message,
                    "time": _now(),
                }
            )

        async def on_close(self, session: Session, reason: CloseReason) -> None:
            # The session has already left its groups: the notice goes to those who stay.
            await self._notice(session, "leave")

        async def _notice(self, session: Session, kind: str) -> None:
            notice: dict[str, Any] = {
                "type": kind,
                "username": _name(session),
                "members": await members(session),
                "time": _now(),
            }
            await session.group(_notices_name(session)).broadcast(notice)


app = App()
"""The chat endpoint and its page, on their own."""
register(app)
mount_pages(app, STATIC)
