"""The fullduplex demo: echo, chat and snake on one :class:`~fullduplex.app.App`, one port.

=================  ===============================================================
``/``              the index page, linking the three apps
``/echo.html``     the echo page; WebSocket endpoint ``/echo``
``/chat.html``     the chat page; WebSocket endpoint ``/chat/{room}``
``/snake.html``    the snake page; WebSocket endpoint ``/snake``
=================  ===============================================================

Run it with ``make demo``, ``fullduplex demo`` or ``fullduplex serve examples.demo:app``.
"""

from __future__ import annotations

from fullduplex.app import App

from . import chat, echo
from ._pages import SHARED_STATIC, mount_pages
from .snake.server import STATIC as SNAKE_STATIC
from .snake.server import SnakeServer

__all__ = ["app", "snake"]

app = App()
"""The demo app: every endpoint and page."""

echo.register(app)
chat.register(app)
snake = SnakeServer(app)
"""The snake game of the demo (its loop runs while somebody plays)."""

mount_pages(app, SHARED_STATIC, echo.server.STATIC, chat.server.STATIC, SNAKE_STATIC)
