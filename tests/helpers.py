"""Helpers shared by the test suite: one time unit, and a real echo server in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["TIMEOUT_FACTOR", "echo_server_process", "seconds", "stop_process"]

# Every timeout in the tests derives from this factor, so a slow CI machine can scale them all
# at once (FULLDUPLEX_TESTS_TIMEOUT_FACTOR=5) instead of flaking.
TIMEOUT_FACTOR = float(os.environ.get("FULLDUPLEX_TESTS_TIMEOUT_FACTOR", "1"))


def seconds(value: float) -> float:
    """Scale a timeout, in seconds, by FULLDUPLEX_TESTS_TIMEOUT_FACTOR."""
    return value * TIMEOUT_FACTOR


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """Stop a process a test started: SIGTERM, SIGKILL if it is still there after
    ``seconds(10)``, then close its standard output pipe (if any)."""
    proc.terminate()
    try:
        proc.wait(timeout=seconds(10))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


_URL_LINE = re.compile(rb"(wss?://[^\s]+)")


@contextmanager
def echo_server_process(*args: str) -> Iterator[str]:
    """Run ``python -m fullduplex echo --port 0 ARGS`` and yield its ws:// URL; stop it after.

    The server prints its URL on its first line of standard output.
    """
    # stderr goes to a file, not a pipe: nobody reads it while the server runs, and a full
    # pipe would block a server that logs a lot.
    command = [sys.executable, "-m", "fullduplex", "echo", "--host", "127.0.0.1", "--port", "0"]
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            [*command, *args],
            stdout=subprocess.PIPE,
            stderr=errors,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            match = _URL_LINE.search(line)
            if match is None:
                proc.kill()
                proc.wait(timeout=seconds(10))
                errors.seek(0)
                err = errors.read().decode(errors="replace")
                raise RuntimeError(f"echo server did not print its URL: {line!r} {err}")
            yield match.group(1).decode().rstrip("/")
        finally:
            stop_process(proc)
