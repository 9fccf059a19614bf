"""Real reverse proxies (Debian's nginx and Apache httpd) in front of a server under test:
each runs in the foreground on a free loopback port with the configuration that
``fullduplex proxy-config`` printed, its files in a temporary directory, and is stopped after.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers import seconds, stop_process

__all__ = [
    "APACHE",
    "MODULES",
    "NGINX",
    "apache_in_front",
    "free_port",
    "nginx_in_front",
    "proxy_config",
    "running",
    "wait_listening",
]

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
APACHE = shutil.which("apache2") or "/usr/sbin/apache2"
MODULES = Path("/usr/lib/apache2/modules")


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
        stop_process(proc)


@contextmanager
def nginx_in_front(
    tmp: Path, upstream: int, read_timeout: int = 75, path: str = "/rt/"
) -> Iterator[int]:
    """nginx proxying ``path`` to 127.0.0.1:``upstream``, from the printed config; yields its
    port."""
    port = free_port()
    config = tmp / "nginx.conf"
    config.write_text(
        proxy_config(
            "nginx",
            f"--upstream=127.0.0.1:{upstream}",
            f"--path={path}",
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
