"""Tests for fullduplex.app.http: GET routes, static files, and the HTTP fallbacks, on the
WebSocket port."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fullduplex.app import App, Headers, Request, Response, response
from fullduplex.asyncio.server import Server
from tests.app.utils import http_get, serving

PAGE = b"<!doctype html><title>index</title>"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A directory to serve, a secret next to it, and a symlink that leads out."""
    root = tmp_path / "site"
    (root / "sub").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "index.html").write_bytes(PAGE)
    (root / "style.css").write_text("body {}")
    (root / "app.js").write_text("let x = 1;")
    (root / "data.json").write_text("{}")
    (root / "image.png").write_bytes(b"\x89PNG")
    (root / "blob.unknownext").write_bytes(b"\x00")
    (root / "sub" / "index.html").write_bytes(b"sub index")
    (root / "big.txt").write_bytes(b"z" * 200_000)
    (tmp_path / "secret.txt").write_text("secret")
    (root / "link-out").symlink_to(tmp_path / "secret.txt")
    (root / "dir-out").symlink_to(tmp_path)
    (root / "sub" / "inner-link").symlink_to(root / "style.css")
    return root


@pytest.fixture
async def static_server(site: Path) -> AsyncIterator[Server]:
    app = App()
    app.static("/", site)
    app.static("/assets", site / "sub")
    app.on_message("/ws")(lambda session, message: message)
    async with serving(app) as server:
        yield server


class TestStatic:
    """app.static: files with their content types, index.html, nothing outside."""

    @pytest.mark.parametrize(
        ("path", "content_type"),
        [
            ("/style.css", "text/css; charset=utf-8"),
            ("/app.js", "javascript; charset=utf-8"),
            ("/data.json", "application/json; charset=utf-8"),
            ("/image.png", "image/png"),
            ("/blob.unknownext", "application/octet-stream"),
        ],
    )
    async def test_content_types(
        self, static_server: Server, site: Path, path: str, content_type: str
    ) -> None:
        status, headers, body = await http_get(static_server, path)
        assert status == 200
        assert headers["content-type"].endswith(content_type)
        assert body == (site / path[1:]).read_bytes()
        assert headers["content-length"] == str(len(body))

    async def test_index_html(self, static_server: Server) -> None:
        status, headers, body = await http_get(static_server, "/")
        assert (status, body) == (200, PAGE)
        assert headers["content-type"] == "text/html; charset=utf-8"
        assert (await http_get(static_server, "/sub/"))[2] == b"sub index"

    async def test_directory_without_slash_redirects(self, static_server: Server) -> None:
        status, headers, _ = await http_get(static_server, "/sub?x=1")
        assert status == 301 and headers["location"] == "/sub/?x=1"

    async def test_directory_without_index(self, static_server: Server) -> None:
        assert (await http_get(static_server, "/empty/"))[0] == 404

    async def test_second_prefix(self, static_server: Server) -> None:
        status, _, body = await http_get(static_server, "/assets/index.html")
        assert (status, body) == (200, b"sub index")
        # sub/inner-link leads to ../style.css: outside /assets' directory, inside /'s.
        assert (await http_get(static_server, "/assets/inner-link"))[0] == 404
        assert (await http_get(static_server, "/sub/inner-link"))[2] == b"body {}"

    async def test_big_file(self, static_server: Server) -> None:
        status, _, body = await http_get(static_server, "/big.txt")
        assert status == 200 and body == b"z" * 200_000

    @pytest.mark.parametrize(
        "path",
        [
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/sub/../../secret.txt",
            "/..%2Fsecret.txt",
            "/sub/%2E%2E/%2E%2E/secret.txt",
            "/link-out",
            "/dir-out/secret.txt",
            "/style.css%00.png",
            "/%00",
            "/..%5Csecret.txt",
            "/%ff",
            "/assets/../secret.txt",
            "/missing.html",
        ],
    )
    async def test_nothing_outside(self, static_server: Server, path: str) -> None:
        status, _, body = await http_get(static_server, path)
        assert status == 404
        assert b"secret" not in body

    async def test_head(self, static_server: Server) -> None:
        status, headers, body = await http_get(static_server, "/style.css", method="HEAD")
        assert status == 200
        assert headers["content-type"] == "text/css; charset=utf-8"
        assert body == b""

    async def test_head_content_length(self, static_server: Server) -> None:
        _, headers, _ = await http_get(static_server, "/style.css", method="HEAD")
        assert headers["content-length"] == "7"

    async def test_other_methods(self, static_server: Server) -> None:
        status, headers, _ = await http_get(static_server, "/style.css", method="DELETE")
        assert status == 405 and headers["allow"] == "GET, HEAD"

    def test_invalid_registrations(self, site: Path) -> None:
        app = App()
        with pytest.raises(ValueError):
            app.static("static", site)
        with pytest.raises(ValueError):
            app.static("/", site / "index.html")


class TestRoutes:
    """app.get: str, bytes, dict and Response results; parameters; errors."""

    @pytest.fixture
    async def server(self) -> AsyncIterator[Server]:
        app = App()

        @app.get("/text")
        def text(request: Request) -> str:
            return f"hello {request.headers.get('X-Name', 'you')}"

        @app.get("/bytes")
        def raw(request: Request) -> bytes:
            return b"\x00\x01"

        @app.get("/json")
        async def data(request: Request) -> dict[str, object]:
            await asyncio.sleep(0)
            return {"path": request.path, "é": [1, None]}

        @app.get("/teapot")
        def teapot(request: Request) -> Response:
            return response(418, "short and stout", headers=[("X-Tea", "earl grey")])

        @app.get("/raw-response")
        def manual(request: Request) -> Response:
            return Response(201, "Created", Headers([("Content-Type", "text/csv")]), b"a,b")

        @app.get("/users/{user_id}")
        def user(request: Request, user_id: str) -> dict[str, str]:
            return {"user": user_id}

        @app.get("/broken")
        def broken(request: Request) -> str:
            raise RuntimeError("route bug")

        @app.get("/wrong-type")
        def wrong(request: Request) -> object:
            return 42

        app.on_message("/ws")(lambda session, message: message)
        async with serving(app) as server:
            yield server

    async def test_str(self, server: Server) -> None:
        status, headers, body = await http_get(server, "/text", headers={"X-Name": "ann"})
        assert (status, body) == (200, b"hello ann")
        assert headers["content-type"] == "text/plain; charset=utf-8"
        assert headers["connection"] == "close"

    async def test_bytes(self, server: Server) -> None:
        status, headers, body = await http_get(server, "/bytes")
        assert (status, body) == (200, b"\x00\x01")
        assert headers["content-type"] == "application/octet-stream"

    async def test_dict(self, server: Server) -> None:
        status, headers, body = await http_get(server, "/json?q=1")
        assert status == 200 and headers["content-type"] == "application/json"
        assert json.loads(body) == {"path": "/json?q=1", "é": [1, None]}

    async def test_response(self, server: Server) -> None:
        status, headers, body = await http_get(server, "/teapot")
        assert (status, body, headers["x-tea"]) == (418, b"short and stout", "earl grey")
        status, headers, body = await http_get(server, "/raw-response")
        assert (status, body, headers["content-type"]) == (201, b"a,b", "text/csv")

    async def test_path_parameters(self, server: Server) -> None:
        assert json.loads((await http_get(server, "/users/42"))[2]) == {"user": "42"}

    async def test_head(self, server: Server) -> None:
        status, headers, body = await http_get(server, "/text", method="HEAD")
        assert (status, body) == (200, b"")
        assert headers["content-type"] == "text/plain; charset=utf-8"

    async def test_errors_are_500_and_logged_once(
        self, server: Server, caplog: pytest.LogCaptureFixture
    ) -> None:
        assert (await http_get(server, "/broken"))[0] == 500
        assert (await http_get(server, "/wrong-type"))[0] == 500
        logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert [type(r.exc_info[1]) for r in logged if r.exc_info] == [RuntimeError, TypeError]

    async def test_unknown_path(self, server: Server) -> None:
        status, _, body = await http_get(server, "/nope")
        assert (status, body) == (404, b"Not Found\n")

    async def test_endpoint_path_without_upgrade(self, server: Server) -> None:
        status, headers, _ = await http_get(server, "/ws")
        assert status == 426
        assert headers["upgrade"] == "websocket"

    async def test_post(self, server: Server) -> None:
        assert (await http_get(server, "/text", method="POST"))[0] == 405

    def test_duplicate_route(self) -> None:
        app = App()
        app.get("/x")(lambda request: "x")
        with pytest.raises(ValueError):
            app.get("/x")(lambda request: "y")


def test_response_helper() -> None:
    r = response(200, "text")
    assert (r.status, r.body, r.headers["Content-Type"]) == (
        200,
        b"text",
        "text/plain; charset=utf-8",
    )
    r = response(200, b"data", content_type="image/png", headers=[("X-A", "1")])
    assert (r.body, r.headers["Content-Type"], r.headers["X-A"]) == (b"data", "image/png", "1")
    assert "Content-Type" not in response(204).headers
