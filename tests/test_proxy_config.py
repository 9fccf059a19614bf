"""``fullduplex proxy-config``: the printed configurations run real nginx and Apache httpd
(Debian's) in front of a fullduplex App, on free loopback ports, with their files in a
temporary directory. The configuration each proxy runs is exactly what the command printed."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

import fullduplex
from fullduplex.app import App, Session
from fullduplex.exceptions import ConnectionClosed
from fullduplex.proxy_config import ProxyOptions, apache, nginx
from tests.conformance.conftest import NGINX_DEVIATIONS
from tests.helpers import seconds
from tests.reverse_proxies import (
    APACHE,
    MODULES,
    NGINX,
    apache_in_front,
    free_port,
    nginx_in_front,
)
from tests.static.app_thread import AppThread

# Missing proxies fail loudly (make test installs them): no silent skip.
pytestmark = pytest.mark.proxy


def echo_app() -> App:
    """An echo endpoint at /echo (the proxies strip their /rt/ prefix)."""
    app = App()

    @app.on_message("/echo")
    async def echo(session: Session, message: str | bytes) -> str | bytes:
        return message

    return app


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


def test_conformance_suite_through_nginx() -> None:
    """tests/conformance against ``fullduplex echo`` behind nginx: everything passes but
    nginx's own deviations (NGINX_DEVIATIONS, strict xfails: an unexpected pass fails)."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/conformance"],
        cwd=root,
        env={**os.environ, "FULLDUPLEX_CONFORMANCE_TARGET": "nginx"},
        capture_output=True,
        text=True,
        timeout=seconds(300),
        check=False,  # judged below, with the output
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 0, done.stdout[-4000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed is not None and int(passed[1]) > 300, summary
    assert f"{len(NGINX_DEVIATIONS)} xfailed" in summary, summary


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
