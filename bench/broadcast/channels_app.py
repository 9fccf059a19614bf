"""The Django Channels side: an ASGI application, served by uvicorn.

``BENCH_REDIS_URL`` is the Redis URL; ``BENCH_CHANNELS_LAYER`` is ``core``
(``channels_redis.core.RedisChannelLayer``) or ``pubsub``
(``channels_redis.pubsub.RedisPubSubChannelLayer``). ``/room`` adds its consumer to the group
``bench``, accepts, and sends ``ready``; a ``bench.message`` event is sent on as text.

The core layer's ``capacity`` (messages waiting per channel key, default 100) is raised to
100,000: a process's consumers share one key, so 500 members of one process would overflow
it with the first message, and a full channel drops ``group_send`` silently.
"""

from __future__ import annotations

import os
from typing import Any

import django  # type: ignore[import-untyped]
from django.conf import settings  # type: ignore[import-untyped]

__all__ = ["GROUP", "LAYERS", "application", "layer_settings"]

GROUP = "bench"
LAYERS = {
    "core": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}


def layer_settings(kind: str, url: str) -> dict[str, Any]:
    """The ``CHANNEL_LAYERS`` setting of a layer kind (``core``, ``pubsub``) on ``url``."""
    config: dict[str, Any] = {"hosts": [url]}
    if kind == "core":
        config["capacity"] = 100_000
    return {"default": {"BACKEND": LAYERS[kind], "CONFIG": config}}


if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["channels"],
        CHANNEL_LAYERS=layer_settings(
            os.environ.get("BENCH_CHANNELS_LAYER", "pubsub"),
            os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        ),
    )
    django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # type: ignore[import-untyped]  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # type: ignore[import-untyped]  # noqa: E402
from django.urls import path  # type: ignore[import-untyped]  # noqa: E402


class Room(AsyncWebsocketConsumer):  # type: ignore[misc]
    """One member of the benchmark's room."""

    async def connect(self) -> None:
        """Join the group, accept, say ``ready``."""
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()
        await self.send(text_data="ready")

    async def disconnect(self, code: int) -> None:
        """Leave the group."""
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def bench_message(self, event: dict[str, Any]) -> None:
        """A published message: send it on."""
        await self.send(text_data=event["text"])


application = ProtocolTypeRouter({"websocket": URLRouter([path("room", Room.as_asgi())])})
