"""The thread-based WebSocket client: :func:`connect`.

::

    with fullduplex.sync.connect("ws://127.0.0.1:8765/chat") as ws:
        ws.send("hello")
        reply = ws.recv(timeout=5)

``ws = connect(uri).open()`` works too; the connection is then the caller's to close.

``for ws in connect(uri)`` reconnects: it yields a new connection each time the previous one
has closed, retrying failed attempts with exponential backoff, until a fatal error::

    for ws in fullduplex.sync.connect("ws://127.0.0.1:8765/feed"):
        try:
            for message in ws:
                handle(message)
        except fullduplex.ConnectionClosed:
            continue

Connections go through the proxy that ``proxy=`` names, by default the one the environment
sets (``https_proxy``, ``http_proxy``, ``all_proxy``, ``no_proxy``): see
:mod:`fullduplex.proxy`.

The opening handshake runs in the calling thread on a blocking socket, bounded as a whole by
``open_timeout``; then :class:`~fullduplex.sync.connection.WebSocket` takes the socket over.
"""

from __future__ import annotations

import logging
import socket
import ssl as ssl_module
import time
from collections.abc import Iterable, Iterator, Sequence
from types import EllipsisType, TracebackType
from typing import Any, Final

from ..client_options import handshake_options, proxy_user_agent, tls_context
from ..exceptions import InvalidMessage, InvalidProxyMessage
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
    LoggerLike,
    WebSocket,
)

__all__ = [
    "DEFAULT_BACKOFF_FACTOR",
    "DEFAULT_BACKOFF_INITIAL",
    "DEFAULT_BACKOFF_MAX",
    "Connect",
    "backoff_delays",
    "connect",
    "is_retryable",
]

_logger = logging.getLogger("fullduplex.client")

_READ_SIZE: Final = 65536


class _Deadline:
    """The time left of ``open_timeout``, for each blocking step of opening a connection."""

    __slots__ = ("_end", "_timeout")

    def __init__(self, timeout: float | None) -> None:
        self._timeout = timeout
        self._end = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        """Seconds left (None: no limit).

        Raises:
            TimeoutError: None are left.
        """
        if self._end is None:
            return None
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the connection did not open within {self._timeout} seconds")
        return left


class Connect:
    """What :func:`connect` returns: open a connection with it, or several in a row.

    * ``with connect(uri) as ws:`` opens the connection; the end of the block closes it (1000).
    * ``ws = connect(uri).open()`` opens it; closing it is then the caller's business.
    * ``for ws in connect(uri):`` yields a connection, and a new one each time the previous
      one has closed (see :meth:`__iter__`).

    Creating it does no I/O, but checks the URI and the options at once. The keyword arguments
    are described in :func:`connect`.
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
        self._uri = uri_parts = parse_uri(uri)
        # Resolved now, so that a bad proxy URL (given or from the environment) fails at once;
        # an explicit sock= is already connected and goes nowhere else.
        self._proxy: Proxy | None = None if sock is not None else get_proxy(uri_parts, proxy)
        self._proxy_user_agent = proxy_user_agent(user_agent)
        self._backoff = (backoff_initial, backoff_factor, backoff_max)
        next(backoff_delays(*self._backoff))  # validate the parameters now
        self._ssl = tls_context(uri_parts, ssl)
        self._server_hostname = server_hostname
        self._sock = sock
        self._open_timeout = open_timeout
        self._handshake_options = handshake_options(
            uri_parts,
            origin=origin,
            subprotocols=subprotocols,
            compression=compression,
            additional_headers=additional_headers,
            user_agent=user_agent,
            max_header_size=max_header_size,
            max_header_count=max_header_count,
        )
        # Build one request now: bad subprotocols or header values raise ValueError here.
        self._new_handshake().request_bytes()
        if max_queue is not None and max_queue < 1:
            raise ValueError("max_queue must be at least 1, or None")
        self._logger: LoggerLike = logger if logger is not None else _logger
        self._max_message_size = max_message_size
        self._max_frame_size = max_frame_size
        self._options: dict[str, Any] = {
            "logger": self._logger,
            "max_queue": max_queue,
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "close_timeout": close_timeout,
        }
        self._ws: WebSocket | None = None

    def _new_handshake(self) -> ClientHandshake:
        uri = self._uri
        return ClientHandshake(uri.host_header, uri.resource_name, **self._handshake_options)

    def open(self) -> WebSocket:
        """Open the connection: TCP (through the proxy, if any), TLS, the opening handshake.

        Returns:
            The open connection; close it with :meth:`WebSocket.close` (or ``with ws:``).

        Raises:
            InvalidStatus: The server answered with another status than 101.
            ProxyError: The proxy did not open the tunnel (InvalidProxyStatus: the HTTP
                proxy's status; SOCKSProxyError: the SOCKS5 proxy's refusal).
            InvalidHandshake: Any other handshake failure.
            OSError: The connection failed (ssl.SSLError: TLS failed).
            TimeoutError: ``open_timeout`` expired.
        """
        uri = self._uri
        deadline = _Deadline(self._open_timeout)
        handshake = self._new_handshake()
        sock = self._sock
        if sock is None:
            if self._proxy is not None:
                sock = _open_tunnel(self._proxy, uri, self._proxy_user_agent, deadline)
            else:
                sock = socket.create_connection((uri.host, uri.port), deadline.remaining())
        try:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                # Frames are written whole: waiting to coalesce them only adds latency.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock.settimeout(deadline.remaining())
                sock = self._ssl.wrap_socket(
                    sock, server_hostname=self._server_hostname or uri.host
                )
            sock.settimeout(deadline.remaining())
            sock.sendall(handshake.request_bytes())
            while True:
                sock.settimeout(deadline.remaining())
                data = sock.recv(_READ_SIZE)
                if not data:
                    # An error response whose body runs to the end of the stream raises here.
                    handshake.receive_eof()
                    raise InvalidMessage(
                        "the server closed the connection during the opening handshake"
                    )
                response = handshake.receive_data(data)
                if response is not None:
                    break
            conn = Connection(
                Role.CLIENT,
                deflate=handshake.deflate_extension,
                max_message_size=self._max_message_size,
                max_frame_size=self._max_frame_size,
                logger=self._logger,
            )
            return WebSocket(
                sock,
                conn,
                request=handshake.request,
                response=response,
                subprotocol=handshake.subprotocol,
                trailing_data=handshake.trailing_data,
                **self._options,
            )
        except BaseException:
            sock.close()
            raise

    def __enter__(self) -> WebSocket:
        """Open the connection (see :meth:`open`)."""
        self._ws = self.open()
        return self._ws

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the connection (1000) and wait until it is closed."""
        if self._ws is not None:
            ws, self._ws = self._ws, None
            ws.close()

    def __iter__(self) -> Iterator[WebSocket]:
        """``for ws in connect(uri)``: a new open connection each time the last one closed.

        The first attempt starts at once. Each later attempt waits a random delay from
        :func:`backoff_delays` (``backoff_initial``, ``backoff_factor``, ``backoff_max``):
        its bound starts at ``backoff_initial`` after a connection that was open, also after
        a clean close, so that clients dropped together by a restarting server come back
        spread out, and grows with each consecutive failed attempt. Failures that
        :func:`is_retryable` accepts are logged (INFO) and retried; any other is raised and
        ends the iteration.

        When the loop body moves on (after catching ConnectionClosed, or with ``continue``
        while the connection is still open), the connection is closed (1000) before the next
        one opens; leaving the loop (``break``, an exception) closes it too, when the iterator
        is finalized.

        Raises:
            ValueError: ``sock=`` was given: a socket cannot be connected twice.
            InvalidHandshake, OSError...: A failure that is not worth retrying.
        """
        if self._sock is not None:
            raise ValueError("cannot reconnect with sock=: iterate without it")
        logger = self._logger
        schedule = Reconnection(self._backoff, self._uri, logger)
        while True:
            if schedule.delay:
                time.sleep(schedule.delay)
            try:
                ws = self.open()
            except Exception as exc:
                schedule.failed(exc)  # raises exc when it is not worth retrying
                continue
            try:
                yield ws
            finally:
                ws.close()
            schedule.reconnecting()


def connect(uri: str, **options: Any) -> Connect:
    """Prepare a WebSocket connection to ``uri``: use the result with ``with`` or ``for``.

    ``with connect(uri) as ws`` opens one connection and closes it at the end of the block;
    ``connect(uri).open()`` opens one; ``for ws in connect(uri)`` reconnects until a fatal
    error (see :meth:`Connect.__iter__`).

    Args:
        uri: A ws:// or wss:// URI. Credentials in it (``ws://user:pass@host/``) are sent with
            HTTP Basic authentication.
        **options: Keyword arguments of :class:`Connect`:

            - ``ssl``: an SSLContext for wss:// (default: ``ssl.create_default_context()``);
              ``server_hostname`` overrides the name checked against the certificate.
            - ``origin``, ``subprotocols``, ``additional_headers``, ``user_agent`` (None
              sends none): the opening handshake request.
            - ``compression``: "deflate" (default) or None.
            - ``max_message_size`` (1 MiB), ``max_frame_size``, ``max_queue`` (16 messages
              waiting for recv() before the reader stops reading), ``max_header_size``,
              ``max_header_count``.
            - ``ping_interval``/``ping_timeout`` (20 s), ``open_timeout``/``close_timeout``
              (10 s); None disables one. ``open_timeout`` bounds TCP, proxy, TLS and the
              opening handshake together.
            - ``sock``: an already connected socket to use; ``logger``.
            - ``proxy``: True (default) to take the proxy from the environment
              (``wss_proxy``/``https_proxy`` for wss://, ``ws_proxy``/``http_proxy`` for
              ws://, then ``all_proxy``; ``no_proxy`` honoured), a URL
              (``http://[user:pass@]host:port``, ``socks5://...``, or ``socks5h://...`` to
              let the proxy resolve the server's name), or None for a direct connection.
              See :mod:`fullduplex.proxy`.
            - ``backoff_initial`` (1 s), ``backoff_factor`` (2), ``backoff_max`` (60 s): the
              delays between attempts of ``for ws in connect(...)``.

    Returns:
        A :class:`Connect`.

    Raises:
        InvalidURI: ``uri`` is not a valid WebSocket URI (raised at once).
        ValueError: An invalid option, such as a proxy URL (raised at once).
        InvalidStatus: The server answered with another status than 101 (when opening).
        ProxyError: The proxy did not open the tunnel (when opening).
        InvalidHandshake: Any other handshake failure.
        OSError: The connection failed. TimeoutError: ``open_timeout`` expired.
    """
    return Connect(uri, **options)


def _open_tunnel(
    proxy: Proxy, uri: WebSocketURI, user_agent: str | None, deadline: _Deadline
) -> socket.socket:
    """Connect to ``proxy`` and have it open a tunnel to ``uri``'s host; return the socket.

    The socket carries the tunnel: TLS and the opening handshake follow on it. Raises what
    :mod:`fullduplex.proxy` documents, and OSError for the proxy itself.
    """
    sock = socket.create_connection((proxy.host, proxy.port), deadline.remaining())
    try:
        host = uri.host
        if not proxy.remote_dns:
            # socks5 (not socks5h): the proxy wants an address; use the first the resolver
            # gives, as a direct connection would try first.
            infos = socket.getaddrinfo(host, uri.port, type=socket.SOCK_STREAM)
            host = str(infos[0][4][0])
        tunnel = proxy.handshake(host, uri.port, user_agent=user_agent)
        while True:
            data = tunnel.data_to_send()
            if data:
                sock.settimeout(deadline.remaining())
                sock.sendall(data)
            sock.settimeout(deadline.remaining())
            data = sock.recv(4096)
            if not data:
                tunnel.receive_eof()  # raises: the tunnel is not open yet
                raise InvalidProxyMessage("the proxy closed the connection")
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
