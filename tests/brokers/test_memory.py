"""MemoryBroker, the default broker of every App: interest, publish order, recovery and
presence, directly and through the room app of :mod:`tests.brokers.room_app`."""

from __future__ import annotations

import pytest

from fullduplex.app import App
from fullduplex.brokers import NO_POSITION, Gap, GroupOptions, MemoryBroker, Position, Publication
from tests.brokers.clients import join, serving
from tests.brokers.room_app import build, stamp_text


def attached(
    patterns: dict[str, GroupOptions] | None = None,
) -> tuple[MemoryBroker, list[Publication], list[Gap]]:
    """A broker with its deliveries and gaps logged; ``patterns``: group pattern -> options."""
    broker = MemoryBroker()
    for pattern, options in (patterns or {}).items():
        broker.policies.add(pattern, options)
    delivered: list[Publication] = []
    gaps: list[Gap] = []
    broker.attach(delivered.append, gaps.append)
    return broker, delivered, gaps


class TestPublish:
    async def test_delivered_at_once_in_order_with_consecutive_offsets(self) -> None:
        broker, delivered, gaps = attached()
        broker.interest("g")
        positions = [await broker.publish("g", f"m{i}".encode(), text=True) for i in range(3)]
        broker.publish_nowait("g", b"\x00", text=False, exclude=["s1"])
        # Synchronous: the fourth is delivered before publish_nowait returned.
        assert [p.offset for p in delivered] == [1, 2, 3, 4]
        assert [p.data for p in delivered] == [b"m0", b"m1", b"m2", b"\x00"]
        assert [p.text for p in delivered] == [True, True, True, False]
        assert delivered[3].exclude == ("s1",)
        assert {p.epoch for p in delivered} == {positions[0].epoch}
        assert {p.node for p in delivered} == {broker.node_id}
        assert positions == [p.position for p in delivered[:3]]
        assert broker.position("g") == Position(positions[0].epoch, 4)
        assert gaps == []  # nothing is ever lost in one process
        assert broker.stats() == {"published": 4, "groups": 1}

    async def test_groups_have_their_own_offsets(self) -> None:
        broker, delivered, _ = attached()
        for group in ("a", "b", "a"):
            broker.interest(group)
            await broker.publish(group, b"x", text=True)
        assert [(p.group, p.offset) for p in delivered] == [("a", 1), ("b", 1), ("a", 2)]
        assert delivered[0].epoch != delivered[1].epoch


class TestInterest:
    async def test_state_dropped_after_the_last_member_without_history(self) -> None:
        """A group without history is forgotten when the process has no member left: it
        comes back with a new epoch, so an old position cannot be taken for a new one."""
        broker, _, _ = attached()
        broker.interest("g")
        first = await broker.publish("g", b"x", text=True)
        broker.disinterest("g")
        assert broker.stats()["groups"] == 0
        assert broker.position("g") == NO_POSITION
        broker.interest("g")
        again = await broker.publish("g", b"y", text=True)
        assert again.offset == 1 and again.epoch != first.epoch

    async def test_state_kept_while_history_lives(self) -> None:
        broker, _, _ = attached({"h*": GroupOptions(history_size=10)})
        broker.interest("h1")
        first = await broker.publish("h1", b"x", text=True)
        broker.disinterest("h1")
        assert broker.position("h1") == first  # its history may still be asked for

    async def test_disinterest_in_an_unknown_group_is_harmless(self) -> None:
        broker, _, _ = attached()
        broker.disinterest("never")
        assert broker.stats()["groups"] == 0


class TestRecovery:
    """The reasons of :func:`fullduplex.brokers.base.judge_recovery`, with this broker."""

    async def test_exactly_what_was_missed(self) -> None:
        broker, _, _ = attached({"g": GroupOptions(history_size=10)})
        broker.interest("g")
        seen = await broker.publish("g", b"seen", text=True)
        for i in range(3):
            await broker.publish("g", f"missed {i}".encode(), text=True)
        recovery = await broker.recover("g", seen)
        assert recovery.recovered and recovery.reason == ""
        assert [p.data for p in recovery.publications] == [b"missed 0", b"missed 1", b"missed 2"]
        assert recovery.position == Position(seen.epoch, 4)

    async def test_too_old_replays_nothing_of_the_partial_history(self) -> None:
        """History of 3, 5 missed: the last 3 are there, but a part is never replayed."""
        broker, _, _ = attached({"g": GroupOptions(history_size=3)})
        broker.interest("g")
        seen = await broker.publish("g", b"seen", text=True)
        for i in range(5):
            await broker.publish("g", f"missed {i}".encode(), text=True)
        recovery = await broker.recover("g", seen)
        assert (recovery.recovered, recovery.reason) == (False, "too_old")
        assert recovery.publications == ()
        assert recovery.position == Position(seen.epoch, 6)
        # The history does hold the last three: a client that missed only those gets them.
        recent = await broker.recover("g", Position(seen.epoch, 3))
        assert recent.recovered
        assert [p.offset for p in recent.publications] == [4, 5, 6]

    async def test_too_many(self) -> None:
        broker, _, _ = attached({"g": GroupOptions(history_size=10, max_recovery=2)})
        broker.interest("g")
        seen = await broker.publish("g", b"seen", text=True)
        for _ in range(3):
            await broker.publish("g", b"missed", text=True)
        recovery = await broker.recover("g", seen)
        assert (recovery.recovered, recovery.reason, recovery.publications) == (
            False,
            "too_many",
            (),
        )

    async def test_other_reasons(self) -> None:
        broker, _, _ = attached({"h": GroupOptions(history_size=10)})
        broker.interest("h")
        broker.interest("plain")
        at_h = await broker.publish("h", b"x", text=True)
        at_plain = await broker.publish("plain", b"x", text=True)
        assert (await broker.recover("h", NO_POSITION)).reason == "no_position"
        assert (await broker.recover("plain", at_plain)).reason == "no_history"
        assert (await broker.recover("h", Position("another", 1))).reason == "epoch_changed"
        ahead = Position(at_h.epoch, at_h.offset + 1)  # from a life of the group now lost
        assert (await broker.recover("h", ahead)).reason == "epoch_changed"

    async def test_rejoin_through_the_app_too_old(self) -> None:
        """The room app on a MemoryBroker: the session that missed 5 of a history of 3 is
        told ``too_old`` and then gets only what is newer."""
        app = App(broker=MemoryBroker())
        app.configure_groups("room:old", history_size=3, stamp=stamp_text)
        build(app)
        async with serving(app) as (port,):
            member = await join(port, "old")
            talker = await join(port, "old", user="t")
            await talker.ws.send("seen")
            await member.wait_for(1)
            await member.close()
            for i in range(5):
                await talker.ws.send(f"missed {i}")
            await talker.wait_for(6)
            back = await join(port, "old", since=member.position)
            words = back.recovery[0].split()
            assert words[1:3] == ["no", "too_old"]
            assert words[4] == "6"  # the position to keep from now on
            await talker.ws.send("newer")
            await back.wait_for(1)
            assert back.bodies == ["newer"]  # never a partial replay
            assert back.offsets == [7]
            await back.close()
            await talker.close()


class TestPresence:
    async def test_sessions_and_distinct_users(self) -> None:
        broker, _, _ = attached({"p": GroupOptions(presence=True)})
        broker.presence_add("p", "s1", "ann")
        broker.presence_add("p", "s2", "ann")
        broker.presence_add("p", "s3", None)
        presence = await broker.presence("p")
        assert dict(presence.sessions) == {"s1": "ann", "s2": "ann", "s3": None}
        assert presence.users == {"ann"}
        for session in ("s1", "s2", "s3"):
            broker.presence_remove("p", session)
        broker.presence_remove("p", "s1")  # twice: harmless
        assert dict((await broker.presence("p")).sessions) == {}

    async def test_refused_where_not_enabled(self) -> None:
        broker, _, _ = attached()
        with pytest.raises(ValueError, match="presence is not enabled"):
            await broker.presence("p")
