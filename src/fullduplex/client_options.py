"""Client options both clients (asyncio and threads) read the same way; no I/O here.

From the URI and the keyword arguments of ``connect()``: the TLS context
(:func:`tls_context`), the arguments of the opening handshake, including HTTP Basic
credentials taken from the URI (:func:`handshake_options`), and the User-Agent a proxy is
sent (:func:`proxy_user_agent`).
"""

from __future__ import annotations

import base64
import ssl as ssl_module
from collections.abc import Iterable, Sequence
from types import EllipsisType
from typing import Any

from .protocol.deflate import deflate_options
from .protocol.handshake import USER_AGENT
from .uri import WebSocketURI

__all__ = ["basic_authorization", "handshake_options", "proxy_user_agent", "tls_context"]


def basic_authorization(user_info: tuple[str, str]) -> str:
    """Return the value of an ``Authorization`` header for HTTP Basic (RFC 7617).

    Args:
        user_info: (username, password), as :attr:`WebSocketURI.user_info` holds them.
    """
    credentials = ":".join(user_info).encode()
    return "Basic " + base64.b64encode(credentials).decode("ascii")


def handshake_options(
    uri: WebSocketURI,
    *,
    origin: str | None,
    subprotocols: Sequence[str] | None,
    compression: str | None,
    additional_headers: Iterable[tuple[str, str]],
    user_agent: str | EllipsisType | None,
    max_header_size: int,
    max_header_count: int,
) -> dict[str, Any]:
    """Return the keyword arguments of :class:`~fullduplex.protocol.handshake.ClientHandshake`.

    Credentials in the URI (``ws://user:pass@host/``) add an ``Authorization: Basic`` header,
    unless ``additional_headers`` has an Authorization header already.

    Args:
        uri: Where the client connects.
        origin, subprotocols, additional_headers, max_header_size, max_header_count: As for
            ``connect()``.
        compression: "deflate" or None (see :func:`~fullduplex.protocol.deflate.deflate_options`).
        user_agent: The User-Agent header; None sends none; ``...`` keeps the default.

    Raises:
        ValueError: ``compression`` is not a supported value.
    """
    headers = list(additional_headers)
    if uri.user_info is not None and not any(
        name.lower() == "authorization" for name, _ in headers
    ):
        headers.append(("Authorization", basic_authorization(uri.user_info)))
    options: dict[str, Any] = {
        "origin": origin,
        "subprotocols": subprotocols,
        "deflate": deflate_options(compression),
        "extra_headers": headers,
        "max_header_size": max_header_size,
        "max_header_count": max_header_count,
    }
    if user_agent is not ...:
        options["user_agent"] = user_agent
    return options


def proxy_user_agent(user_agent: str | EllipsisType | None) -> str | None:
    """The User-Agent of an HTTP CONNECT request: the client's own (``...``: the default)."""
    return user_agent if isinstance(user_agent, str | None) else USER_AGENT


def tls_context(
    uri: WebSocketURI, ssl: ssl_module.SSLContext | bool | None
) -> ssl_module.SSLContext | None:
    """Return the TLS context of a connection to ``uri``, or None for plain TCP.

    Args:
        uri: Where the client connects.
        ssl: The ``ssl=`` option: an SSLContext, or True/None for a default one with wss://
            (``ssl.create_default_context()``, which verifies the certificate); False
            connects without TLS whatever the scheme.

    Raises:
        ValueError: ``ssl`` was given for a ws:// URI.
    """
    if ssl and not uri.secure:
        raise ValueError("ssl= was given for a ws:// URI: use wss:// for TLS")
    if isinstance(ssl, ssl_module.SSLContext):
        return ssl
    if uri.secure and ssl is not False:
        return ssl_module.create_default_context()
    return None
