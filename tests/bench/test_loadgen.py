"""The C load generator: every workload, tiny, against real servers on 127.0.0.1; and it fails,
with a non-zero exit, against a server that echoes wrong content or a wrong handshake."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bench.build import loadgen_path
from bench.loadgen import WORKLOADS
from bench.servers import RunningServer, running_server

from tests.helpers import echo_server_process, seconds

_TINY = ("--duration", "0.2", "--warmup", "0.05")
# Bounds for each run, whatever the machine: counts small, time short.
_SMALL = {
    "idle5000": ("--conns", "50", "--hold", "0.2"),
    "idle5000z": ("--conns", "50", "--hold", "0.2"),
    "bcast1k": ("--conns", "50", "--count", "5"),
    "bcast10k": ("--conns", "50", "--count", "5"),
}


@pytest.fixture(scope="module")
def binary() -> Path:
    return loadgen_path()


@pytest.fixture(scope="module")
def plain_url() -> Iterator[str]:
    with echo_server_process("--no-compression") as url:
        yield url


@pytest.fixture(scope="module")
def deflate_url() -> Iterator[str]:
    with echo_server_process() as url:
        yield url


@pytest.fixture(scope="module")
def broadcast_server() -> Iterator[RunningServer]:
    with running_server("fullduplex", loop="asyncio", mode="broadcast") as server:
        yield server


@pytest.fixture(scope="module")
def raw_server() -> Iterator[RunningServer]:
    with running_server("raw-tcp", loop="asyncio") as server:
        yield server


def _run(binary: Path, url: str, workload: str, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [str(binary), "--url", url, "--workload", workload, *_TINY]
    command += [*_SMALL.get(workload, ()), *extra, "--timeout", f"{seconds(10):g}"]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=seconds(30),
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _result(proc: subprocess.CompletedProcess[str], workload: str) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    result: dict[str, Any] = lines[-1]
    assert result["workload"] == workload
    assert result["ok"] is True
    assert result["count"] >= 1
    assert result["seconds"] > 0
    assert result["rate"] > 0
    assert 0 <= result["client_cpu"] <= 2.5
    assert result["unclean_closes"] == 0
    return result


def _check(result: dict[str, Any], workload: str) -> None:
    kind = WORKLOADS[workload].kind
    if kind == "rr":
        assert result["connections"] == 1
        assert result["rate"] == pytest.approx(result["count"] / result["seconds"], rel=1e-3)
        assert 0 < result["p50_us"] <= result["p99_us"] <= result["max_us"]
    elif kind == "stream":
        expected = 100 if workload.startswith("conc") else 1
        assert result["connections"] == expected
        per_s = result["count"] / result["seconds"]
        assert result["messages_per_s"] == pytest.approx(per_s, rel=1e-3)
        assert result["mb_per_s"] == pytest.approx(per_s * result["size"] / 1e6, rel=1e-3)
    elif kind == "bcast":
        assert result["connections"] == 50
        assert 0 < result["median_ms"] <= result["p90_ms"] <= result["max_ms"]
        assert result["count"] <= 5
    elif kind == "hs":
        assert result["parallel"] == 8


def test_self_test(binary: Path) -> None:
    """SHA-1 and Sec-WebSocket-Accept against the RFC 6455 example and a known digest."""
    proc = subprocess.run(
        [str(binary), "--self-test"], capture_output=True, text=True, check=False, timeout=10
    )
    assert proc.returncode == 0, proc.stdout
    assert json.loads(proc.stdout)["accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("workload", ["rr16", "rr1k", "conc100x1", "conc100x16", "big1m", "hs"])
def test_echo_workloads(binary: Path, plain_url: str, workload: str) -> None:
    """Each echo workload runs against fullduplex's echo server and reports sane figures."""
    result = _result(_run(binary, plain_url, workload), workload)
    _check(result, workload)
    assert result["extension"] == ""
    assert result["raw"] is False


def test_big16m(binary: Path, plain_url: str) -> None:
    """16 MiB messages: at least one measured echo, even on a slow machine."""
    result = _result(_run(binary, plain_url, "big16m"), "big16m")
    _check(result, "big16m")
    assert result["size"] == 16 * 2**20


@pytest.mark.parametrize("workload", ["rr16z", "big1mz"])
def test_deflate_workloads(binary: Path, deflate_url: str, workload: str) -> None:
    """Compressed variants negotiate permessage-deflate and verify inflated echoes."""
    result = _result(_run(binary, deflate_url, workload), workload)
    _check(result, workload)
    assert result["extension"].startswith("permessage-deflate")


def test_deflate_declined_is_an_error(binary: Path, plain_url: str) -> None:
    """A server that refuses compression cannot produce a compressed figure."""
    proc = _run(binary, plain_url, "rr16z")
    assert proc.returncode != 0
    assert "declined permessage-deflate" in proc.stderr


@pytest.mark.parametrize("workload", ["idle5000", "idle5000z"])
def test_idle(binary: Path, deflate_url: str, workload: str) -> None:
    """Idle: a ready line once all connections are open, then the result after --hold."""
    proc = _run(binary, deflate_url, workload)
    result = _result(proc, workload)
    ready = json.loads(proc.stdout.splitlines()[0])
    assert ready == {
        "ready": True,
        "workload": workload,
        "connections": 50,
        "setup_seconds": ready["setup_seconds"],
    }
    assert result["connections"] == result["count"] == 50
    assert bool(result["extension"]) == workload.endswith("z")


@pytest.mark.parametrize("workload", ["bcast1k", "bcast10k"])
def test_broadcast(binary: Path, broadcast_server: RunningServer, workload: str) -> None:
    """Broadcast rounds: every client gets each message once."""
    result = _result(
        _run(binary, broadcast_server.url, workload, "--server-pid", str(broadcast_server.pid)),
        workload,
    )
    _check(result, workload)
    assert result["server_cpu"] is not None


@pytest.mark.parametrize("workload", ["rr16", "conc100x16", "big1m", "hs", "idle5000"])
def test_raw_tcp(binary: Path, raw_server: RunningServer, workload: str) -> None:
    """Raw TCP: the same bytes back, counted; no handshake."""
    result = _result(_run(binary, raw_server.url, workload), workload)
    _check(result, workload)
    assert result["raw"] is True


def test_raw_tcp_refuses_broadcast(binary: Path, raw_server: RunningServer) -> None:
    proc = _run(binary, raw_server.url, "bcast1k")
    assert proc.returncode != 0
    assert "no broadcast" in proc.stderr


# ---- a bad server -------------------------------------------------------------------------


def _read_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("peer closed")
        data += chunk
    return data


def _serve_badly(conn: socket.socket, fault: str) -> None:
    """Upgrade (with a wrong accept key if fault == "accept"), then echo every message with
    its type and length but its first byte changed; answer a close frame."""
    conn.settimeout(seconds(10))
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = conn.recv(4096)
        if not chunk:
            return
        request += chunk
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    if fault == "accept":
        key += b"x"
    digest = hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    accept = base64.b64encode(digest)
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    for _ in range(1000):  # bounded: the load generator fails on the first echo
        head = _read_exactly(conn, 2)
        length = head[1] & 0x7F
        if length == 126:
            length = int.from_bytes(_read_exactly(conn, 2), "big")
        elif length == 127:
            length = int.from_bytes(_read_exactly(conn, 8), "big")
        mask = _read_exactly(conn, 4)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(_read_exactly(conn, length)))
        opcode = head[0] & 0x0F
        if opcode == 0x8:
            conn.sendall(b"\x88\x02" + payload[:2])
            return
        wrong = bytes([payload[0] ^ 0x01]) + payload[1:] if payload else payload
        conn.sendall(bytes([0x80 | opcode, len(wrong)]) + wrong)


@pytest.fixture(params=["content", "accept"])
def bad_server(request: pytest.FixtureRequest) -> Iterator[str]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(seconds(10))
    port = listener.getsockname()[1]

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        # OSError: the load generator hung up, as it should.
        with conn, contextlib.suppress(OSError):
            _serve_badly(conn, request.param)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        listener.close()
        thread.join(timeout=seconds(10))


def test_fails_against_a_bad_server(binary: Path, bad_server: str) -> None:
    """Wrong echo content, or a wrong Sec-WebSocket-Accept: a non-zero exit, no result line."""
    proc = _run(binary, bad_server, "rr16")
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "differs" in proc.stderr or "Sec-WebSocket-Accept" in proc.stderr
