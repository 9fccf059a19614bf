"""fullduplex.app: the endpoint framework (in the spirit of JSR-356) on the asyncio server.

::

    from fullduplex.app import App, Endpoint, JSONCodec, Session

    app = App()

    @app.on_message("/echo")
    async def echo(session: Session, message: str | bytes) -> str | bytes:
        return message

    app.run("127.0.0.1", 8000)          # or: fullduplex serve mymodule:app

Modules: :mod:`~.routing` (path templates), :mod:`~.codecs`, :mod:`~.session`,
:mod:`~.groups` (groups and broadcast), :mod:`~.endpoint`, :mod:`~.http` (GET routes and
static files), :mod:`~.limits` (admission before the upgrade), :mod:`~.app`.
"""

from __future__ import annotations

from ..protocol.handshake import Headers, Request, Response
from .app import App
from .codecs import BytesCodec, Codec, DecodeError, JSONCodec, PassthroughCodec, TextCodec
from .endpoint import CloseReason, Endpoint, EndpointConfig
from .groups import Group, stamp_json
from .http import response
from .limits import Limits
from .routing import Router
from .session import Session

__all__ = [
    "App",
    "BytesCodec",
    "CloseReason",
    "Codec",
    "DecodeError",
    "Endpoint",
    "EndpointConfig",
    "Group",
    "Headers",
    "JSONCodec",
    "Limits",
    "PassthroughCodec",
    "Request",
    "Response",
    "Router",
    "Session",
    "TextCodec",
    "response",
    "stamp_json",
]
