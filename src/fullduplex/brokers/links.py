"""One pub/sub connection to one Redis node, kept alive: subscribe, read, probe, reconnect.

A :class:`~fullduplex.brokers.RedisBroker` has one :class:`PubSubLink` to a single Redis, and
one per master on a Redis Cluster (sharded pub/sub: a group's channel lives on the master that
owns its slot), so the connections of a process are bounded by the cluster's size, not by
the number of groups.

The link owns the connection and nothing of the groups' state: it tells its :class:`Owner`
(the broker) what arrived, which subscriptions Redis confirmed, and when the connection was
lost, made again, or moved a channel away (a slot migrated to another master).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from . import wire

__all__ = ["Owner", "PubSubLink"]

_logger = logging.getLogger("fullduplex.brokers")

_SUBSCRIBE_CHUNK = 512


class Owner(Protocol):
    """What a link reports to (the broker)."""

    def link_received(self, name: bytes, payload: bytes) -> None:
        """A message arrived on channel ``name``."""

    def link_confirmed(self, link: PubSubLink, group: str) -> None:
        """Redis confirmed the subscription to ``group``'s channel on ``link``."""

    def link_down(self, link: PubSubLink) -> None:
        """``link`` lost its connection (every subscription on it is unconfirmed now)."""

    def link_moved(self, link: PubSubLink, group: str) -> None:
        """Redis dropped ``group``'s subscription on ``link`` unasked (its slot moved)."""


class PubSubLink:
    """A pub/sub connection to one node, with its subscriptions, probe and reconnects.

    Args:
        owner: Gets what the link sees (:class:`Owner`).
        connect: Returns a new redis-py ``PubSub`` on the node.
        publish_probe: Publishes a probe token on a channel through the command connection.
        probe_channel: This link's probe channel (on a cluster, in a slot of its node).
        sharded: SSUBSCRIBE/SPUBLISH (Redis Cluster) rather than SUBSCRIBE/PUBLISH.
        probe_interval: Seconds between probes.
        probe_timeout: Seconds a probe may take before the connection is deemed deaf.
        reconnect_delay: First delay before reconnecting, doubled up to ``max_reconnect_delay``.
        counters: The broker's counters (``reconnects``, ``deaf``, ``unsubscribed``).
        name: For logs (the node's address).
    """

    def __init__(
        self,
        owner: Owner,
        connect: Callable[[], Any],
        publish_probe: Callable[[bytes, bytes], Awaitable[object]],
        probe_channel: bytes,
        *,
        sharded: bool,
        probe_interval: float,
        probe_timeout: float,
        reconnect_delay: float,
        max_reconnect_delay: float,
        counters: dict[str, int],
        name: str,
    ) -> None:
        self.owner = owner
        self.name = name
        self.sharded = sharded
        self.probe_channel = probe_channel
        self.groups: set[str] = set()
        self._connect = connect
        self._publish_probe = publish_probe
        self._probe_interval = probe_interval
        self._probe_timeout = probe_timeout
        self._reconnect_delay = reconnect_delay
        self._max_reconnect_delay = max_reconnect_delay
        self._counters = counters
        self._pubsub: Any = None
        self._pending: set[str] = set()
        self._flush_scheduled = False
        self._connected = asyncio.Event()
        self._failing = False
        self._closing = False
        self._probe_seen = 0
        self._probes = itertools.count(1)
        #: When the connection last proved alive (subscribed, or a probe came back), in
        #: ``time.monotonic()`` seconds; 0.0 before.
        self.alive_at = 0.0
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        loop = asyncio.get_running_loop()
        self._supervisor = loop.create_task(self._supervise())
        self._prober = loop.create_task(self._probe_loop())

    def __repr__(self) -> str:
        state = "connected" if self._connected.is_set() else "connecting"
        return f"<PubSubLink {self.name} {state} {len(self.groups)} groups>"

    @property
    def connected(self) -> bool:
        """Whether the connection is up and its probe channel subscribed."""
        return self._connected.is_set()

    @property
    def failing(self) -> bool:
        """Whether the connection was lost and is not back yet (its loss was logged)."""
        return self._failing

    # ---- subscriptions ---------------------------------------------------------------------

    def add(self, group: str) -> None:
        """Subscribe to ``group``'s channel (batched with the others added meanwhile)."""
        if group in self.groups:
            return
        self.groups.add(group)
        self._pending.add(group)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._spawn, self._flush())

    def remove(self, groups: Iterable[str]) -> None:
        """Unsubscribe from the channels of ``groups`` (one batch)."""
        gone = [group for group in groups if group in self.groups]
        if not gone:
            return
        self.groups.difference_update(gone)
        self._pending.difference_update(gone)
        self._counters["unsubscribed"] += len(gone)
        if self._pubsub is not None:
            self._spawn(self._unsubscribe([wire.channel(group) for group in gone]))

    async def _flush(self) -> None:
        self._flush_scheduled = False
        groups = [group for group in self._pending if group in self.groups]
        self._pending.clear()
        pubsub = self._pubsub
        if pubsub is None or not groups:
            return  # the supervisor subscribes to every group when it connects
        with contextlib.suppress(Exception):  # a failure is the reader's to see and heal
            await self._subscribe(pubsub, groups)

    async def _subscribe(self, pubsub: Any, groups: list[str]) -> None:
        channels = [wire.channel(group) for group in groups]
        if self.sharded:
            # One SSUBSCRIBE per channel: channels of different slots in one is CROSSSLOT.
            for channel in channels:
                await pubsub.ssubscribe(channel)
            return
        for start in range(0, len(channels), _SUBSCRIBE_CHUNK):
            await pubsub.subscribe(*channels[start : start + _SUBSCRIBE_CHUNK])

    async def _unsubscribe(self, channels: list[str]) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            return
        with contextlib.suppress(Exception):
            if self.sharded:
                for channel in channels:
                    await pubsub.sunsubscribe(channel)
            else:
                for start in range(0, len(channels), _SUBSCRIBE_CHUNK):
                    await pubsub.unsubscribe(*channels[start : start + _SUBSCRIBE_CHUNK])

    # ---- the connection ---------------------------------------------------------------------

    async def close(self) -> None:
        """Stop reading and probing; disconnect."""
        self._closing = True
        tasks = [self._supervisor, self._prober, *self._tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _supervise(self) -> None:
        delay = self._reconnect_delay
        while not self._closing:
            pubsub = self._connect()
            try:
                if self.sharded:
                    await pubsub.ssubscribe(self.probe_channel)
                else:
                    await pubsub.subscribe(self.probe_channel)
                self._pending.clear()
                # Groups added while these subscribe (each an await) must be caught too:
                # add() leaves them to us while _pubsub is None.
                subscribed: set[str] = set()
                while missing := [group for group in self.groups if group not in subscribed]:
                    await self._subscribe(pubsub, missing)
                    subscribed.update(missing)
                self._pubsub = pubsub
                self._reader = asyncio.get_running_loop().create_task(self._read(pubsub))
                await self._reader
            except asyncio.CancelledError:
                if self._closing or asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    raise
                # The prober cancelled a deaf reader: reconnect below.
            except Exception as exc:
                if not self._failing:
                    _logger.warning(
                        "Redis pub/sub connection to %s lost (%s); reconnecting", self.name, exc
                    )
                    self._failing = True
            finally:
                was_connected = self._connected.is_set()
                self._pubsub = None
                self._connected.clear()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 1.0)
            if self._closing:
                return
            self._counters["reconnects"] += 1
            self.owner.link_down(self)
            if was_connected:
                delay = self._reconnect_delay
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_reconnect_delay)

    async def _read(self, pubsub: Any) -> None:
        parse = pubsub.parse_response
        probe = self.probe_channel
        owner = self.owner
        while True:
            response = await parse(block=True)
            if response is None:
                continue
            kind = response[0]
            if kind in (b"message", b"smessage"):
                name = response[1]
                if name == probe:
                    with contextlib.suppress(ValueError):
                        self._probe_seen = max(self._probe_seen, int(response[2]))
                else:
                    owner.link_received(name, response[2])
                continue
            # Subscription bookkeeping: redis-py keeps its own sets, let it.
            await pubsub.handle_message(response)
            if kind in (b"subscribe", b"ssubscribe"):
                self._confirmed(response[1])
            elif kind == b"sunsubscribe":
                group = wire.group_of_channel(response[1])
                if group is not None and group in self.groups:
                    # Not asked for: the channel's slot moved to another master.
                    self.groups.discard(group)
                    owner.link_moved(self, group)

    def _confirmed(self, name: bytes) -> None:
        if name == self.probe_channel:
            if self._failing:
                _logger.warning("Redis pub/sub connection to %s re-established", self.name)
                self._failing = False
            self.alive_at = time.monotonic()
            self._connected.set()
            return
        group = wire.group_of_channel(name)
        if group is not None and group in self.groups:
            self.owner.link_confirmed(self, group)

    async def barrier(self) -> bool:
        """Publish a probe and wait (up to ``probe_timeout``) until it comes back.

        True when it did: then everything published on this node before the call was
        received (a node sends a connection its messages in the order it executed the
        publishes), so a publication counted in a position read before the call and not
        received is lost.
        """
        if self._pubsub is None or not self._connected.is_set():
            return False
        token = next(self._probes)
        deadline = time.monotonic() + self._probe_timeout
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self._publish_probe(self.probe_channel, str(token).encode()),
                self._probe_timeout,
            )
        while self._probe_seen < token and time.monotonic() < deadline:
            await asyncio.sleep(min(0.02, self._probe_timeout / 10))
        if self._probe_seen >= token:
            self.alive_at = time.monotonic()
            return True
        return False

    async def _probe_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(self._probe_interval)
            if self._pubsub is None or not self._connected.is_set():
                continue
            if not await self.barrier() and self._pubsub is not None:
                self._counters["deaf"] += 1
                _logger.warning(
                    "Redis pub/sub connection to %s deaf (no probe back in %.1fs): reconnecting",
                    self.name,
                    self._probe_timeout,
                )
                self._failing = True
                reader = self._reader
                if reader is not None:
                    reader.cancel()
