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
async def base() -> AsyncIterator[str]:
    """ws://127.0.0.1:PORT of an app with only the chat endpoint."""
    app = App()
    register(app)
    async with app.serve("127.0.0.1", 0) as server:
        yield f"ws://127.0.0.1:{server.port}"


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
