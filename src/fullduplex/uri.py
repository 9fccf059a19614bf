"""ws:// and wss:// URIs (RFC 6455 section 3): what a client needs to open a connection.

``parse_uri("wss://[::1]:8443/chat?room=1")`` gives ``secure=True``, ``host="::1"``,
``port=8443`` and ``resource_name="/chat?room=1"``. Anything else (another scheme, a fragment,
no host, a bad port) raises :class:`~fullduplex.exceptions.InvalidURI`.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from .exceptions import InvalidURI

__all__ = ["WebSocketURI", "parse_uri"]

_DEFAULT_PORTS = {False: 80, True: 443}

# Characters left as they are when percent-encoding the resource name: RFC 3986 reserved and
# unreserved characters, plus "%" so that an already encoded URI is not encoded twice.
_SAFE = "!#$%&'()*+,/:;=?@[]~"


@dataclass(frozen=True, slots=True)
class WebSocketURI:
    """A parsed ws:// or wss:// URI.

    Attributes:
        secure: True for wss:// (TLS).
        host: The host name or IP address, without the brackets of an IPv6 literal; host names
            are lower-case and, when not ASCII, IDNA-encoded.
        port: The TCP port (80 or 443 when the URI has none).
        resource_name: The path and query to put in the request line (RFC 6455 section 3),
            percent-encoded; "/" when the URI has no path.
        user_info: (username, password) when the URI has credentials, else None.
    """

    secure: bool
    host: str
    port: int
    resource_name: str
    user_info: tuple[str, str] | None = None

    @property
    def host_header(self) -> str:
        """The value of the Host header: the host (bracketed if IPv6) and a non-default port."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == _DEFAULT_PORTS[self.secure]:
            return host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        scheme = "wss" if self.secure else "ws"
        return f"{scheme}://{self.host_header}{self.resource_name}"


def parse_uri(uri: str) -> WebSocketURI:
    """Parse a ws:// or wss:// URI.

    Args:
        uri: The URI, e.g. ``"ws://localhost:8765/chat"`` or ``"wss://[::1]/"``.

    Returns:
        Its parts, ready to connect and build the opening handshake.

    Raises:
        InvalidURI: The scheme is not ws or wss, the URI has a fragment (RFC 6455 section 3
            forbids them), no host, an invalid port, or characters that cannot be encoded.
    """
    try:
        parsed = urllib.parse.urlsplit(uri)
    except ValueError as exc:  # e.g. an unbalanced "[" in the host
        raise InvalidURI(uri, str(exc)) from None
    scheme = parsed.scheme.lower()
    if scheme not in ("ws", "wss"):
        raise InvalidURI(uri, "scheme isn't ws or wss")
    if parsed.fragment or uri.endswith("#"):
        raise InvalidURI(uri, "a WebSocket URI may not contain a fragment")
    host = parsed.hostname
    if not host:
        raise InvalidURI(uri, "hostname is missing")
    secure = scheme == "wss"
    try:
        port = parsed.port
    except ValueError as exc:
        raise InvalidURI(uri, str(exc)) from None
    if port is None:
        if parsed.netloc.endswith(":"):
            raise InvalidURI(uri, "port is empty")
        port = _DEFAULT_PORTS[secure]
    elif port == 0:
        raise InvalidURI(uri, "port 0 cannot be connected to")

    if ":" not in host and not host.isascii():
        # An internationalized host name travels as IDNA (punycode) in DNS and in Host.
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidURI(uri, "hostname cannot be IDNA-encoded") from None

    resource_name = parsed.path or "/"
    if parsed.query:
        resource_name += "?" + parsed.query
    # Non-ASCII characters and spaces cannot go in a request line as they are.
    resource_name = urllib.parse.quote(resource_name, safe=_SAFE)

    user_info = None
    if parsed.username is not None or parsed.password is not None:
        user_info = (
            urllib.parse.unquote(parsed.username or ""),
            urllib.parse.unquote(parsed.password or ""),
        )
    return WebSocketURI(secure, host, port, resource_name, user_info)
