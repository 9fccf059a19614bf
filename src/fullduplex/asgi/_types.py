"""The ASGI 3 callable's types, and the conversions between ASGI's bytes and our Headers.

Kept apart from both directions (the App as an ASGI application, ASGI applications on our
server) because both speak them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, TypeAlias

from ..protocol.handshake import Headers

__all__ = [
    "ASGIApplication",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "asgi_headers",
    "headers_from_asgi",
]

Scope: TypeAlias = MutableMapping[str, Any]
"""An ASGI connection scope (``type``, ``path``, ``headers``...)."""

Message: TypeAlias = MutableMapping[str, Any]
"""An ASGI event (``{"type": "websocket.receive", "text": ...}``)."""

Receive: TypeAlias = Callable[[], Awaitable[Message]]
"""The application's ``receive``: awaits the next event from the server."""

Send: TypeAlias = Callable[[Message], Awaitable[None]]
"""The application's ``send``: hands one event to the server."""

ASGIApplication: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
"""An ASGI 3 application: ``async def app(scope, receive, send)``."""

# Hop-by-hop fields belong to the server that owns the connection, never to an application's
# response (RFC 9110 section 7.6.1).
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "upgrade"})


def headers_from_asgi(raw: Iterable[tuple[bytes, bytes]] | None) -> Headers:
    """Turn a scope's ``headers`` (byte pairs) into :class:`Headers`.

    Latin-1 decodes any byte, so a hostile value (non-ASCII, NUL) is kept as it came, never a
    crash, which is what HTTP's obs-text rule asks (RFC 9110 section 5.5).
    """
    return Headers(
        [
            (bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
            for name, value in raw or ()
        ]
    )


def asgi_headers(headers: Headers, *, keep_hop_by_hop: bool = False) -> list[tuple[bytes, bytes]]:
    """Turn :class:`Headers` into ASGI's list of (lower-case name, value) byte pairs.

    Args:
        headers: The fields.
        keep_hop_by_hop: Keep Connection, Upgrade and the like (dropped by default: the
            server of the connection decides those).
    """
    pairs = []
    for name, value in headers.raw_items():
        lowered = name.lower()
        if not keep_hop_by_hop and lowered in _HOP_BY_HOP:
            continue
        pairs.append((lowered.encode("latin-1"), value.encode("latin-1", "replace")))
    return pairs
