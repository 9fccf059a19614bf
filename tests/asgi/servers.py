"""Real ASGI servers in subprocesses on 127.0.0.1, for the ASGI tests.

Each server is started with its own command line on a free port, waited for until it accepts
TCP connections (bounded), and terminated (then killed) afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers import seconds

__all__ = ["SERVERS", "UVICORN_WS", "free_port", "run_server"]

UVICORN_WS = "fullduplex.asgi.uvicorn:FullduplexWebSocketProtocol"
"""uvicorn's ``--ws`` for fullduplex's WebSocket protocol class."""

_ROOT = Path(__file__).resolve().parents[2]
_BIN = Path(sys.executable).parent


def _script(name: str) -> str:
    found = _BIN / name
    return str(found) if found.exists() else (shutil.which(name) or name)


def _commands(target: str, port: int) -> dict[str, list[str]]:
    host = "127.0.0.1"
    uvicorn = [sys.executable, "-m", "uvicorn", target, "--host", host, "--port", str(port)]
    return {
        "uvicorn": [*uvicorn, "--ws", "websockets-sansio", "--lifespan", "on"],
        "uvicorn-wsproto": [*uvicorn, "--ws", "wsproto", "--lifespan", "on"],
        # uvicorn's HTTP with fullduplex's WebSocket layer (fullduplex.asgi.uvicorn).
        "uvicorn-fullduplex": [*uvicorn, "--ws", UVICORN_WS, "--lifespan", "on"],
        # The same, programmatically: uvicorn.run(app, ws=<the class itself>).
        "uvicorn-fullduplex-run": [
            sys.executable,
            "-c",
            "import sys, uvicorn; from fullduplex.asgi.uvicorn import FullduplexWebSocketProtocol"
            " as P; uvicorn.run(sys.argv[1], host=sys.argv[2], port=int(sys.argv[3]), ws=P,"
            " timeout_graceful_shutdown=int(sys.argv[4]))",
            target,
            host,
            str(port),
        ],
        "hypercorn": [sys.executable, "-m", "hypercorn", target, "--bind", f"{host}:{port}"],
        "daphne": [_script("daphne"), "-b", host, "-p", str(port), target],
        "granian": [
            _script("granian"),
            "--interface",
            "asgi",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            "1",
            target,
        ],
        "fullduplex": [
            sys.executable,
            "-m",
            "fullduplex",
            "serve",
            "--asgi",
            target,
            "--host",
            host,
            "--port",
            str(port),
        ],
    }


SERVERS = (
    "uvicorn",
    "uvicorn-wsproto",
    "uvicorn-fullduplex",
    "hypercorn",
    "daphne",
    "granian",
    "fullduplex",
)
"""The ASGI servers every endpoint test runs under."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the server binds it right after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def run_server(
    kind: str, target: str, *extra: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ASGI server ``kind`` on ``target`` (``module:attr``); yield ``host:port`` and the
    process; stop it after. ``env`` adds to the server's environment.

    Raises:
        RuntimeError: The server exited or did not listen within 20 s (its output attached).
    """
    port = free_port()
    command = [*_commands(target, port)[kind], *extra]
    env = {
        **os.environ,
        **(env or {}),
        "PYTHONPATH": str(_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    # Output to a file, not a pipe: nobody reads it while the server runs.
    with tempfile.TemporaryFile() as output:
        proc = subprocess.Popen(command, cwd=_ROOT, env=env, stdout=output, stderr=output)
        try:
            deadline = time.monotonic() + seconds(20)
            while not _accepting(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    output.seek(0)
                    text = output.read().decode(errors="replace")
                    raise RuntimeError(f"{kind} did not start ({proc.poll()}):\n{text}")
                time.sleep(0.05)
            yield f"127.0.0.1:{port}", proc
        finally:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=seconds(10))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
