"""A throw-away redis-server on a free loopback port, for one benchmark run."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["RedisServer", "free_port", "redis_server", "wait_for_port"]


@dataclass(frozen=True)
class RedisServer:
    """A running redis-server: its URL and process id."""

    url: str
    port: int
    pid: int


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait until something accepts connections on ``port``.

    Raises:
        RuntimeError: ``process`` exited, or ``timeout`` seconds passed.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s: {process.args!r}")


def stop_process(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the process group of ``process`` (started with a new session), then SIGKILL."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    else:  # the leader is gone; its children may not be
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def redis_server(binary: str = "redis-server") -> Iterator[RedisServer]:
    """Start redis-server (no persistence) on a free port; stop it at the end.

    Raises:
        RuntimeError: redis-server is not installed or does not start.
    """
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError("redis-server is not installed (make system-deps installs it)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as directory:
        command = [
            path,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            directory,
            "--logfile",
            os.path.join(directory, "redis.log"),
        ]
        process = subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL)
        try:
            wait_for_port(port, process, 10)
            yield RedisServer(f"redis://127.0.0.1:{port}/0", port, process.pid)
        finally:
            stop_process(process)
