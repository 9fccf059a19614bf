"""Chat rooms: the endpoint in :mod:`examples.chat.server`, the page in ``static/chat.html``."""

from .server import MAX_MESSAGE_SIZE, PATH, ChatMessage, app, register

__all__ = ["MAX_MESSAGE_SIZE", "PATH", "ChatMessage", "app", "register"]
