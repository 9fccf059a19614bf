"""Tests for fullduplex.cli: argument parsing in-process, the servers in a subprocess."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fullduplex import cli
from fullduplex.asyncio.client import connect
from fullduplex.cli import main
from fullduplex.exceptions import ConnectionClosedError, ConnectionClosedOK
from tests.helpers import seconds

_URL = re.compile(r"ws://127\.0\.0\.1:(\d+)$")


@contextmanager
def cli_server(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run ``python -m fullduplex ARGS``; yield the process and the first line of its output.

    The process is killed on exit if the test did not stop it.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "fullduplex", *args],
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


async def stop(proc: subprocess.Popen[str], signum: int) -> int:
    """Send ``signum`` and return the exit status, waiting in a thread so that the clients on
    this event loop can take part in the server's close handshakes meanwhile."""
    proc.send_signal(signum)
    return await asyncio.to_thread(proc.wait, seconds(10))


class TestArguments:
    """Parsing, help and usage errors, without starting anything."""

    def test_help(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as info:
            main(["--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert "echo" in out and "demo" in out

    def test_echo_help(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as info:
            main(["echo", "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        for option in ("--host", "--port", "--no-compression", "--max-message-size", "--uvloop"):
            assert option in out

    def test_no_command(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main([]) == 2
        assert "usage" in capsys.readouterr().out

    @pytest.mark.parametrize("size", ["abc", "-5"])
    def test_bad_size(self, size: str, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as info:
            main(["echo", "--max-message-size", size])
        assert info.value.code == 2
        assert "max-message-size" in capsys.readouterr().err

    @pytest.mark.parametrize(("module", "extra"), [("uvloop", "uvloop"), ("aiofastnet", "fast")])
    def test_loop_package_missing(
        self,
        module: str,
        extra: str,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        monkeypatch.setitem(sys.modules, module, None)  # makes `import MODULE` fail
        assert main(["echo", "--port", "0", f"--{module}"]) == 2
        err = capsys.readouterr().err
        assert f"--{module} needs {module}" in err
        assert f"pip install 'fullduplex[{extra}]'" in err

    @pytest.mark.parametrize("use_uvloop", [False, True])
    def test_aiofastnet_patches_the_loop(self, use_uvloop: bool) -> None:
        seen: list[tuple[str, bool]] = []

        async def record() -> None:
            loop = asyncio.get_running_loop()
            patched = bool(getattr(loop, "_aiofastnet_patched_methods", None))
            seen.append((type(loop).__module__.split(".")[0], patched))

        assert cli._run(record(), use_uvloop, True) == 0
        assert cli._run(record(), use_uvloop, False) == 0
        package = "uvloop" if use_uvloop else "asyncio"
        assert seen == [(package, True), (package, False)]

    def test_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit):
            main(["--version"])
        assert capsys.readouterr().out.startswith("fullduplex ")


class TestEcho:
    """``python -m fullduplex echo`` in a subprocess."""

    async def test_shared_echo_server(self, echo_url: str) -> None:
        async with connect(echo_url + "/any/path") as ws:
            await ws.send("text")
            assert await ws.recv() == "text"
            await ws.send(b"\x00\x01")
            assert await ws.recv() == b"\x00\x01"

    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
    async def test_prints_url_echoes_and_stops_cleanly(self, signum: int) -> None:
        with cli_server("echo", "--host", "127.0.0.1", "--port", "0") as (proc, line):
            assert line.startswith("fullduplex echo server listening on ws://")
            match = _URL.search(line)
            assert match is not None, line
            async with connect(f"ws://127.0.0.1:{match.group(1)}/") as ws:
                await ws.send("hello")
                assert await ws.recv() == "hello"
                await ws.send(b"x" * 100_000)
                assert await ws.recv() == b"x" * 100_000
                assert await stop(proc, signum) == 0
                with pytest.raises(ConnectionClosedOK) as info:
                    await ws.recv()
                assert info.value.code == 1001

    async def test_options(self) -> None:
        args = ("echo", "--port", "0", "--no-compression", "--max-message-size", "100")
        with cli_server(*args) as (proc, line):
            match = _URL.search(line)
            assert match is not None, line
            async with connect(f"ws://127.0.0.1:{match.group(1)}/") as ws:
                assert "Sec-WebSocket-Extensions" not in ws.response.headers
                await ws.send("y" * 100)
                assert await ws.recv() == "y" * 100
                await ws.send("y" * 101)
                with pytest.raises(ConnectionClosedError) as info:
                    await ws.recv()
                assert info.value.code == 1009
            assert await stop(proc, signal.SIGTERM) == 0

    @pytest.mark.parametrize(
        "options", [("--uvloop",), ("--aiofastnet",), ("--uvloop", "--aiofastnet")]
    )
    async def test_other_loops(self, options: tuple[str, ...]) -> None:
        with cli_server("echo", "--port", "0", *options) as (proc, line):
            match = _URL.search(line)
            assert match is not None, line
            async with connect(f"ws://127.0.0.1:{match.group(1)}/") as ws:
                await ws.send(f"with {options}")
                assert await ws.recv() == f"with {options}"
                await ws.send(b"x" * 1_000_000)
                assert await ws.recv() == b"x" * 1_000_000
            assert await stop(proc, signal.SIGTERM) == 0


class TestDemo:
    """``python -m fullduplex demo`` serves the sample apps (examples/demo.py) and their pages."""

    async def test_demo(self) -> None:
        with cli_server("demo", "--port", "0") as (proc, line):
            match = re.fullmatch(r"fullduplex demo on http://127\.0\.0\.1:(\d+)/", line)
            assert match is not None, line
            base = f"127.0.0.1:{match.group(1)}"

            def get(path: str) -> tuple[int, str, bytes]:
                with urllib.request.urlopen(f"http://{base}{path}", timeout=seconds(10)) as r:
                    return r.status, r.headers["Content-Type"], r.read()

            status, content_type, body = await asyncio.to_thread(get, "/")
            assert status == 200
            assert content_type.startswith("text/html")
            for page in (b"echo.html", b"chat.html", b"snake.html"):
                assert page in body
            async with connect(f"ws://{base}/echo") as ws:
                await ws.send("demo")
                assert await ws.recv() == "demo"
            assert await stop(proc, signal.SIGINT) == 0
            assert proc.stdout is not None
            out = proc.stdout.read()
        assert f"http://{base}/snake.html" in out

    def test_demo_help(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as info:
            main(["demo", "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert "--host" in out and "--port" in out

    def test_finds_the_examples_of_this_checkout(self) -> None:
        root = cli._find_examples_root()
        assert root is not None
        assert (root / "examples" / "demo.py").is_file()
        assert root == Path(__file__).resolve().parents[1]

    def test_no_examples_exits_2(
        self,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        # Neither next to the sources nor in the current directory.
        monkeypatch.setattr(cli, "__file__", str(tmp_path / "src" / "fullduplex" / "cli.py"))
        monkeypatch.chdir(tmp_path)
        assert main(["demo", "--port", "0"]) == 2
        assert "examples" in capsys.readouterr().err
