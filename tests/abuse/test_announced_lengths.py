"""A frame header that announces N bytes reserves nothing for them: memory grows with the bytes
received. The attack: on many connections, the header of a 16 MiB frame and one payload byte,
against a server whose address space is limited (as under ``ulimit -v`` or strict overcommit);
a canary client's 1 MiB echoes must still work, with the compiled build and the pure-Python one.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from fullduplex.protocol.frames import serialize_frame
from fullduplex.sync import connect
from tests.helpers import seconds

MiB = 1024 * 1024
ATTACKERS = 40
HEADROOM = 512 * MiB


@contextlib.contextmanager
def echo_server(*, pure_python: bool) -> Iterator[tuple[int, int]]:
    """``fullduplex echo`` on a free port; yield (pid, port)."""
    env = dict(os.environ)
    if pure_python:
        env["FULLDUPLEX_NO_EXTENSIONS"] = "1"
    process = subprocess.Popen(
        [sys.executable, "-m", "fullduplex", "echo", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert match, line
        yield process.pid, int(match[1])
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def virtual_size(pid: int) -> int:
    """The process's address space (VmSize), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise LookupError("no VmSize")


def upgraded(port: int) -> socket.socket:
    """A raw TCP connection that completed the opening handshake."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=seconds(10))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        assert chunk, "closed during the handshake"
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


@pytest.mark.parametrize("pure_python", [False, True], ids=["compiled", "pure-python"])
def test_announced_sixteen_mebibytes_reserve_nothing(pure_python: bool) -> None:
    with echo_server(pure_python=pure_python) as (pid, port):
        with connect(f"ws://127.0.0.1:{port}/", max_message_size=2 * MiB) as canary:
            canary.send(b"warm" * 1000)
            assert canary.recv(timeout=seconds(10)) == b"warm" * 1000
        baseline = virtual_size(pid)
        resource.prlimit(pid, resource.RLIMIT_AS, (baseline + HEADROOM, baseline + HEADROOM))
        header = serialize_frame(2, b"\0" * (16 * MiB), mask=b"abcd")[:14]
        attackers = [upgraded(port) for _ in range(ATTACKERS)]
        try:
            for sock in attackers:
                sock.sendall(header + b"x")
            message = os.urandom(MiB)
            with connect(f"ws://127.0.0.1:{port}/", max_message_size=2 * MiB) as canary:
                for _ in range(3):
                    canary.send(message)
                    assert canary.recv(timeout=seconds(20)) == message
            grown = virtual_size(pid) - baseline
            # 40 x 16 MiB announced = 640 MiB, over the limit; what was received is 600 bytes.
            assert grown < 128 * MiB, grown
        finally:
            for sock in attackers:
                sock.close()
