"""The chat endpoint: rooms at ``/chat/{room}``, JSON messages decoded into a dataclass.

Clients connect to ``/chat/{room}?name=NAME`` and send ``{"username": ..., "message": ...}``;
the endpoint's :class:`~fullduplex.app.JSONCodec` decodes that into :class:`ChatMessage` (a
message it cannot decode closes the session with 1007) and the message is broadcast to the
room, stamped with the server's time. Everyone in the room also gets a notice when someone joins
or leaves, with the names of those present. Messages are limited to 64 KiB: a larger one closes
the sender's connection with 1009.

What the server sends (one JSON object per message, ``time`` is ISO 8601 in UTC)::

    {"type": "message", "username": "ada", "message": "hi", "time": "..."}
    {"type": "join", "username": "ada", "members": ["ada", "bob"], "time": "..."}
    {"type": "leave", "username": "bob", "members": ["ada"], "time": "..."}

Run it alone with ``fullduplex serve examples.chat:app`` (page at ``/chat.html``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fullduplex.app import App, CloseReason, Endpoint, JSONCodec, Session

from .._pages import mount_pages

__all__ = ["MAX_MESSAGE_SIZE", "PATH", "STATIC", "ChatMessage", "app", "register"]

PATH = "/chat/{room}"
"""Where the endpoint is served; ``room`` names the group a session joins."""

MAX_MESSAGE_SIZE = 64 * 1024
"""The largest message a client may send; a larger one closes its connection with 1009."""

STATIC = Path(__file__).parent / "static"
"""The directory of the page, ``chat.html``."""

_MAX_NAME = 32


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


def _name(session: Session) -> str:
    name: str = session.state.get("name", "")
    return name


def _members(session: Session) -> list[str]:
    return sorted(_name(member) for member in session.group(_group_name(session)))


def register(target: App, path: str = PATH) -> None:
    """Add the chat endpoint to ``target`` at ``path`` (a template with a ``{room}``)."""

    @target.endpoint(path, codec=JSONCodec(ChatMessage), max_message_size=MAX_MESSAGE_SIZE)
    class Chat(Endpoint):
        """One chat participant; the room is the ``{room}`` of the path."""

        async def on_open(self, session: Session) -> None:
            names = session.query.get("name") or ["anonymous"]
            session.state["name"] = names[0].strip()[:_MAX_NAME] or "anonymous"
            session.join(_group_name(session))
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
                "members": _members(session),
                "time": _now(),
            }
            await session.group(_group_name(session)).broadcast(notice)


app = App()
"""The chat endpoint and its page, on their own."""
register(app)
mount_pages(app, STATIC)
