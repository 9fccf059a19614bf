"""The asyncio WebSocket client: :func:`connect` and the client-side connection.

::

    async with fullduplex.connect("ws://127.0.0.1:8765/chat") as ws:
        await ws.send("hello")
        reply = await ws.recv()

``await connect(uri)`` works too; the connection is then the caller's to close.

``async for ws in connect(uri)`` reconnects: it yields a new connection each time the previous
one has closed, retrying failed attempts with exponential backoff, until a fatal error::

    async for ws in fullduplex.connect("ws://127.0.0.1:8765/feed"):
        try:
            async for message in ws:
                handle(message)
        except fullduplex.ConnectionClosed:
            continue

Connections go through the proxy that ``proxy=`` names, by default the one the environment
sets (``https_proxy``, ``http_proxy``, ``all_proxy``, ``no_proxy``): see
:mod:`fullduplex.proxy`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl as ssl_module
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Sequence
from types import EllipsisType, TracebackType
from typing import Any, cast

from ..client_options import handshake_options, proxy_user_agent, tls_context
from ..exceptions import InvalidHandshake, InvalidMessage, InvalidProxyMessage
from ..protocol.connection import Connection, Role
from ..protocol.handshake import ClientHandshake
from ..proxy import Proxy, get_proxy
from ..retry import (
    DEFAULT_BACKOFF_FACTOR,
    DEFAULT_BACKOFF_INITIAL,
    DEFAULT_BACKOFF_MAX,
    Reconnection,
    backoff_delays,
    is_retryable,
)
from ..uri import WebSocketURI, parse_uri
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

__all__ = [
    "DEFAULT_BACKOFF_FACTOR",
    "DEFAULT_BACKOFF_INITIAL",
    "DEFAULT_BACKOFF_MAX",
    "ClientWebSocket",
    "Connect",
    "backoff_delays",
    "connect",
    "is_retryable",
]

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
    """What :func:`connect` returns: await it for a connection, use it with ``async with``, or
    iterate over it with ``async for`` to reconnect (see :meth:`__aiter__`).

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
        proxy: str | bool | None = True,
        backoff_initial: float = DEFAULT_BACKOFF_INITIAL,
        backoff_factor: float = DEFAULT_BACKOFF_FACTOR,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
        logger: LoggerLike | None = None,
    ) -> None:
        self._uri = parse_uri(uri)
        # Resolved now, so that a bad proxy URL (given or from the environment) fails at once;
        # an explicit sock= is already connected and goes nowhere else.
        self._proxy: Proxy | None = None if sock is not None else get_proxy(self._uri, proxy)
        self._proxy_user_agent = proxy_user_agent(user_agent)
        self._backoff = (backoff_initial, backoff_factor, backoff_max)
        next(backoff_delays(*self._backoff))  # validate the parameters now
        self._ssl = tls_context(self._uri, ssl)
        self._server_hostname = server_hostname
        self._sock = sock
        self._open_timeout = open_timeout
        self._handshake_options = handshake_options(
            self._uri,
            origin=origin,
            subprotocols=subprotocols,
            compression=compression,
            additional_headers=additional_headers,
            user_agent=user_agent,
            max_header_size=max_header_size,
            max_header_count=max_header_count,
        )
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
        tunnel: socket.socket | None = None
        try:
            async with asyncio.timeout(self._open_timeout):
                if self._proxy is not None:
                    tunnel = await _open_tunnel(self._proxy, uri, self._proxy_user_agent)
                    kwargs["sock"] = tunnel
                    del kwargs["host"], kwargs["port"]
                # WebSocket is an asyncio protocol by its methods, not by its base class.
                factory = cast(
                    "Callable[[], asyncio.Protocol]",
                    lambda: ClientWebSocket(handshake, **self._options),
                )
                _, protocol = await loop.create_connection(factory, **kwargs)
                ws = cast(ClientWebSocket, protocol)
                await ws._handshake_waiter
        except BaseException:
            if ws is not None and ws._transport is not None and not ws._lost:
                ws._transport.abort()
            elif ws is None and tunnel is not None:
                # create_connection closes (asyncio) or detaches (uvloop) a socket it took
                # over, which makes this a no-op; it matters only if it failed before that.
                tunnel.close()
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

    async def __aiter__(self) -> AsyncIterator[WebSocket]:
        """``async for ws in connect(uri)``: a new open connection each time the last one closed.

        The first attempt starts at once. Every later one waits a random delay drawn by
        :func:`backoff_delays` (``backoff_initial``, ``backoff_factor``, ``backoff_max``):
        at most ``backoff_initial`` after a connection that was open (even one that closed
        normally: clients dropped together by a restarting server come back spread out, and
        a server that accepts and closes at once is not hammered), then a bound that grows
        with each consecutive failed attempt. Failures that :func:`is_retryable` accepts are
        logged (INFO) and retried; any other is raised and ends the iteration.

        When the loop body moves on (after catching ConnectionClosed, or with ``continue``
        while the connection is still open), the connection is closed (1000) before the next
        one opens; leaving the loop (``break``, an exception) closes it too, when the
        iterator is finalized.

        Raises:
            ValueError: ``sock=`` was given: a socket cannot be connected twice.
            InvalidHandshake, OSError...: A failure that is not worth retrying.
        """
        if self._sock is not None:
            raise ValueError("cannot reconnect with sock=: iterate without it")
        logger = self._options["logger"]
        schedule = Reconnection(self._backoff, self._uri, logger)
        while True:
            if schedule.delay:
                await asyncio.sleep(schedule.delay)
            try:
                ws = await self._connect()
            except Exception as exc:
                schedule.failed(exc)  # raises exc when it is not worth retrying
                continue
            try:
                yield ws
            finally:
                await ws.close()
            schedule.reconnecting()


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
            - ``proxy``: True (default) to take the proxy from the environment
              (``wss_proxy``/``https_proxy`` for wss://, ``ws_proxy``/``http_proxy`` for
              ws://, then ``all_proxy``; ``no_proxy`` honoured), a URL
              (``http://[user:pass@]host:port``, ``socks5://...``, or ``socks5h://...`` to
              let the proxy resolve the server's name), or None for a direct connection.
              See :mod:`fullduplex.proxy`.
            - ``backoff_initial`` (1 s), ``backoff_factor`` (2), ``backoff_max`` (60 s): the
              delays between attempts of ``async for ws in connect(...)``; see
              :meth:`Connect.__aiter__`.

    Returns:
        A :class:`Connect`; awaiting it returns the open :class:`WebSocket`; ``async for``
        over it yields a connection, and a new one each time the previous one closed.

    Raises:
        InvalidURI: ``uri`` is not a valid WebSocket URI (raised at once).
        ValueError: An invalid option, such as a proxy URL (raised at once).
        InvalidStatus: The server answered with another status than 101 (when awaited).
        ProxyError: The proxy did not open the tunnel (when opening).
        InvalidHandshake: Any other handshake failure.
        OSError: The connection failed. TimeoutError: ``open_timeout`` expired.
    """
    return Connect(uri, **options)


async def _open_socket(loop: asyncio.AbstractEventLoop, host: str, port: int) -> socket.socket:
    """Return a non-blocking TCP socket connected to ``host:port`` (each address in turn)."""
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    errors: list[OSError] = []
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            errors.append(exc)
        except BaseException:
            sock.close()
            raise
        else:
            return sock
    if len(errors) == 1:
        raise errors[0]
    raise OSError(f"cannot connect to {host}:{port}: " + "; ".join(map(str, errors)))


async def _open_tunnel(proxy: Proxy, uri: WebSocketURI, user_agent: str | None) -> socket.socket:
    """Connect to ``proxy`` and have it open a tunnel to ``uri``'s host; return the socket.

    The socket is non-blocking and carries the tunnel: TLS and the opening handshake follow on
    it. Raises what :mod:`fullduplex.proxy` documents, and OSError for the proxy itself.
    """
    loop = asyncio.get_running_loop()
    sock = await _open_socket(loop, proxy.host, proxy.port)
    try:
        host = uri.host
        if not proxy.remote_dns:
            # socks5 (not socks5h): the proxy wants an address; use the first the resolver
            # gives, as a direct connection would try first.
            infos = await loop.getaddrinfo(host, uri.port, type=socket.SOCK_STREAM)
            host = str(infos[0][4][0])
        tunnel = proxy.handshake(host, uri.port, user_agent=user_agent)
        while True:
            data = tunnel.data_to_send()
            if data:
                await loop.sock_sendall(sock, data)
            data = await loop.sock_recv(sock, 4096)
            if not data:
                tunnel.receive_eof()  # raises: the tunnel is not open yet
            if tunnel.receive_data(data):
                break
        if tunnel.trailing_data:
            raise InvalidProxyMessage(
                "the proxy sent data before the client spoke through the tunnel"
            )
    except BaseException:
        sock.close()
        raise
    return sock
