"""The echo servers under test, each run in its own subprocess on 127.0.0.1 and a free port.

Every server prints its ws:// URL on its first stdout line (``--port 0`` picks the port) and
stops on SIGTERM, so one context manager runs them all.
"""

from __future__ import annotations

import re
import selectors
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["ROOT", "SERVERS", "RunningServer", "ServerError", "running_server"]

# The repository root: `python -m bench...` works from there.
ROOT = Path(__file__).resolve().parent.parent

_URL = re.compile(r"(ws://[^\s]+)")


class ServerError(Exception):
    """A server did not start (or print its URL) in time."""


def _fullduplex(uvloop: bool) -> list[str]:
    command = [sys.executable, "-m", "fullduplex", "echo", "--host", "127.0.0.1", "--port", "0"]
    command.append("--no-compression")
    return [*command, "--uvloop"] if uvloop else command


def _websockets(uvloop: bool) -> list[str]:
    command = [sys.executable, "-m", "bench.websockets_server", "--host", "127.0.0.1", "--port"]
    command.append("0")
    return [*command, "--uvloop"] if uvloop else command


# Name -> command line for that echo server (argument: whether to use uvloop).
SERVERS: dict[str, Callable[[bool], list[str]]] = {
    "fullduplex": _fullduplex,
    "websockets": _websockets,
}


@dataclass(frozen=True, slots=True)
class RunningServer:
    """A started server: its name, URL and process id."""

    name: str
    url: str
    pid: int


def _drain(stream: IO[bytes]) -> None:
    """Read and drop the rest of a pipe, so a chatty server never blocks on a full pipe."""
    try:
        while stream.read(65536):
            pass
    except (OSError, ValueError):
        pass


@contextmanager
def running_server(name: str, *, uvloop: bool, timeout: float = 20.0) -> Iterator[RunningServer]:
    """Start the named echo server, yield it once its URL is known, stop it after.

    Args:
        name: A key of SERVERS.
        uvloop: Run the server's event loop on uvloop.
        timeout: Seconds to wait for the URL line.

    Raises:
        ServerError: If the process exits or stays silent before printing its URL; the message
            carries the end of its stderr.
    """
    command = SERVERS[name](uvloop)
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL
        )
        drainer: threading.Thread | None = None
        try:
            assert proc.stdout is not None
            with selectors.DefaultSelector() as selector:
                selector.register(proc.stdout, selectors.EVENT_READ)
                ready = selector.select(timeout)
            line = proc.stdout.readline().decode(errors="replace") if ready else ""
            match = _URL.search(line)
            if match is None:
                proc.kill()
                proc.wait()
                stderr.seek(0)
                tail = stderr.read().decode(errors="replace").strip().splitlines()[-5:]
                detail = "\n  ".join(tail) or "(no stderr)"
                raise ServerError(
                    f"{name} server did not print its URL (first line {line!r}):\n  {detail}"
                )
            drainer = threading.Thread(target=_drain, args=(proc.stdout,), daemon=True)
            drainer.start()
            yield RunningServer(name, match.group(1).rstrip("/"), proc.pid)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if drainer is not None:
                drainer.join(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()
