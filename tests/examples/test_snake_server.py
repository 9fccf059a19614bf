"""Tests for examples/snake/server.py over real sockets: the loop, the broadcast, steering."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from examples.snake.game import Game
from examples.snake.server import SnakeServer

from fullduplex.app import App
from fullduplex.asyncio.client import connect
from fullduplex.asyncio.connection import WebSocket
from fullduplex.exceptions import ConnectionClosedError
from tests.helpers import seconds

TICK = 0.02


@pytest.fixture
async def snake() -> AsyncIterator[tuple[SnakeServer, str]]:
    """A snake server ticking every 20 ms on a seeded game, and its ws:// URL."""
    app = App()
    server = SnakeServer(app, tick=TICK, game=Game(rng=random.Random(7)))
    async with app.serve("127.0.0.1", 0) as listening:
        yield server, f"ws://127.0.0.1:{listening.port}/snake"
    # Closing the server closed every session: the loop stopped with the last one.
    assert not server.running


async def receive(ws: WebSocket) -> dict[str, Any]:
    async with asyncio.timeout(seconds(5)):
        message = await ws.recv()
    assert isinstance(message, str)
    decoded: dict[str, Any] = json.loads(message)
    return decoded


async def next_state(ws: WebSocket, after: int = -1) -> dict[str, Any]:
    """The next state message whose tick is past ``after`` (bounded by receive's timeout)."""
    for _ in range(1000):
        message = await receive(ws)
        if message["type"] == "state" and message["tick"] > after:
            return message
    raise AssertionError("no state came")


async def wait_until_stopped(server: SnakeServer) -> None:
    # The server runs on_close after the client sees its close: poll, bounded.
    async with asyncio.timeout(seconds(5)):
        while server.running:
            await asyncio.sleep(TICK)


def snake_of(state: dict[str, Any], snake_id: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [s for s in state["snakes"] if s["id"] == snake_id]
    assert len(found) == 1, state
    return found[0]


async def test_loop_runs_only_while_somebody_plays(snake: tuple[SnakeServer, str]) -> None:
    server, url = snake
    assert not server.running
    async with connect(url + "?name=ann") as ann:
        welcome = await receive(ann)
        assert welcome["type"] == "welcome"
        assert welcome["name"] == "ann"
        assert server.running
        first = await next_state(ann)
        second = await next_state(ann, first["tick"])
        assert second["tick"] > first["tick"]
        assert [s["id"] for s in second["snakes"]] == [welcome["id"]]
        assert snake_of(second, welcome["id"])["color"] == welcome["color"]
    await wait_until_stopped(server)
    assert server.game.snakes == {}
    # The next player starts a new loop.
    async with connect(url) as ben:
        assert (await receive(ben))["type"] == "welcome"
        await next_state(ben)
        assert server.running


async def test_every_player_gets_the_same_message(snake: tuple[SnakeServer, str]) -> None:
    _, url = snake
    async with connect(url + "?name=ann") as ann, connect(url + "?name=ben") as ben:
        # The endpoint turns compression off: one frame, the same bytes, for everybody.
        assert ann.response is not None
        assert "Sec-WebSocket-Extensions" not in ann.response.headers
        ann_id = (await receive(ann))["id"]
        ben_id = (await receive(ben))["id"]
        both = await next_state(ann)
        while len(both["snakes"]) < 2:
            both = await next_state(ann, both["tick"])
        raw: dict[str, list[str]] = {"ann": [], "ben": []}
        for name, ws in (("ann", ann), ("ben", ben)):
            while len(raw[name]) < 5:
                async with asyncio.timeout(seconds(5)):
                    message = await ws.recv()
                assert isinstance(message, str)
                if json.loads(message)["tick"] > both["tick"]:
                    raw[name].append(message)
        assert raw["ann"] == raw["ben"]
        assert {s["id"] for s in json.loads(raw["ann"][-1])["snakes"]} == {ann_id, ben_id}


def safe_turn(state: dict[str, Any], snake: dict[str, Any]) -> str:
    x, y = snake["body"][0]
    if snake["direction"] in ("left", "right"):
        return "up" if y > state["height"] - 1 - y else "down"
    return "left" if x > state["width"] - 1 - x else "right"


async def test_steering(snake: tuple[SnakeServer, str]) -> None:
    _, url = snake
    async with connect(url) as ann:
        ann_id = (await receive(ann))["id"]
        state = await next_state(ann)
        before = snake_of(state, ann_id)
        turn = safe_turn(state, before)
        # A turn away from the nearest wall (reversals are ignored: see test_snake_game.py).
        await ann.send(json.dumps({"dir": turn}))
        # The server applies it at its next tick at the latest; give it a few.
        for _ in range(5):
            state = await next_state(ann, state["tick"])
            after = snake_of(state, ann_id)
            if after["direction"] == turn:
                break
        assert after["direction"] == turn
        assert after["deaths"] == before["deaths"]


async def test_junk_is_ignored_but_undecodable_closes(snake: tuple[SnakeServer, str]) -> None:
    _, url = snake
    async with connect(url) as ann:
        await receive(ann)
        for junk in ([1, 2], {"dir": "sideways"}, {"x": 1}, "up", None):
            await ann.send(json.dumps(junk))
        state = await next_state(ann)
        await next_state(ann, state["tick"])  # still playing
        await ann.send("{not json")
        with pytest.raises(ConnectionClosedError) as info:
            for _ in range(1000):  # states already on their way may come first
                await receive(ann)
        assert info.value.code == 1007
