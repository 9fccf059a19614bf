"""Tests for examples/chat/server.py over real sockets, with the fullduplex client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from examples.chat.server import MAX_MESSAGE_SIZE, ChatMessage, register

from fullduplex.app import App
from fullduplex.asyncio.client import connect
from fullduplex.asyncio.connection import WebSocket
from fullduplex.exceptions import ConnectionClosedError
from tests.helpers import seconds


@pytest.fixture
async def served() -> AsyncIterator[tuple[App, str]]:
    """An app with only the chat endpoint (the in-process broker), and its ws://127.0.0.1:PORT."""
    app = App()
    register(app)
    async with app.serve("127.0.0.1", 0) as server:
        yield app, f"ws://127.0.0.1:{server.port}"


@pytest.fixture
def base(served: tuple[App, str]) -> str:
    """ws://127.0.0.1:PORT of an app with only the chat endpoint."""
    return served[1]


async def receive(ws: WebSocket) -> dict[str, Any]:
    async with asyncio.timeout(seconds(5)):
        message = await ws.recv()
    assert isinstance(message, str)
    decoded: dict[str, Any] = json.loads(message)
    return decoded


async def say(ws: WebSocket, username: str, message: str) -> None:
    await ws.send(json.dumps({"username": username, "message": message}))


async def test_join_message_leave(base: str) -> None:
    async with connect(f"{base}/chat/r1?name=alice") as alice:
        joined = await receive(alice)
        assert joined["type"] == "join"
        assert joined["username"] == "alice"
        assert joined["members"] == ["alice"]
        async with connect(f"{base}/chat/r1?name=bob") as bob:
            for ws in (alice, bob):
                notice = await receive(ws)
                assert (notice["type"], notice["username"]) == ("join", "bob")
                assert notice["members"] == ["alice", "bob"]
            before = datetime.now(UTC)
            await say(alice, "alice", "hello")
            for ws in (alice, bob):
                message = await receive(ws)
                assert message["type"] == "message"
                assert (message["username"], message["message"]) == ("alice", "hello")
                # The server's time, in UTC.
                stamped = datetime.fromisoformat(message["time"])
                assert stamped.utcoffset() == timedelta(0)
                assert before - timedelta(seconds=1) <= stamped <= datetime.now(UTC)
        left = await receive(alice)
        assert (left["type"], left["username"], left["members"]) == ("leave", "bob", ["alice"])


async def test_rooms_are_separate(base: str) -> None:
    async with (
        connect(f"{base}/chat/red?name=alice") as alice,
        connect(f"{base}/chat/green?name=carol") as carol,
    ):
        assert (await receive(alice))["username"] == "alice"
        assert (await receive(carol))["members"] == ["carol"]
        await say(alice, "alice", "in red")
        assert (await receive(alice))["message"] == "in red"
        await say(carol, "carol", "in green")
        # carol's next message is her own: nothing from red came in between.
        message = await receive(carol)
        assert (message["username"], message["message"]) == ("carol", "in green")


async def test_messages_keep_their_order(base: str) -> None:
    async with (
        connect(f"{base}/chat/r?name=alice") as alice,
        connect(f"{base}/chat/r?name=bob") as bob,
    ):
        await receive(alice)
        await receive(alice)
        await receive(bob)
        for i in range(50):
            await say(alice, "alice", f"m{i}")
        for ws in (alice, bob):
            texts = [(await receive(ws))["message"] for _ in range(50)]
            assert texts == [f"m{i}" for i in range(50)]


async def test_the_joining_name_is_the_one_shown(base: str) -> None:
    async with connect(f"{base}/chat/r?name=alice") as alice:
        await receive(alice)
        await say(alice, "bob", "not really bob")
        assert (await receive(alice))["username"] == "alice"


async def test_without_a_name_the_message_names_the_speaker(base: str) -> None:
    async with connect(f"{base}/chat/r") as someone:
        assert (await receive(someone))["username"] == "anonymous"
        await say(someone, "zoe", "hi")
        assert (await receive(someone))["username"] == "zoe"


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        json.dumps({"username": "alice"}),
        json.dumps({"username": "alice", "message": 42}),
        json.dumps(["alice", "hello"]),
    ],
)
async def test_undecodable_message_closes_with_1007(base: str, payload: str) -> None:
    async with connect(f"{base}/chat/r?name=alice") as alice:
        await receive(alice)
        await alice.send(payload)
        with pytest.raises(ConnectionClosedError) as info:
            await receive(alice)
        assert info.value.code == 1007


async def test_message_over_64_kib_closes_with_1009(base: str) -> None:
    async with (
        connect(f"{base}/chat/r?name=alice") as alice,
        connect(f"{base}/chat/r?name=bob", max_message_size=None) as bob,
    ):
        await receive(alice)
        await receive(alice)
        await receive(bob)
        # Exactly at the limit is fine...
        overhead = len(json.dumps({"username": "bob", "message": ""}))
        await say(bob, "bob", "x" * (MAX_MESSAGE_SIZE - overhead))
        assert len((await receive(alice))["message"]) == MAX_MESSAGE_SIZE - overhead
        await receive(bob)
        # ...one byte more is not.
        await say(bob, "bob", "x" * (MAX_MESSAGE_SIZE - overhead + 1))
        with pytest.raises(ConnectionClosedError) as info:
            await receive(bob)
        assert info.value.code == 1009
        left = await receive(alice)
        assert (left["type"], left["username"]) == ("leave", "bob")


def test_chat_message_is_the_seeds_entity() -> None:
    assert ChatMessage("ada", "hi") == ChatMessage(username="ada", message="hi")


# ---- positions, recovery and presence ------------------------------------------------------------


async def messages(ws: WebSocket, count: int) -> list[dict[str, Any]]:
    """The next ``count`` messages of type "message" (notices in between are skipped)."""
    found: list[dict[str, Any]] = []
    while len(found) < count:
        message = await receive(ws)
        if message["type"] == "message":
            found.append(message)
    return found


async def test_messages_carry_increasing_offsets_in_one_epoch(base: str) -> None:
    async with (
        connect(f"{base}/chat/r?name=alice") as alice,
        connect(f"{base}/chat/r?name=bob") as bob,
    ):
        for i in range(5):
            await say(alice if i % 2 else bob, "", f"m{i}")
        seen = [await messages(ws, 5) for ws in (alice, bob)]
        # Two senders race, but both members see the room's one order: by offset, one by one.
        assert seen[0] == seen[1]
        received = seen[0]
        assert sorted(m["message"] for m in received) == [f"m{i}" for i in range(5)]
        offsets = [m["offset"] for m in received]
        assert offsets == list(range(offsets[0], offsets[0] + 5))
        assert len({m["epoch"] for m in received}) == 1
        assert received[0]["epoch"]
        # Notices are not part of the room's stream: no position.
        async with connect(f"{base}/chat/r?name=carol") as carol:
            joined = await receive(carol)
            assert joined["type"] == "join"
            assert "offset" not in joined and "epoch" not in joined


async def test_reconnect_replays_exactly_the_missed_messages(base: str) -> None:
    async with connect(f"{base}/chat/r?name=bob") as bob:
        await receive(bob)
        async with connect(f"{base}/chat/r?name=alice") as alice:
            await say(alice, "", "before")
            last = (await messages(alice, 1))[0]
        joined = await receive(bob)
        assert (joined["type"], joined["username"]) == ("join", "alice")
        assert (await messages(bob, 1))[0]["message"] == "before"
        left = await receive(bob)
        assert (left["type"], left["username"], left["members"]) == ("leave", "alice", ["bob"])
        for i in range(3):
            await say(bob, "", f"missed {i}")
        await messages(bob, 3)

        url = f"{base}/chat/r?name=alice&epoch={last['epoch']}&offset={last['offset']}"
        async with connect(url) as alice:
            replayed = [await receive(alice) for _ in range(3)]
            assert [(m["type"], m["username"], m["message"]) for m in replayed] == [
                ("message", "bob", f"missed {i}") for i in range(3)
            ]
            assert [m["offset"] for m in replayed] == [last["offset"] + i for i in (1, 2, 3)]
            assert {m["epoch"] for m in replayed} == {last["epoch"]}
            recovery = await receive(alice)
            assert recovery == {
                "type": "recovery",
                "recovered": True,
                "reason": "",
                "replayed": 3,
                "epoch": last["epoch"],
                "offset": last["offset"] + 3,
            }
            joined = await receive(alice)
            assert (joined["type"], joined["members"]) == ("join", ["alice", "bob"])
            # Then live, without duplicates.
            await say(bob, "", "live")
            live = (await messages(alice, 1))[0]
            assert (live["message"], live["offset"]) == ("live", last["offset"] + 4)


async def test_reconnect_to_an_empty_room_still_recovers(served: tuple[App, str]) -> None:
    app, base = served
    async with connect(f"{base}/chat/quiet?name=alice") as alice:
        await say(alice, "", "hello")
        last = (await messages(alice, 1))[0]
    # Nobody is left in the room; its history lives on. A message from the server side:
    await app.group("chat:quiet").broadcast({"type": "message", "username": "bot", "message": "x"})
    url = f"{base}/chat/quiet?name=alice&epoch={last['epoch']}&offset={last['offset']}"
    async with connect(url) as alice:
        replayed = await receive(alice)
        assert (replayed["username"], replayed["offset"]) == ("bot", last["offset"] + 1)
        recovery = await receive(alice)
        assert (recovery["type"], recovery["recovered"], recovery["replayed"]) == (
            "recovery",
            True,
            1,
        )


async def test_reconnect_with_another_epoch_is_not_recovered(base: str) -> None:
    async with connect(f"{base}/chat/r?name=bob") as bob:
        await say(bob, "", "one")
        current = (await messages(bob, 1))[0]
        async with connect(f"{base}/chat/r?name=alice&epoch=gone-1&offset=1") as alice:
            recovery = await receive(alice)
            assert recovery == {
                "type": "recovery",
                "recovered": False,
                "reason": "epoch_changed",
                "replayed": 0,
                "epoch": current["epoch"],
                "offset": current["offset"],
            }
            assert (await receive(alice))["type"] == "join"


@pytest.mark.parametrize("query", ["epoch=e&offset=x", "epoch=e&offset=-1", "offset=3", "epoch=e"])
async def test_an_invalid_position_is_a_fresh_join(base: str, query: str) -> None:
    async with connect(f"{base}/chat/r?name=alice&{query}") as alice:
        joined = await receive(alice)
        assert (joined["type"], joined["members"]) == ("join", ["alice"])
        await say(alice, "", "hi")
        assert (await receive(alice))["message"] == "hi"


async def test_members_come_from_presence(served: tuple[App, str]) -> None:
    app, base = served
    # A member of the room served by another process, as a broker spanning processes has it.
    app.broker.presence_add("chat:r", "elsewhere.1", "zed")
    async with connect(f"{base}/chat/r?name=alice") as alice:
        assert (await receive(alice))["members"] == ["alice", "zed"]
        async with connect(f"{base}/chat/r?name=bob") as bob:
            assert (await receive(bob))["members"] == ["alice", "bob", "zed"]
            # The same name twice (two tabs) is one member.
            async with connect(f"{base}/chat/r?name=bob") as bob2:
                assert (await receive(bob2))["members"] == ["alice", "bob", "zed"]
            joined = await receive(bob)
            assert (joined["type"], joined["members"]) == ("join", ["alice", "bob", "zed"])
            left = await receive(bob)
            assert (left["type"], left["members"]) == ("leave", ["alice", "bob", "zed"])
        app.broker.presence_remove("chat:r", "elsewhere.1")
        presence = await app.presence("chat:r")
        assert set(presence.users) == {"alice"}
        notices = [await receive(alice) for _ in range(4)]
        assert [(n["type"], n["members"]) for n in notices][-1] == ("leave", ["alice", "zed"])


async def test_one_leaves_the_other_is_listed(base: str) -> None:
    async with connect(f"{base}/chat/r?name=alice") as alice:
        await receive(alice)
        async with connect(f"{base}/chat/r?name=bob") as bob:
            await receive(bob)
            assert (await receive(alice))["members"] == ["alice", "bob"]
        left = await receive(alice)
        assert (left["type"], left["username"], left["members"]) == ("leave", "bob", ["alice"])
