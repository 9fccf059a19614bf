"""fullduplex.asgi.uvicorn: fullduplex's WebSocket protocol class inside uvicorn (real
processes on 127.0.0.1; the endpoint suite of test_application runs under it too, as
``uvicorn-fullduplex``): FastAPI with HTTP and WebSocket routes, the programmatic
``uvicorn.run(app, ws=...)``, root_path the way uvicorn's own implementation has it, and
shutdown (1001, the app's disconnect, a bounded drain)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import fullduplex
from fullduplex.exceptions import ConnectionClosed, InvalidStatus
from tests.asgi.servers import run_server
from tests.asgi.test_application import _http_get
from tests.asgi.test_server import HOSTILE_HEADERS, HOSTILE_IDS, hostile_status
from tests.helpers import seconds


async def _recv(ws: fullduplex.WebSocket) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), seconds(5))


@pytest.mark.parametrize("kind", ["uvicorn-fullduplex", "uvicorn-fullduplex-run"])
async def test_fastapi_http_and_websocket_routes(kind: str) -> None:
    extra = ("1",) if kind == "uvicorn-fullduplex-run" else ()
    with run_server(kind, "tests.asgi.frameworks:fastapi_app", *extra) as (where, _):
        assert await _http_get(where, "/items/7") == (200, b'{"item":7}')
        async with fullduplex.connect(f"ws://{where}/ws/zoe") as ws:
            # uvicorn's own fields reach the 101 (its Server and Date), before the app's.
            assert ws.response is not None
            assert ws.response.headers.get("server") == "uvicorn"
            assert "date" in ws.response.headers
            await ws.send(json.dumps([1, 2]))
            assert json.loads(await _recv(ws)) == {"name": "zoe", "data": [1, 2]}
            await ws.send(json.dumps("bye"))
            with pytest.raises(ConnectionClosed) as info:
                await _recv(ws)
            assert (info.value.code, info.value.reason) == (4000, "bye")
        # A FastAPI route that does not exist: Starlette's websocket 403, through the class.
        with pytest.raises(InvalidStatus) as denied:
            await fullduplex.connect(f"ws://{where}/nowhere")
        assert denied.value.status_code == 403


@pytest.mark.parametrize("kind", ["uvicorn", "uvicorn-fullduplex"])
async def test_root_path_as_uvicorns_own(kind: str) -> None:
    # --root-path: uvicorn prefixes path and raw_path with it; the App routes below it, so
    # the endpoint sees its own path on both implementations.
    with run_server(kind, "tests.asgi.apps:asgi_app", "--root-path", "/api") as (where, _):
        async with fullduplex.connect(f"ws://{where}/life/ann?q=3") as ws:
            await ws.send("hello")
            assert await _recv(ws) == "hello ann q=3 path=/life/ann"


async def test_message_size_limit_is_uvicorns_ws_max_size() -> None:
    extra = ("--ws-max-size", "1000")
    with run_server("uvicorn-fullduplex", "tests.asgi.apps:asgi_app", *extra) as (where, _):
        async with fullduplex.connect(f"ws://{where}/echo") as ws:
            await ws.send("x" * 1000)
            assert await _recv(ws) == "x" * 1000
            await ws.send("x" * 1001)
            with pytest.raises(ConnectionClosed) as info:
                await _recv(ws)
            assert info.value.code == 1009


async def test_sigterm_closes_1001_and_the_app_hears_it() -> None:
    with run_server("uvicorn-fullduplex", "tests.asgi.apps:asgi_app") as (where, proc):
        async with fullduplex.connect(f"ws://{where}/watch") as watcher:
            await watcher.send("ping")
            assert await _recv(watcher) == "joined"
            async with fullduplex.connect(f"ws://{where}/life/sam") as ws:
                proc.send_signal(signal.SIGTERM)
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), seconds(10))
                assert (info.value.code, info.value.reason) == (1001, "server shutting down")
        returncode = await asyncio.to_thread(proc.wait, seconds(10))
        # uvicorn ends a clean shutdown by raising the signal it caught again (its
        # capture_signals), so a graceful exit on SIGTERM is -SIGTERM, not 0.
        assert returncode == -signal.SIGTERM


async def test_shutdown_with_a_stubborn_app_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The app ignores its disconnect and never returns. uvicorn's own implementations wait for
    # it for ever unless --timeout-graceful-shutdown is set (uvicorn#2943); here it is set to
    # 1 s and the process must be gone well before the test's own bound.
    log = tmp_path / "events"
    monkeypatch.setenv("STUBBORN_LOG", str(log))
    target = "tests.asgi.frameworks:stubborn_app"
    with run_server("uvicorn-fullduplex", target, "--timeout-graceful-shutdown", "1") as (
        where,
        proc,
    ):
        async with fullduplex.connect(f"ws://{where}/") as ws:
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), seconds(10))
            assert info.value.code == 1001
        returncode = await asyncio.to_thread(proc.wait, seconds(15))
        elapsed = time.monotonic() - started
    assert returncode == -signal.SIGTERM  # uvicorn's graceful exit (see above)
    assert elapsed < seconds(8)
    assert log.read_text() == "websocket.disconnect 1001\n"


async def test_shutdown_while_the_app_has_not_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIGTERM while the application is still deciding: the connection is dropped (no
    # WebSocket to close yet); the application's accept opens nothing and its next receive
    # is the disconnect, so it returns and uvicorn exits, with no graceful timeout set.
    log = tmp_path / "events"
    monkeypatch.setenv("STUBBORN_LOG", str(log))
    with run_server("uvicorn-fullduplex", "tests.asgi.frameworks:late_app") as (where, proc):
        host, port = where.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await writer.drain()
        await asyncio.sleep(seconds(0.3))
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        # Dropped before any 101: the client reads the end of the stream, no response.
        assert await asyncio.wait_for(reader.read(), seconds(10)) == b""
        writer.close()
        returncode = await asyncio.to_thread(proc.wait, seconds(15))
        elapsed = time.monotonic() - started
    assert returncode == -signal.SIGTERM
    assert elapsed < seconds(8)
    assert log.read_text() == "websocket.disconnect 1006\n"


@pytest.mark.parametrize(("flag", "negotiated"), [("true", True), ("false", False)])
async def test_deflate_follows_uvicorns_setting(flag: str, negotiated: bool) -> None:
    extra = ("--ws-per-message-deflate", flag)
    with run_server("uvicorn-fullduplex", "tests.asgi.apps:asgi_app", *extra) as (where, _):
        async with fullduplex.connect(f"ws://{where}/echo") as ws:  # offers permessage-deflate
            assert ws.response is not None
            extensions = ws.response.headers.get("sec-websocket-extensions") or ""
            assert ("permessage-deflate" in extensions) is negotiated
            await ws.send("compressible " * 100)
            assert await _recv(ws) == "compressible " * 100


@pytest.fixture(scope="module")
def uvicorn_fd() -> Iterator[str]:
    """host:port of the suite's App under uvicorn with fullduplex's class, for a module."""
    with run_server("uvicorn-fullduplex", "tests.asgi.apps:asgi_app") as (where, _):
        yield where


@pytest.mark.parametrize(("header", "value", "statuses"), HOSTILE_HEADERS, ids=HOSTILE_IDS)
async def test_hostile_header_never_crashes(
    uvicorn_fd: str, header: str, value: str, statuses: tuple[int, ...]
) -> None:
    # uvicorn's HTTP parses first and hands the request's bytes over: whatever it lets
    # through, fullduplex's handshake and scope must take without a crash, and refuse what
    # is invalid (uvicorn answers 400 for the 64 KiB field itself).
    assert await hostile_status(uvicorn_fd, "/echo", header, value) in statuses
    async with fullduplex.connect(f"ws://{uvicorn_fd}/echo") as ws:
        await ws.send("still here")
        assert await _recv(ws) == "still here"
