"""``fullduplex proxy-config``: the printed configurations run real nginx and Apache httpd
(Debian's) in front of a fullduplex App, on free loopback ports, with their files in a
temporary directory. The configuration each proxy runs is exactly what the command printed."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import fullduplex
from fullduplex.app import App, Session
from fullduplex.exceptions import ConnectionClosed
from fullduplex.proxy_config import ProxyOptions, apache, nginx
from tests.helpers import seconds
from tests.static.app_thread import AppThread

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
APACHE = shutil.which("apache2") or "/usr/sbin/apache2"
MODULES = Path("/usr/lib/apache2/modules")

# Missing proxies fail loudly (make test installs them): no silent skip.
pytestmark = pytest.mark.proxy


def free_port() -> int:
    """A free loopback port (closed again: a short race, acceptable for a test)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def proxy_config(*args: str) -> str:
    """What ``python -m fullduplex proxy-config ARGS`` prints."""
    done = subprocess.run(
        [sys.executable, "-m", "fullduplex", "proxy-config", *args],
        capture_output=True,
        text=True,
        timeout=seconds(30),
        check=True,
    )
    return done.stdout


def echo_app() -> App:
    """An echo endpoint at /echo (the proxies strip their /rt/ prefix)."""
    app = App()

    @app.on_message("/echo")
    async def echo(session: Session, message: str | bytes) -> str | bytes:
        return message

    return app


def wait_listening(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    """Wait until something accepts on ``port`` (bounded), or fail with the proxy's output."""
    deadline = time.monotonic() + seconds(15)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise AssertionError(f"{what} exited with {proc.returncode}: {output}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not listen on {port}")


@contextmanager
def running(command: list[str], port: int, what: str) -> Iterator[None]:
    """Run a proxy in the foreground until the block ends; then stop it (SIGTERM, then kill)."""
    assert Path(command[0]).exists(), f"{command[0]} is missing: `make system-deps` installs it"
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_listening(port, proc, what)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(seconds(10))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@contextmanager
def nginx_in_front(tmp: Path, upstream: int, read_timeout: int = 75) -> Iterator[int]:
    """nginx proxying /rt/ to 127.0.0.1:``upstream``, from the printed config; yields its port."""
    port = free_port()
    config = tmp / "nginx.conf"
    config.write_text(
        proxy_config(
            "nginx",
            f"--upstream=127.0.0.1:{upstream}",
            "--path=/rt/",
            f"--listen=127.0.0.1:{port}",
            f"--read-timeout={read_timeout}",
            f"--runtime-dir={tmp}",
        )
    )
    command = [NGINX, "-p", str(tmp), "-c", str(config), "-g", "daemon off;"]
    with running(command, port, "nginx"):
        yield port


@contextmanager
def apache_in_front(tmp: Path, upstream: int) -> Iterator[int]:
    """Apache httpd proxying /rt/ to 127.0.0.1:``upstream``, from the printed config."""
    port = free_port()
    config = tmp / "apache2.conf"
    config.write_text(
        proxy_config(
            "apache",
            f"--upstream=127.0.0.1:{upstream}",
            "--path=/rt/",
            f"--listen=127.0.0.1:{port}",
            f"--runtime-dir={tmp}",
            f"--modules-dir={MODULES}",
        )
    )
    with running([APACHE, "-f", str(config), "-DFOREGROUND"], port, "apache2"):
        yield port


async def echo_through(port: int) -> list[str | bytes]:
    """Text and binary echoes through the proxy at ``port``; a plain GET too."""
    async with fullduplex.connect(f"ws://127.0.0.1:{port}/rt/echo") as ws:
        await ws.send("through the proxy")
        text = await ws.recv()
        await ws.send(b"\x00\x01binary")
        binary = await ws.recv()
    return [text, binary]


def get_script(port: int) -> tuple[int, str]:
    """GET /rt/fullduplex.js through the proxy: status and Content-Type."""
    url = f"http://127.0.0.1:{port}/rt/fullduplex.js"
    with urllib.request.urlopen(url, timeout=seconds(10)) as reply:
        return reply.status, reply.headers["Content-Type"]


def test_echo_through_nginx(tmp_path: Path) -> None:
    with AppThread(echo_app()) as app, nginx_in_front(tmp_path, app.port) as port:
        assert asyncio.run(echo_through(port)) == ["through the proxy", b"\x00\x01binary"]
        assert get_script(port) == (200, "text/javascript; charset=utf-8")


def test_echo_through_apache(tmp_path: Path) -> None:
    with AppThread(echo_app()) as app, apache_in_front(tmp_path, app.port) as port:
        assert asyncio.run(echo_through(port)) == ["through the proxy", b"\x00\x01binary"]
        assert get_script(port) == (200, "text/javascript; charset=utf-8")


async def idle(port: int, seconds_idle: float) -> str:
    """Connect through the proxy (no client pings), stay silent, then try an echo."""
    async with fullduplex.connect(f"ws://127.0.0.1:{port}/rt/echo", ping_interval=None) as ws:
        try:
            await asyncio.wait_for(ws.recv(), seconds_idle)
        except TimeoutError:
            pass  # nothing came, as expected: the connection sat idle
        except ConnectionClosed:
            return "cut while idle"
        try:
            await ws.send("still there")
            echoed = await asyncio.wait_for(ws.recv(), seconds(5))
        except (ConnectionClosed, TimeoutError):
            return "cut"
        return str(echoed)


def test_nginx_read_timeout_and_server_pings(tmp_path: Path) -> None:
    """proxy_read_timeout 5 s: with the server pinging every 2 s an idle connection outlives it
    (12 s); without pings the same proxy cuts it (the control that shows the test can fail)."""
    pinged_dir, silent_dir = tmp_path / "pinged", tmp_path / "silent"
    pinged_dir.mkdir()
    silent_dir.mkdir()
    with (
        AppThread(echo_app(), ping_interval=2, ping_timeout=2) as pinged,
        AppThread(echo_app(), ping_interval=None) as silent,
        nginx_in_front(pinged_dir, pinged.port, read_timeout=5) as pinged_port,
        nginx_in_front(silent_dir, silent.port, read_timeout=5) as silent_port,
    ):

        async def both() -> list[str]:
            return list(await asyncio.gather(idle(pinged_port, 12), idle(silent_port, 12)))

        assert asyncio.run(both()) == ["still there", "cut while idle"]


def test_printed_configs_pass_the_proxies_own_checks(tmp_path: Path) -> None:
    """Several upstreams (a balancer), the root path, default timeouts: ``nginx -t`` and
    ``apache2 -t`` accept what is printed."""
    options = ProxyOptions(
        upstreams=("127.0.0.1:8001", "127.0.0.1:8002"),
        listen=f"127.0.0.1:{free_port()}",
        runtime_dir=str(tmp_path),
        modules_dir=str(MODULES),
    )
    (tmp_path / "nginx.conf").write_text(nginx(options))
    (tmp_path / "apache2.conf").write_text(apache(options))
    checks = [
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        [APACHE, "-t", "-f", str(tmp_path / "apache2.conf")],
    ]
    for command in checks:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds(30), check=False
        )
        assert done.returncode == 0, done.stderr
    assert 'BalancerMember "http://127.0.0.1:8002" upgrade=websocket' in apache(options)
    assert "proxy_pass http://fullduplex;" in nginx(options)  # "/": the URI is kept


@pytest.mark.parametrize(
    "bad",
    [
        {"upstreams": ()},
        {"upstreams": ("no-port",)},
        {"path": "rt/"},
        {"path": "/rt"},
        {"path": "/r t/"},
        {"read_timeout": 0},
    ],
)
def test_bad_options_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ProxyOptions(**bad)  # type: ignore[arg-type]


def test_cli_refuses_a_bad_path() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fullduplex", "proxy-config", "nginx", "--path", "rt"],
        check=False,
        capture_output=True,
        text=True,
        timeout=seconds(30),
    )
    assert done.returncode == 2
    assert "starts and ends with '/'" in done.stderr
