"""The thread-based I/O layer: :func:`connect` and the :class:`WebSocket` it gives.

For programs without an event loop::

    from fullduplex.sync import connect

    with connect("ws://127.0.0.1:8765/") as ws:
        ws.send("hello")
        print(ws.recv(timeout=5))

Everything protocol-related happens in :mod:`fullduplex.protocol`, as in the asyncio layer;
this package moves bytes between it and a socket with one background thread per connection.
"""

from __future__ import annotations

from .client import Connect, backoff_delays, connect, is_retryable
from .connection import Data, Message, PongWaiter, WebSocket

__all__ = [
    "Connect",
    "Data",
    "Message",
    "PongWaiter",
    "WebSocket",
    "backoff_delays",
    "connect",
    "is_retryable",
]
