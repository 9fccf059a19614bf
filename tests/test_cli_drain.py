"""Tests for ``fullduplex drain`` (fullduplex.cli_drain) and ``serve --pidfile``: real server
processes on 127.0.0.1, drained by the real command in another process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from fullduplex.asyncio.client import connect
from fullduplex.cli import main
from fullduplex.exceptions import ConnectionClosed
from tests.asyncio.utils import wait_for
from tests.helpers import seconds
from tests.test_cli_serve import _FIRST_LINE

ROOT = Path(__file__).resolve().parents[1]

BLOCKING_APP = """
    import time

    from fullduplex.app import App

    app = App()


    @app.on_message("/block")
    async def block(session, message):
        await session.send("blocking")
        time.sleep(float(message))  # blocks the event loop: the drain cannot proceed
"""


@contextmanager
def server(cwd: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Run ``python -m fullduplex serve ARGS`` in its own process group; yield it and its
    port. The group is killed on exit whatever happened."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fullduplex", "serve", *args, "--port", "0"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().rstrip("\n")
        found = _FIRST_LINE.fullmatch(line)
        assert found is not None, line
        yield proc, int(found[1])
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=seconds(10))


async def drain(*args: str) -> tuple[int, str, str]:
    """Run ``python -m fullduplex drain ARGS``; return its exit status, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fullduplex",
        "drain",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class TestDrain:
    """The command against a running server."""

    @pytest.mark.parametrize("workers", ["1", "2"])
    async def test_drains_a_server_by_its_pidfile(self, tmp_path: Path, workers: str) -> None:
        """The open client gets the server's own --drain-code, the server exits 0, the command
        reports it and exits 0, and the pid file is gone; with --workers, the pid file names
        the supervisor, which drains every worker."""
        pidfile = tmp_path / "serve.pid"
        options = ("--pidfile", str(pidfile), "--drain", "0.5", "--drain-code", "1012")
        with server(ROOT, "tests.app.sample_app:app", *options, "--workers", workers) as running:
            proc, port = running
            assert int(pidfile.read_text()) == proc.pid
            async with connect(f"ws://127.0.0.1:{port}/echo") as ws:
                await ws.send("before")
                assert await wait_for(ws.recv()) == "before"
                status, out, err = await drain("--pidfile", str(pidfile), "--timeout", "20")
                with pytest.raises(ConnectionClosed):
                    await wait_for(ws.recv())
                assert ws.close_code == 1012
            assert (status, err) == (0, ""), out
            assert f"sent SIGTERM to {proc.pid}" in out
            assert f"process {proc.pid} exited after" in out
            assert await asyncio.to_thread(proc.wait, seconds(10)) == 0
            assert not pidfile.exists()

    async def test_still_running_at_the_timeout(self, tmp_path: Path) -> None:
        """A server whose loop is blocked cannot drain: the command says so, exits 1, and
        leaves it running."""
        (tmp_path / "blocking.py").write_text(textwrap.dedent(BLOCKING_APP))
        with server(tmp_path, "blocking:app", "--drain", "0") as (proc, port):
            async with connect(f"ws://127.0.0.1:{port}/block") as ws:
                await ws.send("5")
                assert await wait_for(ws.recv()) == "blocking"
                status, out, err = await drain("--pid", str(proc.pid), "--timeout", "0.5")
                assert status == 1, (out, err)
                assert f"process {proc.pid} still running after 0.5 s" in err
                assert proc.poll() is None

    async def test_no_such_process(self, tmp_path: Path) -> None:
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        status, out, err = await drain("--pid", str(gone.pid))
        assert (status, out) == (2, "")
        assert f"no process {gone.pid}" in err

    async def test_not_a_fullduplex_process(self) -> None:
        """A stale pid may name another program now: it is not signalled."""
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            status, out, err = await drain("--pid", str(other.pid))
            assert (status, out) == (2, "")
            assert f"process {other.pid} is not a fullduplex server" in err
            assert other.poll() is None
        finally:
            other.kill()
            other.wait()

    @pytest.mark.parametrize(
        ("content", "error"),
        [(None, "cannot read the pid file"), ("junk", "holds no pid"), ("0", "holds no pid")],
    )
    async def test_bad_pidfile(self, tmp_path: Path, content: str | None, error: str) -> None:
        pidfile = tmp_path / "serve.pid"
        if content is not None:
            pidfile.write_text(content)
        status, out, err = await drain("--pidfile", str(pidfile))
        assert (status, out) == (2, "")
        assert error in err


class TestArguments:
    def test_pid_or_pidfile_is_required(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as info:
            main(["drain"])
        assert info.value.code == 2
        assert "one of the arguments --pid --pidfile is required" in capsys.readouterr().err

    @pytest.mark.parametrize("value", ["0", "-1", "soon"])
    def test_bad_timeout(self, value: str, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as info:
            main(["drain", "--pid", "1", "--timeout", value])
        assert info.value.code == 2
        assert "--timeout" in capsys.readouterr().err

    def test_pidfile_in_a_missing_directory(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        where = tmp_path / "missing" / "serve.pid"
        assert main(["serve", "tests.app.sample_app:app", "--pidfile", str(where)]) == 2
        assert "no directory for --pidfile" in capsys.readouterr().err
