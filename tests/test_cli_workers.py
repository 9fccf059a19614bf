"""Tests for the server options of the command line: --workers, --reload, TLS, --log-level.

Every server runs in a subprocess in its own session (process group), which is killed at the
end of each test whatever happens; workers also stop by themselves when their supervisor dies.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from fullduplex.cli import main
from fullduplex.exceptions import (
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidMessage,
)
from fullduplex.sync import connect
from tests.helpers import seconds

_PORT = re.compile(r"(?:ws|http)s?://127\.0\.0\.1:(\d+)")

PID_APP = """
    import os
    import time

    from fullduplex.app import App

    app = App()
    VERSION = "1"


    @app.on_message("/pid")
    async def pid(session, message):
        return str(os.getpid())


    @app.on_message("/version")
    async def version(session, message):
        return VERSION


    @app.on_message("/block")
    async def block(session, message):
        await session.send("blocking")
        time.sleep(float(message))  # blocks the worker's event loop: it cannot stop
"""


@dataclass
class Running:
    """A server started by :func:`server_process`."""

    proc: subprocess.Popen[str]
    first_line: str
    errors: Path

    @property
    def port(self) -> int:
        found = _PORT.search(self.first_line)
        assert found is not None, (self.first_line, self.stderr())
        return int(found[1])

    def stderr(self) -> str:
        return self.errors.read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.proc.send_signal(signum)
        return self.proc.wait(seconds(20))


@contextmanager
def server_process(cwd: Path, *args: str) -> Iterator[Running]:
    """Run ``python -m fullduplex ARGS`` in ``cwd``; yield it once its first line is out."""
    errors = cwd / f"stderr-{time.monotonic_ns()}.txt"
    with errors.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fullduplex", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )
    try:
        assert proc.stdout is not None
        yield Running(proc, proc.stdout.readline().rstrip("\n"), errors)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=seconds(10))


def ask(port: int, path: str, context: ssl.SSLContext | None = None) -> str:
    """Open a connection, send one message, return the reply."""
    scheme = "wss" if context is not None else "ws"
    with connect(f"{scheme}://127.0.0.1:{port}{path}", proxy=None, ssl=context) as ws:
        ws.send("?")
        reply = ws.recv(timeout=seconds(5))
    assert isinstance(reply, str)
    return reply


def parent_of(pid: int) -> int:
    """The parent process id of ``pid``, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])


def gone(pid: int, timeout: float = 10) -> bool:
    """Wait until process ``pid`` has exited (a zombie counts as exited)."""
    deadline = time.monotonic() + seconds(timeout)
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except (FileNotFoundError, ProcessLookupError):  # ESRCH: it vanished while read
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def pids_until(port: int, wanted: int, exclude: frozenset[str] = frozenset()) -> set[str]:
    """Connect (1,000 times at most, 20 s at most) until ``wanted`` worker pids answered that
    are not in ``exclude``; return every pid seen.

    Attempts are spaced by 20 ms: a restarted worker takes a while to import and listen, and
    until it does every connection reaches the others."""
    seen: set[str] = set()
    deadline = time.monotonic() + seconds(20)
    for _ in range(1000):
        with suppress(OSError):
            seen.add(ask(port, "/pid"))
        if len(seen - exclude) >= wanted or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return seen


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """A directory with ``pidapp.py``: /pid answers the worker's pid, /version VERSION."""
    (tmp_path / "pidapp.py").write_text(textwrap.dedent(PID_APP))
    return tmp_path


class TestWorkers:
    """--workers N: N processes on one port, supervised."""

    def test_spread_restart_and_stop(self, app_dir: Path) -> None:
        with server_process(
            app_dir, "serve", "pidapp:app", "--port", "0", "--workers", "2", "--log-level", "info"
        ) as server:
            port = server.port
            pids = pids_until(port, 2)
            assert len(pids) == 2, server.stderr()
            for pid in pids:
                assert parent_of(int(pid)) == server.proc.pid

            # A worker dies: the supervisor starts another; the survivor goes on serving.
            victim, survivor = sorted(pids)
            os.kill(int(victim), signal.SIGKILL)
            assert gone(int(victim))
            seen = pids_until(port, 1, exclude=frozenset(pids))
            new = seen - pids
            assert len(new) == 1, (seen, server.stderr())
            assert victim not in seen
            assert f"worker {victim} exited (signal 9): restarting it" in server.stderr()

            # SIGTERM to the supervisor: every worker closes its connections with 1001.
            workers = [*new, survivor]
            with connect(f"ws://127.0.0.1:{port}/pid", proxy=None) as ws:
                assert server.stop() == 0
                with pytest.raises(ConnectionClosedOK):
                    ws.recv(timeout=seconds(10))
                assert ws.close_code == 1001
            for pid in workers:
                assert gone(int(pid))
            assert server.proc.stdout is not None
            assert server.proc.stdout.read() == ""  # the URL line was printed once

    def test_sighup_reloads_without_a_refused_connection(self, app_dir: Path) -> None:
        """A client connecting in a loop while the workers are replaced: never refused. Its
        connection may be closed by an old worker's drain (1001), which it then retries."""
        with server_process(app_dir, "serve", "pidapp:app", "--workers", "2", "--port", "0") as (
            server
        ):
            port = server.port
            before = pids_until(port, 2)
            assert len(before) == 2
            outcomes = {"ok": 0, "drained": 0, "refused": 0}
            seen: list[str] = []
            refusals: list[str] = []
            stop = threading.Event()

            def keep_asking() -> None:
                deadline = time.monotonic() + seconds(40)
                for _ in range(20_000):
                    if stop.is_set() or time.monotonic() > deadline:
                        return
                    try:
                        seen.append(ask(port, "/pid"))
                        outcomes["ok"] += 1
                    except ConnectionClosed:
                        outcomes["drained"] += 1
                    except (OSError, InvalidHandshake) as exc:
                        outcomes["refused"] += 1
                        refusals.append(repr(exc))

            asker = threading.Thread(target=keep_asking)
            asker.start()
            try:
                time.sleep(0.3)
                os.kill(server.proc.pid, signal.SIGHUP)
                deadline = time.monotonic() + seconds(30)
                while len(set(seen) - before) < 2 and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert all(gone(int(pid), timeout=20) for pid in before)
                time.sleep(0.3)  # and a little more on the new workers alone
            finally:
                stop.set()
                asker.join()
            assert len(set(seen) - before) == 2
            assert outcomes["refused"] == 0, (outcomes, refusals)
            assert outcomes["ok"] > 20, outcomes
            assert server.stop() == 0

    def test_gives_up_after_too_many_restarts(self, app_dir: Path) -> None:
        with server_process(
            app_dir, "serve", "pidapp:app", "--port", "0", "--workers", "2", "--max-restarts", "0"
        ) as server:
            pid = ask(server.port, "/pid")
            os.kill(int(pid), signal.SIGKILL)
            assert server.proc.wait(seconds(20)) == 1
            assert "giving up" in server.stderr()

    def test_stuck_worker_is_killed(self, app_dir: Path) -> None:
        """A worker that does not stop within --shutdown-timeout is killed."""
        with server_process(
            app_dir,
            "serve",
            "pidapp:app",
            "--port",
            "0",
            "--workers",
            "2",
            "--shutdown-timeout",
            "0.5",
        ) as server:
            ws = connect(f"ws://127.0.0.1:{server.port}/block", proxy=None).open()
            try:
                ws.send(str(seconds(60)))
                assert ws.recv(timeout=seconds(5)) == "blocking"
                assert server.stop() == 0
            finally:
                ws.close()
            log = server.stderr()
            assert "did not stop in time: killing it" in log
            for pid in re.findall(r"started worker (\d+)", log):
                assert gone(int(pid))

    def test_supervisor_killed(self, app_dir: Path) -> None:
        """Workers do not outlive a supervisor that was killed without a chance to stop them."""
        with server_process(
            app_dir, "serve", "pidapp:app", "--port", "0", "--workers", "2"
        ) as server:
            pids = pids_until(server.port, 2)
            assert len(pids) == 2
            server.proc.kill()
            server.proc.wait(seconds(10))
            for pid in pids:
                assert gone(int(pid))

    def test_app_fails_to_load(self, app_dir: Path) -> None:
        with server_process(
            app_dir, "serve", "nosuchmodule:app", "--port", "0", "--workers", "2"
        ) as server:
            assert server.first_line == ""
            assert server.proc.wait(seconds(20)) == 2
            assert "cannot load nosuchmodule:app" in server.stderr()
            assert "before listening" in server.stderr()

    @pytest.mark.parametrize("reuse_port", [False, True])
    def test_port_taken(self, app_dir: Path, reuse_port: bool) -> None:
        """Workers do not join another server's SO_REUSEPORT group, nor fail one by one."""
        with socket.socket() as other:
            if reuse_port:
                other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            other.bind(("127.0.0.1", 0))
            other.listen()
            port = str(other.getsockname()[1])
            with server_process(
                app_dir, "serve", "pidapp:app", "--port", port, "--workers", "2"
            ) as server:
                assert server.first_line == ""
                assert server.proc.wait(seconds(20)) == 1
                assert f"cannot listen on 127.0.0.1:{port}" in server.stderr()
                assert "started worker" not in server.stderr()

    def test_echo_workers(self, tmp_path: Path) -> None:
        with server_process(tmp_path, "echo", "--port", "0", "--workers", "2") as server:
            assert server.first_line.startswith("fullduplex echo server listening on ws://")
            assert ask(server.port, "/") == "?"
            assert server.stop(signal.SIGINT) == 0

    def test_reload_and_workers_exclude_each_other(
        self, app_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(app_dir)
        assert main(["serve", "pidapp:app", "--reload", "--workers", "2"]) == 2
        assert "--reload runs one worker" in capsys.readouterr().err


class TestReload:
    """--reload: a change to the app's code restarts the server on the same port."""

    def test_restarts_on_change(self, app_dir: Path) -> None:
        pytest.importorskip("watchfiles")
        with server_process(app_dir, "serve", "pidapp:app", "--port", "0", "--reload") as server:
            port = server.port
            assert ask(port, "/version") == "1"
            with connect(f"ws://127.0.0.1:{port}/pid", proxy=None) as ws:
                source = app_dir / "pidapp.py"
                source.write_text(source.read_text().replace('VERSION = "1"', 'VERSION = "2"'))
                # The old server closes with 1001 (going away) before the new one starts.
                with pytest.raises(ConnectionClosedOK):
                    ws.recv(timeout=seconds(20))
                assert ws.close_code == 1001
            version = None
            deadline = time.monotonic() + seconds(20)
            for _ in range(200):
                with suppress(OSError):
                    version = ask(port, "/version")
                if version == "2" or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert version == "2", server.stderr()
            assert "changes detected" in server.stderr()
            assert server.stop() == 0

    def test_ignores_other_files(self, app_dir: Path) -> None:
        pytest.importorskip("watchfiles")
        with server_process(app_dir, "serve", "pidapp:app", "--port", "0", "--reload") as server:
            pid = ask(server.port, "/pid")
            (app_dir / "notes.txt").write_text("not code")
            # Longer than the debounce: a restart would have happened by now.
            time.sleep(1.0)
            assert ask(server.port, "/pid") == pid
            assert "changes detected" not in server.stderr()

    def test_without_watchfiles(
        self, app_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(app_dir)
        monkeypatch.setitem(sys.modules, "watchfiles", None)  # import watchfiles fails
        before = signal.getsignal(signal.SIGTERM)
        assert main(["serve", "pidapp:app", "--reload", "--port", "0"]) == 2
        assert "pip install 'fullduplex[reload]'" in capsys.readouterr().err
        assert signal.getsignal(signal.SIGTERM) is before

    def test_unknown_module(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        assert main(["serve", "nosuchmodule:app", "--reload"]) == 2
        assert "cannot load nosuchmodule:app" in capsys.readouterr().err


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with openssl: (cert, key)."""
    directory = tmp_path_factory.mktemp("serve-tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "ec",
                "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", str(key), "-out", str(cert), "-days", "1",
                "-subj", "/CN=localhost",
                "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ],
            check=True,
            capture_output=True,
            timeout=seconds(60),
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"openssl could not make a certificate: {exc}")
    return cert, key


def trusting(cert: Path) -> ssl.SSLContext:
    """A client context that trusts ``cert`` only."""
    return ssl.create_default_context(cafile=str(cert))


class TestTLS:
    """--certfile and --keyfile: wss:// and https://."""

    def test_echo(self, tmp_path: Path, certificate: tuple[Path, Path]) -> None:
        cert, key = certificate
        with server_process(
            tmp_path, "echo", "--port", "0", "--certfile", str(cert), "--keyfile", str(key)
        ) as server:
            assert server.first_line.startswith("fullduplex echo server listening on wss://")
            assert ask(server.port, "/", trusting(cert)) == "?"
            # Plain ws:// to a TLS port fails.
            with pytest.raises((OSError, InvalidMessage)):
                ask(server.port, "/")
            assert server.stop() == 0

    def test_serve_with_workers(self, app_dir: Path, certificate: tuple[Path, Path]) -> None:
        cert, key = certificate
        with server_process(
            app_dir,
            "serve",
            "pidapp:app",
            "--port",
            "0",
            "--workers",
            "2",
            "--certfile",
            str(cert),
            "--keyfile",
            str(key),
        ) as server:
            found = re.fullmatch(
                r"fullduplex app listening on https://127\.0\.0\.1:(\d+) and "
                r"wss://127\.0\.0\.1:(\d+)",
                server.first_line,
            )
            assert found is not None, server.first_line
            assert ask(server.port, "/version", trusting(cert)) == "1"
            assert server.stop() == 0

    def test_demo(self, tmp_path: Path, certificate: tuple[Path, Path]) -> None:
        cert, key = certificate
        with server_process(
            tmp_path, "demo", "--port", "0", "--certfile", str(cert), "--keyfile", str(key)
        ) as server:
            assert server.first_line.startswith("fullduplex demo on https://127.0.0.1:")
            assert ask(server.port, "/echo", trusting(cert)) == "?"
            assert server.stop() == 0

    @pytest.mark.parametrize("command", [["echo"], ["demo"], ["serve", "pidapp:app"]])
    def test_bad_certificate(
        self,
        command: list[str],
        app_dir: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.chdir(app_dir)
        missing = str(app_dir / "missing.pem")
        assert main([*command, "--port", "0", "--certfile", missing]) == 2
        assert "cannot load the certificate" in capsys.readouterr().err


class TestLogLevel:
    """--log-level decides what reaches standard error."""

    @pytest.mark.parametrize(
        ("args", "shown"),
        [([], False), (["--log-level", "info"], True), (["--log-level", "DEBUG"], True)],
    )
    def test_echo(self, tmp_path: Path, args: list[str], shown: bool) -> None:
        with server_process(tmp_path, "echo", "--port", "0", *args) as server:
            assert ask(server.port, "/") == "?"
            assert server.stop() == 0
            log = server.stderr()
            assert ("INFO fullduplex.server: server listening on" in log) is shown
            assert ("DEBUG fullduplex.server:" in log) is ("DEBUG" in args)

    def test_serve_workers(self, app_dir: Path) -> None:
        with server_process(
            app_dir, "serve", "pidapp:app", "--port", "0", "--workers", "2", "--log-level", "info"
        ) as server:
            pids = pids_until(server.port, 2)
            assert server.stop() == 0
            log = server.stderr()
            # Each worker logs with its own pid; the supervisor tells what it starts.
            for pid in pids:
                assert f"[{pid}] INFO fullduplex.server: server listening on" in log
                assert f"started worker {pid}" in log

    def test_invalid(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as info:
            main(["echo", "--log-level", "loud"])
        assert info.value.code == 2
        assert "--log-level" in capsys.readouterr().err


class TestHelp:
    """``fullduplex --help`` and each command's --help describe every option."""

    @pytest.mark.parametrize(
        ("command", "options"),
        [
            (
                "serve",
                [
                    "--host", "--port", "--certfile", "--keyfile", "--no-compression",
                    "--uvloop", "--workers", "--max-restarts", "--shutdown-timeout",
                    "--reload", "--log-level", "--verbose",
                ],
            ),
            (
                "echo",
                [
                    "--host", "--port", "--certfile", "--keyfile", "--no-compression",
                    "--uvloop", "--workers", "--max-restarts", "--shutdown-timeout",
                    "--max-message-size", "--log-level", "--verbose",
                ],
            ),
            ("demo", ["--host", "--port", "--certfile", "--keyfile", "--uvloop", "--log-level"]),
        ],
    )  # fmt: skip
    def test_command_help(
        self, command: str, options: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        for option in options:
            assert option in out, option

    def test_main_help_lists_every_command(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit):
            main(["--help"])
        out = capsys.readouterr().out
        for command in ("echo", "demo", "connect", "serve", "drain"):
            assert command in out

    @pytest.mark.parametrize("value", ["0", "-1", "two"])
    def test_bad_workers(self, value: str, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as info:
            main(["serve", "x:app", "--workers", value])
        assert info.value.code == 2
