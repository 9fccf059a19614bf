"""A real headless Chromium talks to fullduplex through the browser WebSocket API.

The fullduplex server serves the test page itself from its ``process_request`` hook (GET
/echo.html), so the hook is tested too; the page (pages/echo.html) runs its checks on load and
leaves them in ``window.testResults`` and in an event log that is screenshotted to
test-artifacts/browser/echo.png.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright

import fullduplex
from fullduplex.exceptions import ConnectionClosed
from tests.helpers import seconds

pytestmark = pytest.mark.browser

PAGE = Path(__file__).parent / "pages" / "echo.html"
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",  # needed as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class PageServer:
    """A fullduplex server in its own thread and event loop, as a browser-facing app runs.

    ``GET /echo.html`` returns the page (through ``process_request``); every other path is a
    WebSocket echo, closing with 4000 "done" on the text message "close-me". The close code and
    reason each handler sees are recorded in :attr:`closes`.
    """

    def __init__(self) -> None:
        self.port = 0
        self.closes: list[tuple[int | None, str | None]] = []
        self._closes_changed = threading.Condition()
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="page-server", daemon=True)

    def __enter__(self) -> PageServer:
        self._thread.start()
        if not self._ready.wait(seconds(10)) or self.error is not None or not self.port:
            self.__exit__()
            raise RuntimeError(f"fullduplex page server did not start: {self.error!r}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(seconds(15))
        assert not self._thread.is_alive(), "fullduplex page server did not stop"

    async def _handler(self, ws: Any) -> None:
        try:
            async for message in ws:
                if message == "close-me":
                    await ws.close(4000, "done")
                    break
                await ws.send(message)
        except ConnectionClosed:
            pass  # the browser closed with a code other than 1000/1001
        await ws.wait_closed()
        with self._closes_changed:
            self.closes.append((ws.close_code, ws.close_reason))
            self._closes_changed.notify_all()

    def wait_closes(self, count: int) -> list[tuple[int | None, str | None]]:
        """Wait until ``count`` handlers have finished (the browser may see its close event
        before the server's handler records it); return what they saw."""
        with self._closes_changed:
            self._closes_changed.wait_for(lambda: len(self.closes) >= count, seconds(10))
            return list(self.closes)

    @staticmethod
    def _process_request(ws: Any, request: Any) -> Any:
        # request.path includes the query string, as in websockets.
        if request.path.partition("?")[0] == "/echo.html":
            return ws.respond(
                200, PAGE.read_bytes(), headers=[("Content-Type", "text/html; charset=utf-8")]
            )
        return None

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with fullduplex.serve(
            self._handler,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            subprotocols=["chat"],
        ) as server:
            self.port = server.port
            self._ready.set()
            await self._stop.wait()

    def _main(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:
            self.error = exc
        finally:
            self._ready.set()
            self._loop.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, launched once for the module."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=seconds(30) * 1000
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page_server() -> Iterator[PageServer]:
    """The fullduplex server that serves the page and the echo endpoint."""
    with PageServer() as server:
        yield server


def test_browser_echo_page(browser: Browser, page_server: PageServer) -> None:
    """Text, ArrayBuffer and 1 MiB echoes, permessage-deflate, subprotocol, and close codes
    both ways, as the browser's WebSocket API sees them."""
    page = browser.new_page(viewport={"width": 900, "height": 560})
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
    try:
        response = page.goto(
            f"http://127.0.0.1:{page_server.port}/echo.html?factor={seconds(1)}",
            timeout=seconds(10) * 1000,
        )
        assert response is not None
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/html")
        page.wait_for_function("() => window.testResults !== undefined", timeout=seconds(60) * 1000)
        results = page.evaluate("() => window.testResults")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "echo.png"), full_page=True)
    finally:
        page.close()

    assert "error" not in results, f"{results['error']}; console: {console}"
    assert results["protocol"] == "chat"
    # Chromium offers permessage-deflate; fullduplex compresses by default.
    assert results["extensions"].split(";")[0] == "permessage-deflate"
    assert results["text echo"] is True
    assert results["binary echo"] is True
    assert results["1 MiB binary echo"] is True
    assert results["serverClose"] == {"code": 4000, "reason": "done", "wasClean": True}
    assert results["clientClose"]["wasClean"] is True
    assert results["clientClose"]["code"] == 4001
    closes = page_server.wait_closes(2)
    # The server's handler saw the browser's close code and reason, and, for the close it
    # started, the code the browser echoed (the reason need not be echoed: RFC 6455 5.5.1).
    assert (4001, "bye") in closes
    assert [code for code, _ in closes].count(4000) == 1, closes


def test_process_request_other_paths_upgrade_only(
    browser: Browser, page_server: PageServer
) -> None:
    """A plain GET to a WebSocket path (process_request returns None) is refused with an HTTP
    error, not served, and not upgraded."""
    page = browser.new_page()
    try:
        response = page.goto(f"http://127.0.0.1:{page_server.port}/ws", timeout=seconds(10) * 1000)
        assert response is not None
        assert response.status in (400, 426)
    finally:
        page.close()
