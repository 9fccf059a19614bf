"""Serving the sample pages: each example keeps its page next to its code, all served at ``/``.

``App.static`` serves one directory per URL prefix, and every page must be at the root (so
that ``/echo.html`` and ``/chat.html`` sit next to the shared ``/style.css``). So the shared
directory (index and stylesheet) is the app's static root, and each example's own files are
added as one GET route per file, read from disk on each request so that an edited page shows
on reload.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from fullduplex.app import App, Response, response

__all__ = ["SHARED_STATIC", "add_files", "mount_pages"]

SHARED_STATIC = Path(__file__).parent / "static"
"""The index page and the stylesheet every page links to."""


def _content_type(path: Path) -> str:
    guessed = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return guessed + "; charset=utf-8" if guessed.startswith("text/") else guessed


def add_files(app: App, directory: Path, names: tuple[str, ...] | None = None) -> None:
    """Serve the files of ``directory`` (not its subdirectories) at ``/NAME``.

    Args:
        app: The app to add GET routes to.
        directory: Where the files are.
        names: Only these files (default: every file in ``directory``).
    """
    files = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    for path in files:
        if names is not None and path.name not in names:
            continue

        def serve(request: Any, path: Path = path) -> Response:
            # Read per request: the demo is for trying things, edits show on reload.
            try:
                body = path.read_bytes()
            except OSError:
                return response(404, "Not Found\n")
            return response(200, body, content_type=_content_type(path))

        app.get("/" + path.name)(serve)


def mount_pages(app: App, *directories: Path) -> None:
    """Serve the shared directory at ``/`` and the files of each of ``directories`` at ``/NAME``.

    With the shared directory among ``directories`` (the demo), ``/`` is its index page. Without
    it (one example on its own), only the shared stylesheet is added and ``/`` redirects to the
    first page of the first directory.
    """
    if SHARED_STATIC in directories:
        app.static("/", SHARED_STATIC)
        for directory in directories:
            if directory != SHARED_STATIC:
                add_files(app, directory)
        return
    for directory in directories:
        add_files(app, directory)
    add_files(app, SHARED_STATIC, names=("style.css", "favicon.svg"))
    pages = sorted(p.name for d in directories for p in d.glob("*.html"))
    if pages:
        first = pages[0]

        @app.get("/")
        def index(request: Any) -> Response:
            return response(302, "", headers=[("Location", "/" + first)])
