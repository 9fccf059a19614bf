"""Multiplayer snake: the rules in :mod:`examples.snake.game` (pure, no I/O), the server in
:mod:`examples.snake.server`, the page in ``static/snake.html``.

The server's names are loaded on first use, so the game rules import (and are tested) without
the endpoint framework.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["PATH", "SnakeServer", "app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(".server", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
