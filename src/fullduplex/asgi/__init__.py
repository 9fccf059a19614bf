"""fullduplex.asgi: fullduplex endpoints inside any ASGI server.

* :class:`ASGIApp` (or ``app.asgi()``): a :class:`~fullduplex.app.App` as an ASGI 3
  application, for uvicorn, hypercorn, granian and daphne, or mounted in Starlette/FastAPI.

Modules: :mod:`~.application` (the App as an ASGI application), :mod:`~._types` (the ASGI
callable's types).
"""

from __future__ import annotations

from ._types import ASGIApplication, Message, Receive, Scope, Send
from .application import ASGIApp, ASGIProcessRequest, ASGIWebSocket

__all__ = [
    "ASGIApp",
    "ASGIApplication",
    "ASGIProcessRequest",
    "ASGIWebSocket",
    "Message",
    "Receive",
    "Scope",
    "Send",
]
