"""The servers under test, each run in its own subprocess on 127.0.0.1 and a free port.

Every server prints its URL (``ws://127.0.0.1:PORT``; ``tcp://`` for the raw TCP echo) in its
first stdout line, serves ``--mode echo`` (each message back with its type) or ``--mode
broadcast`` (each message to every open connection, the sender included), serves
permessage-deflate only with ``--compression``, and stops on SIGTERM; so one context manager
runs them all. Each script's docstring says which of its library's defaults apply. Every
Python server runs on each of LOOPS (``--loop``); Node's has no loop to choose.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import selectors
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bench.server_cli import LOOPS

__all__ = [
    "ASGI_LOOPS",
    "DEFAULT_SERVERS",
    "LOOPS",
    "MODES",
    "ROOT",
    "SERVERS",
    "RunningServer",
    "ServerError",
    "ServerSpec",
    "running_server",
    "server_command",
]

#: The loops of the ASGI rows: asyncio's and uvloop's (aiofastnet is no ASGI server's).
ASGI_LOOPS = ("asyncio", "uvloop")

# The repository root: `python -m bench...` works from there.
ROOT = Path(__file__).resolve().parent.parent
MODES = ("echo", "broadcast")

_URL = re.compile(r"((?:ws|tcp)://[^\s]+)")


class ServerError(Exception):
    """A server did not start (or print its URL) in time."""


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """What one server can do, and the command that starts it.

    Attributes:
        name: Its key in SERVERS, as tables show it.
        compression: It can serve permessage-deflate (``--compression``).
        broadcast: It has ``--mode broadcast``.
        raw: A raw TCP echo without WebSocket framing (the load generator sends and expects
            raw bytes).
        loops: The event loops it can run on (``--loop NAME``), in LOOPS order; empty for a
            server that is not Python (Node): it runs on its own and takes no ``--loop``.
        command: The command line without the common options (run from ROOT).
        env: Environment variables set for it, on top of the runner's.
        default: Run when ``--servers`` is not given (the ASGI rows are not: ``--servers
            asgi-...``).
        declines_deflate: Without ``--compression`` it declines permessage-deflate when
            offered (hypercorn always accepts it: it has no setting for it).
    """

    name: str
    compression: bool
    broadcast: bool
    raw: bool
    loops: tuple[str, ...]
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    default: bool = True
    declines_deflate: bool = True


def _python(module: str) -> tuple[str, ...]:
    return (sys.executable, "-m", module)


def _node(script: str) -> tuple[str, ...]:
    # The node binary is resolved when the server starts, so that listing SERVERS never fails.
    return ("node", str(ROOT / script))


_SPECS = (
    ServerSpec("fullduplex", True, True, False, LOOPS, _python("bench.fullduplex_server")),
    ServerSpec("fullduplex-cb", True, True, False, LOOPS, _python("bench.fullduplex_cb_server")),
    ServerSpec("fullduplex-app", True, True, False, LOOPS, _python("bench.fullduplex_app_server")),
    # The idiomatic server again, on the pure-Python reference (no compiled speedups at all).
    ServerSpec(
        "fullduplex-py",
        True,
        True,
        False,
        LOOPS,
        _python("bench.fullduplex_server"),
        (("FULLDUPLEX_NO_EXTENSIONS", "1"),),
    ),
    ServerSpec("websockets", True, True, False, LOOPS, _python("bench.websockets_server")),
    ServerSpec("aiohttp", True, True, False, LOOPS, _python("bench.aiohttp_server")),
    ServerSpec("picows", False, True, False, LOOPS, _python("bench.picows_server")),
    ServerSpec("node-ws", True, True, False, (), _node("bench/node/ws_server.js")),
    ServerSpec("raw-tcp", False, False, True, LOOPS, _python("bench.raw_server")),
    # Issue 13: a FastAPI echo on each ASGI server (bench/asgi_server.py), on the loops their
    # users run (uvicorn's "auto" is uvloop when installed).
    *(
        ServerSpec(
            f"asgi-{name}",
            name not in ("hypercorn", "granian"),
            False,
            False,
            ASGI_LOOPS,
            (*_python("bench.asgi_server"), "--server", name),
            default=False,
            declines_deflate=name != "hypercorn",
        )
        for name in (
            "fullduplex",
            "uvicorn-fd",
            "uvicorn-sansio",
            "uvicorn-wsproto",
            "hypercorn",
            "granian",
        )
    ),
)

#: The servers a run without ``--servers`` starts.
DEFAULT_SERVERS = tuple(spec.name for spec in _SPECS if spec.default)

#: Name -> what that server can do and how to start it, in the order tables list them.
SERVERS: dict[str, ServerSpec] = {spec.name: spec for spec in _SPECS}


@dataclass(frozen=True, slots=True)
class RunningServer:
    """A started server: its name, URL (``ws://`` or ``tcp://``) and process id."""

    name: str
    url: str
    pid: int


def server_command(
    name: str, *, loop: str | None, mode: str = "echo", compression: bool = False
) -> list[str]:
    """Return the command line that starts the named server with these settings.

    Args:
        name: A key of SERVERS.
        loop: One of the server's ``loops`` (it gets ``--loop LOOP``); None for a server
            with no loop to choose (Node).
        mode: "echo" or "broadcast".
        compression: Serve permessage-deflate.

    Raises:
        KeyError: No server has that name.
        ValueError: The server cannot do what is asked (the loop, the mode, compression).
    """
    spec = SERVERS[name]
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if loop is None and spec.loops:
        raise ValueError(f"{name} needs an event loop: one of {', '.join(spec.loops)}")
    if loop is not None and loop not in spec.loops:
        where = ", ".join(spec.loops) if spec.loops else "none (it takes no --loop)"
        raise ValueError(f"{name} does not run on the {loop!r} loop; it runs on {where}")
    if mode == "broadcast" and not spec.broadcast:
        raise ValueError(f"{name} has no broadcast mode")
    if compression and not spec.compression:
        raise ValueError(f"{name} cannot serve permessage-deflate")
    command = [*spec.command, "--host", "127.0.0.1", "--port", "0", "--mode", mode]
    if command[0] == "node":
        command[0] = shutil.which("node") or "node"
    if loop is not None:
        command += ["--loop", loop]
    if compression:
        command.append("--compression")
    return command


def _raise_fd_limit() -> None:
    """Raise this process's soft limit on open files to the hard one; servers inherit it.

    10,000 broadcast clients need as many descriptors in the server, far above the usual soft
    limit of 1,024; Node cannot raise its own limit, so it is done here, for every server.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # "Unlimited" is not a valid soft limit for open files: the kernel caps it (nr_open).
    wanted = hard if hard != resource.RLIM_INFINITY else 2**20
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _drain(stream: IO[bytes]) -> None:
    """Read and drop the rest of a pipe, so a chatty server never blocks on a full pipe."""
    try:
        while stream.read(65536):
            pass
    except (OSError, ValueError):
        pass


@contextmanager
def running_server(
    name: str,
    *,
    loop: str | None,
    mode: str = "echo",
    compression: bool = False,
    timeout: float = 20.0,
) -> Iterator[RunningServer]:
    """Start the named server, yield it once its URL is known, stop it (SIGTERM) after.

    The soft limit on open files of this process (and so of the server) is raised to the
    hard limit first.

    Args:
        name: A key of SERVERS.
        loop: The event loop, one of the server's ``loops``; None for Node.
        mode: "echo" or "broadcast".
        compression: Serve permessage-deflate.
        timeout: Seconds to wait for the URL line.

    Raises:
        KeyError: No server has that name.
        ValueError: The server cannot do what is asked (see :func:`server_command`).
        ServerError: If the process exits or stays silent before printing its URL; the message
            carries the end of its stderr.
    """
    command = server_command(name, loop=loop, mode=mode, compression=compression)
    _raise_fd_limit()
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **dict(SERVERS[name].env)},
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
