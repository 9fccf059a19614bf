"""An App served from a thread of the test process, which can be stopped and started again on
the same port (a server restart as the browser sees it) and reached from the test (its
sessions and groups, on its own loop)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from fullduplex.app import App
from fullduplex.asyncio.server import Server
from tests.helpers import seconds

__all__ = ["AppThread"]

T = TypeVar("T")


class AppThread:
    """``app`` on 127.0.0.1 in its own event loop and thread; ``options`` go to ``app.serve``.

    Use as a context manager: the server starts on a free port on entry (:attr:`port`); leaving
    stops it, then the loop and the thread.
    """

    def __init__(self, app: App, **options: Any) -> None:
        self.app = app
        self.options = options
        self.port = 0
        self._server: Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> AppThread:
        self._thread.start()
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._server is not None:
                self.stop()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(seconds(10))
            assert not self._thread.is_alive(), "the app's loop did not stop"
            self._loop.close()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the app's loop; return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(seconds(15))

    def start(self) -> int:
        """Listen (on the same port as before, after :meth:`stop`); return the port."""

        async def start() -> Server:
            server = self.app.serve("127.0.0.1", self.port, **self.options)
            return await server.start()

        self._server = self.call(start())
        self.port = self._server.port
        return self.port

    def stop(self) -> None:
        """Close the listener and every connection (1001), as a server shutting down."""
        server, self._server = self._server, None
        assert server is not None

        async def stop() -> None:
            await server.close()

        self.call(stop())
