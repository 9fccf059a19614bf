"""Fallback transports for clients that cannot use WebSocket: HTTP streaming and long-polling.

They sit beside :mod:`fullduplex.asyncio` and hand the App the same
:class:`~fullduplex.app.Session`: endpoints never know which transport a client uses. The
wire format is in :mod:`.wire`, the HTTP side in :mod:`.service`, a session's connection in
:mod:`.socket`, the signed session ids in :mod:`.ids`.
"""

from __future__ import annotations

from .ids import SessionIds
from .service import MARKER, FallbackOptions, FallbackService, Target, split_path
from .socket import FallbackSocket

__all__ = [
    "MARKER",
    "FallbackOptions",
    "FallbackService",
    "FallbackSocket",
    "SessionIds",
    "Target",
    "split_path",
]
