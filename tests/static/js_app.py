"""The App that tests/static/test_fullduplex_js.py drives: an echo endpoint at /echo, the chat
sample at /chat/{room}, and the two test pages. ``app`` is for a separate process
(``fullduplex serve tests.static.js_app:app``), for the tests that kill the server."""

from __future__ import annotations

from typing import Any

from examples.chat import server as chat_server

import fullduplex
from fullduplex.app import App, CloseReason, Endpoint, Session, response

__all__ = ["GLOBAL_PAGE", "MODULE_PAGE", "Echo", "app", "make_app"]

# The module form, then the classic-script form (a global).
MODULE_PAGE = """<!doctype html><meta charset="utf-8"><title>t</title>
<script type="module">
import * as fd from "/fullduplex.js";
window.fd = fd;
window.ready = true;
</script>"""
GLOBAL_PAGE = """<!doctype html><meta charset="utf-8"><title>g</title>
<script src="/fullduplex-{version}.global.js"></script>
<script>window.ready = typeof FullDuplex === "function";</script>"""


class Echo(Endpoint):
    """Echoes; ``close:CODE:REASON`` makes the server close with that code."""

    closes: list[CloseReason] = []  # shared on purpose: the tests read it

    async def on_message(self, session: Session, message: Any) -> None:
        if isinstance(message, str) and message.startswith("close:"):
            _, code, reason = message.split(":", 2)
            await session.close(int(code), reason)
            return
        await session.send(message)

    async def on_close(self, session: Session, reason: CloseReason) -> None:
        Echo.closes.append(reason)


def make_app() -> App:
    """The echo endpoint at /echo, the chat sample at /chat/{room}, and the two test pages."""
    app = App()
    app.endpoint("/echo")(Echo)
    chat_server.register(app)
    pages = {"/t.html": MODULE_PAGE, "/g.html": GLOBAL_PAGE.format(version=fullduplex.__version__)}
    for path, page in pages.items():

        def serve(request: Any, page: str = page) -> Any:
            return response(200, page, content_type="text/html; charset=utf-8")

        app.get(path)(serve)
    return app


app = make_app()
