"""fullduplex: a complete WebSocket system for Python.

The names users need most are importable from here; each is loaded on first use, so
``import fullduplex`` stays cheap and the sans-I/O core never pulls in asyncio.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

if os.environ.get("FULLDUPLEX_NO_EXTENSIONS"):
    # Before any submodule is imported: the compiled twins must not load (see _compiled.py).
    from ._compiled import use_source_only

    use_source_only()

__all__ = [
    "App",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "InvalidHandshake",
    "InvalidStatus",
    "ProtocolError",
    "ProxyError",
    "Server",
    "WebSocket",
    "WebSocketError",
    "connect",
    "serve",
]

__version__ = "0.1.0"

_LAZY = {
    "App": "fullduplex.app",
    "serve": "fullduplex.asyncio.server",
    "Server": "fullduplex.asyncio.server",
    "connect": "fullduplex.asyncio.client",
    "WebSocket": "fullduplex.asyncio.connection",
    "ConnectionClosed": "fullduplex.exceptions",
    "ConnectionClosedError": "fullduplex.exceptions",
    "ConnectionClosedOK": "fullduplex.exceptions",
    "InvalidHandshake": "fullduplex.exceptions",
    "InvalidStatus": "fullduplex.exceptions",
    "ProtocolError": "fullduplex.exceptions",
    "ProxyError": "fullduplex.exceptions",
    "WebSocketError": "fullduplex.exceptions",
}

# Subpackages reachable as attributes (``fullduplex.sync.connect``) without importing them first.
_SUBPACKAGES = frozenset({"app", "asyncio", "protocol", "sync"})

if TYPE_CHECKING:
    from .app import App
    from .asyncio.client import connect
    from .asyncio.connection import WebSocket
    from .asyncio.server import Server, serve
    from .exceptions import (
        ConnectionClosed,
        ConnectionClosedError,
        ConnectionClosedOK,
        InvalidHandshake,
        InvalidStatus,
        ProtocolError,
        ProxyError,
        WebSocketError,
    )


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"fullduplex.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fullduplex' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
