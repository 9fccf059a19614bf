"""fullduplex.js over the fallback transports, in a real headless Chromium against an App in a
thread: a page without WebSocket (deleted by an init script, or a constructor that throws),
a server that refuses the handshake, and long-polling; the same events and API as over
WebSocket."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from fullduplex.app import CloseReason
from fullduplex.fallback import FallbackOptions
from tests.static.app_thread import AppThread
from tests.static.js_app import Echo, make_app
from tests.static.test_fullduplex_js import (
    RECORD,
    _wait_closes,
    browser,
    events,
    ms,
    wait_events,
)

__all__ = ["browser"]  # the module's Chromium, shared with test_fullduplex_js

pytestmark = pytest.mark.browser

NO_WEBSOCKET = "delete window.WebSocket;"
THROWING_WEBSOCKET = """
window.WebSocket = function WebSocket() { throw new DOMException("blocked", "SecurityError"); };
"""


@pytest.fixture
def server() -> Iterator[AppThread]:
    """The same App as test_fullduplex_js's, with quick heartbeats."""
    Echo.closes = []
    app = make_app()
    assert app._fallback is not None
    app._fallback.options = FallbackOptions(heartbeat=1.0, disconnect_timeout=2.0)
    with AppThread(app) as running:
        yield running


def open_page(browser: Browser, port: int, init_script: str | None) -> Page:
    """A page of the server, with ``init_script`` run before any of its own scripts."""
    page = browser.new_page()
    page.set_default_timeout(ms(10))
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.problems = problems  # type: ignore[attr-defined]
    if init_script:
        page.add_init_script(init_script)
    page.goto(f"http://127.0.0.1:{port}/t.html")
    page.wait_for_function("() => window.ready === true")
    page.evaluate(RECORD)
    return page


def echo_round_trip(page: Page, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Connect to /echo, send text and binary, close with 4001; return what the page saw."""
    return page.evaluate(  # type: ignore[no-any-return]
        """(options) => new Promise((resolve) => {
          const started = Date.now();
          const c = window.c = record(new fd.FullDuplex("/echo", Object.assign(
            { binaryType: "arraybuffer" }, options)));
          const got = [];
          c.onopen = () => {
            window.openedAfter = Date.now() - started;
            c.send("hello");
            c.send(new Uint8Array([0, 1, 255]));
            c.send("héllo 🎉");
          };
          c.onmessage = (e) => {
            got.push(typeof e.data === "string" ? e.data : Array.from(new Uint8Array(e.data)));
            if (got.length === 3) c.close(4001, "bye");
          };
          c.onclose = (e) => !e.willReconnect && resolve({
            got, code: e.code, reason: e.reason, transport: c.transport,
            openedAfter: window.openedAfter, state: c.readyState,
          });
        })""",
        options or {},
    )


@pytest.mark.parametrize("init_script", [NO_WEBSOCKET, THROWING_WEBSOCKET])
def test_without_websocket_the_client_streams(
    browser: Browser, server: AppThread, init_script: str
) -> None:
    page = open_page(browser, server.port, init_script)
    try:
        result = echo_round_trip(page)
        assert result["transport"] == "stream"
        assert result["openedAfter"] < 3000
        assert result["got"] == ["hello", [0, 1, 255], "héllo 🎉"]
        assert (result["code"], result["reason"], result["state"]) == (4001, "bye", 3)
        assert [e["type"] for e in events(page)] == [
            "connecting",
            "open",
            "message",
            "message",
            "message",
            "close",
        ]
        assert page.problems == []  # type: ignore[attr-defined]
    finally:
        page.close()
    assert CloseReason(4001, "bye") in _wait_closes(1)


def test_long_polling(browser: Browser, server: AppThread) -> None:
    page = open_page(browser, server.port, NO_WEBSOCKET)
    try:
        result = echo_round_trip(page, {"transports": ["poll"]})
    finally:
        page.close()
    assert result["transport"] == "poll"
    assert result["got"] == ["hello", [0, 1, 255], "héllo 🎉"]
    assert (result["code"], result["reason"]) == (4001, "bye")


def test_refused_handshake_falls_back(browser: Browser) -> None:
    """A proxy that strips Upgrade (here: a server that refuses every upgrade with 403)."""
    Echo.closes = []

    def refuse_upgrades(ws: Any, request: Any) -> Any:
        return ws.respond(403, "no WebSocket here\n") if request.is_upgrade else None

    with AppThread(make_app(), process_request=refuse_upgrades) as running:
        page = open_page(browser, running.port, None)
        try:
            result = echo_round_trip(page)
            connecting = events(page, kind="connecting")
        finally:
            page.close()
    assert result["transport"] == "stream"
    assert result["got"] == ["hello", [0, 1, 255], "héllo 🎉"]
    # One WebSocket attempt, refused; then the stream.
    assert len(connecting) == 2


def test_heartbeats_keep_an_idle_stream_open_and_server_close_arrives(
    browser: Browser, server: AppThread
) -> None:
    page = open_page(browser, server.port, NO_WEBSOCKET)
    try:
        page.evaluate(
            """() => { window.c = record(new fd.FullDuplex("/echo", { reconnect: false }));
                       c.onopen = () => { window.openedAt = Date.now(); }; }"""
        )
        wait_events(page, "open", 1)
        # Idle for more than heartbeat + disconnect_timeout: the heartbeats (and the client's
        # acks) keep the session alive on both sides.
        page.wait_for_function("() => Date.now() - window.openedAt > 4000", timeout=ms(10))
        assert events(page, kind="close") == []
        page.evaluate("() => c.send('close:4002:enough')")
        wait_events(page, "close", 1)
        close = events(page, kind="close")[0]
    finally:
        page.close()
    assert (close["code"], close["reason"], close["wasClean"]) == (4002, "enough", True)
    assert _wait_closes(1) == [CloseReason(4002, "enough")]


def test_send_queue_and_json_mode_over_the_fallback(browser: Browser, server: AppThread) -> None:
    page = open_page(browser, server.port, NO_WEBSOCKET)
    try:
        got = page.evaluate(
            """() => new Promise((resolve) => {
              const c = window.c = record(new fd.FullDuplex("/echo", { json: true }));
              // Queued before the open, then sent in order.
              for (let n = 0; n < 100; n++) c.send({ n });
              const got = [];
              c.onmessage = (e) => {
                got.push(e.data.n);
                if (got.length === 100) { c.close(); resolve(got); }
              };
            })"""
        )
    finally:
        page.close()
    assert got == list(range(100))


def test_server_restart_reconnects_on_the_fallback(browser: Browser, server: AppThread) -> None:
    page = open_page(browser, server.port, NO_WEBSOCKET)
    try:
        page.evaluate("() => { window.c = record(new fd.FullDuplex('/echo', { minDelay: 200 })); }")
        wait_events(page, "open", 1)
        server.stop()
        wait_events(page, "close", 1)
        close = events(page, kind="close")[0]
        assert (close["code"], close["willReconnect"]) == (1001, True)
        server.start()
        wait_events(page, "open", 2, timeout=15)
        echoed = page.evaluate(
            """() => new Promise((resolve) => {
              c.onmessage = (e) => resolve([e.data, c.transport]); c.send("again");
            })"""
        )
    finally:
        page.close()
    assert echoed == ["again", "stream"]


def test_page_api_is_unchanged(browser: Browser, server: AppThread) -> None:
    page = open_page(browser, server.port, NO_WEBSOCKET)
    try:
        page.wait_for_function("() => typeof window.WebSocket === 'undefined'")
        values = page.evaluate(
            """() => new Promise((resolve) => {
              const c = new fd.FullDuplex("/echo");
              const before = c.transport;
              c.onopen = () => {
                resolve([before, c.transport, c.readyState, c.protocol, c.url.startsWith("ws:")]);
                c.close();
              };
            })"""
        )
    finally:
        page.close()
    assert values == ["", "stream", 1, "", True]
    wait_for_no_more = _wait_closes(1)
    assert wait_for_no_more[0].code == 1000


def test_three_unusable_websocket_opens_fall_back(browser: Browser) -> None:
    """A WebSocket that opens and dies before any message (a proxy that passes the 101, then
    drops the connection): after 3 such opens in a row the client streams."""

    class Flaky(Echo):
        async def on_open(self, session: Any) -> None:
            if "Upgrade" in session.headers:  # the fallback's opening POST has none
                await session.close(1011, "unusable")

    app = make_app()
    app.endpoint("/flaky")(Flaky)
    with AppThread(app) as running:
        page = open_page(browser, running.port, None)
        try:
            result = page.evaluate(
                """() => new Promise((resolve) => {
                  const c = window.c = record(new fd.FullDuplex("/flaky", { minDelay: 100 }));
                  c.onopen = () => c.transport === "stream" && c.send("over http");
                  c.onmessage = (e) => { resolve([e.data, c.transport]); c.close(); };
                })"""
            )
            wait_events(page, "close", 4)  # the last one fires after c.close(), not at once
            codes = [e["code"] for e in events(page, kind="close")]
        finally:
            page.close()
    assert result == ["over http", "stream"]
    # Three WebSocket opens closed before a message, then the stream (and the final close).
    assert codes == [1011, 1011, 1011, 1000]


def test_message_too_big_for_a_post_closes_with_1009(browser: Browser, server: AppThread) -> None:
    """An 800 KiB binary message is under the endpoint's max_message_size (1 MiB) but its
    base64 is over max_post_size: the session closes with 1009, as a WebSocket beyond its
    limit would. It used to be refused with a 413 that the client took for done: every
    later batch got 409 and was silently lost."""
    page = open_page(browser, server.port, NO_WEBSOCKET)
    try:
        result = page.evaluate(
            """() => new Promise((resolve) => {
              const c = window.c = record(new fd.FullDuplex("/echo", { reconnect: false }));
              const got = [];
              c.onopen = () => {
                c.send("before");
                c.send(new Uint8Array(800 * 1024));
                c.send("after-1");
              };
              c.onmessage = (e) => got.push(typeof e.data === "string" ? e.data : "binary");
              c.onclose = (e) => resolve({ got, code: e.code, reason: e.reason });
            })"""
        )
    finally:
        page.close()
    assert result["got"] == ["before"]
    assert (result["code"], result["reason"]) == (1009, "message too big")
    assert _wait_closes(1)[0].code == 1009


def test_a_refused_batch_ends_the_session(browser: Browser) -> None:
    """A batch the server refuses for good (here 400, from a process_request that refuses a
    "poison" message) ends the session with 1006: it used to count as done, so the next
    batch skipped a number, got 409, and was silently lost while the session stayed open."""
    Echo.closes = []

    def refuse_poison(ws: Any, request: Any) -> Any:
        poisoned = b"poison" in request.body
        return ws.respond(400, "Bad Request: poison\n") if poisoned else None

    with AppThread(make_app(), process_request=refuse_poison) as running:
        page = open_page(browser, running.port, NO_WEBSOCKET)
        try:
            result = page.evaluate(
                """() => new Promise((resolve) => {
                  const c = window.c = record(new fd.FullDuplex("/echo", { reconnect: false }));
                  const got = [];
                  c.onopen = () => {
                    c.send("first");
                    setTimeout(() => { c.send("poison"); c.send("later"); }, 300);
                  };
                  c.onmessage = (e) => got.push(e.data);
                  c.onclose = (e) => resolve({ got, code: e.code, reason: e.reason });
                })"""
            )
        finally:
            page.close()
    assert result == {"got": ["first"], "code": 1006, "reason": "HTTP 400"}


def test_a_burst_of_sends_arrives_whole_and_in_order(browser: Browser, server: AppThread) -> None:
    """1,500 sends at once: more than a session's inbox holds (1,024), so they go in batches
    the server can take. A batch of 1,499 used to be answered 503 for ever."""
    page = open_page(browser, server.port, NO_WEBSOCKET)
    try:
        got = page.evaluate(
            """() => new Promise((resolve) => {
              const c = window.c = record(new fd.FullDuplex("/echo"));
              const got = [];
              c.onopen = () => { for (let n = 0; n < 1500; n++) c.send("m" + n); };
              c.onmessage = (e) => {
                got.push(e.data);
                if (got.length === 1500) { c.close(); resolve(got); }
              };
            })"""
        )
    finally:
        page.close()
    assert got == [f"m{n}" for n in range(1500)]
