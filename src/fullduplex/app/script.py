"""``fullduplex.js``, the browser client, as every App serves it.

Four paths, answered when no GET route or static file of the app claims them (the app's own
files win, so an app can ship its own build), or never with ``App(client_script=False)``:

* ``/fullduplex.js``: the ES module (``import { FullDuplex } from "/fullduplex.js"``);
* ``/fullduplex.global.js``: the same code as a classic ``<script>``, defining the global
  ``FullDuplex``;
* ``/fullduplex-VERSION.js`` and ``/fullduplex-VERSION.global.js``: the same, for this
  package's version.

The unversioned paths are ``Cache-Control: no-cache`` with an ``ETag`` (revalidated on every
use, so an upgrade shows at once); the versioned ones are cached for a year, ``immutable``
(their content never changes under that name).
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from importlib import resources

from .. import __version__
from ..protocol.handshake import Request, Response
from .http import response

__all__ = ["CONTENT_TYPE", "SCRIPT_PATHS", "lookup", "module_source"]

CONTENT_TYPE = "text/javascript; charset=utf-8"
"""The Content-Type of the script (RFC 9239)."""

SCRIPT_PATHS = (
    "/fullduplex.js",
    "/fullduplex.global.js",
    f"/fullduplex-{__version__}.js",
    f"/fullduplex-{__version__}.global.js",
)
"""The paths served, unversioned first."""

# The source ends with one export statement; the classic-script form replaces it.
_EXPORT = re.compile(r"^export \{[^}]*\};\s*\Z", re.MULTILINE)
_IMMUTABLE = "public, max-age=31536000, immutable"


@cache
def module_source() -> bytes:
    """The ES module, as shipped in the package (``fullduplex/static/fullduplex.js``)."""
    return (resources.files("fullduplex") / "static" / "fullduplex.js").read_bytes()


@cache
def _global_source() -> bytes:
    text = module_source().decode()
    body, count = _EXPORT.subn("", text)
    if count != 1:  # pragma: no cover - guarded by the tests of the shipped file
        raise RuntimeError("fullduplex.js must end with one export statement")
    # A function scope keeps the module's names out of the page's globals, strict as a module.
    wrapped = f'(function () {{\n"use strict";\n{body}globalThis.FullDuplex = FullDuplex;\n}})();\n'
    return wrapped.encode()


@cache
def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:20] + '"'


def lookup(path: str, request: Request) -> Response | None:
    """The response for ``path`` if it is one of :data:`SCRIPT_PATHS`, else None.

    Args:
        path: The request's path, without the query string.
        request: The request (for ``If-None-Match``).
    """
    if path not in SCRIPT_PATHS:
        return None
    body = _global_source() if path.endswith(".global.js") else module_source()
    etag = _etag(body)
    versioned = path.startswith(f"/fullduplex-{__version__}")
    headers = [
        ("Cache-Control", _IMMUTABLE if versioned else "no-cache"),
        ("ETag", etag),
        ("X-Content-Type-Options", "nosniff"),
    ]
    if etag in (request.headers.get("If-None-Match") or ""):
        return response(304, b"", headers=headers)
    return response(200, body, content_type=CONTENT_TYPE, headers=headers)
