"""The echo endpoint: every text or binary message on ``/echo`` comes back as it came.

Run it alone with ``fullduplex serve examples.echo:app`` (page at ``/echo.html``), or as part
of ``fullduplex demo``.
"""

from __future__ import annotations

from pathlib import Path

from fullduplex.app import App, Session

from .._pages import mount_pages

__all__ = ["PATH", "STATIC", "app", "register"]

PATH = "/echo"
"""Where the endpoint is served."""

STATIC = Path(__file__).parent / "static"
"""The directory of the page, ``echo.html``."""


def register(target: App, path: str = PATH) -> None:
    """Add the echo endpoint to ``target`` at ``path``."""

    @target.on_message(path)
    async def echo(session: Session, message: str | bytes) -> str | bytes:
        # The default codec passes str and bytes through, so a returned message goes back
        # with its own type: text as text, binary as binary.
        return message


app = App()
"""The echo endpoint and its page, on their own."""
register(app)
mount_pages(app, STATIC)
