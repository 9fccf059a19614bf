"""The sample pages with WebSocket taken away (``delete window.WebSocket``, or a constructor
that throws, run by an init script before the page's own scripts): they connect over the
fallback transports of ``fullduplex demo`` and work through their UI as with WebSocket."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import Browser, Page

from tests.examples.test_demo_browser import (
    browser,
    chat_say,
    chat_texts,
    ms,
    wait_for,
)

__all__ = ["browser"]  # the module's Chromium, as test_demo_browser's

pytestmark = pytest.mark.browser

NO_WEBSOCKET = "delete window.WebSocket;"
THROWING_WEBSOCKET = (
    'window.WebSocket = function () { throw new DOMException("blocked", "SecurityError"); };'
)


@contextmanager
def pages_of(browser: Browser, base_url: str) -> Iterator[Callable[[str, str | None], Page]]:
    """``open(path, init_script)``: a new page of the demo; console errors fail the test."""
    pages: list[Page] = []
    problems: list[str] = []

    def opener(path: str, init_script: str | None) -> Page:
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        page.set_default_timeout(ms(10))
        page.on("pageerror", lambda exc: problems.append(f"{path}: {exc}"))
        if init_script:
            page.add_init_script(init_script)
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


@pytest.mark.parametrize("init_script", [NO_WEBSOCKET, THROWING_WEBSOCKET])
def test_echo_page_over_the_fallback(browser: Browser, demo_url: str, init_script: str) -> None:
    with pages_of(browser, demo_url) as open_page:
        page = open_page("echo.html", init_script)
        started = page.evaluate("() => Date.now()")
        page.click("#connect")
        opened = wait_for(page, "() => window.echoEvents.find(e => e.kind === 'open')", timeout=3)
        assert page.evaluate("() => Date.now()") - started < ms(3)
        assert opened["text"].endswith("over HTTP (stream)")
        page.fill("#message", "Hello without WebSocket")
        page.click("#send")
        page.check("#binary")
        page.fill("#message", "bytes too")
        page.press("#message", "Enter")
        wait_for(page, "() => window.echoEvents.filter(e => e.kind === 'received').length === 2")
        page.click("#disconnect")
        wait_for(page, "() => window.echoEvents.some(e => e.kind === 'close')")
        events = page.evaluate("() => window.echoEvents")
    assert [event["kind"] for event in events] == [
        "open",
        "sent",
        "received",
        "sent",
        "received",
        "close",
    ]
    assert events[2]["text"] == '"Hello without WebSocket"'
    assert events[4]["text"] == '9 bytes (binary): "bytes too"'
    assert events[5]["text"] == 'code 1000, reason "bye"'


def test_chat_between_websocket_and_fallback_pages(browser: Browser, demo_url: str) -> None:
    with pages_of(browser, demo_url) as open_page:
        pages = {}
        for name, script in (("alice", None), ("bob", NO_WEBSOCKET)):
            page = open_page("chat.html", script)
            page.fill("#name", name)
            page.fill("#room", "mixed")
            page.click("#join")
            wait_for(page, "() => document.querySelector('#status').classList.contains('open')")
            pages[name] = page
        alice, bob = pages["alice"], pages["bob"]
        assert bob.evaluate("() => typeof window.WebSocket") == "undefined"
        assert alice.evaluate("() => typeof window.WebSocket") == "function"
        expected = [("alice", "over WebSocket"), ("bob", "over HTTP"), ("alice", "and back")]
        for count, (name, text) in enumerate(expected, 1):
            chat_say(pages[name], text)
            for page in (alice, bob):
                wait_for(
                    page,
                    "n => window.chatMessages.filter(m => m.type === 'message').length >= n",
                    count,
                )
        assert chat_texts(alice) == chat_texts(bob) == expected
        notice = wait_for(
            bob, "() => window.chatMessages.find(m => m.type === 'join' && m.username === 'bob')"
        )
        assert notice["members"] == ["alice", "bob"]
