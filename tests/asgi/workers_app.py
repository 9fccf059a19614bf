"""A room App for ``uvicorn --workers 2``: each worker imports it, and its groups go through the
broker ``FULLDUPLEX_BROKER`` names (Redis), so that a room spans the workers.

``/room/{name}`` joins group ``room:NAME`` (waiting until the broker's subscription is live),
then tells the client ``pid PID`` (the worker it reached); every message is broadcast to the
room, in every worker.
"""

from __future__ import annotations

import os

from fullduplex.app import App, Endpoint, Session
from fullduplex.brokers import NO_POSITION

__all__ = ["app", "asgi_app"]

app = App()  # the broker comes from FULLDUPLEX_BROKER


@app.endpoint("/room/{name}")
class Room(Endpoint):
    """Join the room, say which worker; broadcast every message to the room."""

    async def on_open(self, session: Session) -> None:
        """Join (rejoin waits for the broker's subscription), then report this worker."""
        await session.rejoin("room:" + session.path_params["name"], NO_POSITION)
        await session.send(f"pid {os.getpid()}")

    async def on_message(self, session: Session, message: str | bytes) -> None:
        """Broadcast through the broker, to this worker's members and the other's."""
        await session.group("room:" + session.path_params["name"]).broadcast(message)


asgi_app = app.asgi()
