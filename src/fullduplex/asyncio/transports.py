"""Where connections get their transports: aiofastnet's on asyncio's own loop, when installed.

asyncio's stock event loop runs its socket transports in Python: per read, a few microseconds
of bytecode and a new 256 KiB bytes object (which glibc's malloc serves with mmap and munmap),
and on 3.11 a large write's unsent rest is copied twice. `aiofastnet
<https://github.com/aio-libs/aiofastnet>`_ (aio-libs; the ``fast`` extra) provides the same
transports compiled, with the same ``create_server`` / ``create_connection`` signatures; picows
uses it the same way. Measured with ``python -m bench`` on the stock loop, it makes the
callback-style server ~4% faster on one connection's round trips, ~10% on 100 connections and
~75% on 16 MiB echoes (bench/README.md).

It is used when it is importable, the loop is asyncio's selector loop (uvloop's transports are
compiled already, and a Windows proactor loop is left alone) and neither
``FULLDUPLEX_NO_AIOFASTNET`` nor ``FULLDUPLEX_NO_EXTENSIONS`` is set (the second runs the pure
Python build, with asyncio's own transports). A loop that aiofastnet has patched already
(``aiofastnet.patch_loop``) gets it either way, through its own methods.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

aiofastnet: ModuleType | None
try:
    import aiofastnet
except ImportError:  # the optional "fast" extra is not installed
    aiofastnet = None

__all__ = ["create_connection", "create_server", "fast_transports"]

ProtocolFactory = Callable[[], asyncio.BaseProtocol]

_WANTED = not (
    os.environ.get("FULLDUPLEX_NO_AIOFASTNET") or os.environ.get("FULLDUPLEX_NO_EXTENSIONS")
)


def fast_transports(loop: asyncio.AbstractEventLoop) -> bool:
    """Tell whether connections on ``loop`` get aiofastnet's transports (see the module doc)."""
    return _WANTED and aiofastnet is not None and isinstance(loop, asyncio.SelectorEventLoop)


async def create_server(
    loop: asyncio.AbstractEventLoop, factory: ProtocolFactory, **kwargs: Any
) -> asyncio.Server:
    """``loop.create_server(factory, **kwargs)``, on aiofastnet's transports where they apply.

    Both return an object with the API of asyncio.Server (aiofastnet's has its own class).
    """
    if fast_transports(loop):
        assert aiofastnet is not None
        server: asyncio.Server = await aiofastnet.create_server(loop, factory, **kwargs)
        return server
    return await loop.create_server(factory, **kwargs)


async def create_connection(
    loop: asyncio.AbstractEventLoop, factory: ProtocolFactory, **kwargs: Any
) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
    """``loop.create_connection(factory, **kwargs)``, on aiofastnet's where they apply."""
    if fast_transports(loop):
        assert aiofastnet is not None
        pair: tuple[
            asyncio.BaseTransport, asyncio.BaseProtocol
        ] = await aiofastnet.create_connection(loop, factory, **kwargs)
        return pair
    return await loop.create_connection(factory, **kwargs)
