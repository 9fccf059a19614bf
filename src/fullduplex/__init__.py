"""fullduplex: a complete WebSocket system for Python.

RFC 6455 and RFC 7692 in a sans-I/O core (:mod:`fullduplex.protocol`), an asyncio server and
client (:func:`serve`, :func:`connect`), a thread-based client (:mod:`fullduplex.sync`), an
endpoint framework (:class:`App`, :mod:`fullduplex.app`) and brokers that carry groups across
processes (:mod:`fullduplex.brokers`).

Every name in ``__all__`` is importable from here, and so is every exception a program may
catch (the tree is drawn in :mod:`fullduplex.exceptions`). ``dir()``, ``help()`` and editors
see them all. The exceptions are loaded at once (they cost nothing); the asyncio layer and the
endpoint framework on first use, because importing them takes ~90 ms (asyncio itself ~40 ms),
which a program that only uses the sans-I/O core or the sync client should not pay.
"""

from __future__ import annotations

import importlib as _importlib
import os as _os
import typing as _typing

if _os.environ.get("FULLDUPLEX_NO_EXTENSIONS"):
    # Before any submodule is imported: the compiled twins must not load (see _compiled.py).
    from ._compiled import use_source_only

    use_source_only()
    del use_source_only

from .exceptions import (
    BrokerError,
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    DecodeError,
    InvalidHandshake,
    InvalidMessage,
    InvalidProxyMessage,
    InvalidProxyStatus,
    InvalidRequest,
    InvalidResponse,
    InvalidState,
    InvalidStatus,
    InvalidURI,
    InvalidVersion,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    ProxyError,
    SecurityError,
    SOCKSProxyError,
    TooManyGroups,
    WebSocketError,
)

__all__ = [
    "App",
    "BrokerError",
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "DecodeError",
    "InvalidHandshake",
    "InvalidMessage",
    "InvalidProxyMessage",
    "InvalidProxyStatus",
    "InvalidRequest",
    "InvalidResponse",
    "InvalidState",
    "InvalidStatus",
    "InvalidURI",
    "InvalidVersion",
    "NegotiationError",
    "PayloadTooBig",
    "ProtocolError",
    "ProxyError",
    "SOCKSProxyError",
    "SecurityError",
    "Server",
    "TooManyGroups",
    "WebSocket",
    "WebSocketError",
    "connect",
    "serve",
]

__version__ = "0.1.0"

#: Names loaded on first use, and the module each comes from.
_LAZY = {
    "App": "fullduplex.app",
    "serve": "fullduplex.asyncio.server",
    "Server": "fullduplex.asyncio.server",
    "connect": "fullduplex.asyncio.client",
    "WebSocket": "fullduplex.asyncio.connection",
}

#: Subpackages reachable as attributes (``fullduplex.sync.connect``) without importing them.
_SUBPACKAGES = ("app", "asyncio", "brokers", "exceptions", "protocol", "sync")

if _typing.TYPE_CHECKING:
    # Subpackages, for editors and type checkers (the redundant aliases mark them exported).
    from . import app as app
    from . import asyncio as asyncio
    from . import brokers as brokers
    from . import protocol as protocol
    from . import sync as sync
    from .app import App
    from .asyncio.client import connect
    from .asyncio.connection import WebSocket
    from .asyncio.server import Server, serve


def __getattr__(name: str) -> _typing.Any:
    """Load a lazy name or subpackage on first use (PEP 562)."""
    if name in _SUBPACKAGES:
        return _importlib.import_module(f"fullduplex.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fullduplex' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names: ``__all__``, the subpackages and ``__version__`` (PEP 562)."""
    return sorted({*__all__, *_SUBPACKAGES, "__version__"})
