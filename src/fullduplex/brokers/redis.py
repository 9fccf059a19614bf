"""RedisBroker: groups across processes and machines, on Redis pub/sub, streams and Lua.

How it works (keys and payloads in :mod:`~fullduplex.brokers.wire`, scripts in
:mod:`~fullduplex.brokers.scripts`):

- **Interest-based routing.** The process SUBSCRIBEs to a group's channel when its first local
  member joins and UNSUBSCRIBEs ``unsubscribe_delay`` seconds after the last one left (both
  batched), so a process with no member of a group receives nothing for it.
- **Publish.** One Lua script per message, atomically: increment the group's offset (creating
  its epoch if the group's state is gone), append to the capped history stream when the group
  keeps history, PUBLISH ``epoch:offset:head+data``. Publishes of one process go through one
  ordered, batched pipeline (:mod:`~fullduplex.brokers.commands`).
- **Order and no silent loss.** Each process checks offsets per group
  (:mod:`~fullduplex.brokers.sequencer`); a gap is repaired from history before newer messages
  are delivered, or reported to ``on_gap``, logged and counted. After a reconnect every group's
  position is read again and compared with what was delivered.
- **Deaf subscribers.** Every ``probe_interval`` seconds the process publishes a token on its
  own probe channel; if its pub/sub connection does not bring it back within
  ``probe_timeout``, the connection is deemed deaf (TCP open, nothing arriving), dropped and
  made again.

Requires the ``redis`` extra: ``pip install 'fullduplex[redis]'`` (redis-py with hiredis).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Collection
from typing import Any

from ..exceptions import BrokerError
from . import scripts, wire
from .base import (
    NO_POSITION,
    Broker,
    Gap,
    GroupOptions,
    Position,
    Presence,
    Publication,
    Recovery,
    judge_recovery,
    new_node_id,
)
from .commands import CommandQueue
from .sequencer import Fetch, Outcome, Sequencer

__all__ = ["RedisBroker"]

_logger = logging.getLogger("fullduplex.brokers")

_SCRIPTS = {
    "publish": scripts.PUBLISH,
    "position": scripts.POSITION,
    "recover": scripts.RECOVER,
    "presence_add": scripts.PRESENCE_ADD,
    "presence_refresh": scripts.PRESENCE_REFRESH,
    "presence_read": scripts.PRESENCE_READ,
}
_SUBSCRIBE_CHUNK = 512
_MS = 1000


def _redis() -> Any:
    try:
        import redis.asyncio  # noqa: PLC0415 - the optional extra, only when used
    except ImportError as exc:  # pragma: no cover - the test environment has it
        raise ImportError(
            f"RedisBroker needs redis-py ({exc}): pip install 'fullduplex[redis]'"
        ) from exc
    return redis.asyncio


class _Channel:
    """This process's subscription to one group."""

    __slots__ = ("confirmed", "ready", "sequencer")

    def __init__(self, group: str, history: bool, loop: asyncio.AbstractEventLoop) -> None:
        self.sequencer = Sequencer(group, history=history)
        self.confirmed = False
        # Set once the subscription is live and the group's position was read.
        self.ready: asyncio.Future[None] = loop.create_future()


class RedisBroker(Broker):
    """Groups across every process connected to one Redis.

    Args:
        url: ``redis://[user:password@]host:port/db`` or ``rediss://`` (TLS).
        probe_interval: Seconds between two probes of the pub/sub connection.
        probe_timeout: Seconds a probe may take before the connection is deemed deaf
            (default: ``probe_interval``).
        settle_delay: Seconds to wait, after a position read, for publications still in
            flight before what never came is reported as a gap.
        unsubscribe_delay: Seconds a group stays subscribed after its last local member left
            (a member that reconnects at once finds it still live).
        command_timeout: Seconds a Redis command may take; then it fails with BrokerError.
        idempotency_ttl: Seconds during which a publish with the same idempotency key is
            delivered only once.
        reconnect_delay: The first delay before reconnecting; doubled after each failure,
            up to ``max_reconnect_delay``.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        probe_interval: float = 2.0,
        probe_timeout: float | None = None,
        settle_delay: float = 1.0,
        unsubscribe_delay: float = 1.0,
        command_timeout: float = 5.0,
        idempotency_ttl: float = 30.0,
        reconnect_delay: float = 0.1,
        max_reconnect_delay: float = 5.0,
    ) -> None:
        super().__init__()
        self.url = url
        self.probe_interval = probe_interval
        self.probe_timeout = probe_interval if probe_timeout is None else probe_timeout
        self.settle_delay = settle_delay
        self.unsubscribe_delay = unsubscribe_delay
        self.command_timeout = command_timeout
        self.idempotency_ttl = idempotency_ttl
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self._client: Any = None
        self._pubsub_client: Any = None
        self._commands: CommandQueue | None = None
        self._pubsub: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channels: dict[str, _Channel] = {}
        self._to_subscribe: set[str] = set()
        self._unsubscribe_at: dict[str, float] = {}
        self._to_position: set[str] = set()
        self._presence_local: dict[str, dict[str, str]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._unsubscribe_timer: asyncio.TimerHandle | None = None
        self._flush_scheduled = False
        self._probe_channel = wire.probe_channel(self.node_id).encode()
        self._probe_seen = 0
        self._probes = itertools.count(1)
        self._closing = False
        self._connected = asyncio.Event()
        self._failing = False
        self._counters = dict.fromkeys(
            (
                "published",
                "publish_failures",
                "received",
                "delivered",
                "duplicates",
                "gaps",
                "repaired",
                "reconnects",
                "deaf",
                "subscribed",
                "unsubscribed",
                "malformed",
            ),
            0,
        )

    def __repr__(self) -> str:
        return f"<RedisBroker {self.url} node {self.node_id} {len(self._channels)} groups>"

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the clients (connections open on first use)."""
        if self._client is not None:
            return
        self._closing = False
        self._supervisor = self._prober = self._refresher = None
        self._channels.clear()
        self._loop = asyncio.get_running_loop()
        redis = _redis()
        from redis.backoff import NoBackoff  # noqa: PLC0415
        from redis.retry import Retry  # noqa: PLC0415

        # No automatic retry: a publish retried after a lost reply could run twice, and a
        # pub/sub reconnect must be seen here to check what was missed.
        common: dict[str, Any] = {
            "retry": Retry(NoBackoff(), 0),
            "socket_connect_timeout": self.command_timeout,
            "socket_keepalive": True,
        }
        self._client = redis.Redis.from_url(self.url, socket_timeout=self.command_timeout, **common)
        self._pubsub_client = redis.Redis.from_url(self.url, socket_timeout=None, **common)
        self._commands = CommandQueue(self._client, _SCRIPTS, self._publish_failed)

    async def close(self) -> None:
        """Stop receiving, send what is queued (bounded by ``command_timeout``), disconnect."""
        self._closing = True
        if self._commands is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._commands.drain(), self.command_timeout)
        for task in (self._supervisor, self._prober, self._refresher, *self._tasks):
            if task is not None:
                task.cancel()
        for task in (self._supervisor, self._prober, self._refresher, *self._tasks):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._unsubscribe_timer is not None:
            self._unsubscribe_timer.cancel()
        for client in (self._client, self._pubsub_client):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
        self._client = self._pubsub_client = self._commands = None

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        if self._client is None:
            raise RuntimeError("the RedisBroker is not started: await broker.start() first")
        loop = self._loop
        assert loop is not None
        if self._supervisor is None and not self._closing:
            self._supervisor = loop.create_task(self._supervise())
            self._prober = loop.create_task(self._probe_loop())
            self._refresher = loop.create_task(self._refresh_loop())
        return loop

    def _spawn(self, coro: Any) -> None:
        loop = self._loop
        assert loop is not None
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- interest: subscribing and unsubscribing, batched -----------------------------------

    def interest(self, group: str) -> None:
        """Subscribe to ``group``'s channel (batched with others asked for meanwhile)."""
        loop = self._ensure_started()
        self._unsubscribe_at.pop(group, None)  # back before its unsubscribe: keep it
        if group in self._channels:
            return
        self._channels[group] = _Channel(group, self.policies(group).history_size > 0, loop)
        self._to_subscribe.add(group)
        self._schedule_flush()

    def disinterest(self, group: str) -> None:
        """Unsubscribe from ``group`` after ``unsubscribe_delay`` unless a member comes back."""
        if group not in self._channels or self._loop is None:
            return
        self._unsubscribe_at[group] = self._loop.time() + self.unsubscribe_delay
        if self._unsubscribe_timer is None:
            self._unsubscribe_timer = self._loop.call_later(
                self.unsubscribe_delay, self._unsubscribe_due
            )

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._spawn, self._flush_subscriptions())

    async def _flush_subscriptions(self) -> None:
        self._flush_scheduled = False
        groups, self._to_subscribe = [g for g in self._to_subscribe if g in self._channels], set()
        pubsub = self._pubsub
        if pubsub is None or not groups:
            return  # the reader subscribes to every group when it connects
        with contextlib.suppress(Exception):  # a failure is the reader's to see and heal
            for start in range(0, len(groups), _SUBSCRIBE_CHUNK):
                chunk = groups[start : start + _SUBSCRIBE_CHUNK]
                await pubsub.subscribe(*(wire.channel(group) for group in chunk))

    def _unsubscribe_due(self) -> None:
        loop = self._loop
        assert loop is not None
        self._unsubscribe_timer = None
        now = loop.time()
        due = [group for group, at in self._unsubscribe_at.items() if at <= now]
        for group in due:
            del self._unsubscribe_at[group]
            channel = self._channels.pop(group, None)
            if channel is not None and not channel.ready.done():
                channel.ready.cancel()
        if self._unsubscribe_at:
            delay = max(0.0, min(self._unsubscribe_at.values()) - now)
            self._unsubscribe_timer = loop.call_later(delay, self._unsubscribe_due)
        if due and self._pubsub is not None:
            self._spawn(self._unsubscribe([wire.channel(group) for group in due]))

    async def _unsubscribe(self, channels: list[str]) -> None:
        pubsub = self._pubsub
        if pubsub is None:
            return
        self._counters["unsubscribed"] += len(channels)
        with contextlib.suppress(Exception):
            for start in range(0, len(channels), _SUBSCRIBE_CHUNK):
                await pubsub.unsubscribe(*channels[start : start + _SUBSCRIBE_CHUNK])

    # ---- the pub/sub connection: read, reconnect, probe ------------------------------------

    async def _supervise(self) -> None:
        delay = self.reconnect_delay
        while not self._closing:
            pubsub = self._pubsub_client.pubsub()
            try:
                await pubsub.subscribe(self._probe_channel)
                groups = list(self._channels)
                self._to_subscribe.clear()
                for channel in self._channels.values():
                    channel.confirmed = False
                for start in range(0, len(groups), _SUBSCRIBE_CHUNK):
                    chunk = groups[start : start + _SUBSCRIBE_CHUNK]
                    await pubsub.subscribe(*(wire.channel(group) for group in chunk))
                self._pubsub = pubsub
                self._reader = asyncio.get_running_loop().create_task(self._read(pubsub))
                await self._reader
            except asyncio.CancelledError:
                if self._closing or asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    raise
                # The prober cancelled a deaf reader: reconnect below.
            except Exception as exc:
                if not self._failing:
                    _logger.warning("Redis pub/sub connection lost (%s); reconnecting", exc)
                    self._failing = True
            finally:
                self._pubsub = None
                self._connected.clear()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 1.0)
            if self._closing:
                return
            self._counters["reconnects"] += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_reconnect_delay)
            if self._connected.is_set():
                delay = self.reconnect_delay

    async def _read(self, pubsub: Any) -> None:
        parse = pubsub.parse_response
        probe = self._probe_channel
        while True:
            response = await parse(block=True)
            if response is None:
                continue
            kind = response[0]
            if kind in (b"message", b"smessage"):
                name = response[1]
                if name == probe:
                    self._probed(response[2])
                else:
                    self._received(name, response[2])
            else:
                # Subscription bookkeeping: redis-py keeps its own sets, let it.
                await pubsub.handle_message(response)
                if kind in (b"subscribe", b"ssubscribe"):
                    self._confirmed(response[1])

    def _confirmed(self, name: bytes) -> None:
        if name == self._probe_channel:
            if self._failing:
                _logger.warning("Redis pub/sub connection re-established")
                self._failing = False
            self._connected.set()
            return
        group = wire.group_of_channel(name)
        channel = self._channels.get(group) if group is not None else None
        if channel is None or channel.confirmed:
            return
        channel.confirmed = True
        self._counters["subscribed"] += 1
        self._to_position.add(group)  # type: ignore[arg-type]
        if len(self._to_position) == 1:
            self._spawn(self._read_positions())

    async def _read_positions(self) -> None:
        await asyncio.sleep(0)  # gather the confirmations of one batch
        groups, self._to_position = list(self._to_position), set()
        commands = self._commands
        if commands is None:
            return
        futures = [
            commands.call(commands.script("position", (wire.keys(group)[0],))) for group in groups
        ]
        for group, future in zip(groups, futures, strict=True):
            try:
                epoch, top = await future
            except BrokerError:
                continue  # the connection is failing: the reconnect reads it again
            channel = self._channels.get(group)
            if channel is None or not channel.confirmed:
                continue
            self._apply(channel, channel.sequencer.position(epoch.decode(), int(top)))
            if channel.sequencer.floor > channel.sequencer.last:
                assert self._loop is not None
                self._loop.call_later(self.settle_delay, self._settle, group)
            if not channel.ready.done():
                channel.ready.set_result(None)

    def _settle(self, group: str) -> None:
        channel = self._channels.get(group)
        if channel is not None:
            self._apply(channel, channel.sequencer.settle())

    def _received(self, name: bytes, payload: bytes) -> None:
        self._counters["received"] += 1
        group = wire.group_of_channel(name)
        channel = self._channels.get(group) if group is not None else None
        if channel is None:
            return  # unsubscribed meanwhile
        try:
            publication = wire.decode_payload(channel.sequencer.group, payload)
        except ValueError:
            self._counters["malformed"] += 1
            _logger.warning("ignored a malformed message on %s", name.decode(errors="replace"))
            return
        self._apply(channel, channel.sequencer.arrive(publication))

    def _apply(self, channel: _Channel, outcome: Outcome) -> None:
        for gap in outcome.gaps:
            self._gap(gap)
        deliver = self._deliver
        if outcome.deliver and deliver is not None:
            self._counters["delivered"] += len(outcome.deliver)
            for publication in outcome.deliver:
                try:
                    deliver(publication)
                except Exception:
                    _logger.exception("delivering a message of %s failed", publication.group)
        if outcome.fetch is not None:
            self._spawn(self._repair(channel, outcome.fetch))

    def _gap(self, gap: Gap) -> None:
        self._counters["gaps"] += 1
        if gap.first is None:
            _logger.warning("group %s: its state in Redis was lost (%s)", gap.group, gap.reason)
        else:
            _logger.warning(
                "group %s: messages %d-%d of epoch %s were lost (%s)",
                gap.group,
                gap.first,
                gap.last,
                gap.epoch,
                gap.reason,
            )
        self._report_gap(gap)

    async def _repair(self, channel: _Channel, fetch: Fetch) -> None:
        group = channel.sequencer.group
        entries: list[Publication] | None
        try:
            entries = await self._history(group, fetch.epoch, fetch.first, fetch.last)
        except BrokerError:
            entries = None
        if self._channels.get(group) is not channel:
            return
        if entries:
            self._counters["repaired"] += sum(
                1 for entry in entries if fetch.first <= entry.offset <= fetch.last
            )
        self._apply(channel, channel.sequencer.repaired(fetch.token, entries))

    async def _history(self, group: str, epoch: str, first: int, last: int) -> list[Publication]:
        client = self._client
        if client is None:
            raise BrokerError("the broker is closed")
        stream = wire.keys(group)[1]
        try:
            entries = await client.xrange(stream, f"{first}-0", f"{last}-0")
        except Exception as exc:
            raise BrokerError(f"reading the history of {group} failed: {exc}") from exc
        return [
            wire.decode_entry(group, epoch, entry_id, fields[b"d"]) for entry_id, fields in entries
        ]

    def _probed(self, token: bytes) -> None:
        with contextlib.suppress(ValueError):
            self._probe_seen = max(self._probe_seen, int(token))

    async def _probe_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.probe_interval)
            if self._pubsub is None or not self._connected.is_set() or self._client is None:
                continue
            token = next(self._probes)
            deadline = time.monotonic() + self.probe_timeout
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self._client.publish(self._probe_channel, str(token)), self.probe_timeout
                )
            while self._probe_seen < token and time.monotonic() < deadline:
                await asyncio.sleep(min(0.05, self.probe_timeout / 10))
            if self._probe_seen < token and self._pubsub is not None:
                self._counters["deaf"] += 1
                _logger.warning(
                    "Redis pub/sub connection deaf (no probe back in %.1fs): reconnecting",
                    self.probe_timeout,
                )
                self._failing = True
                reader = self._reader
                if reader is not None:
                    reader.cancel()

    # ---- publishing ------------------------------------------------------------------------

    def _publish_command(
        self, group: str, data: bytes, text: bool, exclude: Collection[str], key: str | None
    ) -> tuple[Any, ...]:
        commands = self._commands
        if commands is None:
            raise RuntimeError("the RedisBroker is not started: await broker.start() first")
        options = self.policies.configured(group)
        meta, stream, _, _ = wire.keys(group)
        head = wire.encode_head(text, self.node_id, exclude)
        # A group no pattern of this process names keeps the options the app recorded.
        history = (
            (-1, -1)
            if options is None
            else (
                options.history_size,
                int(options.history_ttl * _MS),
            )
        )
        meta_ttl = int((options.meta_ttl if options is not None else GroupOptions().meta_ttl) * _MS)
        return commands.script(
            "publish",
            (meta, stream, wire.idempotency_key(group, key) if key else meta),
            wire.channel(group),
            new_node_id(),
            head,
            data,
            *history,
            meta_ttl,
            "PUBLISH",
            int(self.idempotency_ttl * _MS) if key else 0,
        )

    async def publish(
        self,
        group: str,
        data: bytes,
        *,
        text: bool,
        exclude: Collection[str] = (),
        idempotency_key: str | None = None,
    ) -> Position:
        """Publish through Redis (see :class:`~fullduplex.brokers.base.Broker`)."""
        command = self._publish_command(group, data, text, exclude, idempotency_key)
        assert self._commands is not None
        try:
            offset, epoch, _ = await self._commands.call(command)
        except BrokerError:
            self._counters["publish_failures"] += 1
            raise
        self._counters["published"] += 1
        return Position(epoch.decode(), int(offset))

    def publish_nowait(
        self, group: str, data: bytes, *, text: bool, exclude: Collection[str] = ()
    ) -> None:
        """Queue a publish; a failure is logged (once per outage) and counted."""
        command = self._publish_command(group, data, text, exclude, None)
        assert self._commands is not None
        self._counters["published"] += 1
        self._commands.submit(command)

    def _publish_failed(self, error: Exception) -> None:
        self._counters["publish_failures"] += 1
        if self._counters["publish_failures"] == 1 or not self._failing:
            _logger.warning("a publish failed: %s", error)

    # ---- recovery --------------------------------------------------------------------------

    async def recover(self, group: str, since: Position) -> Recovery:
        """What ``group`` published after ``since``, read from its history in Redis."""
        options = self.policies(group)
        commands = self._commands
        channel = self._channels.get(group)
        if commands is None or channel is None:
            raise RuntimeError("recover() needs interest(group) first, on a started broker")
        try:
            await asyncio.wait_for(asyncio.shield(channel.ready), self.command_timeout)
            epoch, top, entries = await commands.call(
                commands.script(
                    "recover",
                    wire.keys(group)[:2],
                    since.offset + 1,
                    max(options.max_recovery, 1) + 1,
                    new_node_id(),
                    int(options.meta_ttl * _MS),
                )
            )
        except (TimeoutError, asyncio.CancelledError, BrokerError):
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise
            return Recovery(False, "unavailable", (), NO_POSITION)
        current = Position(epoch.decode(), int(top))
        # Raw from the script: [id, [field, value]] per entry.
        publications = [
            wire.decode_entry(group, current.epoch, entry_id, fields[1])
            for entry_id, fields in entries
        ]
        return judge_recovery(options, since, current, publications)

    # ---- presence --------------------------------------------------------------------------

    def presence_add(self, group: str, session_id: str, user_id: str | None) -> None:
        """Add the session to the group's presence in Redis (queued, in order)."""
        self._ensure_started()
        commands = self._commands
        assert commands is not None
        self._presence_local.setdefault(group, {})[session_id] = user_id or ""
        ttl = int(self.policies(group).presence_ttl * _MS)
        zset, users = wire.keys(group)[2:]
        commands.submit(
            commands.script("presence_add", (zset, users), session_id, user_id or "", ttl)
        )

    def presence_remove(self, group: str, session_id: str) -> None:
        """Take the session out of the group's presence in Redis (queued, in order)."""
        commands = self._commands
        local = self._presence_local.get(group)
        if local is not None:
            local.pop(session_id, None)
            if not local:
                del self._presence_local[group]
        if commands is None:
            return
        zset, users = wire.keys(group)[2:]
        commands.submit(("ZREM", zset, session_id))
        commands.submit(("HDEL", users, session_id))

    async def presence(self, group: str) -> Presence:
        """Who is in ``group`` across every process (expired members dropped)."""
        if not self.policies(group).presence:
            raise ValueError(f"presence is not enabled for group {group!r}")
        commands = self._commands
        if commands is None:
            raise RuntimeError("the RedisBroker is not started: await broker.start() first")
        flat = await commands.call(commands.script("presence_read", wire.keys(group)[2:]))
        sessions: dict[str, str | None] = {}
        for index in range(0, len(flat), 2):
            user = flat[index + 1].decode()
            sessions[flat[index].decode()] = user or None
        return Presence(sessions, frozenset(u for u in sessions.values() if u is not None))

    async def _refresh_loop(self) -> None:
        # Members of a killed process stop being refreshed and expire after presence_ttl.
        while not self._closing:
            ttls = [self.policies(group).presence_ttl for group in self._presence_local]
            await asyncio.sleep(min([*ttls, 30.0]) / 3)
            commands = self._commands
            if commands is None:
                continue
            for group, members in list(self._presence_local.items()):
                ttl = int(self.policies(group).presence_ttl * _MS)
                zset, users = wire.keys(group)[2:]
                commands.submit(commands.script("presence_refresh", (zset, users), ttl, *members))

    # ---- counters --------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters since start: ``published``, ``publish_failures``, ``received`` (messages
        off the pub/sub connection), ``delivered``, ``duplicates``, ``gaps``, ``repaired``
        (messages recovered from history to fill gaps), ``reconnects``, ``deaf`` (deaf
        connections found by the probe), ``subscribed``/``unsubscribed`` (channels),
        ``malformed``; and ``groups`` (subscribed now)."""
        counters = dict(self._counters)
        counters["duplicates"] = sum(c.sequencer.duplicates for c in self._channels.values())
        counters["groups"] = len(self._channels)
        return counters
