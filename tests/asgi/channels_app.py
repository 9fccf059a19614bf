"""An unmodified Django Channels application, as ``fullduplex serve --asgi`` runs it.

A chat consumer (``AsyncWebsocketConsumer``) at ``/chat/<room>/`` whose messages go through
the in-memory channel layer to every consumer of the room. Django is configured here, with the
least settings Channels needs, because no project's settings module exists.
"""

from __future__ import annotations

from typing import Any

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["channels"],
        CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
    )
    django.setup()

# Imported once Django is set up: Channels' consumers read the settings at import.
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path

__all__ = ["application"]


class Chat(AsyncWebsocketConsumer):
    """Joins the room's layer group; relays every text message to the whole room."""

    async def connect(self) -> None:
        """Join the room's group, then accept."""
        self.room = "chat_" + self.scope["url_route"]["kwargs"]["room"]
        await self.channel_layer.group_add(self.room, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        """Leave the room's group."""
        await self.channel_layer.group_discard(self.room, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Send the text to the room through the channel layer."""
        await self.channel_layer.group_send(
            self.room, {"type": "chat.message", "text": f"{self.room}: {text_data}"}
        )

    async def chat_message(self, event: dict[str, Any]) -> None:
        """A room message from the layer: to this client."""
        await self.send(text_data=event["text"])


application = ProtocolTypeRouter(
    {"websocket": URLRouter([path("chat/<str:room>/", Chat.as_asgi())])}
)
