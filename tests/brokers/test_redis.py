"""RedisBroker against a real redis-server: order, gaps, restarts, deaf links, recovery,
presence, routing and outside publishers. Servers run in this process (two Apps are two
nodes, each with its own broker and connections) or as ``fullduplex serve`` processes."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time

import pytest
import redis

from fullduplex.app import App
from fullduplex.app.app import BROKER_ENV
from fullduplex.brokers import Gap, Position, Publisher, RedisBroker, wire
from fullduplex.exceptions import BrokerError
from tests.brokers.clients import eventually, join, server_process, serving
from tests.brokers.redis_servers import RedisServer, Relay
from tests.brokers.room_app import build, stamp_text
from tests.helpers import seconds


def node(url: str, gaps: list[Gap] | None = None, **options: float) -> App:
    """One server node of the room app on ``url``."""
    app = App(broker=RedisBroker(url, **options), on_gap=None if gaps is None else gaps.append)
    return build(app)


def gap_free(offsets: list[int]) -> bool:
    return offsets == list(range(offsets[0], offsets[0] + len(offsets))) if offsets else True


def check_logs(
    sent: list[tuple[Position, str]],
    failed: set[str],
    received: list[tuple[str, int, str]],
    gaps: list[Gap],
) -> list[Position]:
    """Compare what was published (``sent``: position and text of each publish that
    succeeded; ``failed``: the texts of those that raised) with what one member received,
    given the gaps its node reported. The last epoch sent is the one after the restart.

    Returns:
        The positions sent and not received (each excused by a gap).
    """
    sent_at = dict(sent)
    # Received once each, and each at the position its publish returned. A publish that
    # raised may still have run (its reply was lost): its text, at an unknown position.
    positions = [(epoch, offset) for epoch, offset, _ in received]
    assert len(set(positions)) == len(positions), "a message was received twice"
    for epoch, offset, body in received:
        expected = sent_at.get(Position(epoch, offset))
        assert expected == body or (expected is None and body in failed), (epoch, offset, body)
    # In order: one epoch after the other (never back), offsets increasing within each.
    order = list(dict.fromkeys(epoch for epoch, _ in positions))
    assert [epoch for epoch, _ in positions] == sorted(
        (epoch for epoch, _ in positions), key=order.index
    ), "epochs interleaved"
    sent_epochs = list(dict.fromkeys(position.epoch for position, _ in sent))
    assert [e for e in sent_epochs if e in order] == order, "epochs out of order"
    by_epoch: dict[str, list[int]] = {}
    for epoch, offset in positions:
        by_epoch.setdefault(epoch, []).append(offset)
    for epoch, offsets in by_epoch.items():
        assert offsets == sorted(offsets), f"offsets of epoch {epoch} out of order"
    # The new epoch, whole: every offset from 1 to its last, none missing.
    new = sent[-1][0].epoch
    got = by_epoch.get(new, [])
    assert got == list(range(1, sent[-1][0].offset + 1)), f"epoch {new}: holes in {got}"
    # What is missing belongs to an old epoch and lies in a gap reported for it.
    arrived = set(map(Position._make, positions))
    missing = [position for position, _ in sent if position not in arrived]
    for position in missing:
        assert position.epoch != new, f"{position} of the new epoch never arrived"
        seen = by_epoch.get(position.epoch, [0])[-1]
        assert any(
            gap.epoch == position.epoch
            and (
                gap.first <= position.offset <= gap.last
                if gap.first is not None and gap.last is not None
                else gap.reason == "epoch_changed" and position.offset > seen
            )
            for gap in gaps
        ), f"{position} missing, and in no gap reported: {gaps}"
    return missing


class TestAcrossProcesses:
    async def test_one_room_over_two_processes(self, redis_server: RedisServer) -> None:
        """Four senders on two server processes, 10,000 messages: everyone gets them all,
        in one order, with gap-free offsets, and each sender's in the order sent."""
        senders, each = 4, 2500
        with (
            server_process(redis_server.url) as (_, port_a),
            server_process(redis_server.url) as (_, port_b),
        ):
            members = [
                await join(port, "big", user=f"s{i}")
                for i, port in enumerate([port_a, port_b, port_a, port_b])
            ]
            try:

                async def send(index: int) -> None:
                    for seq in range(each):
                        await members[index].ws.send(f"{index}:{seq}")

                await asyncio.gather(*(send(i) for i in range(senders)))
                for member in members:
                    await member.wait_for(senders * each, timeout=60)
                reference = members[0].received
                for member in members:
                    assert member.received == reference  # one order everywhere
                    assert gap_free(member.offsets)
                    assert len({epoch for epoch, _, _ in member.received}) == 1
                for index in range(senders):
                    sent = [b for b in members[0].bodies if b.startswith(f"{index}:")]
                    assert sent == [f"{index}:{seq}" for seq in range(each)]
            finally:
                for member in members:
                    await member.close()

    async def test_recovery_after_the_process_was_killed(self, redis_server: RedisServer) -> None:
        with (
            server_process(redis_server.url) as (doomed, port_a),
            server_process(redis_server.url) as (_, port_b),
        ):
            talker = await join(port_b, "k", user="talker")
            victim = await join(port_a, "k", user="victim")
            await talker.ws.send("before")
            await victim.wait_for(1)
            doomed.send_signal(signal.SIGKILL)
            doomed.wait()
            for i in range(5):
                await talker.ws.send(f"missed {i}")
            await talker.wait_for(6)
            back = await join(port_b, "k", user="victim", since=victim.position)
            try:
                assert (await back.wait_recovery())[1] == "yes"
                await back.wait_for(5)
                assert back.bodies == [f"missed {i}" for i in range(5)]
                assert back.offsets == [victim.offsets[-1] + 1 + i for i in range(5)]
            finally:
                await back.close()
                await talker.close()


class TestOrderAndGaps:
    async def test_gap_in_a_group_without_history_is_reported(
        self, redis_server: RedisServer
    ) -> None:
        gaps: list[Gap] = []
        app = node(redis_server.url, gaps)
        async with serving(app) as (port,):
            member = await join(port, "a")  # "room:*" keeps history: use another group
            session = next(iter(app.sessions("/room/{name}")))
            session.join("plain")
            broker = app.broker
            await eventually(lambda: broker.stats()["groups"] == 2)
            await broker.publish("plain", b"one", text=True)
            # Take offsets 2 and 3 without publishing them: what a lost message looks like.
            redis_server.command("HINCRBY", "fd:{plain}:m", "o", "2")
            await broker.publish("plain", b"four", text=True)
            await eventually(lambda: gaps)
            assert gaps == [Gap("plain", gaps[0].epoch, 2, 3, "offset")]
            assert broker.stats()["gaps"] == 1
            await eventually(lambda: len(member.unstamped) == 2)
            assert member.unstamped == ["one", "four"]
            await member.close()

    async def test_gap_repaired_from_history(self, redis_server: RedisServer) -> None:
        gaps: list[Gap] = []
        app = node(redis_server.url, gaps)
        async with serving(app) as (port,):
            member = await join(port, "r")
            publisher = Publisher(redis_server.url)
            try:
                publisher.publish("room:r", "1")
                await member.wait_for(1)
                # Messages that reached history but not this process's pub/sub connection:
                # write them as the script would, without publishing.
                _, last = member.position
                for offset in (last + 1, last + 2):
                    redis_server.command("HINCRBY", "fd:{room:r}:m", "o", "1")
                    redis_server.command(
                        "XADD", "fd:{room:r}:s", f"{offset}-0", "d", f"t:::lost {offset}"
                    )
                publisher.publish("room:r", "4")
                await member.wait_for(4)
                assert member.bodies == ["1", f"lost {last + 1}", f"lost {last + 2}", "4"]
                assert gap_free(member.offsets)
                assert gaps == []
                assert app.broker.stats()["repaired"] == 2
            finally:
                publisher.close()
                await member.close()

    async def test_lost_last_message_of_a_quiet_group_is_found(
        self, redis_server: RedisServer
    ) -> None:
        """No later message reveals the loss: the periodic check finds it, repairs it from
        history (a room) or reports it (a group without history)."""
        gaps: list[Gap] = []
        app = node(redis_server.url, gaps, check_interval=0.3)
        async with serving(app) as (port,):
            member = await join(port, "quiet")
            session = next(iter(app.sessions("/room/{name}")))
            session.join("plain")
            await eventually(lambda: app.broker.stats()["subscribed"] == 2)
            with Publisher(redis_server.url) as publisher:
                await asyncio.to_thread(publisher.publish, "room:quiet", "1")
                await asyncio.to_thread(publisher.publish, "plain", "p1")
            await member.wait_for(1)
            await eventually(lambda: member.unstamped == ["p1"])
            # The last message of each, counted by Redis but never published.
            redis_server.command("HINCRBY", "fd:{room:quiet}:m", "o", "1")
            redis_server.command("XADD", "fd:{room:quiet}:s", "2-0", "d", "t:::lost 2")
            redis_server.command("HINCRBY", "fd:{plain}:m", "o", "1")
            await member.wait_for(2, timeout=5)
            assert member.bodies == ["1", "lost 2"]
            await eventually(lambda: gaps, timeout=5)
            assert gaps == [Gap("plain", gaps[0].epoch, 2, 2, "reconnect")]
            stats = app.broker.stats()
            assert stats["repaired"] == 1 and stats["gaps"] == 1 and stats["checks"] >= 1
            await member.close()

    async def test_offsets_rewound_by_redis_start_a_new_epoch(
        self, redis_server: RedisServer
    ) -> None:
        """What a failover that lost the latest writes looks like: the offset in Redis is
        below what was delivered. Found at the resync, reported, and the group gets a new
        epoch, so the next messages are delivered, not dropped as duplicates."""
        gaps: list[Gap] = []
        app = node(redis_server.url, gaps)
        async with serving(app) as (port,):
            member = await join(port, "rw")
            with Publisher(redis_server.url) as publisher:
                for i in range(3):
                    await asyncio.to_thread(publisher.publish, "room:rw", f"m{i}")
                await member.wait_for(3)
                old_epoch = member.received[0][0]
                redis_server.command("HSET", "fd:{room:rw}:m", "o", "1")
                redis_server.command("CLIENT", "KILL", "TYPE", "pubsub")
                await eventually(lambda: gaps)
                assert gaps[0] == Gap("room:rw", old_epoch, 2, 3, "rewound")
                await eventually(
                    lambda: (
                        redis_server.command("HGET", "fd:{room:rw}:m", "e").decode() != old_epoch
                    )
                )
                await asyncio.to_thread(publisher.publish, "room:rw", "after")
                await member.wait_for(4)
            epoch, offset, body = member.received[-1]
            assert (offset, body) == (1, "after") and epoch != old_epoch
            await member.close()

    @pytest.mark.parametrize("persistence", [False, True], ids=["empty", "aof"])
    async def test_redis_killed_and_restarted(self, persistence: bool) -> None:
        """Nothing is lost silently. The sent log (each successful publish's position and
        text) is compared with the received log of a member on each node:

        - each received message is one that was sent, at the position its publish returned,
          once, in order (epochs one after the other, offsets increasing within each);
        - the epoch after the restart is received whole, gap-free: the resubscribe lost
          nothing of it;
        - a sent message not received belongs to an earlier epoch and lies in a gap that
          node reported (an ``epoch_changed`` gap covers only what followed the last
          message that node received of that epoch).
        """
        with RedisServer(persistence=persistence) as redis_server:
            gaps_a: list[Gap] = []
            gaps_b: list[Gap] = []
            sender = node(redis_server.url, gaps_a)
            receiver = node(redis_server.url, gaps_b)
            async with serving(sender, receiver) as (port_a, port_b):
                local = await join(port_a, "x")  # on the publishing node
                remote = await join(port_b, "x")
                sent: list[tuple[Position, str]] = []
                failed: set[str] = set()  # publishes that raised: they may have run anyway
                counter = itertools.count()

                async def publish_for(duration: float) -> None:
                    end = time.monotonic() + duration
                    while time.monotonic() < end:
                        body = str(next(counter))
                        try:
                            position = await sender.broker.publish(
                                "room:x", body.encode(), text=True
                            )
                        except BrokerError:
                            failed.add(body)
                        else:
                            sent.append((position, body))
                        await asyncio.sleep(0.005)

                await publish_for(0.5)
                redis_server.kill()
                await publish_for(0.3)
                redis_server.restart()
                await publish_for(1.5)
                last = sent[-1][0]
                await eventually(
                    lambda: all(
                        m.received and m.received[-1][:2] == tuple(last) for m in (local, remote)
                    )
                )
                epochs = list(dict.fromkeys(position.epoch for position, _ in sent))
                assert sent[0][0].epoch == epochs[0] and last.epoch == epochs[-1]
                missing = [
                    check_logs(sent, failed, member.received, gaps)
                    for member, gaps in ((local, gaps_a), (remote, gaps_b))
                ]
                if persistence:
                    # The AOF kept offsets and history: nothing missed, no new epoch.
                    assert len(epochs) == 1
                    assert gaps_a == gaps_b == []
                    assert missing == [[], []]
                else:
                    assert len(epochs) == 2
                    for gaps in (gaps_a, gaps_b):
                        # The old epoch's loss is reported, once per node.
                        assert [g for g in gaps if g.reason == "epoch_changed"] == [
                            Gap("room:x", epochs[0], None, None, "epoch_changed")
                        ]
                assert receiver.broker.stats()["reconnects"] >= 1
                await local.close()
                await remote.close()

    async def test_deaf_subscriber_detected_and_healed(self, redis_server: RedisServer) -> None:
        async with Relay(("127.0.0.1", redis_server.port)) as relay:
            deaf = node(relay.url, probe_interval=1.0)
            talker = node(redis_server.url)
            async with serving(deaf, talker) as (port_a, port_b):
                listener = await join(port_a, "d")
                speaker = await join(port_b, "d")
                await speaker.ws.send("before")
                await listener.wait_for(1)
                relay.blackhole()  # TCP stays open, nothing passes
                relay.heal()  # for new connections only
                started = time.monotonic()
                await eventually(lambda: deaf.broker.stats()["deaf"] >= 1, timeout=10)
                await speaker.ws.send("after")
                await listener.wait_for(2, timeout=10)
                assert time.monotonic() - started < seconds(10)
                assert listener.bodies == ["before", "after"]
                await listener.close()
                await speaker.close()


class TestRouting:
    async def test_a_process_without_members_receives_nothing(
        self, redis_server: RedisServer
    ) -> None:
        """Only a process with a member subscribes; it unsubscribes after the last leaves."""
        a = node(redis_server.url, unsubscribe_delay=0.2)
        b = node(redis_server.url, unsubscribe_delay=0.2)
        channel = wire.channel("room:route")
        with redis.Redis(port=redis_server.port) as client:

            def subscribers() -> int:
                return int(client.pubsub_numsub(channel)[0][1])

            async with serving(a, b) as (port_a, _):
                member = await join(port_a, "route")
                assert subscribers() == 1
                with Publisher(redis_server.url) as publisher:
                    for i in range(20):
                        await asyncio.to_thread(publisher.publish, "room:route", f"m{i}")
                    await member.wait_for(20)
                    assert b.broker.stats()["received"] == 0
                    assert b.broker.stats()["groups"] == 0
                    assert a.broker.stats()["received"] >= 20
                    await member.close()
                    await eventually(lambda: subscribers() == 0, timeout=5)
                    assert a.broker.stats()["unsubscribed"] == 1
                    before = a.broker.stats()["received"]
                    for i in range(5):
                        await asyncio.to_thread(publisher.publish, "room:route", f"late{i}")
                    await asyncio.sleep(0.3)
                    assert a.broker.stats()["received"] == before
                    assert a.broker.stats()["groups"] == 0


class TestRecovery:
    async def test_after_a_ten_second_cut(self, redis_server: RedisServer) -> None:
        a, b = node(redis_server.url), node(redis_server.url)
        async with serving(a, b) as (port_a, port_b):
            member = await join(port_a, "c")
            talker = await join(port_b, "c", user="t")
            await talker.ws.send("seen")
            await member.wait_for(1)
            await member.close()
            cut = time.monotonic()
            for i in range(100):  # over ten seconds away
                await talker.ws.send(f"missed {i}")
                await asyncio.sleep(0.1)
            await talker.wait_for(101)
            assert a.broker.stats()["groups"] == 0  # node A forgot the group meanwhile
            assert time.monotonic() - cut >= 10
            back = await join(port_a, "c", since=member.position)
            await talker.ws.send("newer")
            await back.wait_for(101)
            assert back.recovery[0].split()[1:3] == ["yes", "-"]
            assert back.bodies == [f"missed {i}" for i in range(100)] + ["newer"]
            assert gap_free([member.offsets[-1], *back.offsets])
            await back.close()
            await talker.close()

    async def test_with_no_message_before_the_cut(self, redis_server: RedisServer) -> None:
        """A member that joined a group nothing was published to yet still has a position
        (the recovery line's) and gets everything published while it was away."""
        a, b = node(redis_server.url), node(redis_server.url)
        async with serving(a, b) as (port_a, port_b):
            member = await join(port_a, "empty")
            words = member.recovery[0].split()
            assert words[1:3] == ["no", "no_position"] and words[3] != "-"
            await member.close()
            talker = await join(port_b, "empty", user="t")
            for i in range(3):
                await talker.ws.send(f"while away {i}")
            await talker.wait_for(3)
            back = await join(port_a, "empty", since=member.position)
            await back.wait_for(3)
            assert back.recovery[0].split()[1:3] == ["yes", "-"]
            assert back.bodies == [f"while away {i}" for i in range(3)]
            assert back.offsets == [1, 2, 3]
            await back.close()
            await talker.close()

    async def test_more_than_max_recovery_is_not_replayed(self, redis_server: RedisServer) -> None:
        app = App(broker=RedisBroker(redis_server.url))
        app.configure_groups("room:few", history_size=100, max_recovery=5, stamp=stamp_text)
        build(app)
        async with serving(app) as (port,):
            member = await join(port, "few")
            await member.ws.send("seen")
            await member.wait_for(1)
            await member.close()
            talker = await join(port, "few", user="t")
            for i in range(6):
                await talker.ws.send(f"missed {i}")
            await talker.wait_for(6)
            back = await join(port, "few", since=member.position)
            words = await back.wait_recovery()
            assert words[1:3] == ["no", "too_many"]
            await talker.ws.send("newer")
            await back.wait_for(1)
            assert back.bodies == ["newer"]  # never a partial replay
            await back.close()
            await talker.close()

    async def test_history_that_lost_the_first_missed_is_not_replayed(
        self, redis_server: RedisServer
    ) -> None:
        """A history of 3, a session that missed 5: ``too_old``, and nothing of the 3 that
        history still holds is replayed (never a partial replay)."""
        app = App(broker=RedisBroker(redis_server.url))
        app.configure_groups("room:old", history_size=3, stamp=stamp_text)
        build(app)
        async with serving(app) as (port,):
            member = await join(port, "old")
            await member.ws.send("seen")
            await member.wait_for(1)
            await member.close()
            talker = await join(port, "old", user="t")
            for i in range(5):
                await talker.ws.send(f"missed {i}")
            await talker.wait_for(5)
            # The last three are in Redis: a partial replay would be possible.
            assert int(redis_server.command("XLEN", wire.keys("room:old")[1])) == 3
            back = await join(port, "old", since=member.position)
            words = await back.wait_recovery()
            assert words[1:3] == ["no", "too_old"]
            assert (words[3], int(words[4])) == (member.position[0], member.position[1] + 5)
            await talker.ws.send("newer")
            await back.wait_for(1)
            await talker.wait_for(6)
            assert back.bodies == ["newer"]
            assert back.offsets == [member.position[1] + 6]
            await back.close()
            await talker.close()

    async def test_after_redis_lost_its_data(self, redis_server: RedisServer) -> None:
        app = node(redis_server.url)
        async with serving(app) as (port,):
            member = await join(port, "lost")
            await member.ws.send("x")
            await member.wait_for(1)
            position = member.position
            await member.close()
            redis_server.command("FLUSHALL")
            back = await join(port, "lost", since=position)
            words = await back.wait_recovery()
            assert words[1:3] == ["no", "epoch_changed"]
            assert back.received == []
            await back.close()


async def users_become(app: App, group: str, users: set[str], within: float) -> None:
    """Wait until ``app`` sees exactly ``users`` in ``group``; fail after ``within`` seconds
    (in test units). Presence is read from Redis at each call, as a page would."""
    async with asyncio.timeout(seconds(within)):
        while (await app.presence(group)).users != users:
            await asyncio.sleep(0.02)


class TestPresence:
    async def test_across_processes_and_after_a_kill(self, redis_server: RedisServer) -> None:
        """Joins and leaves are written to Redis when they happen (not at the next refresh),
        so another process sees them within a second; the members of a killed process are
        gone after the presence TTL."""
        observer = node(redis_server.url)
        env = ("FD_TEST_PRESENCE_TTL", "1.5")
        async with serving(observer) as (port,):
            with server_process(redis_server.url, env) as (doomed, doomed_port):
                here = await join(port, "p", user="ann")
                there = [await join(doomed_port, "p", user=u) for u in ("bob", "bob", "cy")]
                presence = await observer.presence("room:p")
                assert len(presence.sessions) == 4
                assert presence.users == {"ann", "bob", "cy"}
                await there[2].close()
                await users_become(observer, "room:p", {"ann", "bob"}, within=1)
                late = await join(doomed_port, "p", user="dee")
                await users_become(observer, "room:p", {"ann", "bob", "dee"}, within=1)
                await late.close()
                await users_become(observer, "room:p", {"ann", "bob"}, within=1)
                # One of bob's two sessions leaves: bob is still there.
                await there[0].close()
                async with asyncio.timeout(seconds(1)):
                    while len((await observer.presence("room:p")).sessions) != 2:
                        await asyncio.sleep(0.02)
                assert (await observer.presence("room:p")).users == {"ann", "bob"}
                os.kill(doomed.pid, signal.SIGKILL)
                doomed.wait()
                await users_become(observer, "room:p", {"ann"}, within=10)
                await here.close()


class TestBrokerFromEnvironment:
    async def test_apps_created_with_a_redis_url_share_groups(
        self, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Two Apps created without a broker, with ``FULLDUPLEX_BROKER`` naming one Redis:
        each has a RedisBroker on it, and a room spans both (a MemoryBroker would leave them
        two rooms that cannot hear each other)."""
        monkeypatch.setenv(BROKER_ENV, redis_server.url)
        a, b = build(App()), build(App())
        assert isinstance(a.broker, RedisBroker) and a.broker.url == redis_server.url
        assert isinstance(b.broker, RedisBroker) and b.broker is not a.broker
        async with serving(a, b) as (port_a, port_b):
            here = await join(port_a, "env")
            there = await join(port_b, "env", user="t")
            await there.ws.send("across")
            await here.wait_for(1)
            assert here.bodies == ["across"]
            assert a.broker.stats()["received"] >= 1
            await here.close()
            await there.close()


class TestPublisher:
    async def test_outside_publisher_with_idempotency(self, redis_server: RedisServer) -> None:
        app = node(redis_server.url)
        async with serving(app) as (port,):
            member = await join(port, "ext")
            with Publisher(redis_server.url) as publisher:
                first = await asyncio.to_thread(
                    publisher.publish, "room:ext", "hi", idempotency_key="k1"
                )
                again = await asyncio.to_thread(
                    publisher.publish, "room:ext", "hi", idempotency_key="k1"
                )
                other = await asyncio.to_thread(publisher.publish, "room:ext", b"\x00bin")
            assert again == first and other.offset == first.offset + 1
            await member.wait_for(1)
            await eventually(lambda: member.binary)
            assert member.bodies == ["hi"]
            assert member.binary == [b"\x00bin"]
            await member.close()

    async def test_publish_fails_clearly_when_redis_is_down(
        self, redis_server: RedisServer
    ) -> None:
        broker = RedisBroker(redis_server.url, command_timeout=1.0)
        async with broker:
            await broker.publish("g", b"ok", text=True)
            redis_server.kill()
            with pytest.raises(BrokerError, match="Redis did not answer"):
                await broker.publish("g", b"lost", text=True)
        assert broker.stats()["publish_failures"] == 1
