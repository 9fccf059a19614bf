"""Tests for ``fullduplex serve module:app`` (fullduplex.cli), in a subprocess."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fullduplex.asyncio.client import connect
from fullduplex.cli import main
from fullduplex.exceptions import ConnectionClosedOK, InvalidStatus
from tests.app.utils import http_get
from tests.asyncio.utils import wait_for
from tests.helpers import seconds

ROOT = Path(__file__).resolve().parents[1]
_FIRST_LINE = re.compile(
    r"fullduplex app listening on http://127\.0\.0\.1:(\d+) and ws://127\.0\.0\.1:(\d+)"
)


@contextmanager
def serve_process(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run ``python -m fullduplex serve ARGS`` from the repository root; yield the process
    and its first line of output. The process is killed on exit if still running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fullduplex", "serve", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc, proc.stdout.readline().rstrip("\n")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=seconds(10))


class TestServe:
    """The sample app served from the command line."""

    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
    async def test_serves_and_stops(self, signum: int) -> None:
        with serve_process("tests.app.sample_app:app", "--port", "0") as (proc, line):
            found = _FIRST_LINE.fullmatch(line)
            assert found is not None, line
            port = int(found[1])
            assert found[2] == found[1]
            status, _, body = await http_get(port, "/health")
            assert (status, body) == (200, b'{"status":"ok"}')
            async with connect(f"ws://127.0.0.1:{port}/echo") as echo:
                await echo.send("hello")
                assert await wait_for(echo.recv()) == "hello"
                async with connect(f"ws://127.0.0.1:{port}/count/41") as count:
                    await count.send("+")
                    assert await wait_for(count.recv()) == "42"
                    proc.send_signal(signum)
                    for ws in (echo, count):
                        with pytest.raises(ConnectionClosedOK):
                            await wait_for(ws.recv())
                        assert ws.close_code == 1001
            assert await asyncio.to_thread(proc.wait, seconds(10)) == 0

    async def test_default_attribute_and_options(self) -> None:
        with serve_process(
            "tests.app.sample_app", "--port", "0", "--no-compression", "--uvloop"
        ) as (proc, line):
            found = _FIRST_LINE.fullmatch(line)
            assert found is not None, line
            async with connect(f"ws://127.0.0.1:{found[1]}/echo") as ws:
                assert ws.response is not None
                assert "Sec-WebSocket-Extensions" not in ws.response.headers
                await ws.send(b"\x00")
                assert await wait_for(ws.recv()) == b"\x00"
            proc.terminate()
            assert await asyncio.to_thread(proc.wait, seconds(10)) == 0

    async def test_health_and_limits(self) -> None:
        with serve_process(
            "tests.app.sample_app:app",
            *("--port", "0", "--health", "--metrics", "--max-connections", "1"),
        ) as (proc, line):
            found = _FIRST_LINE.fullmatch(line)
            assert found is not None, line
            port = int(found[1])
            assert (await http_get(port, "/readyz"))[:3:2] == (200, b"ready\n")
            assert (await http_get(port, "/livez"))[0] == 200
            async with connect(f"ws://127.0.0.1:{port}/echo"):
                with pytest.raises(InvalidStatus) as refused:
                    async with connect(f"ws://127.0.0.1:{port}/echo"):
                        pass
                assert refused.value.status_code == 503
            status, _, body = await http_get(port, "/metrics")
            assert status == 200
            assert b'fullduplex_upgrades_refused_total{reason="capacity"} 1\n' in body
            proc.terminate()
            assert await asyncio.to_thread(proc.wait, seconds(10)) == 0

    def test_app_options_refused_with_asgi(self, capsys: pytest.CaptureFixture[str]) -> None:
        spec = "tests.app.sample_app:app"
        assert main(["serve", spec, "--asgi", "--health", "--max-connections", "3"]) == 2
        assert "--health, --max-connections: for a fullduplex App" in capsys.readouterr().err

    def test_drain_timeout_refused_without_asgi(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["serve", "tests.app.sample_app:app", "--drain-timeout", "1"]) == 2
        assert "--drain-timeout: for an ASGI application" in capsys.readouterr().err

    def test_bad_limit(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["serve", "tests.app.sample_app:app", "--accept-rate", "0"]) == 2
        assert "rate must be positive" in capsys.readouterr().err

    @pytest.mark.parametrize(
        ("spec", "error"),
        [
            ("tests.app.no_such_module:app", "cannot load"),
            ("tests.app.sample_app:missing", "cannot load"),
            (":app", "cannot load"),
            ("tests.app.sample_app:echo", "not a fullduplex.app.App"),
        ],
    )
    def test_bad_spec(self, spec: str, error: str, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["serve", spec]) == 2
        assert error in capsys.readouterr().err

    def test_help(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as info:
            main(["serve", "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        for option in ("MODULE:ATTRIBUTE", "--host", "--port", "--no-compression", "--uvloop"):
            assert option in out
