"""The asyncio I/O layer: :func:`serve`, :func:`connect` and the :class:`WebSocket` they give.

Everything protocol-related happens in :mod:`fullduplex.protocol`; this package only moves
bytes between it and asyncio transports, keeps the timers, and offers the awaitable API.
"""

from __future__ import annotations

from .client import ClientWebSocket, Connect, connect
from .connection import Message, WebSocket
from .server import Server, ServerWebSocket, serve

__all__ = [
    "ClientWebSocket",
    "Connect",
    "Message",
    "Server",
    "ServerWebSocket",
    "WebSocket",
    "connect",
    "serve",
]
