"""RedisBroker on a real three-master Redis Cluster: sharded pub/sub, one connection per
master, broadcast and recovery across nodes, groups spread over the slots, slot migration."""

from __future__ import annotations

import asyncio
from collections import Counter

import redis
from redis.crc import key_slot

from fullduplex.app import App
from fullduplex.brokers import Gap, Publisher, RedisBroker, broker_from_url, wire
from fullduplex.exceptions import BrokerError
from tests.brokers.clients import eventually, join, serving
from tests.brokers.redis_servers import RedisCluster
from tests.brokers.room_app import build
from tests.helpers import seconds


def cluster_url(cluster: RedisCluster) -> str:
    return cluster.url.replace("redis://", "redis+cluster://")


def node(cluster: RedisCluster, gaps: list[Gap] | None = None, **options: float) -> App:
    """One server node of the room app on the cluster."""
    broker = RedisBroker(cluster_url(cluster), **options)
    return build(App(broker=broker, on_gap=None if gaps is None else gaps.append))


def rooms_on_every_master(cluster: RedisCluster, count: int) -> list[str]:
    """``count`` room names per master, so that a test touches every master."""
    chosen: dict[int, list[str]] = {index: [] for index in range(len(cluster.nodes))}
    owners = {}
    number = 0
    while any(len(names) < count for names in chosen.values()):
        name = f"r{number}"
        number += 1
        slot = key_slot(wire.channel("room:" + name).encode())
        if slot not in owners:
            owners[slot] = cluster.owner_of(slot)
        if len(chosen[owners[slot]]) < count:
            chosen[owners[slot]].append(name)
    return [name for names in chosen.values() for name in names]


def test_broker_url_names_a_cluster(redis_cluster: RedisCluster) -> None:
    broker = broker_from_url(cluster_url(redis_cluster))
    assert isinstance(broker, RedisBroker) and broker.cluster


class TestBroadcast:
    async def test_rooms_on_every_master_across_two_nodes(
        self, redis_cluster: RedisCluster
    ) -> None:
        """Members of six rooms (two per master) on two nodes: every message reaches every
        member of its room, in one order, offsets gap-free; one pub/sub connection per
        master at most, whatever the number of groups."""
        rooms = rooms_on_every_master(redis_cluster, 2)
        a, b = node(redis_cluster), node(redis_cluster)
        async with serving(a, b) as (port_a, port_b):
            here = [await join(port_a, room) for room in rooms]
            there = [await join(port_b, room, user="t") for room in rooms]
            try:
                for i in range(50):
                    for member in (*here, *there):
                        await member.ws.send(f"{i}")
                for first, second in zip(here, there, strict=True):
                    await first.wait_for(100)
                    await second.wait_for(100)
                    assert first.received == second.received
                    assert first.offsets == list(range(1, 101))
                for app in (a, b):
                    stats = app.broker.stats()
                    assert stats["connections"] == 3 and stats["groups"] == len(rooms)
                    assert stats["gaps"] == 0
                # Each master has each node's one sharded subscriber per room it owns.
                for index, server in enumerate(redis_cluster.nodes):
                    owned = [
                        room
                        for room in rooms
                        if redis_cluster.owner_of(key_slot(wire.channel("room:" + room).encode()))
                        == index
                    ]
                    with redis.Redis(port=server.port) as client:
                        counts = client.execute_command(
                            "PUBSUB", "SHARDNUMSUB", *(wire.channel("room:" + r) for r in owned)
                        )
                        assert counts[1::2] == [2] * len(owned)
            finally:
                for member in (*here, *there):
                    await member.close()

    async def test_connections_bounded_by_the_cluster_size(
        self, redis_cluster: RedisCluster
    ) -> None:
        broker = RedisBroker(cluster_url(redis_cluster))
        async with broker:
            broker.attach(lambda publication: None, None)
            for number in range(300):
                broker.interest(f"many:{number}")
            await eventually(lambda: broker.stats()["subscribed"] == 300)
            assert broker.stats()["connections"] == 3
            for server in redis_cluster.nodes:
                with redis.Redis(port=server.port) as client:
                    pubsub = [c for c in client.client_list() if int(c.get("ssub", 0) or 0) > 0]
                    assert len(pubsub) == 1  # this process's one sharded subscriber

    async def test_outside_publisher_on_the_cluster(self, redis_cluster: RedisCluster) -> None:
        app = node(redis_cluster)
        async with serving(app) as (port,):
            members = [await join(port, room) for room in rooms_on_every_master(redis_cluster, 1)]
            with Publisher(cluster_url(redis_cluster)) as publisher:
                for member, room in zip(
                    members, rooms_on_every_master(redis_cluster, 1), strict=True
                ):
                    await asyncio.to_thread(publisher.publish, "room:" + room, f"to {room}")
                    await member.wait_for(1)
                    assert member.bodies == [f"to {room}"]
            for member in members:
                await member.close()


class TestRecovery:
    async def test_after_a_cut_on_every_master(self, redis_cluster: RedisCluster) -> None:
        rooms = rooms_on_every_master(redis_cluster, 1)
        a, b = node(redis_cluster), node(redis_cluster)
        async with serving(a, b) as (port_a, port_b):
            for room in rooms:
                member = await join(port_a, room)
                talker = await join(port_b, room, user="t")
                await talker.ws.send("seen")
                await member.wait_for(1)
                await member.close()
                for i in range(20):
                    await talker.ws.send(f"missed {i}")
                await talker.wait_for(21)
                back = await join(port_a, room, since=member.position)
                await talker.ws.send("newer")
                await back.wait_for(21)
                assert back.recovery[0].split()[1:3] == ["yes", "-"]
                assert back.bodies == [f"missed {i}" for i in range(20)] + ["newer"]
                assert back.offsets == list(range(2, 23))
                await back.close()
                await talker.close()


class TestSlots:
    async def test_ten_thousand_groups_spread_evenly(self, redis_cluster: RedisCluster) -> None:
        """The hash tag of a group's keys is its name: 10,000 groups land on the three
        masters evenly (counted where their state really is, after one publish each)."""
        broker = RedisBroker(cluster_url(redis_cluster))
        async with broker:
            broker.attach(lambda publication: None, None)
            for number in range(10_000):
                broker.publish_nowait(f"game:{number}", b"x", text=True)
            await broker.publish("game:last", b"x", text=True)  # after the others, in order
        keys = []
        for server in redis_cluster.nodes:
            with redis.Redis(port=server.port) as client:
                keys.append(client.dbsize())
        assert sum(keys) == 10_001  # one meta hash per group (no history configured)
        assert max(keys) / min(keys) <= 1.3, keys
        slots = Counter(key_slot(wire.channel(f"game:{n}").encode()) for n in range(10_000))
        assert len(slots) > 7_000  # spread over the slots, not bunched in a few

    async def test_a_group_follows_its_slot_to_another_master(
        self, redis_cluster: RedisCluster
    ) -> None:
        gaps: list[Gap] = []
        a, b = node(redis_cluster, gaps), node(redis_cluster)
        async with serving(a, b) as (port_a, port_b):
            member = await join(port_a, "mover")
            talker = await join(port_b, "mover", user="t")
            for i in range(10):
                await talker.ws.send(f"before {i}")
            await member.wait_for(10)
            slot = key_slot(wire.channel("room:mover").encode())
            source = redis_cluster.owner_of(slot)
            await asyncio.to_thread(redis_cluster.move_slot, slot, (source + 1) % 3)
            await eventually(lambda: a.broker.stats()["moved"] >= 1, timeout=10)
            await eventually(lambda: b.broker.stats()["moved"] >= 1, timeout=10)
            for i in range(10):
                await talker.ws.send(f"after {i}")
            await member.wait_for(20)
            assert member.bodies == [f"before {i}" for i in range(10)] + [
                f"after {i}" for i in range(10)
            ]
            assert member.offsets == list(range(1, 21)), (gaps, member.received)
            assert gaps == []
            await member.close()
            await talker.close()


class TestFailover:
    async def test_master_killed_its_replica_takes_over(self) -> None:
        """kill -9 of the master of a room's slot: its replica takes over, the broker reads
        the new layout, subscribes there, and the room goes on in order, nothing lost."""
        # 2 s: short enough for a quick failover, long enough that a node starved of CPU on a
        # busy machine is not taken for dead.
        with RedisCluster(replicas=1, node_timeout_ms=2000) as cluster:
            gaps: list[Gap] = []
            a, b = node(cluster, gaps), node(cluster)
            async with serving(a, b) as (port_a, port_b):
                member = await join(port_a, "fo")
                talker = await join(port_b, "fo", user="t")
                for i in range(10):
                    await talker.ws.send(f"before {i}")
                await member.wait_for(10)
                slot = key_slot(wire.channel("room:fo").encode())
                doomed = cluster.owner_of(slot)
                with redis.Redis(port=cluster.nodes[doomed].port) as client:
                    assert client.execute_command("WAIT", 1, 5000) == 1  # the replica has all
                cluster.nodes[doomed].kill()
                await eventually(lambda: cluster.owner_of(slot) != doomed, timeout=20)
                sent = 0
                async with asyncio.timeout(seconds(20)):
                    while sent < 10:
                        try:
                            await b.broker.publish("room:fo", f"after {sent}".encode(), text=True)
                            sent += 1
                        except BrokerError:
                            await asyncio.sleep(0.1)  # until the sender's client sees the layout
                await member.wait_for(20, timeout=20)
                assert member.bodies == [f"before {i}" for i in range(10)] + [
                    f"after {i}" for i in range(10)
                ]
                assert member.offsets == list(range(1, 21))
                assert gaps == []
                assert a.broker.stats()["reconnects"] >= 1
                # Ready again: the dead master's link is dropped, not reported down for ever.
                await eventually(lambda: a.broker.health() is None, timeout=10)
                await member.close()
                await talker.close()
