"""The sample apps end to end: ``fullduplex demo`` in a subprocess, driven by headless Chromium.

Each page is used through its UI (buttons, inputs, arrow keys) as a person would; what the
pages received is read from the values they expose on ``window`` (``echoEvents``,
``chatMessages``, ``chatClose``, ``snakeState``, ``snakeId``). Screenshots go to
test-artifacts/examples/.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from examples._pages import mount_pages
from examples.chat import server as chat_server
from playwright.sync_api import Browser, Page, sync_playwright

from fullduplex.app import App
from tests.examples.conftest import CHROMIUM, CHROMIUM_ARGS, REPO
from tests.helpers import seconds

ARTIFACTS = REPO / "test-artifacts" / "examples"


def ms(value: float) -> float:
    """A scaled timeout in milliseconds, as Playwright wants them."""
    return seconds(value) * 1000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, launched once for the module."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=ms(30)
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def open_page(browser: Browser, demo_url: str) -> Iterator[Any]:
    """``open_page(path)``: a new 1100x800 page at ``demo_url + path``; closed after the test.

    Console errors and uncaught exceptions of every page fail the test.
    """
    with page_opener(browser, demo_url) as opener:
        yield opener


@contextmanager
def page_opener(browser: Browser, base_url: str) -> Iterator[Callable[[str], Page]]:
    """What :func:`open_page` yields, for the server at ``base_url``."""
    pages: list[Page] = []
    problems: list[str] = []

    def opener(path: str) -> Page:
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        page.set_default_timeout(ms(10))
        page.on("pageerror", lambda exc: problems.append(f"{path}: {exc}"))
        page.on(
            "console",
            lambda msg: problems.append(f"{path}: {msg.text}") if msg.type == "error" else None,
        )
        pages.append(page)
        response = page.goto(base_url + path)
        assert response is not None and response.status == 200, path
        return page

    try:
        yield opener
    finally:
        for page in pages:
            page.close()
    assert not problems, problems


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def wait_for(page: Page, expression: str, arg: Any = None, timeout: float = 10) -> Any:
    """Wait until the JS ``expression`` (a function of ``arg``) is truthy; return its value."""
    return page.wait_for_function(expression, arg=arg, timeout=ms(timeout)).json_value()


@pytest.mark.browser
def test_index_links_every_app(open_page: Any) -> None:
    page = open_page("")
    assert page.title() == "fullduplex demo"
    links = page.eval_on_selector_all(".apps a", "links => links.map(a => a.getAttribute('href'))")
    assert links == ["echo.html", "chat.html", "snake.html"]
    assert "style.css" in page.content()
    # The stylesheet really loaded: the header has its dark background, not the default.
    background = page.eval_on_selector("header.top", "e => getComputedStyle(e).backgroundColor")
    assert background == "rgb(29, 36, 51)"
    screenshot(page, "index")
    page.click("text=Chat")
    page.wait_for_url("**/chat.html")


@pytest.mark.browser
def test_echo_page_round_trip(open_page: Any) -> None:
    page = open_page("echo.html")
    assert page.input_value("#url").endswith("/echo")
    page.click("#connect")
    wait_for(page, "() => window.echoEvents.some(e => e.kind === 'open')")
    page.fill("#message", "Hello from Chromium")
    page.click("#send")
    wait_for(page, "() => window.echoEvents.some(e => e.kind === 'received')")
    page.check("#binary")
    page.fill("#message", "bytes too")
    page.press("#message", "Enter")
    wait_for(page, "() => window.echoEvents.filter(e => e.kind === 'received').length === 2")
    page.click("#disconnect")
    wait_for(page, "() => window.echoEvents.some(e => e.kind === 'close')")
    events = page.evaluate("() => window.echoEvents")
    kinds = [event["kind"] for event in events]
    assert kinds == ["open", "sent", "received", "sent", "received", "close"]
    assert events[2]["text"] == '"Hello from Chromium"'
    assert events[4]["text"] == '9 bytes (binary): "bytes too"'
    assert events[5]["text"] == 'code 1000, reason "bye"'
    # What is in the log on screen is what the events say.
    assert page.locator("#log li").count() == 6
    assert (
        page.locator("#log li.kind-received").first.inner_text().endswith('"Hello from Chromium"')
    )
    assert page.is_disabled("#send")
    screenshot(page, "echo")


def chat_join(open_page: Any, name: str, room: str) -> Page:
    page: Page = open_page("chat.html")
    page.fill("#name", name)
    page.fill("#room", room)
    page.click("#join")
    wait_for(page, "() => document.querySelector('#status').classList.contains('open')")
    return page


def chat_say(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.click("#send")


def chat_texts(page: Page) -> list[tuple[str, str]]:
    messages = page.evaluate("() => window.chatMessages.filter(m => m.type === 'message')")
    return [(m["username"], m["message"]) for m in messages]


@pytest.mark.browser
def test_chat_rooms(open_page: Any) -> None:
    alice = chat_join(open_page, "alice", "blue")
    bob = chat_join(open_page, "bob", "blue")
    carol = chat_join(open_page, "carol", "green")

    # alice saw bob join, with both names listed; carol's room is another group.
    notice = wait_for(
        alice, "() => window.chatMessages.find(m => m.type === 'join' && m.username === 'bob')"
    )
    assert notice["members"] == ["alice", "bob"]
    assert "bob joined" in alice.inner_text("#messages")
    assert alice.locator("#members li").all_inner_texts() == ["alice (you)", "bob"]

    expected = [("alice", "one"), ("bob", "two"), ("alice", "three")]
    for count, (name, text) in enumerate(expected, 1):
        chat_say(alice if name == "alice" else bob, text)
        for page in (alice, bob):
            wait_for(
                page,
                "n => window.chatMessages.filter(m => m.type === 'message').length >= n",
                count,
            )
    chat_say(carol, "only green")
    wait_for(carol, "() => window.chatMessages.some(m => m.type === 'message')")

    assert chat_texts(alice) == expected
    assert chat_texts(bob) == expected
    assert chat_texts(carol) == [("carol", "only green")]
    # Stamped by the server, in order; shown with the names on the page.
    times = alice.evaluate(
        "() => window.chatMessages.filter(m => m.type === 'message').map(m => m.time)"
    )
    assert times == sorted(times)
    assert all(t.endswith("+00:00") for t in times)
    assert alice.locator("#messages li.message .who").all_inner_texts() == [
        "alice",
        "bob",
        "alice",
    ]
    assert alice.locator("#messages li.message time").first.inner_text() != ""
    # bob never saw green's traffic, carol never saw blue's.
    assert "carol" not in str(bob.evaluate("() => window.chatMessages"))
    assert "alice" not in str(carol.evaluate("() => window.chatMessages"))
    screenshot(alice, "chat")

    # A message over 64 KiB closes the sender with 1009, shown on the page; alice sees bob leave.
    chat_say(bob, "x" * 70_000)
    close = wait_for(bob, "() => window.chatClose")
    assert close["code"] == 1009
    assert "1009 message too big" in bob.inner_text("#messages")
    leave = wait_for(
        alice, "() => window.chatMessages.find(m => m.type === 'leave' && m.username === 'bob')"
    )
    assert leave["members"] == ["alice"]


@contextmanager
def chat_in_thread() -> Iterator[tuple[App, str, asyncio.AbstractEventLoop]]:
    """The chat sample on its own App, served from a thread of this process: the test can reach
    its sessions (which ``fullduplex demo`` in a subprocess would not let it). Yields the app,
    its http:// base URL (ending with a slash) and the event loop it runs in."""
    app = App()
    chat_server.register(app)
    mount_pages(app, chat_server.STATIC)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()
    ports: list[int] = []

    async def serve() -> None:
        async with app.serve("127.0.0.1", 0) as server:
            ports.append(server.port)
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        assert started.wait(seconds(10)), "the chat server did not start"
        yield app, f"http://127.0.0.1:{ports[0]}/", loop
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(seconds(10))
        if not thread.is_alive():
            loop.close()


@pytest.mark.browser
def test_chat_reconnects_and_replays_what_it_missed(browser: Browser) -> None:
    with chat_in_thread() as (app, base_url, loop), page_opener(browser, base_url) as opener:
        alice = chat_join(opener, "alice", "drop")
        bob = chat_join(opener, "bob", "drop")
        chat_say(alice, "before")
        for page in (alice, bob):
            wait_for(page, "() => window.chatMessages.some(m => m.message === 'before')")

        async def drop_alice_and_talk() -> None:
            # The TCP connection of alice's session goes away without a closing handshake
            # (as when a network drops); then the room gets 3 messages before her page can
            # reconnect (no await in between: the loop cannot serve her reconnection meanwhile).
            for session in app.sessions(chat_server.PATH):
                if session.state.get("name") == "alice":
                    transport = session._ws._transport  # private: no public way to drop TCP
                    assert transport is not None
                    transport.abort()
            room = app.group("chat:drop")
            for i in range(3):
                room.broadcast_nowait(
                    {"type": "message", "username": "news", "message": f"missed {i}", "time": ""}
                )

        asyncio.run_coroutine_threadsafe(drop_alice_and_talk(), loop).result(seconds(10))
        wait_for(bob, "() => window.chatMessages.filter(m => m.username === 'news').length === 3")
        recovery = wait_for(alice, "() => window.chatMessages.find(m => m.type === 'recovery')")
        assert (recovery["recovered"], recovery["replayed"]) == (True, 3)
        wait_for(alice, "() => document.querySelector('#status').classList.contains('open')")
        text = alice.inner_text("#messages")
        assert "1006 connection lost, reconnecting in" in text
        assert "reconnected: 3 missed messages replayed" in text
        # The replayed messages are shown like the others, in order, once.
        expected = [("alice", "before")] + [("news", f"missed {i}") for i in range(3)]
        assert chat_texts(alice) == expected
        assert alice.locator("#messages li.message .body").all_inner_texts() == [
            text for _, text in expected
        ]
        assert alice.evaluate("() => window.chatMessages.at(-2).type") == "recovery"
        # The page is live again: bob sees what alice says now, after alice's rejoin.
        chat_say(alice, "back")
        for page in (bob, alice):
            wait_for(page, "() => window.chatMessages.some(m => m.message === 'back')")
        offsets = alice.evaluate(
            "() => window.chatMessages.filter(m => m.type === 'message').map(m => m.offset)"
        )
        assert offsets == list(range(offsets[0], offsets[0] + 5))
        screenshot(alice, "chat-reconnected")


def snake_player(open_page: Any, name: str) -> Page:
    page: Page = open_page("snake.html")
    page.fill("#name", name)
    page.click("#play")
    wait_for(page, "() => window.snakeId !== null && window.snakeState !== null")
    return page


def snake_of(state: dict[str, Any], snake_id: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [s for s in state["snakes"] if s["id"] == snake_id]
    assert len(found) == 1, state
    return found[0]


def next_state(page: Page, after_tick: int) -> dict[str, Any]:
    """The first state the page holds whose tick is past ``after_tick``."""
    state: dict[str, Any] = wait_for(
        page, "t => window.snakeState.tick > t && window.snakeState", after_tick
    )
    return state


_KEYS = {"up": "ArrowUp", "down": "ArrowDown", "left": "ArrowLeft", "right": "ArrowRight"}


def safe_turn(state: dict[str, Any], snake: dict[str, Any]) -> str:
    """A 90-degree turn towards the side with more room (so the turn does not hit a wall)."""
    x, y = snake["body"][0]
    if snake["direction"] in ("left", "right"):
        return "up" if y > state["height"] - 1 - y else "down"
    return "left" if x > state["width"] - 1 - x else "right"


@pytest.mark.browser
def test_snake_two_players(open_page: Any) -> None:
    ann = snake_player(open_page, "ann")
    ben = snake_player(open_page, "ben")
    ann_id = ann.evaluate("() => window.snakeId")
    ben_id = ben.evaluate("() => window.snakeId")
    assert ann_id != ben_id

    # Both pages see both snakes, and both snakes move from one tick to the next.
    first = wait_for(ann, "() => window.snakeState.snakes.length === 2 && window.snakeState")
    second = next_state(ann, first["tick"] + 2)
    for snake_id in (ann_id, ben_id):
        before, after = snake_of(first, snake_id), snake_of(second, snake_id)
        assert before["body"] != after["body"] or before["deaths"] != after["deaths"]
    on_ben = next_state(ben, first["tick"])
    assert {s["name"] for s in on_ben["snakes"]} == {"ann", "ben"}

    # An arrow key turns ann's snake: the next states show its new direction. A respawn (a
    # crash into ben) resets the direction, so try again then, a bounded number of times.
    for _ in range(5):
        state = next_state(ann, 0)
        snake = snake_of(state, ann_id)
        turn = safe_turn(state, snake)
        ann.keyboard.press(_KEYS[turn])
        after = next_state(ann, state["tick"] + 1)
        moved = snake_of(after, ann_id)
        if moved["deaths"] == snake["deaths"]:
            assert moved["direction"] == turn
            assert moved["direction"] != snake["direction"]
            break
    else:
        pytest.fail("ann's snake died after each of 5 turns")
    # ben's page received the very same state: one broadcast, the same message for everybody.
    same = wait_for(ben, "t => window.snakeRecent.find(s => s.tick === t)", after["tick"])
    assert same == after

    # The page draws: the score list marks ann's own snake.
    assert "ann (you)" in ann.inner_text("#scores")
    assert "ben (you)" not in ann.inner_text("#scores")
    screenshot(ann, "snake")

    # ben leaves: ann's states soon hold one snake.
    ben.click("#leave")
    wait_for(ann, "() => window.snakeState.snakes.length === 1")
    assert snake_of(ann.evaluate("() => window.snakeState"), ann_id)["name"] == "ann"


def test_greeting_client(demo_url: str) -> None:
    """The seeds' GreetingService client greets the demo's echo endpoint and prints the reply."""
    ws_url = demo_url.replace("http://", "ws://") + "echo"
    script = Path(REPO / "examples" / "greeting_client.py")
    result = subprocess.run(
        [sys.executable, str(script), ws_url, "--name", "fullduplex"],
        capture_output=True,
        text=True,
        timeout=seconds(30),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello fullduplex!\n"


def test_pages_are_served_as_html(demo_url: str) -> None:
    for path in ("", "echo.html", "chat.html", "snake.html"):
        with urllib.request.urlopen(demo_url + path, timeout=seconds(10)) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/html")
            assert b"<!doctype html>" in response.read(200)
