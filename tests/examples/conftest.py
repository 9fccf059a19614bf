"""Fixtures for the sample apps: the demo in a subprocess and Debian's headless Chromium."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest

from tests.helpers import seconds

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "REPO", "demo_process"]

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",  # needed as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

_FIRST_LINE = re.compile(r"fullduplex demo on (http://127\.0\.0\.1:\d+/)$")


def _readline(stream: IO[bytes], timeout: float) -> bytes | None:
    """Read one line in a helper thread; None if none came within ``timeout`` seconds."""
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else None


@contextmanager
def demo_process() -> Iterator[str]:
    """Run ``python -m fullduplex demo --port 0``; yield its http:// base URL; stop it after.

    The base URL ends with a slash. The process is stopped with SIGTERM (then killed if it
    does not exit in time).
    """
    command = [sys.executable, "-m", "fullduplex", "demo", "--host", "127.0.0.1", "--port", "0"]
    # stderr goes to a file that nobody has to drain while the server runs.
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, cwd=REPO)
        try:
            assert proc.stdout is not None
            line = _readline(proc.stdout, seconds(20))
            match = _FIRST_LINE.match((line or b"").decode(errors="replace").rstrip("\n"))
            if match is None:
                proc.kill()
                proc.wait(seconds(10))
                errors.seek(0)
                err = errors.read().decode(errors="replace")
                raise RuntimeError(f"the demo did not print its URL: {line!r}\n{err}")
            yield match.group(1)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(seconds(10))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture(scope="module")
def demo_url() -> Iterator[str]:
    """The base URL (``http://127.0.0.1:PORT/``) of a ``fullduplex demo`` subprocess."""
    with demo_process() as url:
        yield url
