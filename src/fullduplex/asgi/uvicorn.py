"""fullduplex's WebSocket layer inside uvicorn: one argument switches it.

::

    uvicorn.run(app, ws=FullduplexWebSocketProtocol)
    # or: uvicorn mymodule:app --ws fullduplex.asgi.uvicorn:FullduplexWebSocketProtocol

uvicorn keeps its HTTP (h11 or httptools), its lifespan, its workers and its reload; when a
request asks for a WebSocket, its HTTP protocol hands the transport and the request's bytes
to this class (``ws_protocol_class(config=..., server_state=..., app_state=...)``, then
``connection_made`` and ``data_received``), which runs the ASGI websocket scope on
fullduplex's protocol core exactly as ``fullduplex serve --asgi`` does (the same
:class:`~fullduplex.asgi.server.ASGIBridge`): www spec 2.5, the ``websocket.http.response``
denial, the disconnect's code and reason.

uvicorn's settings map onto fullduplex's: ``ws_max_size`` (the largest message, 1009
beyond), ``ws_max_queue``, ``ws_ping_interval``/``ws_ping_timeout``,
``ws_per_message_deflate``, ``root_path``, and uvicorn's Date and Server fields in the 101.
At shutdown uvicorn calls :meth:`~FullduplexWebSocketProtocol.shutdown` on each connection:
it closes with :attr:`~FullduplexWebSocketProtocol.shutdown_code` (1001, "going away"; a
subclass may say 1012 as uvicorn's own implementations do), the application gets its
``websocket.disconnect``, and one that does not return within ``timeout_graceful_shutdown``
(30 s when uvicorn has none, where uvicorn would wait for ever) is cancelled.

Importing this module does not import uvicorn: fullduplex has no runtime dependency on it.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import TYPE_CHECKING, Any, ClassVar, cast

from ..asyncio.server import Server, ServerWebSocket
from ._types import ASGIApplication
from .server import DEFAULT_DRAIN_TIMEOUT, ASGIBridge

if TYPE_CHECKING:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

__all__ = ["FullduplexWebSocketProtocol"]

# One fullduplex Server (never listening: uvicorn owns the sockets) per uvicorn server, as
# the registry of its connections and the carrier of their settings, built at the first
# upgrade. Keyed weakly by uvicorn's ServerState, which lives as long as its server.
_servers: weakref.WeakKeyDictionary[ServerState, Server] = weakref.WeakKeyDictionary()


def _server_for(config: Config, server_state: ServerState, app_state: dict[str, Any]) -> Server:
    server = _servers.get(server_state)
    if server is None:
        graceful = config.timeout_graceful_shutdown
        bridge = ASGIBridge(
            cast(ASGIApplication, config.loaded_app),
            state=app_state,
            drain_timeout=float(graceful) if graceful is not None else DEFAULT_DRAIN_TIMEOUT,
            root_path=config.root_path,
            # Read at each accept: uvicorn replaces the list every second (its Date field).
            defaults=lambda: server_state.default_headers,
            # uvicorn's graceful shutdown waits for these tasks and cancels them on timeout.
            tasks=server_state.tasks,
        )
        server = Server(
            bridge.handler,
            process_request=bridge.process_request,
            select_subprotocol=bridge.select_subprotocol,
            compression="deflate" if config.ws_per_message_deflate else None,
            max_message_size=config.ws_max_size,
            max_queue=config.ws_max_queue,
            ping_interval=config.ws_ping_interval,
            ping_timeout=config.ws_ping_timeout,
            logger=logging.getLogger("uvicorn.error"),
        )
        _servers[server_state] = server
    return server


class FullduplexWebSocketProtocol(ServerWebSocket):
    """uvicorn's ``ws`` protocol class on fullduplex: ``uvicorn.run(app, ws=...)``.

    Constructed by uvicorn's HTTP protocol for each upgrade request, with uvicorn's own
    arguments; applications never construct it.

    Args:
        config: uvicorn's Config (the application, the ``ws_*`` settings, ``root_path``).
        server_state: uvicorn's shared state (its connections, tasks and default headers).
        app_state: The lifespan state; each scope's ``state`` is a copy.
        _loop: Ignored (uvicorn's own classes accept it): the running loop is used.
    """

    __slots__ = ("_uvicorn_connections",)

    #: The close code sent to every open WebSocket when uvicorn shuts down.
    shutdown_code: ClassVar[int] = 1001

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        server = _server_for(config, server_state, app_state)
        super().__init__(server, **server._options)
        self._uvicorn_connections: set[Any] = server_state.connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Called by uvicorn's HTTP protocol with the upgraded transport."""
        super().connection_made(transport)
        # uvicorn's shutdown waits until its connections are gone, and calls shutdown() on each.
        self._uvicorn_connections.add(self)

    def _lost_hook(self, exc: Exception | None) -> None:
        super()._lost_hook(exc)
        self._uvicorn_connections.discard(self)

    def shutdown(self) -> None:
        """Called by uvicorn at shutdown: close with :attr:`shutdown_code`.

        A connection whose application has not answered the handshake yet is dropped (there is
        no WebSocket to close politely); handshakes answered from now on get a 503.
        """
        self._server._closing = True
        self._start_close(self.shutdown_code, "server shutting down")
