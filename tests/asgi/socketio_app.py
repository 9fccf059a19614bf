"""An unmodified python-socketio application (``socketio.ASGIApp``), as ``fullduplex serve
--asgi`` runs it: an ``echo`` event answered to its sender, and a ``shout`` broadcast to all."""

from __future__ import annotations

from typing import Any

import socketio

__all__ = ["application", "sio"]

sio = socketio.AsyncServer(async_mode="asgi")


@sio.event
async def echo(sid: str, data: Any) -> None:
    """Answer the sender alone."""
    await sio.emit("echoed", {"sid": sid, "data": data}, to=sid)


@sio.event
async def shout(sid: str, data: Any) -> None:
    """Broadcast to every connected client."""
    await sio.emit("shouted", data)


application = socketio.ASGIApp(sio)
