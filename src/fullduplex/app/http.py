"""Plain HTTP on the WebSocket port: GET routes and static files.

It answers the requests that are not WebSocket upgrades, through the server's
``process_request`` hook, so a page and its WebSocket endpoints share one port::

    @app.get("/health")
    def health(request):
        return {"status": "ok"}          # str, bytes, dict/list (JSON) or a Response

    app.static("/", "examples/chat/static")

Only GET and HEAD are served (HEAD answers like GET, without the body). Each response ends its
connection (``Connection: close``): this is for pages and small assets next to WebSocket
endpoints, not a general web server.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import mimetypes
import os
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import unquote

from ..protocol.handshake import Headers, Request, Response
from .routing import Router

if TYPE_CHECKING:
    from ..asyncio.server import ServerWebSocket

__all__ = ["HTTP", "RouteHandler", "response"]

RouteHandler: TypeAlias = Callable[..., "Any | Awaitable[Any]"]
"""``handler(request, **path_params)``, sync or async, returning str, bytes, dict, list or a
Response."""

_logger = logging.getLogger("fullduplex.app")

_METHODS = ("GET", "HEAD")
# Files up to this size are read inline; bigger ones in a thread, so that the loop goes on.
_INLINE_READ = 64 * 1024
# Text types served with an explicit charset, so browsers do not guess.
_CHARSET_TYPES = ("application/javascript", "application/json", "image/svg+xml")


def response(
    status: int,
    body: str | bytes = b"",
    *,
    content_type: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
) -> Response:
    """Build a Response for a GET route to return.

    Args:
        status: The HTTP status code.
        body: The body; a str is encoded to UTF-8 (and defaults to text/plain).
        content_type: The Content-Type; by default text/plain for a str body, none for bytes.
        headers: More header fields.
    """
    fields = Headers(headers)
    if isinstance(body, str):
        body = body.encode()
        content_type = content_type or "text/plain; charset=utf-8"
    if content_type is not None and "Content-Type" not in fields:
        fields.add("Content-Type", content_type)
    return Response(status, "", fields, body)


class HTTP:
    """The plain-HTTP side of an app: GET routes, static directories, and the fallbacks."""

    __slots__ = ("_routes", "_statics", "client_script")

    def __init__(self) -> None:
        self._routes: Router[RouteHandler] = Router()
        # Serve fullduplex.js (fullduplex.app.script) where no route or file of the app does.
        self.client_script = True
        # (prefix without trailing slash, resolved directory), longest prefix first.
        self._statics: list[tuple[str, Path]] = []

    def get(self, path: str) -> Callable[[RouteHandler], RouteHandler]:
        """Register a GET (and HEAD) route; use as a decorator.

        Args:
            path: A path template; its parameters are passed as keyword arguments.

        Raises:
            ValueError: The template is invalid or already routed.
        """

        def register(handler: RouteHandler) -> RouteHandler:
            self._routes.add(path, handler)
            return handler

        return register

    def static(self, prefix: str, directory: str | os.PathLike[str]) -> None:
        """Serve the files under ``directory`` at URL ``prefix``.

        A directory is served as its ``index.html``. Nothing outside ``directory`` is ever
        served: ``..``, symbolic links that lead out, and NUL bytes all get 404.

        Args:
            prefix: The URL path prefix, e.g. "/" or "/static".
            directory: The directory to serve.

        Raises:
            ValueError: ``prefix`` does not start with "/", or ``directory`` is not a directory.
        """
        if not prefix.startswith("/"):
            raise ValueError(f"a static prefix must start with '/': {prefix!r}")
        root = Path(directory).resolve()
        if not root.is_dir():
            raise ValueError(f"not a directory: {directory}")
        self._statics.append((prefix.rstrip("/"), root))
        self._statics.sort(key=lambda item: len(item[0]), reverse=True)

    async def respond(
        self, ws: ServerWebSocket, request: Request, path: str, *, endpoint: bool
    ) -> Response:
        """Answer a request that is not a WebSocket upgrade.

        Args:
            ws: The connection (its ``respond`` builds the response).
            request: The request.
            path: Its path, without the query string.
            endpoint: Whether ``path`` is a WebSocket endpoint's.

        Returns:
            The response: a GET route's, a static file, 426 for an endpoint path, 405 for a
            method other than GET or HEAD, 404 otherwise.
        """
        found = self._routes.match(path)
        static = None if found is not None else self._static_root(path)
        if found is None and self.client_script and request.method in _METHODS:
            script = await self._client_script(request, path, static)
            if script is not None:
                return _finish(ws, request, script)
        if found is None and static is None:
            if endpoint:
                return ws.respond(
                    426,
                    "Upgrade Required: this is a WebSocket endpoint.\n",
                    headers=[("Upgrade", "websocket"), ("Connection", "Upgrade, close")],
                )
            return ws.respond(404, "Not Found\n")
        if request.method not in _METHODS:
            return ws.respond(405, "Method Not Allowed\n", headers=[("Allow", "GET, HEAD")])
        if found is not None:
            route, params = found
            result = await self._call(route.template, route.target, request, params)
        else:
            assert static is not None
            result = await _static_file(request, path, *static)
        return _finish(ws, request, result)

    async def _call(
        self, template: str, handler: RouteHandler, request: Request, params: dict[str, str]
    ) -> Response:
        try:
            result = handler(request, **params)
            if inspect.isawaitable(result):
                result = await result
            return _to_response(result)
        except Exception:
            # The route's bug: the client gets a bare 500, the log gets the traceback once.
            _logger.error("GET route %s failed", template, exc_info=True)
            return response(500, "Internal Server Error\n")

    async def _client_script(
        self, request: Request, path: str, static: tuple[str, Path] | None
    ) -> Response | None:
        # Imported on use: the script module imports this one (for response()).
        from .script import lookup  # noqa: PLC0415

        script = lookup(path, request)
        if script is None or static is None:
            return script
        # A static directory holding a file of that name wins: the app ships its own build.
        own = await _static_file(request, path, *static)
        return script if own.status == 404 else own

    def _static_root(self, path: str) -> tuple[str, Path] | None:
        for prefix, root in self._statics:
            if path == prefix or path.startswith(prefix + "/"):
                return prefix, root
        return None


def _to_response(result: Any) -> Response:
    if isinstance(result, Response):
        return result
    if isinstance(result, str):
        return response(200, result)
    if isinstance(result, bytes | bytearray | memoryview):
        return response(200, bytes(result), content_type="application/octet-stream")
    if isinstance(result, dict | list):
        body = json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode()
        return response(200, body, content_type="application/json")
    raise TypeError(
        f"a GET route returned {type(result).__name__}: return str, bytes, dict, list or Response"
    )


def _finish(ws: ServerWebSocket, request: Request, result: Response) -> Response:
    """The response as sent: ``Connection: close`` added, the body dropped for HEAD."""
    headers = [(name, value) for name, value in result.headers.raw_items()]
    if request.method != "HEAD":
        return ws.respond(result.status, result.body, headers=headers)
    if "Content-Length" not in result.headers:
        headers.append(("Content-Length", str(len(result.body))))
    return ws.respond(result.status, b"", headers=headers)


async def _static_file(request: Request, path: str, prefix: str, root: Path) -> Response:
    try:
        relative = unquote(path[len(prefix) :], errors="strict")
        parts = [part for part in relative.split("/") if part]
        # Rejected by name before touching the file system; symbolic links are checked once
        # resolved.
        if "\x00" in relative or any(part in ("..", ".") or "\\" in part for part in parts):
            return response(404, "Not Found\n")
        resolved = root.joinpath(*parts).resolve()
        if resolved.is_dir() and _inside(root, resolved):
            if not path.endswith("/"):
                # Relative links in index.html need the trailing slash.
                query = request.path.partition("?")[2]
                location = path + "/" + ("?" + query if query else "")
                return response(301, "", headers=[("Location", location)])
            resolved = (resolved / "index.html").resolve()
        if not _inside(root, resolved) or not resolved.is_file():
            return response(404, "Not Found\n")
        size = resolved.stat().st_size
        if request.method == "HEAD":
            body = b""
        elif size <= _INLINE_READ:
            body = resolved.read_bytes()
        else:
            body = await asyncio.to_thread(resolved.read_bytes)
    except (OSError, ValueError):
        return response(404, "Not Found\n")
    # The file's size, not the body's: HEAD leaves the body out but announces its length.
    return response(
        200,
        body,
        content_type=_content_type(resolved.name),
        headers=[("Content-Length", str(size))],
    )


def _inside(root: Path, resolved: Path) -> bool:
    """Tell whether a resolved path (symbolic links followed) is ``root`` or under it."""
    return resolved == root or root in resolved.parents


def _content_type(name: str) -> str:
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type in _CHARSET_TYPES:
        content_type += "; charset=utf-8"
    return content_type
