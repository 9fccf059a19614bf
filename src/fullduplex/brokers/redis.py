"""RedisBroker: groups across processes and machines, on Redis pub/sub, streams and Lua.

How it works (keys and payloads in :mod:`~fullduplex.brokers.wire`, scripts in
:mod:`~fullduplex.brokers.scripts`, connections in :mod:`~fullduplex.brokers.links`):

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
- **Redis Cluster** (``redis+cluster://`` URLs): sharded pub/sub (SSUBSCRIBE, SPUBLISH in the
  script), one pub/sub connection per master, each group's channel on the master that owns
  its slot (every key of a group has the group's name as hash tag, so the groups spread over
  the slots as their names hash). When a slot moves (Redis drops the subscription) or a
  connection is lost, the cluster's layout is read again and the groups are subscribed where
  they now live, their positions checked as after any reconnect.

Requires the ``redis`` extra: ``pip install 'fullduplex[redis]'`` (redis-py with hiredis).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection
from typing import Any

from ..exceptions import BrokerError
from . import clients, scripts, wire
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
from .links import PubSubLink
from .sequencer import Fetch, Outcome, Sequencer

__all__ = ["RedisBroker"]

_logger = logging.getLogger("fullduplex.brokers")

_SCRIPTS = {
    "publish": scripts.PUBLISH,
    "position": scripts.POSITION,
    "recover": scripts.RECOVER,
    "new_epoch": scripts.NEW_EPOCH,
    "presence_add": scripts.PRESENCE_ADD,
    "presence_refresh": scripts.PRESENCE_REFRESH,
    "presence_read": scripts.PRESENCE_READ,
}
_MS = 1000


class _Channel:
    """This process's subscription to one group."""

    __slots__ = ("confirmed", "link", "ready", "sequencer")

    def __init__(self, group: str, history: bool, loop: asyncio.AbstractEventLoop) -> None:
        self.sequencer = Sequencer(group, history=history)
        self.confirmed = False
        # The connection the group's channel is subscribed on (None: not routed yet).
        self.link: PubSubLink | None = None
        # Set once the subscription is live and the group's position was read.
        self.ready: asyncio.Future[None] = loop.create_future()


class RedisBroker(Broker):
    """Groups across every process connected to one Redis or one Redis Cluster.

    Args:
        url: ``redis://[user:password@]host:port/db``, ``rediss://`` (TLS), or
            ``redis+cluster://host:port`` (``rediss+cluster://``) for a Redis Cluster, named
            by any of its nodes.
        probe_interval: Seconds between two probes of a pub/sub connection.
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
        check_interval: Seconds between two checks of the positions of the subscribed
            groups, which find a lost last message of a group that then went quiet (no later
            message reveals that gap): each check reads the positions, then waits for a probe
            through the pub/sub connection, so what the positions counted has arrived unless
            it was lost. 0 disables the checks.

    Raises:
        ValueError: ``url`` is not a Redis URL, or its port or database is not a number.
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
        check_interval: float = 15.0,
    ) -> None:
        super().__init__()
        self.url = url
        _, self.cluster = clients.split_url(url)
        self.probe_interval = probe_interval
        self.probe_timeout = probe_interval if probe_timeout is None else probe_timeout
        self.settle_delay = settle_delay
        self.unsubscribe_delay = unsubscribe_delay
        self.command_timeout = command_timeout
        self.idempotency_ttl = idempotency_ttl
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.check_interval = check_interval
        self._client: Any = None
        self._node_clients: list[Any] = []
        self._commands: CommandQueue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channels: dict[str, _Channel] = {}
        # Pub/sub connections by node name ("" for a single Redis).
        self._links: dict[str, PubSubLink] = {}
        self._unrouted: set[str] = set()
        self._router: asyncio.Task[None] | None = None
        self._refresh_layout = False
        self._layout_known = False
        self._unsubscribe_at: dict[str, float] = {}
        self._to_position: set[str] = set()
        self._presence_local: dict[str, dict[str, str]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refresher: asyncio.Task[None] | None = None
        self._checker: asyncio.Task[None] | None = None
        self._unsubscribe_timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._failing = False
        self._duplicates_before = 0  # those of the groups no longer subscribed
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
                "moved",
                "checks",
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
        self._refresher = self._router = self._checker = None
        self._layout_known = False
        self._channels.clear()
        self._loop = asyncio.get_running_loop()
        self._client = clients.async_client(self.url, timeout=self.command_timeout)
        self._commands = CommandQueue(self._client, _SCRIPTS, self._publish_failed)
        # Connect now rather than at the first group, so that health() tells from the start.
        self._ensure_started()
        if self.cluster:
            self._schedule_route(refresh=False)

    async def close(self) -> None:
        """Stop receiving, send what is queued (bounded by ``command_timeout``), disconnect."""
        self._closing = True
        if self._commands is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._commands.drain(), self.command_timeout)
        tasks = [
            task
            for task in (self._router, self._refresher, self._checker, *self._tasks)
            if task is not None
        ]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for link in self._links.values():
            await link.close()
        self._links.clear()
        if self._unsubscribe_timer is not None:
            self._unsubscribe_timer.cancel()
        for client in (self._client, *self._node_clients):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
        self._node_clients.clear()
        self._client = self._commands = None

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        if self._client is None:
            raise RuntimeError("the RedisBroker is not started: await broker.start() first")
        loop = self._loop
        assert loop is not None
        if self._refresher is None and not self._closing:
            self._refresher = loop.create_task(self._refresh_loop())
            if self.check_interval > 0:
                self._checker = loop.create_task(self._check_loop())
            if not self.cluster:
                self._links[""] = self._new_link("", None, None)
        return loop

    def _spawn(self, coro: Any) -> None:
        loop = self._loop
        assert loop is not None
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- pub/sub connections: one, or one per cluster master --------------------------------

    def _new_link(self, name: str, host: str | None, port: int | None) -> PubSubLink:
        node_client = clients.async_node_client(
            self.url, connect_timeout=self.command_timeout, host=host, port=port
        )
        self._node_clients.append(node_client)
        client = self._client
        if self.cluster:
            probe = wire.probe_channel(self.node_id, self._probe_tag(name)).encode()

            async def publish_probe(channel: bytes, token: bytes) -> object:
                node = client.get_node(node_name=name)
                if node is None:
                    raise BrokerError(f"{name} is no longer a node of the cluster")
                return await client.execute_command("SPUBLISH", channel, token, target_nodes=node)

        else:
            probe = wire.probe_channel(self.node_id).encode()

            async def publish_probe(channel: bytes, token: bytes) -> object:
                return await client.publish(channel, token)

        return PubSubLink(
            self,
            node_client.pubsub,
            publish_probe,
            probe,
            sharded=self.cluster,
            probe_interval=self.probe_interval,
            probe_timeout=self.probe_timeout,
            reconnect_delay=self.reconnect_delay,
            max_reconnect_delay=self.max_reconnect_delay,
            counters=self._counters,
            name=name or self.url,
        )

    def _probe_tag(self, name: str) -> str:
        """A hash tag whose slot the cluster node ``name`` owns (for its link's probe)."""
        from redis.crc import key_slot  # noqa: PLC0415 - the optional extra

        slots = self._client.nodes_manager.slots_cache
        for number in range(100_000):
            tag = str(number)
            owners = slots.get(key_slot(wire.probe_channel(self.node_id, tag).encode()))
            if owners and owners[0].name == name:
                return tag
        raise BrokerError(f"the cluster node {name} owns no slot")

    def _schedule_route(self, *, refresh: bool) -> None:
        """Subscribe the unrouted groups on their masters' links (cluster), reading the
        cluster's layout again first when ``refresh``."""
        self._refresh_layout = self._refresh_layout or refresh
        if self._router is None or self._router.done():
            assert self._loop is not None
            self._router = self._loop.create_task(self._route())

    async def _route(self) -> None:
        delay = self.reconnect_delay
        client = self._client
        while not self._closing:
            try:
                if not self._layout_known:
                    await client.initialize()
                    self._layout_known = True
                    self._refresh_layout = False
                elif self._refresh_layout:
                    self._refresh_layout = False
                    await client.nodes_manager.initialize()
                    self._unrouted.update(self._channels)  # any group may have moved
            except Exception as exc:
                self._refresh_layout = True
                if not self._failing:
                    _logger.warning("reading the Redis Cluster's layout failed (%s)", exc)
                    self._failing = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_reconnect_delay)
                continue
            self._failing = False
            self._assign()
            if not self._refresh_layout and not self._unrouted:
                return

    def _assign(self) -> None:
        client = self._client
        groups, self._unrouted = self._unrouted, set()
        for group in groups:
            channel = self._channels.get(group)
            if channel is None:
                continue
            node = client.get_node_from_key(wire.channel(group))
            old = channel.link
            if old is not None and old.name == node.name and group in old.groups:
                continue
            if old is not None:
                old.remove([group])
                self._counters["moved"] += 1
            link = self._links.get(node.name)
            if link is None:
                link = self._links[node.name] = self._new_link(node.name, node.host, node.port)
            channel.link = link
            channel.confirmed = False
            link.add(group)
        for name, link in list(self._links.items()):
            # After a failover or a resharding, a link's probe slot may have moved too.
            tag = self._probe_tag_if_owned(name)
            if tag is not None:
                link.probe_channel = wire.probe_channel(self.node_id, tag).encode()
            elif not link.groups:
                # Its node owns no slot any more (a failed master, a drained one): drop it,
                # or it would reconnect for ever and health() would report it down.
                del self._links[name]
                self._spawn(link.close())

    def _probe_tag_if_owned(self, name: str) -> str | None:
        try:
            return self._probe_tag(name)
        except BrokerError:
            return None

    # ---- what the links report --------------------------------------------------------------

    def link_received(self, name: bytes, payload: bytes) -> None:
        """A publication arrived on a link: order it and deliver it."""
        self._received(name, payload)

    def link_confirmed(self, link: PubSubLink, group: str) -> None:
        """A subscription is live: read the group's position (batched)."""
        channel = self._channels.get(group)
        if channel is None or channel.link is not link or channel.confirmed:
            return
        channel.confirmed = True
        self._counters["subscribed"] += 1
        self._to_position.add(group)
        if len(self._to_position) == 1:
            self._spawn(self._read_positions())

    def link_down(self, link: PubSubLink) -> None:
        """A link lost its connection: its groups are checked again once resubscribed."""
        for group in link.groups:
            channel = self._channels.get(group)
            if channel is not None:
                channel.confirmed = False
        if self.cluster and link.groups:
            self._schedule_route(refresh=True)  # a failover may have moved its slots

    def link_moved(self, link: PubSubLink, group: str) -> None:
        """Redis dropped a group's sharded subscription: its slot moved; follow it."""
        channel = self._channels.get(group)
        if channel is None:
            return
        channel.confirmed = False
        channel.link = None
        self._counters["moved"] += 1
        self._unrouted.add(group)
        self._schedule_route(refresh=True)

    # ---- interest: subscribing and unsubscribing, batched -----------------------------------

    def interest(self, group: str) -> None:
        """Subscribe to ``group``'s channel (batched with others asked for meanwhile)."""
        loop = self._ensure_started()
        self._unsubscribe_at.pop(group, None)  # back before its unsubscribe: keep it
        if group in self._channels:
            return
        channel = self._channels[group] = _Channel(
            group, self.policies(group).history_size > 0, loop
        )
        if self.cluster:
            self._unrouted.add(group)
            self._schedule_route(refresh=False)
        else:
            link = self._links[""]
            channel.link = link
            link.add(group)

    def disinterest(self, group: str) -> None:
        """Unsubscribe from ``group`` after ``unsubscribe_delay`` unless a member comes back."""
        if group not in self._channels or self._loop is None:
            return
        self._unsubscribe_at[group] = self._loop.time() + self.unsubscribe_delay
        if self._unsubscribe_timer is None:
            self._unsubscribe_timer = self._loop.call_later(
                self.unsubscribe_delay, self._unsubscribe_due
            )

    def _unsubscribe_due(self) -> None:
        loop = self._loop
        assert loop is not None
        self._unsubscribe_timer = None
        now = loop.time()
        due = [group for group, at in self._unsubscribe_at.items() if at <= now]
        by_link: dict[PubSubLink, list[str]] = {}
        for group in due:
            del self._unsubscribe_at[group]
            self._unrouted.discard(group)
            channel = self._channels.pop(group, None)
            if channel is None:
                continue
            self._duplicates_before += channel.sequencer.duplicates  # keep the total monotonic
            if not channel.ready.done():
                channel.ready.cancel()
            if channel.link is not None:
                by_link.setdefault(channel.link, []).append(group)
        for link, groups in by_link.items():
            link.remove(groups)
        if self._unsubscribe_at:
            delay = max(0.0, min(self._unsubscribe_at.values()) - now)
            self._unsubscribe_timer = loop.call_later(delay, self._unsubscribe_due)

    # ---- positions, order, gaps and repairs -------------------------------------------------

    async def _read_positions(self) -> None:
        await asyncio.sleep(0)  # gather the confirmations of one batch
        groups, self._to_position = list(self._to_position), set()
        commands = self._commands
        if commands is None:
            return
        issued = self._issue_position_reads(commands, groups)
        for group, (snapshot, future) in zip(groups, issued, strict=True):
            try:
                epoch, top = await future
            except BrokerError:
                continue  # the connection is failing: the reconnect reads it again
            channel = self._channels.get(group)
            if channel is None or not channel.confirmed:
                continue
            self._apply(channel, channel.sequencer.position(epoch.decode(), int(top), snapshot))
            if channel.sequencer.floor > channel.sequencer.last:
                assert self._loop is not None
                self._loop.call_later(self.settle_delay, self._settle, group)
            if not channel.ready.done():
                channel.ready.set_result(None)

    async def _check_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.check_interval)
            for link in list(self._links.values()):
                with contextlib.suppress(BrokerError):
                    await self._check(link)

    async def _check(self, link: PubSubLink) -> None:
        """Read the positions of ``link``'s idle groups, wait for a probe to come back, then
        take what the positions showed and never arrived for lost (repaired or reported)."""
        commands = self._commands
        if commands is None or not link.connected:
            return
        groups = [
            group
            for group in link.groups
            if (channel := self._channels.get(group)) is not None
            and channel.confirmed
            and channel.ready.done()
            and not channel.sequencer.repairing
        ]
        if not groups:
            return
        issued = self._issue_position_reads(commands, groups)
        positions = await asyncio.gather(*(future for _, future in issued))
        if not await link.barrier():
            return  # the prober deals with a connection that does not answer
        self._counters["checks"] += 1
        for group, (snapshot, _), (epoch, top) in zip(groups, issued, positions, strict=True):
            channel = self._channels.get(group)
            if channel is None or channel.link is not link or not channel.confirmed:
                continue
            sequencer = channel.sequencer
            if sequencer.repairing:
                continue
            self._apply(channel, sequencer.position(epoch.decode(), int(top), snapshot))
            self._apply(channel, sequencer.settle())  # after the barrier: nothing in flight

    def _issue_position_reads(
        self, commands: CommandQueue, groups: list[str]
    ) -> list[tuple[tuple[str, int] | None, asyncio.Future[Any]]]:
        """Queue a position read per group, each with where its group was when issued."""
        issued = []
        for group in groups:
            channel = self._channels.get(group)
            snapshot = channel.sequencer.snapshot() if channel is not None else None
            future = commands.call(commands.script("position", (wire.keys(group)[0],)))
            issued.append((snapshot, future))
        return issued

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
        if gap.reason == "rewound" and self._commands is not None:
            commands = self._commands
            commands.submit(
                commands.script("new_epoch", wire.keys(gap.group)[:2], gap.epoch, new_node_id())
            )
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
            "SPUBLISH" if self.cluster else "PUBLISH",
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
        # Once per outage: while a connection is known to be failing, its log line says it.
        outage = self._failing or any(link.failing for link in self._links.values())
        if self._counters["publish_failures"] == 1 or not outage:
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

    # ---- health ----------------------------------------------------------------------------

    def health(self) -> str | None:
        """None while every pub/sub connection is up and its probe came back recently (within
        two probe intervals and a probe timeout); else what is wrong."""
        if self._client is None or self._closing:
            return "the Redis broker is not started"
        if self.cluster and not self._layout_known:
            return "the Redis Cluster's layout is not known yet"
        stale = 2 * self.probe_interval + self.probe_timeout
        now = time.monotonic()
        for link in self._links.values():
            if self.cluster and not link.groups:
                continue  # a master with none of this process's groups does not matter
            if not link.connected:
                return f"the Redis pub/sub connection to {link.name} is down"
            if now - link.alive_at > stale:
                quiet = now - link.alive_at
                return f"no probe came back from {link.name} for {quiet:.1f} s"
        return None

    # ---- counters --------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters since start: ``published``, ``publish_failures``, ``received`` (messages
        off the pub/sub connection), ``delivered``, ``duplicates``, ``gaps``, ``repaired``
        (messages recovered from history to fill gaps), ``reconnects``, ``deaf`` (deaf
        connections found by the probe), ``subscribed``/``unsubscribed`` (channels),
        ``moved`` (groups that followed their slot to another cluster master), ``malformed``;
        and ``groups`` (subscribed now) and ``connections`` (pub/sub connections now)."""
        counters = dict(self._counters)
        counters["duplicates"] = self._duplicates_before + sum(
            c.sequencer.duplicates for c in self._channels.values()
        )
        counters["groups"] = len(self._channels)
        counters["connections"] = len(self._links)
        return counters
