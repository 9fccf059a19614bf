"""Client proxies, sans-I/O: which proxy to use, and the tunnel handshakes through it.

Two kinds of proxy carry a WebSocket connection: an HTTP proxy, asked with ``CONNECT
host:port`` (RFC 9110 section 9.3.6, optionally with Basic credentials), and a SOCKS5 proxy
(RFC 1928, with no authentication or with a username and password, RFC 1929). Either gives a
byte tunnel to the server; TLS (for wss://) and the WebSocket handshake then run through it.

This module does no I/O, so every client (asyncio or threads) drives it the same way::

    proxy = get_proxy(uri, option)                 # a Proxy, or None for a direct connection
    if proxy is not None:
        sock = <connect to (proxy.host, proxy.port)>
        host = uri.host if proxy.remote_dns else <an IP address of uri.host>
        tunnel = proxy.handshake(host, uri.port)
        send(tunnel.data_to_send())
        while not tunnel.receive_data(data := recv()):   # on EOF: tunnel.receive_eof() raises
            send(tunnel.data_to_send())
        # The tunnel is open: start TLS and/or the opening handshake on the same socket.

Errors a tunnel handshake raises are all :class:`~fullduplex.exceptions.ProxyError`, and what
they mean to a client that reconnects (:func:`fullduplex.retry.is_retryable`):

* :class:`~fullduplex.exceptions.InvalidProxyStatus`: the HTTP proxy answered CONNECT with
  another status than 2xx (407: credentials missing or wrong; 403: forbidden; 502/503/504: it
  could not reach the server). Same rule as for the server's own status: 5xx is worth a retry,
  4xx is not.
* :class:`~fullduplex.exceptions.SOCKSProxyError`: the SOCKS5 proxy refused. Its ``reply``
  code says why: it could not reach the server (1, 3, 4, 5, 6: retried, as a direct
  connection that failed the same way would be), or a retry does not change the answer
  (2, 7, 8, and None for failed authentication).
* :class:`~fullduplex.exceptions.InvalidProxyMessage`: the proxy's reply is not valid HTTP or
  SOCKS5, or the proxy closed the connection before granting the tunnel (retried).
"""

from __future__ import annotations

import base64
import ipaddress
import urllib.parse
from dataclasses import dataclass, field
from typing import Final, Protocol

import h11

from .exceptions import InvalidProxyMessage, InvalidProxyStatus, SOCKSProxyError
from .protocol.handshake import USER_AGENT
from .uri import WebSocketURI

__all__ = [
    "HTTPConnectHandshake",
    "Proxy",
    "SOCKS5Handshake",
    "TunnelHandshake",
    "get_proxy",
    "parse_proxy",
]

_DEFAULT_PORTS: Final = {"http": 80, "socks5": 1080, "socks5h": 1080}

# Environment keys (from <key>_proxy variables) tried in order, for ws:// and wss://. ws_proxy
# and wss_proxy let a user single out WebSocket traffic; curl and websockets honour them too.
_ENVIRONMENT_KEYS: Final = {False: ("ws", "http", "all"), True: ("wss", "https", "all")}


@dataclass(frozen=True, slots=True)
class Proxy:
    """A proxy to tunnel a connection through.

    Attributes:
        scheme: "http" (HTTP CONNECT), "socks5" (SOCKS5; the client resolves the server's name)
            or "socks5h" (SOCKS5; the proxy resolves it).
        host: The proxy's host name or IP address (no brackets around IPv6).
        port: The proxy's TCP port.
        username: The user name to authenticate with, or None.
        password: The password (not shown in ``repr``), or None.
    """

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def remote_dns(self) -> bool:
        """True if the proxy is given the server's host name; False if it needs an IP address.

        Only "socks5" is False: resolve the name first and pass an address to
        :meth:`handshake`.
        """
        return self.scheme != "socks5"

    def handshake(
        self, host: str, port: int, *, user_agent: str | None = USER_AGENT
    ) -> TunnelHandshake:
        """Return a new handshake that asks this proxy for a tunnel to ``host:port``.

        Args:
            host: The server's host name or IP address (an IP address when
                :attr:`remote_dns` is False).
            port: The server's port.
            user_agent: The User-Agent of an HTTP CONNECT request (None sends none).

        Returns:
            An :class:`HTTPConnectHandshake` or a :class:`SOCKS5Handshake`.

        Raises:
            ValueError: The host name or the credentials are too long for SOCKS5.
        """
        credentials = None
        if self.username is not None or self.password is not None:
            credentials = (self.username or "", self.password or "")
        if self.scheme == "http":
            return HTTPConnectHandshake(host, port, credentials=credentials, user_agent=user_agent)
        return SOCKS5Handshake(host, port, credentials=credentials)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = "" if self.username is None else urllib.parse.quote(self.username, safe="") + "@"
        return f"{self.scheme}://{user}{host}:{self.port}"


def parse_proxy(url: str) -> Proxy:
    """Parse a proxy URL such as ``http://user:pass@proxy:3128`` or ``socks5h://127.0.0.1:1080``.

    A URL without a scheme (``proxy:3128``, as environment variables often hold) is an HTTP
    proxy. Credentials are percent-decoded. Default ports: 80 for http, 1080 for SOCKS.

    Args:
        url: The proxy URL.

    Returns:
        The proxy.

    Raises:
        ValueError: The scheme is not http, socks5 or socks5h (https proxies, i.e. TLS to
            the proxy itself, and SOCKS4 are not supported), or the host or port is invalid.
    """
    if "://" not in url:
        url = "http://" + url
    try:
        parsed = urllib.parse.urlsplit(url)
        port = parsed.port
    except ValueError as exc:
        raise ValueError(f"invalid proxy URL {url!r}: {exc}") from None
    scheme = parsed.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(
            f"unsupported proxy URL {url!r}: the scheme must be http, socks5 or socks5h"
        )
    if not parsed.hostname:
        raise ValueError(f"invalid proxy URL {url!r}: the host is missing")
    if port == 0:
        raise ValueError(f"invalid proxy URL {url!r}: port 0")
    username = password = None
    if parsed.username is not None or parsed.password is not None:
        username = urllib.parse.unquote(parsed.username or "")
        password = urllib.parse.unquote(parsed.password or "")
    return Proxy(
        scheme,
        parsed.hostname,
        port if port is not None else _DEFAULT_PORTS[scheme],
        username,
        password,
    )


def get_proxy(uri: WebSocketURI, proxy: str | bool | None = True) -> Proxy | None:
    """Choose the proxy for a connection to ``uri``: the ``proxy`` option of the clients.

    With ``proxy=True`` the environment decides, as :func:`urllib.request.getproxies` and
    :func:`urllib.request.proxy_bypass` read it (lower-case names first): for wss:// the first
    of ``wss_proxy``, ``https_proxy``, ``all_proxy``; for ws:// the first of ``ws_proxy``,
    ``http_proxy``, ``all_proxy``; no proxy for a host that ``no_proxy`` lists (host names
    match their subdomains, ``*`` matches everything, ``host:port`` one port).

    Args:
        uri: Where the client connects.
        proxy: True: from the environment (the default); a URL: that proxy (see
            :func:`parse_proxy`); None or False: connect directly.

    Returns:
        The proxy to use, or None to connect directly.

    Raises:
        ValueError: The proxy URL (given or from the environment) is invalid or unsupported.
    """
    if proxy is None or proxy is False:
        return None
    if isinstance(proxy, str):
        return parse_proxy(proxy)
    # Imported here: urllib.request imports socket, ssl and http.client, which this sans-I/O
    # module otherwise does without; only the environment lookup needs it.
    import urllib.request  # noqa: PLC0415

    # IPv6 hosts stay unbracketed: proxy_bypass splits the port off at the last colon and
    # compares the rest with the no_proxy entries, which name IPv6 hosts without brackets.
    if urllib.request.proxy_bypass(f"{uri.host}:{uri.port}"):
        return None
    proxies = urllib.request.getproxies()
    for key in _ENVIRONMENT_KEYS[uri.secure]:
        url = proxies.get(key)
        if url:
            try:
                return parse_proxy(url)
            except ValueError as exc:
                raise ValueError(f"{exc} (from the {key}_proxy environment variable)") from None
    return None


class TunnelHandshake(Protocol):
    """What :meth:`Proxy.handshake` returns: a sans-I/O handshake that opens a tunnel.

    Attributes:
        trailing_data: Bytes the proxy sent after its final reply. Neither a TLS server nor a
            WebSocket server speaks first, so anything here is an error for those clients.
    """

    trailing_data: bytes

    def data_to_send(self) -> bytes:
        """Return the bytes to write to the proxy now (b"" if none), and forget them.

        Call it first, and after every :meth:`receive_data` that returned False.
        """
        ...

    def receive_data(self, data: bytes) -> bool:
        """Receive bytes from the proxy.

        After calling this method, if it returned False, write :meth:`data_to_send` and read
        more; if it returned True, the tunnel is open.

        Returns:
            True once the proxy has granted the tunnel (then every later call returns True
            and only adds to :attr:`trailing_data`).

        Raises:
            ProxyError: see the module docstring.
        """
        ...

    def receive_eof(self) -> None:
        """Receive the end of the stream from the proxy.

        Raises:
            InvalidProxyMessage: The tunnel was not open yet (it does nothing once it is).
        """
        ...


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class HTTPConnectHandshake:
    """An HTTP CONNECT request to a proxy and its response, on h11 (implements TunnelHandshake).

    Args:
        host: The server's host name or IP address.
        port: The server's port.
        credentials: (username, password) for ``Proxy-Authorization: Basic``, or None.
        user_agent: The User-Agent header (None sends none).
        max_header_size: The most bytes the response head may take.
        max_body_size: The most bytes of an error response's body kept for InvalidProxyStatus.
    """

    __slots__ = (
        "_body",
        "_done",
        "_h11",
        "_rejection",
        "_to_send",
        "max_body_size",
        "trailing_data",
    )

    def __init__(
        self,
        host: str,
        port: int,
        *,
        credentials: tuple[str, str] | None = None,
        user_agent: str | None = USER_AGENT,
        max_header_size: int = 16384,
        max_body_size: int = 65536,
    ) -> None:
        authority = _authority(host, port)
        headers = [("Host", authority)]
        if credentials is not None:
            token = base64.b64encode(":".join(credentials).encode()).decode("ascii")
            headers.append(("Proxy-Authorization", "Basic " + token))
        if user_agent is not None:
            headers.append(("User-Agent", user_agent))
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_header_size)
        try:
            self._to_send = self._h11.send(
                h11.Request(method="CONNECT", target=authority, headers=headers)
            )
        except h11.LocalProtocolError as exc:
            raise ValueError(f"invalid CONNECT request: {exc}") from exc
        # CONNECT has no body; ending the message puts h11 in MIGHT_SWITCH_PROTOCOL, so that a
        # 2xx response switches it to the tunnel instead of reading a body.
        self._to_send += self._h11.send(h11.EndOfMessage()) or b""
        self.max_body_size = max_body_size
        self._rejection: h11.Response | None = None
        self._body = bytearray()
        self._done = False
        self.trailing_data = b""

    def data_to_send(self) -> bytes:
        """Return the CONNECT request the first time, then b"" (see TunnelHandshake)."""
        data, self._to_send = self._to_send, b""
        return data

    def receive_data(self, data: bytes) -> bool:
        """Receive bytes of the proxy's response (see :meth:`TunnelHandshake.receive_data`).

        Raises:
            InvalidProxyStatus: The status is not 2xx; raised once the body is complete, at
                most ``max_body_size`` bytes of it, or at once when the body runs to the end
                of the stream.
            InvalidProxyMessage: The response is not valid HTTP/1.1 or its head is too large.
        """
        if self._done:
            self.trailing_data += data
            return True
        if not data:  # h11 would take b"" for the end of the stream
            return False
        self._h11.receive_data(data)
        return self._process()

    def receive_eof(self) -> None:
        """Receive the end of the stream (see :meth:`TunnelHandshake.receive_eof`).

        Raises:
            InvalidProxyStatus: An error response's body was cut short by the end of the
                stream.
            InvalidProxyMessage: The response was not complete.
        """
        if self._done:
            return
        if self._rejection is not None:
            raise self._invalid_status()
        raise InvalidProxyMessage("the proxy closed the connection before answering CONNECT")

    def _process(self) -> bool:
        conn = self._h11
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise InvalidProxyMessage(f"invalid HTTP response from the proxy: {exc}") from exc
            if event is h11.NEED_DATA:
                rejection = self._rejection
                if rejection is not None and not any(
                    name in (b"content-length", b"transfer-encoding")
                    for name, _ in rejection.headers
                ):
                    # A body delimited by the end of the connection: report the status now
                    # rather than wait for a proxy that may keep the connection open.
                    raise self._invalid_status()
                return False
            if event is h11.PAUSED:
                # h11 pauses after the 2xx answer to CONNECT: the rest is the tunnel.
                self._done = True
                self.trailing_data = conn.trailing_data[0]
                return True
            if isinstance(event, h11.InformationalResponse):
                continue  # 100 Continue and the like: the final response follows
            if isinstance(event, h11.Response):
                if 200 <= event.status_code < 300:
                    continue  # next_event() returns PAUSED
                self._rejection = event
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) >= self.max_body_size:
                    raise self._invalid_status()
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                raise self._invalid_status()
            else:  # pragma: no cover - h11 yields nothing else to a client
                raise InvalidProxyMessage(f"unexpected HTTP event from the proxy: {event!r}")

    def _invalid_status(self) -> InvalidProxyStatus:
        rejection = self._rejection
        assert rejection is not None
        headers = [
            (name.decode("ascii"), value.decode("latin-1"))
            for name, value in rejection.headers.raw_items()
        ]
        return InvalidProxyStatus(
            rejection.status_code, headers, bytes(self._body[: self.max_body_size])
        )


# RFC 1928 section 3 and 6, RFC 1929 section 2.
_SOCKS_VERSION: Final = 5
_NO_AUTHENTICATION: Final = 0
_USERNAME_PASSWORD: Final = 2
_NO_ACCEPTABLE_METHODS: Final = 0xFF
_CONNECT: Final = 1
_IPV4: Final = 1
_DOMAIN_NAME: Final = 3
_IPV6: Final = 4
_REPLY_ADDRESS_SIZES: Final = {_IPV4: 4, _IPV6: 16}

# Reply codes, RFC 1928 section 6.
_SOCKS_REPLIES: Final = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}

# Where a SOCKS5Handshake is.
_METHOD: Final = 0  # greeting sent, waiting for the chosen method
_AUTHENTICATION: Final = 1  # username/password sent, waiting for the verdict
_REQUEST: Final = 2  # CONNECT sent, waiting for the reply
_OPEN: Final = 3


class SOCKS5Handshake:
    """A SOCKS5 CONNECT (RFC 1928), with optional username/password authentication (RFC 1929).

    Implements :class:`TunnelHandshake`. The greeting offers "no authentication" and, when
    credentials are given, "username/password"; the proxy chooses. Replies may arrive in any
    pieces.

    Args:
        host: The server: an IPv4 or IPv6 address (sent as such) or a host name (sent for the
            proxy to resolve; at most 255 bytes once IDNA-encoded).
        port: The server's port.
        credentials: (username, password), each at most 255 bytes in UTF-8, or None.

    Raises:
        ValueError: The host name or a credential is too long, or the port is out of range.
    """

    __slots__ = ("_buffer", "_credentials", "_request", "_state", "_to_send", "trailing_data")

    def __init__(self, host: str, port: int, *, credentials: tuple[str, str] | None = None) -> None:
        if not 0 < port < 65536:
            raise ValueError(f"invalid port: {port}")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            try:
                # URIs already hold ASCII (IDNA) names; others get the codec's checks.
                name = host.encode("ascii") if host.isascii() else host.encode("idna")
            except UnicodeError:
                raise ValueError(f"invalid host name: {host!r}") from None
            if len(name) > 255:
                raise ValueError("host name too long for SOCKS5 (255 bytes at most)") from None
            destination = bytes([_DOMAIN_NAME, len(name)]) + name
        else:
            kind = _IPV4 if address.version == 4 else _IPV6
            destination = bytes([kind]) + address.packed
        self._request = bytes([_SOCKS_VERSION, _CONNECT, 0]) + destination + port.to_bytes(2, "big")
        methods = [_NO_AUTHENTICATION]
        self._credentials: tuple[bytes, bytes] | None = None
        if credentials is not None:
            username, password = (part.encode() for part in credentials)
            if not 0 < len(username) <= 255 or len(password) > 255:
                raise ValueError("SOCKS5 user names take 1 to 255 bytes, passwords at most 255")
            self._credentials = (username, password)
            methods.append(_USERNAME_PASSWORD)
        self._to_send = bytes([_SOCKS_VERSION, len(methods), *methods])
        self._state = _METHOD
        self._buffer = b""
        self.trailing_data = b""

    def data_to_send(self) -> bytes:
        """Return the next message for the proxy, or b"" (see TunnelHandshake)."""
        data, self._to_send = self._to_send, b""
        return data

    def receive_data(self, data: bytes) -> bool:
        """Receive bytes of the proxy's replies (see :meth:`TunnelHandshake.receive_data`).

        Raises:
            InvalidProxyMessage: A reply is not SOCKS5, or chooses a method that was not
                offered.
            SOCKSProxyError: The proxy refused (``reply``: its reply code), or accepts none
                of the offered authentication methods or rejects the credentials (``reply``
                None).
        """
        if self._state == _OPEN:
            self.trailing_data += data
            return True
        self._buffer += data
        while self._state != _OPEN:
            size = self._reply_size()
            if size is None or len(self._buffer) < size:
                return False
            reply, self._buffer = self._buffer[:size], self._buffer[size:]
            self._handle(reply)
        self.trailing_data, self._buffer = self._buffer, b""
        return True

    def receive_eof(self) -> None:
        """Receive the end of the stream (see :meth:`TunnelHandshake.receive_eof`).

        Raises:
            InvalidProxyMessage: The tunnel was not open yet.
        """
        if self._state != _OPEN:
            raise InvalidProxyMessage("the SOCKS5 proxy closed the connection before granting it")

    def _reply_size(self) -> int | None:
        """The size of the reply being received, or None until enough of it is known."""
        if self._state != _REQUEST:
            return 2  # method selection and authentication verdict: two bytes each
        buffer = self._buffer
        if len(buffer) < 5:
            return None
        kind = buffer[3]
        if kind == _DOMAIN_NAME:
            return 7 + buffer[4]  # VER REP RSV ATYP LEN NAME PORT
        if kind in _REPLY_ADDRESS_SIZES:
            return 6 + _REPLY_ADDRESS_SIZES[kind]
        if buffer[0] != _SOCKS_VERSION:
            raise InvalidProxyMessage(f"not a SOCKS5 reply: version {buffer[0]}")
        raise InvalidProxyMessage(f"invalid address type in the SOCKS5 reply: {kind}")

    def _handle(self, reply: bytes) -> None:
        if self._state == _METHOD:
            if reply[0] != _SOCKS_VERSION:
                raise InvalidProxyMessage(
                    f"not a SOCKS5 proxy: it answered with version {reply[0]}"
                )
            method = reply[1]
            if method == _NO_AUTHENTICATION:
                self._send_request()
            elif method == _USERNAME_PASSWORD and self._credentials is not None:
                username, password = self._credentials
                # RFC 1929 section 2: VER=1 ULEN UNAME PLEN PASSWD.
                self._to_send = (
                    bytes([1, len(username)]) + username + bytes([len(password)]) + password
                )
                self._state = _AUTHENTICATION
            elif method == _NO_ACCEPTABLE_METHODS:
                offered = "username/password" if self._credentials else "no authentication"
                raise SOCKSProxyError(
                    f"the SOCKS5 proxy accepts none of the offered methods ({offered})"
                )
            else:
                raise InvalidProxyMessage(f"the SOCKS5 proxy chose a method not offered: {method}")
        elif self._state == _AUTHENTICATION:
            # RFC 1929 says version 1; some proxies answer 5. Only the status matters.
            if reply[1] != 0:
                raise SOCKSProxyError("the SOCKS5 proxy rejected the username and password")
            self._send_request()
        else:
            if reply[0] != _SOCKS_VERSION:
                raise InvalidProxyMessage(f"not a SOCKS5 reply: version {reply[0]}")
            code = reply[1]
            if code == 0:
                self._state = _OPEN
            elif code in _SOCKS_REPLIES:
                raise SOCKSProxyError(f"the SOCKS5 proxy refused: {_SOCKS_REPLIES[code]}", code)
            else:
                raise InvalidProxyMessage(f"invalid SOCKS5 reply code: {code}")

    def _send_request(self) -> None:
        self._to_send = self._request
        self._state = _REQUEST
