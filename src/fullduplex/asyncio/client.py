"""The asyncio WebSocket client: :func:`connect` and the client-side connection.

::

    async with fullduplex.connect("ws://127.0.0.1:8765/chat") as ws:
        await ws.send("hello")
        reply = await ws.recv()

``await connect(uri)`` works too; the connection is then the caller's to close.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import ssl as ssl_module
from collections.abc import Generator, Iterable, Sequence
from types import EllipsisType, TracebackType
from typing import Any

from ..exceptions import InvalidHandshake, InvalidMessage
from ..protocol.connection import Connection, Role
from ..protocol.handshake import ClientHandshake
from ..uri import parse_uri
from .connection import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_OPEN_TIMEOUT,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    DEFAULT_WRITE_LIMIT,
    LoggerLike,
    WebSocket,
)
from .connection import _deflate_options as deflate_options

__all__ = ["ClientWebSocket", "Connect", "connect"]

_logger = logging.getLogger("fullduplex.client")


class ClientWebSocket(WebSocket):
    """The client side of a connection: a :class:`WebSocket` that runs the client handshake."""

    __slots__ = ("_handshake", "_handshake_waiter")

    def __init__(self, handshake: ClientHandshake, **options: Any) -> None:
        super().__init__(**options)
        self._handshake = handshake
        self._handshake_waiter: asyncio.Future[None] = self._loop.create_future()
        self._request = handshake.request

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Called by asyncio once connected (and after TLS); sends the request."""
        super().connection_made(transport)
        assert self._transport is not None
        self._transport.write(self._handshake.request_bytes())

    def _handshake_data_received(self, data: bytes) -> None:
        handshake = self._handshake
        try:
            response = handshake.receive_data(data)
        except InvalidHandshake as exc:
            self._handshake_failed(exc)
            return
        if response is None:
            return
        self._response = response
        self._subprotocol = handshake.subprotocol
        conn = Connection(
            Role.CLIENT,
            deflate=handshake.deflate_extension,
            max_message_size=self._max_message_size,
            max_frame_size=self._max_frame_size,
            logger=self._logger,
        )
        self._connection_open(conn, handshake.trailing_data)
        if not self._handshake_waiter.done():
            self._handshake_waiter.set_result(None)

    def _handshake_failed(self, exc: BaseException) -> None:
        if not self._handshake_waiter.done():
            self._handshake_waiter.set_exception(exc)
        if self._transport is not None and not self._lost:
            self._transport.abort()

    def _handshake_eof_received(self) -> None:
        try:
            # An error response whose body runs to the end of the stream completes here.
            self._handshake.receive_eof()
        except InvalidHandshake as exc:
            self._handshake_failed(exc)

    def _lost_hook(self, exc: Exception | None) -> None:
        if not self._handshake_waiter.done():
            error = exc or InvalidMessage(
                "the server closed the connection during the opening handshake"
            )
            self._handshake_waiter.set_exception(error)


class Connect:
    """What :func:`connect` returns: await it for a connection, or use it with ``async with``.

    Leaving the ``async with`` block closes the connection (with 1000).
    """

    def __init__(
        self,
        uri: str,
        *,
        origin: str | None = None,
        subprotocols: Sequence[str] | None = None,
        compression: str | None = "deflate",
        additional_headers: Iterable[tuple[str, str]] = (),
        user_agent: str | EllipsisType | None = ...,
        max_message_size: int | None = 2**20,
        max_frame_size: int | None = None,
        max_queue: int | None = DEFAULT_MAX_QUEUE,
        write_limit: int = DEFAULT_WRITE_LIMIT,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
        open_timeout: float | None = DEFAULT_OPEN_TIMEOUT,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
        max_header_size: int = 16384,
        max_header_count: int = 128,
        ssl: ssl_module.SSLContext | bool | None = None,
        server_hostname: str | None = None,
        sock: socket.socket | None = None,
        logger: LoggerLike | None = None,
    ) -> None:
        self._uri = parse_uri(uri)
        if ssl and not self._uri.secure:
            raise ValueError("ssl= was given for a ws:// URI: use wss:// for TLS")
        if self._uri.secure and (ssl is None or ssl is True):
            ssl = ssl_module.create_default_context()
        self._ssl: ssl_module.SSLContext | None = ssl or None  # type: ignore[assignment]
        self._server_hostname = server_hostname
        self._sock = sock
        self._open_timeout = open_timeout
        headers = list(additional_headers)
        if self._uri.user_info is not None and not any(
            name.lower() == "authorization" for name, _ in headers
        ):
            # Credentials in the URI mean HTTP Basic authentication (RFC 7617).
            credentials = ":".join(self._uri.user_info).encode()
            headers.append(("Authorization", "Basic " + base64.b64encode(credentials).decode()))
        handshake_options: dict[str, Any] = {
            "origin": origin,
            "subprotocols": subprotocols,
            "deflate": deflate_options(compression),
            "extra_headers": headers,
            "max_header_size": max_header_size,
            "max_header_count": max_header_count,
        }
        if user_agent is not ...:
            handshake_options["user_agent"] = user_agent
        self._handshake_options = handshake_options
        self._options: dict[str, Any] = {
            "logger": logger if logger is not None else _logger,
            "max_message_size": max_message_size,
            "max_frame_size": max_frame_size,
            "max_queue": max_queue,
            "write_limit": write_limit,
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "close_timeout": close_timeout,
        }
        self._ws: WebSocket | None = None

    async def _connect(self) -> WebSocket:
        uri = self._uri
        handshake = ClientHandshake(uri.host_header, uri.resource_name, **self._handshake_options)
        loop = asyncio.get_running_loop()
        kwargs: dict[str, Any] = {"ssl": self._ssl}
        if self._ssl is not None:
            kwargs["server_hostname"] = self._server_hostname or uri.host
        if self._sock is not None:
            kwargs["sock"] = self._sock
        else:
            kwargs["host"], kwargs["port"] = uri.host, uri.port
        ws: ClientWebSocket | None = None
        try:
            async with asyncio.timeout(self._open_timeout):
                _, ws = await loop.create_connection(
                    lambda: ClientWebSocket(handshake, **self._options), **kwargs
                )
                await ws._handshake_waiter
        except BaseException:
            if ws is not None and ws._transport is not None and not ws._lost:
                ws._transport.abort()
            raise
        return ws

    def __await__(self) -> Generator[Any, None, WebSocket]:
        """``ws = await connect(uri)``: open the connection."""
        return self._connect().__await__()

    async def __aenter__(self) -> WebSocket:
        """Open the connection."""
        self._ws = await self._connect()
        return self._ws

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the connection (1000) and wait until it is closed."""
        if self._ws is not None:
            await self._ws.close()


def connect(uri: str, **options: Any) -> Connect:
    """Open a WebSocket connection to ``uri``; await the result or use it in ``async with``.

    Args:
        uri: A ws:// or wss:// URI. Credentials in it (``ws://user:pass@host/``) are sent with
            HTTP Basic authentication.
        **options: Keyword arguments of :class:`Connect`:

            - ``ssl``: an SSLContext for wss:// (default: ``ssl.create_default_context()``);
              ``server_hostname`` overrides the name checked against the certificate.
            - ``origin``, ``subprotocols``, ``additional_headers``, ``user_agent`` (None
              sends none): the opening handshake request.
            - ``compression``: "deflate" (default) or None.
            - ``max_message_size`` (1 MiB), ``max_frame_size``, ``max_queue`` (16),
              ``write_limit`` (32 KiB), ``max_header_size``, ``max_header_count``.
            - ``ping_interval``/``ping_timeout`` (20 s), ``open_timeout``/``close_timeout``
              (10 s); None disables one.
            - ``sock``: an already connected socket to use; ``logger``.

    Returns:
        A :class:`Connect`; awaiting it returns the open :class:`WebSocket`.

    Raises:
        InvalidURI: ``uri`` is not a valid WebSocket URI (raised at once).
        InvalidStatus: The server answered with another status than 101 (when awaited).
        InvalidHandshake: Any other handshake failure.
        OSError: The connection failed. TimeoutError: ``open_timeout`` expired.
    """
    return Connect(uri, **options)
