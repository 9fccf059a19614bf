"""Helpers for the abuse tests: servers in their own processes, raw sockets, counted memory.

Memory is read from ``/proc/PID/status`` (VmRSS, VmSize) and open files from ``/proc/PID/fd``:
every bound the tests assert is a count, never a duration.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from fullduplex.protocol.frames import Frame, FrameParser, parse_close, serialize_frame
from fullduplex.sync import connect
from tests.helpers import seconds

__all__ = [
    "KiB",
    "MiB",
    "ServerProcess",
    "abuse_server",
    "canary",
    "echo_server",
    "eventually",
    "masked",
    "memory",
    "open_fds",
    "quiet_fds",
    "read_close",
    "read_frames",
    "report",
    "request",
    "upgraded",
]

KiB = 1024
MiB = 1024 * KiB
ROOT = Path(__file__).resolve().parents[2]
_PORT_RE = re.compile(r"ws://127\.0\.0\.1:(\d+)")


class ServerProcess(NamedTuple):
    """A server under attack: its process id, its port on 127.0.0.1, and how many sockets it
    holds before any client (the listener, and the event loop's self-pipe pair)."""

    pid: int
    port: int
    idle_sockets: int


@contextlib.contextmanager
def _server(command: list[str], env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    # stderr goes to a file: the servers log every offender, and nobody reads a pipe.
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=errors, text=True, cwd=ROOT, env=env
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            match = _PORT_RE.search(line)
            if match is None:
                errors.seek(0)
                raise RuntimeError(f"no URL from {command}: {line!r} {errors.read()!r}")
            yield ServerProcess(process.pid, int(match[1]), _sockets(process.pid))
            assert process.poll() is None, "the server died during the attack"
        finally:
            process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()


def echo_server(
    *args: str, pure_python: bool = False
) -> contextlib.AbstractContextManager[ServerProcess]:
    """``fullduplex echo`` on a free port (its own defaults unless ``args`` say otherwise)."""
    env = dict(os.environ)
    if pure_python:
        env["FULLDUPLEX_NO_EXTENSIONS"] = "1"
    command = [sys.executable, "-m", "fullduplex", "echo", "--host", "127.0.0.1", "--port", "0"]
    return _server([*command, *args], env)


def abuse_server(*args: str) -> contextlib.AbstractContextManager[ServerProcess]:
    """The App of ``tests/abuse/server.py`` (short timeouts on demand) on a free port."""
    return _server([sys.executable, "-m", "tests.abuse.server", *args])


def memory(pid: int) -> tuple[int, int]:
    """The process's resident set and address space (VmRSS, VmSize), in bytes."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmSize"):
                found[name] = int(value.split()[0]) * KiB
    return found["VmRSS"], found["VmSize"]


def open_fds(pid: int) -> int:
    """How many file descriptors the process holds."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def report(line: str) -> None:
    """Print one measured bound (``pytest tests/abuse -rP`` shows them; README quotes them)."""
    print(f"[abuse] {line}")


def quiet_fds(server: ServerProcess) -> int:
    """The server's file descriptors once it holds no connection: the baseline, without a
    canary's connection that is still closing."""
    assert eventually(lambda: _sockets(server.pid) <= server.idle_sockets, timeout=10), (
        "connections still open"
    )
    return open_fds(server.pid)


def _sockets(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):  # closed meanwhile
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return count


def eventually(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` every 50 ms for at most ``seconds(timeout)``; return its last value.

    For states the server does not announce (its fds closed, its memory returned): the test
    then asserts the state itself, so a slow machine only waits longer.
    """
    deadline = time.monotonic() + seconds(timeout)
    while not condition():
        if time.monotonic() > deadline:
            return condition()
        time.sleep(0.05)
    return True


def request(port: int, extra: str = "") -> bytes:
    """A valid opening handshake request, with ``extra`` header lines (each ending CRLF)."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


def upgraded(port: int, extra: str = "", path: str = "/") -> tuple[socket.socket, bytes]:
    """A raw TCP connection that completed the opening handshake; return it and the response
    head. Frames the server sends right after the head stay unread, in the socket."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=seconds(10))
    data = request(port, extra)
    if path != "/":
        data = data.replace(b"GET / ", f"GET {path} ".encode(), 1)
    sock.sendall(data)
    # Peek until the head is complete, then take exactly the head.
    for _ in range(100):
        response = sock.recv(65536, socket.MSG_PEEK)
        assert response, "closed during the handshake"
        end = response.find(b"\r\n\r\n")
        if end >= 0:
            break
        time.sleep(0.01)
    else:
        raise AssertionError(f"no complete response head: {response!r}")
    head = sock.recv(end + 4)
    assert len(head) == end + 4 and head.startswith(b"HTTP/1.1 101"), head
    return sock, head[:-4]


def read_frames(sock: socket.socket, limit: int = 64 * MiB) -> Iterator[Frame]:
    """Yield the server's frames until it closes the stream (at most ``limit`` bytes read)."""
    parser = FrameParser(mask_required=False, allow_rsv1=True)
    received = 0
    while received < limit:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return
        if not data:
            return
        received += len(data)
        yield from parser.feed(data)
        assert parser.error is None, parser.error


def read_close(sock: socket.socket) -> tuple[int, str] | None:
    """Read until the server's close frame; return its (code, reason), None if none came."""
    for frame in read_frames(sock):
        if frame.opcode == 8:
            code, reason = parse_close(frame.payload)
            return int(code), reason
    return None


def canary(port: int, path: str = "/", rounds: int = 3) -> None:
    """A well-behaved client: ``rounds`` echo round trips of 64 KiB must come back intact."""
    message = os.urandom(64 * KiB)
    with connect(f"ws://127.0.0.1:{port}{path}", open_timeout=seconds(10)) as ws:
        for _ in range(rounds):
            ws.send(message)
            assert ws.recv(timeout=seconds(10)) == message


def masked(opcode: int, payload: bytes = b"") -> bytes:
    """One masked frame, as a client sends it."""
    return serialize_frame(opcode, payload, mask=os.urandom(4))
