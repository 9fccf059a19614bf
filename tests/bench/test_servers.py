"""The benchmark's servers: each starts, echoes or broadcasts, compresses when asked, stops.

Every server runs as ``bench.servers.running_server`` runs it for the benchmark, in its own
process; the client is websockets' sync client (it offers permessage-deflate by default, so
a server started without ``--compression`` must decline it) or a plain socket for raw TCP.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from bench.servers import SERVERS, RunningServer, running_server, server_command
from websockets.sync.client import ClientConnection, connect

from tests.helpers import seconds

# Beyond every library's default limit (websockets and fullduplex 1 MiB, aiohttp 4 MiB,
# picows 10 MiB): the servers must accept the benchmark's 16 MiB messages.
BIG = 11 * 2**20

WEBSOCKET = [name for name, spec in SERVERS.items() if not spec.raw]
RAW = [name for name, spec in SERVERS.items() if spec.raw]


def _loops(names: list[str]) -> list[tuple[str, bool]]:
    """(name, uvloop) for each server, on the stock loop and on uvloop where it runs."""
    cases = [(name, False) for name in names]
    cases += [(name, True) for name in names if SERVERS[name].uvloop]
    return cases


def _ids(case: tuple[str, bool]) -> str:
    name, uvloop = case
    return f"{name}-uvloop" if uvloop else name


def _connect(server: RunningServer, path: str = "/") -> ClientConnection:
    return connect(server.url + path, max_size=None, open_timeout=seconds(10))


def _extensions(ws: ClientConnection) -> str | None:
    assert ws.response is not None
    value: str | None = ws.response.headers.get("Sec-WebSocket-Extensions")
    return value


def _stops_on_sigterm(server: RunningServer) -> None:
    """Send SIGTERM and assert that the process ends (it stays a zombie until reaped)."""
    os.kill(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + seconds(10)
    state = ""
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{server.pid}/stat") as stat:
                # Field 3, after the command name in parentheses (which may contain spaces).
                state = stat.read().rpartition(")")[2].split()[0]
        except FileNotFoundError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.02)
    pytest.fail(f"{server.name} still running {seconds(10)} s after SIGTERM (state {state})")


@pytest.fixture(params=_loops(WEBSOCKET), ids=_ids)
def echo_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """Each WebSocket server in echo mode, without compression, on each of its loops."""
    name, uvloop = request.param
    with running_server(name, uvloop=uvloop, timeout=seconds(20)) as server:
        yield server


def test_echo_keeps_type_and_declines_deflate(echo_server: RunningServer) -> None:
    """Text comes back as text, binary as binary, on any path; a fragmented message and a big
    one too; no permessage-deflate although the client offers it; SIGTERM stops the server."""
    big = os.urandom(BIG)
    with _connect(echo_server, "/any/path?x=1") as ws:
        assert _extensions(ws) is None
        ws.send("héllo")
        assert ws.recv(timeout=seconds(10)) == "héllo"
        ws.send(b"\x00\xff")
        assert ws.recv(timeout=seconds(10)) == b"\x00\xff"
        ws.send(["frag", "ments"])  # one message in two frames
        assert ws.recv(timeout=seconds(10)) == "fragments"
        ws.send(big)
        assert ws.recv(timeout=seconds(20)) == big
    _stops_on_sigterm(echo_server)


@pytest.mark.parametrize("name", [name for name in WEBSOCKET if SERVERS[name].compression])
def test_compression_negotiated_when_asked(name: str) -> None:
    """With --compression the server accepts permessage-deflate, and messages still echo."""
    text = "compressible " * 200
    with running_server(name, uvloop=False, compression=True, timeout=seconds(20)) as server:
        with _connect(server) as ws:
            assert "permessage-deflate" in (_extensions(ws) or "")
            ws.send(text)
            assert ws.recv(timeout=seconds(10)) == text
            ws.send(text.encode())
            assert ws.recv(timeout=seconds(10)) == text.encode()
        _stops_on_sigterm(server)


@pytest.mark.parametrize(
    "case", _loops([name for name in WEBSOCKET if SERVERS[name].broadcast]), ids=_ids
)
def test_broadcast_reaches_every_client(case: tuple[str, bool]) -> None:
    """In broadcast mode a message from any client reaches all three, its sender included,
    with its type."""
    name, uvloop = case
    with running_server(name, uvloop=uvloop, mode="broadcast", timeout=seconds(20)) as server:
        with _connect(server) as a, _connect(server) as b, _connect(server) as c:
            # The last one to connect sends first: by then the others are surely registered.
            c.send("to all")
            for ws in (a, b, c):
                assert ws.recv(timeout=seconds(10)) == "to all"
            a.send(b"\x01\x02")
            for ws in (a, b, c):
                assert ws.recv(timeout=seconds(10)) == b"\x01\x02"
        _stops_on_sigterm(server)


@pytest.mark.parametrize("case", _loops(RAW), ids=_ids)
def test_raw_tcp_echoes_bytes(case: tuple[str, bool]) -> None:
    """The raw TCP server sends back every byte it receives, and stops on SIGTERM."""
    name, uvloop = case
    data = os.urandom(256 * 1024)
    with running_server(name, uvloop=uvloop, timeout=seconds(20)) as server:
        address = urlsplit(server.url)
        assert address.scheme == "tcp"
        assert address.hostname is not None
        assert address.port is not None
        with socket.create_connection((address.hostname, address.port), seconds(10)) as sock:
            sock.sendall(data)
            received = bytearray()
            while len(received) < len(data):
                chunk = sock.recv(65536)
                assert chunk, "connection closed before the whole echo"
                received += chunk
        assert received == data
        _stops_on_sigterm(server)


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("picows", {"compression": True}),
        ("raw-tcp", {"compression": True}),
        ("raw-tcp", {"mode": "broadcast"}),
        ("node-ws", {"uvloop": True}),
        ("websockets", {"mode": "fanout"}),
    ],
)
def test_unsupported_settings_are_refused(name: str, settings: dict[str, object]) -> None:
    """Asking a server for what it cannot do fails before anything starts."""
    options: dict[str, object] = {"uvloop": False, **settings}
    with pytest.raises(ValueError):
        server_command(name, **options)  # type: ignore[arg-type]


def test_specs_match_commands() -> None:
    """Each spec's flags are what its command line accepts."""
    for name, spec in SERVERS.items():
        command = server_command(
            name, uvloop=spec.uvloop, mode="broadcast" if spec.broadcast else "echo"
        )
        assert ("--uvloop" in command) is spec.uvloop
        assert "--port" in command
        assert command[command.index("--port") + 1] == "0"
