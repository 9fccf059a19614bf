"""The documentation: the site builds without a warning, and every Python block in README.md
and docs/**/*.md runs, so that no snippet can rot.

A block runs as written, as a script, in a scratch directory outside the checkout (as a
reader who copied it would run it), and must exit 0 within its time limit. An HTML comment
right before a block says more, as ``key=value`` words (values may be quoted):

``<!-- test: fragment -->``
    Compiled, not run: a partial snippet (use sparingly).
``<!-- test: module=NAME -->``
    Saved as ``NAME.py`` in a scratch directory on ``PYTHONPATH``, for the blocks and commands
    after it; run as ``python NAME.py`` unless ``command=`` says otherwise.
``<!-- test: command="fullduplex serve NAME:app --port 8010" -->``
    Run this command instead of the block (``fullduplex`` is ``python -m fullduplex``).
``<!-- test: serves=ws://127.0.0.1:PORT/PATH [echo] [page=http://127.0.0.1:PORT/] -->``
    The block serves until stopped: wait for its port, open a WebSocket connection to the URL
    (``echo``: a message comes back as sent; ``page=``: an HTTP GET answers 200), then stop it.
``<!-- test: needs-echo=PORT -->``
    ``fullduplex echo`` runs on PORT while the block runs (a client snippet).
``<!-- test: needs-app=NAME:PORT -->``
    ``fullduplex serve NAME:app --port PORT`` runs while the block runs (NAME saved before).

``{dir}`` in a command is the scratch directory where modules are saved.

Blocks run one after another, so their fixed ports only have to be free on the machine; a port
in use is reported as such rather than tested against someone else's server.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from fullduplex.sync import connect
from tests.helpers import seconds

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [
    ROOT / "README.md",
    *sorted(path for path in (ROOT / "docs").rglob("*.md") if "_build" not in path.parts),
]

_FENCE = re.compile(
    r"(?:<!--\s*test:(?P<marker>.*?)-->\s*\n)?^```(?P<lang>[\w{}-]*)[^\n]*\n(?P<body>.*?)^```\s*$",
    re.MULTILINE | re.DOTALL,
)


@dataclass
class Block:
    """One fenced Python block and what its marker asks."""

    path: Path
    line: int
    source: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """Where the block is: ``FILE:LINE``, for test ids and messages."""
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _blocks() -> list[Block]:
    found = []
    for path in DOCUMENTS:
        text = path.read_text()
        for match in _FENCE.finditer(text):
            if match["lang"] not in ("python", "py"):
                continue
            options: dict[str, str] = {}
            for word in shlex.split(match["marker"] or ""):
                key, _, value = word.partition("=")
                options[key] = value
            line = text.count("\n", 0, match.start("body"))
            found.append(Block(path, line, match["body"], options))
    return found


BLOCKS = _blocks()
KNOWN_OPTIONS = {
    "fragment",
    "module",
    "command",
    "serves",
    "echo",
    "page",
    "needs-echo",
    "needs-app",
}


def _command(block: Block, script: Path) -> list[str]:
    command = block.options.get("command")
    if not command:
        return [sys.executable, str(script)]
    words = [word.replace("{dir}", str(script.parent)) for word in shlex.split(command)]
    if words[0] == "fullduplex":
        words = [sys.executable, "-m", "fullduplex", *words[1:]]
    elif words[0] == "python":
        words[0] = sys.executable
    return words


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _require_free(port: int) -> None:
    if not _port_is_free(port):
        pytest.fail(f"port {port} on 127.0.0.1 is taken by another program: cannot test this")


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + seconds(20)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"exited with {proc.returncode} before serving:\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    pytest.fail(f"nothing listens on port {port}:\n{log.read_text()}")


@contextlib.contextmanager
def _running(
    command: list[str], cwd: Path, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` in the background; stop it (SIGTERM, then SIGKILL) on exit."""
    with log.open("wb") as output:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=seconds(10))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def _server(arguments: list[str], port: int, scratch: Path, env: dict[str, str]) -> Iterator[None]:
    """Run ``python -m fullduplex ARGUMENTS --host 127.0.0.1 --port PORT`` meanwhile."""
    _require_free(port)
    command = [sys.executable, "-m", "fullduplex", *arguments, "--host", "127.0.0.1"]
    log = scratch / f"server-{port}.log"
    with _running([*command, "--port", str(port)], scratch, env, log) as proc:
        _wait_for_port(port, proc, log)
        yield


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for the whole run: modules saved by a block stay for the next ones."""
    return tmp_path_factory.mktemp("snippets")


def test_every_document_has_blocks() -> None:
    # The extraction must see the blocks; an empty list would pass every test below.
    per_file = {block.path for block in BLOCKS}
    assert ROOT / "README.md" in per_file
    assert len(BLOCKS) >= 15
    assert len(per_file) >= 6


def test_markers_are_known() -> None:
    for block in BLOCKS:
        assert set(block.options) <= KNOWN_OPTIONS, block.id


def test_fragments_are_rare() -> None:
    fragments = [block.id for block in BLOCKS if "fragment" in block.options]
    assert len(fragments) <= len(BLOCKS) // 5, fragments


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_block(block: Block, scratch: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(scratch), "PYTHONUNBUFFERED": "1"}
    env.pop("FULLDUPLEX_BROKER", None)
    options = block.options
    if "fragment" in options:
        compile(block.source, block.id, "exec")
        return
    name = options.get("module") or f"snippet_{block.path.stem}_{block.line}".replace("-", "_")
    script = scratch / f"{name}.py"
    script.write_text(block.source)
    command = _command(block, script)
    with contextlib.ExitStack() as stack:
        if "needs-echo" in options:
            stack.enter_context(_server(["echo"], int(options["needs-echo"]), scratch, env))
        if "needs-app" in options:
            module, _, port_text = options["needs-app"].partition(":")
            arguments = ["serve", f"{module}:app"]
            stack.enter_context(_server(arguments, int(port_text), scratch, env))
        if "serves" not in options:
            result = subprocess.run(
                command, cwd=scratch, env=env, capture_output=True, timeout=seconds(60), check=False
            )
            output = (result.stdout + result.stderr).decode(errors="replace")
            assert result.returncode == 0, output
            assert "Traceback" not in output, output
            return
        url = options["serves"]
        port = urlsplit(url).port
        assert port is not None, f"{block.id}: serves= needs a URL with a port"
        _require_free(port)
        log = scratch / f"{name}.log"
        with _running(command, scratch, env, log) as proc:
            _wait_for_port(port, proc, log)
            with connect(url, open_timeout=seconds(10)) as ws:
                if "echo" in options:
                    ws.send("are you there?")
                    assert ws.recv(timeout=seconds(10)) == "are you there?"
            if options.get("page"):
                with urllib.request.urlopen(options["page"], timeout=seconds(10)) as page:
                    assert page.status == 200
                    assert b"<" in page.read()
            assert proc.poll() is None, log.read_text()
        assert "Traceback" not in log.read_text(), log.read_text()


def test_site_builds_without_warnings(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-E",
            "-q",
            "-b",
            "html",
            str(ROOT / "docs"),
            str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
        timeout=seconds(180),
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert result.stderr.strip() == "", result.stderr[-5000:]
    assert (tmp_path / "html" / "index.html").is_file()
    assert (tmp_path / "html" / "reference" / "asyncio.html").is_file()
