"""fullduplex.js in a real headless Chromium (Debian's), against an App in a thread.

Each test drives the client from the page with ``page.evaluate`` and reads what it recorded in
the page (events, their ``Date.now()`` times): reconnects are checked by counting attempts and
measuring the gaps between them, never by how fast something happened.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from examples.chat import server as chat_server
from playwright.sync_api import Browser, Page, sync_playwright

import fullduplex
from fullduplex.app import App, CloseReason, response
from fullduplex.app.script import CONTENT_TYPE
from tests.examples.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.helpers import seconds
from tests.static.app_thread import AppThread
from tests.static.js_app import Echo, make_app

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent.parent

# In the page: `record(client)` keeps every event of a client, with its Date.now().
RECORD = """() => {
window.record = (client) => {
  const log = [];
  for (const type of ["connecting", "open", "message", "close", "error", "recovery", "drop"]) {
    client.addEventListener(type, (e) => log.push({
      type, t: Date.now(), code: e.code, reason: e.reason, wasClean: e.wasClean,
      willReconnect: e.willReconnect, delay: e.delay, data: e.data, url: e.url,
      recovered: e.recovered, replayed: e.replayed,
    }));
  }
  client.log = log;
  return client;
};
}"""


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
def server() -> Iterator[AppThread]:
    """A fresh App in a thread (stoppable and restartable on the same port)."""
    Echo.closes = []
    with AppThread(make_app()) as running:
        yield running


@pytest.fixture
def page(browser: Browser, server: AppThread) -> Iterator[Page]:
    """A page of ``server`` with fullduplex.js imported as ``window.fd`` and ``record``."""
    problems: list[str] = []
    page = browser.new_page()
    page.set_default_timeout(ms(10))
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    try:
        page.goto(f"http://127.0.0.1:{server.port}/t.html")
        page.wait_for_function("() => window.ready === true")
        page.evaluate(RECORD)
        yield page
    finally:
        page.close()
    assert problems == []


def events(page: Page, name: str = "c", kind: str | None = None) -> list[dict[str, Any]]:
    """The events client ``window[name]`` recorded (only those of ``kind`` if given)."""
    log: list[dict[str, Any]] = page.evaluate(f"() => window.{name}.log")
    return [e for e in log if kind is None or e["type"] == kind]


def wait_events(page: Page, kind: str, count: int, name: str = "c", timeout: float = 10) -> None:
    """Wait until client ``window[name]`` recorded ``count`` events of ``kind``."""
    page.wait_for_function(
        f"n => window.{name}.log.filter(e => e.type === {json.dumps(kind)}).length >= n",
        arg=count,
        timeout=ms(timeout),
    )


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET ``url``: status, headers, body (HTTP errors included)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=seconds(10)) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


# ---- serving ---------------------------------------------------------------------------------


def test_served_with_type_and_cache_headers(server: AppThread) -> None:
    base = f"http://127.0.0.1:{server.port}"
    version = fullduplex.__version__
    status, headers, body = get(base + "/fullduplex.js")
    assert status == 200
    assert headers["Content-Type"] == CONTENT_TYPE == "text/javascript; charset=utf-8"
    assert headers["Cache-Control"] == "no-cache"
    assert body.rstrip().endswith(
        b"export { FullDuplex, RECONNECT_CODES, backoff, isReconnectCode };"
    )
    # Revalidation answers 304 with no body.
    status, _, again = get(base + "/fullduplex.js", {"If-None-Match": headers["ETag"]})
    assert (status, again) == (304, b"")
    status, headers, versioned = get(f"{base}/fullduplex-{version}.js")
    assert status == 200
    assert versioned == body
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    status, headers, classic = get(f"{base}/fullduplex-{version}.global.js")
    assert status == 200
    assert b"export" not in classic.splitlines()[-3]
    assert b"globalThis.FullDuplex = FullDuplex;" in classic
    assert get(base + "/fullduplex-0.0.0-other.js")[0] == 404


def test_user_routes_win_and_opt_out() -> None:
    app = App()

    @app.get("/fullduplex.js")
    def own(request: Any) -> Any:
        return response(200, "// the app's own build", content_type="text/javascript")

    with AppThread(app) as running:
        base = f"http://127.0.0.1:{running.port}"
        assert get(base + "/fullduplex.js")[2] == b"// the app's own build"
        assert get(base + "/fullduplex.global.js")[0] == 200
    with AppThread(App(client_script=False)) as running:
        assert get(f"http://127.0.0.1:{running.port}/fullduplex.js")[0] == 404


def test_global_script_form(browser: Browser, server: AppThread) -> None:
    page = browser.new_page()
    try:
        page.goto(f"http://127.0.0.1:{server.port}/g.html")
        page.wait_for_function("() => window.ready === true", timeout=ms(10))
        result = page.evaluate(
            """() => new Promise((resolve) => {
              const c = new FullDuplex("/echo");
              c.onopen = () => c.send("hi");
              c.onmessage = (e) => { c.close(); resolve([e.data, FullDuplex.isReconnectCode(1012),
                                                        typeof window.backoff]); };
            })"""
        )
    finally:
        page.close()
    assert result == ["hi", True, "undefined"]


# ---- the WebSocket shape ---------------------------------------------------------------------


def test_open_echo_and_close_with_code_and_reason(page: Page) -> None:
    page.evaluate(
        """() => {
          window.c = record(new fd.FullDuplex("/echo"));
          window.onProps = [];
          c.onopen = () => { onProps.push("open"); c.send("hello"); };
          c.onmessage = (e) => { onProps.push("message:" + e.data); c.close(4001, "bye"); };
          c.onclose = (e) => onProps.push("close:" + e.code + ":" + e.reason);
          window.states = [c.readyState];
        }"""
    )
    wait_events(page, "close", 1)
    assert page.evaluate("() => onProps") == ["open", "message:hello", "close:4001:bye"]
    close = events(page, kind="close")[0]
    assert (close["code"], close["reason"], close["wasClean"]) == (4001, "bye", True)
    assert close["willReconnect"] is False
    assert page.evaluate("() => [states[0], c.readyState, c.url, c.protocol, c.attempts]") == [
        0,
        3,
        f"ws://127.0.0.1:{page.url.split(':')[2].split('/')[0]}/echo",
        "",
        1,
    ]
    assert (4001, "bye") in [(r.code, r.reason) for r in _wait_closes(1)]
    # Closed for good: send throws rather than queueing into nowhere.
    assert (
        page.evaluate("() => { try { c.send('x'); return 'sent'; } catch (e) { return 'threw'; } }")
        == "threw"
    )


def _wait_closes(count: int) -> list[CloseReason]:
    deadline = time.monotonic() + seconds(10)
    while len(Echo.closes) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return list(Echo.closes)


@pytest.mark.parametrize(("code", "final"), [(1008, True), (4000, True), (1011, False)])
def test_close_code_classes(page: Page, code: int, final: bool) -> None:
    """A final code (1008, the application's 4xxx) stops reconnecting; 1011 reconnects."""
    page.evaluate(
        """(code) => {
          window.c = record(new fd.FullDuplex("/echo", { minDelay: 200, maxDelay: 400 }));
          c.addEventListener("open", () => c.attempts === 1 && c.send("close:" + code + ":why"));
        }""",
        code,
    )
    wait_events(page, "close", 1)
    close = events(page, kind="close")[0]
    assert (close["code"], close["reason"]) == (code, "why")
    assert close["willReconnect"] is not final
    if not final:
        wait_events(page, "open", 2)
        page.evaluate("() => c.close()")
        return
    # Long enough for several reconnects had it retried (minDelay 200 ms).
    page.wait_for_timeout(1200)
    assert page.evaluate("() => [c.readyState, c.attempts]") == [3, 1]


# ---- reconnecting ----------------------------------------------------------------------------


def test_reconnect_after_restart_is_jittered_and_bounded(page: Page, server: AppThread) -> None:
    min_delay = 250
    page.evaluate(
        """(minDelay) => {
          window.c = record(new fd.FullDuplex("/echo", { minDelay, maxDelay: 1500 }));
        }""",
        min_delay,
    )
    wait_events(page, "open", 1)
    server.stop()  # every connection closed with 1001, then refused: 1006 per attempt
    wait_events(page, "close", 1)
    outage = 4.0
    time.sleep(outage)
    server.start()
    wait_events(page, "open", 2, timeout=10)
    page.evaluate("() => c.send('after')")
    wait_events(page, "message", 1)
    log = events(page)
    closes = [e for e in log if e["type"] == "close"]
    assert closes[0]["code"] == 1001
    assert all(e["willReconnect"] for e in closes)
    assert {e["code"] for e in closes[1:]} <= {1006}
    attempts = [e["t"] for e in log if e["type"] == "connecting"][1:]  # the reconnects
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    # Never a zero-delay loop: no two attempts closer than the minimum delay (timers never
    # fire early; 5 ms for the clock's rounding), so at most 2 in any min-delay window.
    assert min(gaps) >= min_delay - 5, gaps
    assert all(
        sum(1 for t in attempts if start <= t < start + min_delay) <= 2 for start in attempts
    )
    # Backoff: a 4 s outage at >= 250 ms apart and growing is far fewer than 4000 / 250 = 16.
    assert 3 <= len(attempts) <= 12, gaps
    # Jitter: the delays are not all the same step.
    assert len({round(g, -1) for g in gaps}) > 1, gaps
    assert events(page, kind="message")[0]["data"] == "after"
    page.evaluate("() => c.close()")


SERVE = [sys.executable, "-m", "fullduplex", "serve", "tests.static.js_app:app"]


@contextmanager
def serving_process(port: int) -> Iterator[subprocess.Popen[str]]:
    """``fullduplex serve tests.static.js_app:app`` on ``port`` in its own process."""
    proc = subprocess.Popen(
        [*SERVE, "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "listening" in proc.stdout.readline()
        yield proc
    finally:
        proc.kill()
        proc.wait(seconds(10))
        if proc.stdout is not None:
            proc.stdout.close()


def test_reconnect_after_kill_9_is_jittered_and_bounded(browser: Browser) -> None:
    """The server process is killed (no close frame: 1006), then started again on the same
    port: the page reconnects with a jittered backoff, never two attempts closer than the
    minimum delay, and its next message goes through."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    min_delay = 250
    page = browser.new_page()
    page.set_default_timeout(ms(10))
    try:
        with serving_process(port) as first:
            page.goto(f"http://127.0.0.1:{port}/t.html")
            page.wait_for_function("() => window.ready === true")
            page.evaluate(RECORD)
            page.evaluate(
                """(minDelay) => { window.c = record(new fd.FullDuplex("/echo",
                     { minDelay, maxDelay: 1500 })); }""",
                min_delay,
            )
            wait_events(page, "open", 1)
            os.kill(first.pid, signal.SIGKILL)
            wait_events(page, "close", 1)
        time.sleep(3)
        with serving_process(port):
            wait_events(page, "open", 2, timeout=15)
            page.evaluate("() => c.send('after the kill')")
            wait_events(page, "message", 1)
        log = events(page)
    finally:
        page.close()
    closes = [e for e in log if e["type"] == "close"]
    assert all(e["code"] == 1006 and e["willReconnect"] for e in closes), closes
    attempts = [e["t"] for e in log if e["type"] == "connecting"][1:]
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert min(gaps) >= min_delay - 5, gaps
    assert all(
        sum(1 for t in attempts if start <= t < start + min_delay) <= 2 for start in attempts
    )
    assert len({round(g, -1) for g in gaps}) > 1, gaps  # jittered, not one fixed step
    assert [e["data"] for e in log if e["type"] == "message"] == ["after the kill"]


def test_backoff_spreads_a_herd(page: Page) -> None:
    """10 000 clients dropped together (the formula, sampled in the page): first attempts
    within [minDelay, 4 minDelay), no 100 ms bucket over 10 %; later ones capped by maxDelay."""
    first, late = page.evaluate(
        """() => {
          const first = Array.from({ length: 10000 }, () => fd.backoff(0, 500, 20000));
          const late = Array.from({ length: 1000 }, () => fd.backoff(40, 500, 20000));
          return [first, late];
        }"""
    )
    assert min(first) >= 500
    assert max(first) < 2000
    buckets = [0] * 20
    for delay in first:
        buckets[int(delay // 100)] += 1
    assert max(buckets) <= 1000, buckets
    assert min(late) >= 500
    assert max(late) <= 20000
    assert max(late) > 15000  # the ceiling is reached, not stuck at the floor


def test_online_event_retries_now(page: Page, server: AppThread) -> None:
    # Math.random at 0.99: every delay at its ceiling, so the pending wait is known (~4 s)
    # and the online event's retry (<= minDelay) clearly comes before it.
    server.stop()
    page.evaluate(
        """() => {
          Math.random = () => 0.99;
          window.c = record(new fd.FullDuplex("/echo", { minDelay: 500, maxDelay: 60000 }));
        }"""
    )
    wait_events(page, "close", 2)
    pending = events(page, kind="close")[1]
    assert pending["delay"] > 3500  # 500 + 0.99 * (4000 - 500)
    server.start()
    fired = page.evaluate("() => { window.dispatchEvent(new Event('online')); return Date.now(); }")
    wait_events(page, "open", 1, timeout=3)
    opened = events(page, kind="open")[0]["t"]
    assert opened - fired < pending["delay"] - 1000
    assert opened - fired >= 0
    page.evaluate("() => c.close()")


def test_pagehide_closes_cleanly_and_pageshow_reconnects(page: Page) -> None:
    page.evaluate("""() => { window.c = record(new fd.FullDuplex("/echo", { minDelay: 200 })); }""")
    wait_events(page, "open", 1)
    page.evaluate("() => window.dispatchEvent(new Event('pagehide'))")
    wait_events(page, "close", 1)
    assert (1000, "page hidden") in [(r.code, r.reason) for r in _wait_closes(1)]
    page.wait_for_timeout(600)
    assert page.evaluate("() => c.attempts") == 1  # hidden: no reconnect
    page.evaluate("() => window.dispatchEvent(new Event('pageshow'))")
    wait_events(page, "open", 2)
    page.evaluate("() => c.close()")


# ---- the send queue --------------------------------------------------------------------------


def test_send_queue_policies(page: Page, server: AppThread) -> None:
    server.stop()
    results = page.evaluate(
        """() => {
          const out = {};
          for (const policy of ["reject", "drop-oldest", "drop-newest"]) {
            const c = record(new fd.FullDuplex("/echo",
              { minDelay: 200, maxDelay: 400, queueSize: 3, queuePolicy: policy }));
            window[policy.replace("-", "")] = c;
            out[policy] = [1, 2, 3, 4, 5].map((n) => {
              try { return c.send("m" + n); } catch (e) { return "threw"; }
            });
            out[policy].push(c.queued);
          }
          return out;
        }"""
    )
    assert results == {
        "reject": [True, True, True, "threw", "threw", 3],
        "drop-oldest": [True, True, True, True, True, 3],
        "drop-newest": [True, True, True, False, False, 3],
    }
    server.start()
    expected = {
        "reject": ["m1", "m2", "m3"],
        "dropoldest": ["m3", "m4", "m5"],
        "dropnewest": ["m1", "m2", "m3"],
    }
    for name, messages in expected.items():
        wait_events(page, "message", 3, name=name)
        assert [e["data"] for e in events(page, name, "message")] == messages
    assert [e["data"] for e in events(page, "dropoldest", "drop")] == ["m1", "m2"]
    assert [e["data"] for e in events(page, "dropnewest", "drop")] == ["m4", "m5"]
    assert events(page, "reject", "drop") == []
    page.evaluate("() => [reject, dropoldest, dropnewest].forEach((c) => c.close())")


def test_hundred_messages_sent_while_cut_arrive_once_in_order(
    page: Page, server: AppThread
) -> None:
    """The connection is cut (the server stops); 100 messages sent meanwhile are queued, and
    after the reconnection each reaches the server once, in order (echoed back once each)."""
    page.evaluate(
        """() => { window.q = record(new fd.FullDuplex("/echo",
             { minDelay: 100, maxDelay: 200, queueSize: 100 })); }"""
    )
    wait_events(page, "open", 1, name="q")
    server.stop()
    wait_events(page, "close", 1, name="q")
    sent = page.evaluate("() => [...Array(100).keys()].map((n) => q.send('q' + n))")
    assert sent == [True] * 100
    assert page.evaluate("() => q.queued") == 100
    server.start()
    wait_events(page, "message", 100, name="q", timeout=20)
    page.wait_for_timeout(300)  # a duplicate, had one been sent, would have come back by now
    received = [e["data"] for e in events(page, "q", "message")]
    assert received == [f"q{n}" for n in range(100)]
    assert page.evaluate("() => q.queued") == 0
    page.evaluate("() => q.close()")


def test_json_mode(page: Page) -> None:
    page.evaluate(
        """() => {
          window.c = record(new fd.FullDuplex("/echo", { json: true }));
          c.send({ hello: ["world", 1, null] });  // queued until open
          c.onopen = () => c.send([true]);
        }"""
    )
    wait_events(page, "message", 2)
    assert [e["data"] for e in events(page, kind="message")] == [
        {"hello": ["world", 1, None]},
        [True],
    ]
    page.evaluate("() => c.close()")


# ---- recovery --------------------------------------------------------------------------------


def test_recovery_replays_missed_chat_messages(page: Page, server: AppThread) -> None:
    page.evaluate(
        """() => {
          window.c = record(new fd.FullDuplex("/chat/lab?name=alice",
                                              { json: true, minDelay: 300, maxDelay: 600 }));
          c.onopen = () => c.attempts === 1 && c.send({ username: "", message: "first" });
        }"""
    )
    page.wait_for_function("() => c.log.some(e => e.data && e.data.message === 'first')")
    app = server.app

    async def drop_and_talk() -> None:
        for session in app.sessions(chat_server.PATH):
            await session.close(1012, "restarting")
        room = app.group("chat:lab")
        for n in range(3):
            await room.broadcast({"type": "message", "username": "news", "message": f"n{n}"})

    server.call(drop_and_talk())
    wait_events(page, "recovery", 1)
    recovery = events(page, kind="recovery")[0]
    assert (recovery["recovered"], recovery["replayed"]) == (True, 3)
    texts = [e["data"].get("message") for e in events(page, kind="message")]
    assert [t for t in texts if t] == ["first", "n0", "n1", "n2"]
    # The reconnect carried the position of "first" (offset 1 of a fresh room).
    reconnect = events(page, kind="connecting")[1]["url"]
    assert "name=alice" in reconnect
    assert "&offset=1" in reconnect
    assert "epoch=" in reconnect
    position = page.evaluate("() => [c.recovered, c.position.offset]")
    assert position == [True, 4]
    page.evaluate("() => c.close()")


# ---- liveness --------------------------------------------------------------------------------


def test_idle_timeout_declares_a_silent_connection_dead(page: Page) -> None:
    """An open connection that receives nothing for idleTimeout (by Date.now()) is dropped
    and reconnected, without waiting for a close handshake."""
    page.evaluate(
        """() => {
          window.c = record(new fd.FullDuplex("/echo", { idleTimeout: 1000, minDelay: 200 }));
        }"""
    )
    wait_events(page, "open", 2, timeout=8)
    log = events(page)
    close = next(e for e in log if e["type"] == "close")
    opens = [e["t"] for e in log if e["type"] == "open"]
    assert (close["code"], close["reason"]) == (1006, "nothing received for 1000 ms")
    assert close["willReconnect"] is True
    # Not before the timeout; the check runs every 250 ms, timers may run late.
    assert close["t"] - opens[0] >= 1000
    page.evaluate("() => c.close()")


def test_connect_timeout_retries_a_handshake_that_never_answers(page: Page) -> None:
    """A listener that accepts TCP and never answers: each attempt is dropped after
    connectTimeout and retried."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # never accept()ed: the kernel completes TCP, nobody answers
        port = silent.getsockname()[1]
        page.evaluate(
            """(port) => {
              window.c = record(new fd.FullDuplex(`ws://127.0.0.1:${port}/`,
                { connectTimeout: 800, minDelay: 200, maxDelay: 400 }));
            }""",
            port,
        )
        wait_events(page, "close", 2, timeout=8)
        page.evaluate("() => c.close()")
    closes = events(page, kind="close")
    assert [(e["code"], e["reason"]) for e in closes[:2]] == [(1006, "connect timeout")] * 2
    assert all(e["willReconnect"] for e in closes[:2])
    assert events(page, kind="open") == []
