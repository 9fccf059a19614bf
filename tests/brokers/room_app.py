"""The app the broker tests serve, in this process or as ``fullduplex serve`` subprocesses.

``/room/{name}?user=U`` joins group ``room:NAME``; with ``&epoch=E&offset=N`` it rejoins from
that position. Text messages are broadcast to the room; every message the room sends is
stamped ``EPOCH:OFFSET|MESSAGE``. Right after opening, the session gets one unstamped line
``recovery RECOVERED REASON EPOCH OFFSET`` (after the replay, when there is one).
``FD_TEST_PRESENCE_TTL`` sets the presence TTL (seconds).
"""

from __future__ import annotations

import os

from fullduplex.app import App, Endpoint, Session
from fullduplex.brokers import NO_POSITION, Position


def stamp_text(message: str | bytes, position: Position) -> str | bytes:
    """Prefix a text message with its position."""
    if isinstance(message, str):
        return f"{position.epoch}:{position.offset}|{message}"
    return message


def build(app: App | None = None) -> App:
    """Add the room endpoint to ``app`` (a new App by default) and return it."""
    app = app if app is not None else App()
    app.configure_groups(
        "room:*",
        history_size=20_000,
        max_recovery=20_000,
        presence=True,
        presence_ttl=float(os.environ.get("FD_TEST_PRESENCE_TTL", "30")),
        stamp=stamp_text,
    )

    @app.endpoint("/room/{name}")
    class Room(Endpoint):
        async def on_open(self, session: Session) -> None:
            session.user_id = (session.query.get("user") or [None])[0]
            group = "room:" + session.path_params["name"]
            query = session.query
            since = NO_POSITION
            if "epoch" in query and "offset" in query:
                since = Position(query["epoch"][0], int(query["offset"][0]))
            recovery = await session.rejoin(group, since)
            recovered = "yes" if recovery.recovered else "no"
            reason = recovery.reason or "-"
            epoch, offset = recovery.position
            await session.send(f"recovery {recovered} {reason} {epoch or '-'} {offset}")

        async def on_message(self, session: Session, message: str | bytes) -> None:
            await session.group("room:" + session.path_params["name"]).broadcast(message)

    return app


app = build()
