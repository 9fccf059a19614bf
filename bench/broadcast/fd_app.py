"""The fullduplex side: ``fullduplex serve bench.broadcast.fd_app:app --broker URL``.

``/room`` joins the group ``bench`` (waiting until this process's subscription to it is
confirmed by Redis) and sends ``ready``; it then gets every message published to the group,
as published (no stamp, no history: the group's defaults).
"""

from __future__ import annotations

from fullduplex.app import App, Endpoint, Session
from fullduplex.brokers import NO_POSITION

__all__ = ["GROUP", "app"]

GROUP = "bench"

app = App()  # the broker comes from --broker (FULLDUPLEX_BROKER)


@app.endpoint("/room")
class Room(Endpoint):
    """One member of the benchmark's room."""

    async def on_open(self, session: Session) -> None:
        """Join the room; say ``ready`` once the subscription is live."""
        await session.rejoin(GROUP, NO_POSITION)
        await session.send("ready")
