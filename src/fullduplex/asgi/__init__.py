"""fullduplex.asgi: fullduplex endpoints inside any ASGI server.

* :class:`ASGIApp` (or ``app.asgi()``): a :class:`~fullduplex.app.App` as an ASGI 3
  application, for uvicorn, hypercorn, granian and daphne, or mounted in Starlette/FastAPI.
* :func:`serve_asgi` (or ``fullduplex serve --asgi module:app``): ASGI 3 applications on
  fullduplex's server.
* :class:`fullduplex.asgi.uvicorn.FullduplexWebSocketProtocol` (``uvicorn.run(app,
  ws=...)``): fullduplex's WebSocket layer inside uvicorn (not imported here: import it from
  its module, or name it in uvicorn's ``--ws``).

Modules: :mod:`~.application` (the App as an ASGI application), :mod:`~.server`
(ASGI applications on fullduplex's server), :mod:`~.uvicorn` (uvicorn's protocol class),
:mod:`~._types` (the ASGI callable's types).
"""

from __future__ import annotations

from ._types import ASGIApplication, Message, Receive, Scope, Send
from .application import ASGIApp, ASGIProcessRequest, ASGIWebSocket
from .server import DEFAULT_DRAIN_TIMEOUT, serve_asgi

__all__ = [
    "DEFAULT_DRAIN_TIMEOUT",
    "ASGIApp",
    "ASGIApplication",
    "ASGIProcessRequest",
    "ASGIWebSocket",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "serve_asgi",
]
