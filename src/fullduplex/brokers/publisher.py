"""Publish to a group from a process that serves nothing: a cron job, a web view, a script.

::

    from fullduplex.brokers import Publisher

    with Publisher("redis://127.0.0.1:6379/0") as publisher:
        publisher.publish("chat:lobby", '{"type": "message", "text": "maintenance at 6"}')

It needs only the broker URL: the message gets the group's next offset and goes to every
server process with members of the group, through the same Lua script as the servers'
publishes, and into the group's history with the options the app's last publish recorded.
Synchronous (redis-py's blocking client); in asyncio code, use a started
:class:`~fullduplex.brokers.RedisBroker` and ``await broker.publish(...)`` instead.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import BrokerError
from . import clients, scripts, wire
from .base import GroupOptions, Position, new_node_id

__all__ = ["Publisher"]

_MS = 1000


class Publisher:
    """A blocking publisher to the groups of apps that use one Redis.

    Args:
        url: The broker URL the apps use (``redis://host:port/db``, or
            ``redis+cluster://host:port`` for a Redis Cluster).
        timeout: Seconds a publish may take before it fails with BrokerError.
        idempotency_ttl: Seconds during which a second publish with the same idempotency
            key is not delivered again.
    """

    def __init__(self, url: str, *, timeout: float = 5.0, idempotency_ttl: float = 30.0) -> None:
        try:
            import redis  # noqa: F401, PLC0415 - the optional extra
        except ImportError as exc:  # pragma: no cover - the test environment has it
            raise ImportError(
                f"Publisher needs redis-py: pip install 'fullduplex[redis]' ({exc})"
            ) from exc
        self.url = url
        self.idempotency_ttl = idempotency_ttl
        _, self._cluster = clients.split_url(url)
        self._client: Any = clients.sync_client(url, timeout=timeout)
        self._script: Any = self._client.register_script(scripts.PUBLISH)

    def publish(
        self, group: str, message: str | bytes, *, idempotency_key: str | None = None
    ) -> Position:
        """Publish ``message`` (str: a text message; bytes: a binary one) to ``group``.

        Args:
            group: The group's name, as the app's sessions join it.
            message: The message, already encoded as the group's members expect it.
            idempotency_key: When given, publishing again with the same key within
                ``idempotency_ttl`` seconds returns the first position and delivers nothing.

        Returns:
            The message's position in the group.

        Raises:
            BrokerError: Redis did not take it.
            TypeError: ``message`` is neither str nor bytes.
        """
        if isinstance(message, str):
            data, text = message.encode(), True
        elif isinstance(message, bytes | bytearray | memoryview):
            data, text = bytes(message), False
        else:
            raise TypeError(f"message must be str or bytes, not {type(message).__name__}")
        meta, stream, _, _ = wire.keys(group)
        key = wire.idempotency_key(group, idempotency_key) if idempotency_key else meta
        try:
            offset, epoch, _ = self._script(
                keys=[meta, stream, key],
                args=[
                    wire.channel(group),
                    new_node_id(),
                    wire.encode_head(text, "", ()),
                    data,
                    -1,
                    -1,
                    int(GroupOptions().meta_ttl * _MS),
                    "SPUBLISH" if self._cluster else "PUBLISH",
                    int(self.idempotency_ttl * _MS) if idempotency_key else 0,
                ],
            )
        except Exception as exc:
            raise BrokerError(f"publishing to {group} failed: {exc}") from exc
        return Position(epoch.decode(), int(offset))

    def close(self) -> None:
        """Close the connection to Redis."""
        self._client.close()

    def __enter__(self) -> Publisher:
        """``with Publisher(url) as publisher:`` closes it at the end."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the publisher."""
        self.close()
