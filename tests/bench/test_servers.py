"""The benchmark's servers: each starts, echoes or broadcasts, compresses when asked, stops.

Every server runs as ``bench.servers.running_server`` runs it for the benchmark, in its own
process, on each event loop it runs on (asyncio's, asyncio's patched with aiofastnet,
uvloop's); the client is websockets' sync client (it offers permessage-deflate by default, so
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
from bench.servers import (
    ASGI_LOOPS,
    DEFAULT_SERVERS,
    LOOPS,
    SERVERS,
    RunningServer,
    running_server,
    server_command,
)
from websockets.sync.client import ClientConnection, connect

from tests.helpers import seconds

# Beyond every library's default limit (websockets and fullduplex 1 MiB, aiohttp 4 MiB,
# picows 10 MiB): the servers must accept the benchmark's 16 MiB messages.
BIG = 11 * 2**20

WEBSOCKET = [name for name, spec in SERVERS.items() if not spec.raw]
RAW = [name for name, spec in SERVERS.items() if spec.raw]


def _loops(names: list[str]) -> list[tuple[str, str | None]]:
    """(name, loop) for each server on each loop it runs on; (name, None) for Node's."""
    return [(name, loop) for name in names for loop in SERVERS[name].loops or (None,)]


def _ids(case: tuple[str, str | None]) -> str:
    name, loop = case
    return f"{name}-{loop}" if loop is not None else name


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
    name, loop = request.param
    with running_server(name, loop=loop, timeout=seconds(20)) as server:
        yield server


def test_echo_keeps_type_and_declines_deflate(echo_server: RunningServer) -> None:
    """Text comes back as text, binary as binary, on any path; a fragmented message and a big
    one too; no permessage-deflate although the client offers it (but from the server that
    has no setting for it: hypercorn accepts it); SIGTERM stops the server."""
    big = os.urandom(BIG)
    path = "/" if echo_server.name.startswith("asgi-") else "/any/path?x=1"  # FastAPI's route
    with _connect(echo_server, path) as ws:
        if SERVERS[echo_server.name].declines_deflate:
            assert _extensions(ws) is None
        else:
            assert "permessage-deflate" in (_extensions(ws) or "")
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
    loop = "asyncio" if SERVERS[name].loops else None
    with running_server(name, loop=loop, compression=True, timeout=seconds(20)) as server:
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
def test_broadcast_reaches_every_client(case: tuple[str, str | None]) -> None:
    """In broadcast mode a message from any client reaches all three, its sender included,
    with its type."""
    name, loop = case
    with running_server(name, loop=loop, mode="broadcast", timeout=seconds(20)) as server:
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
def test_raw_tcp_echoes_bytes(case: tuple[str, str | None]) -> None:
    """The raw TCP server sends back every byte it receives, and stops on SIGTERM."""
    name, loop = case
    with running_server(name, loop=loop, timeout=seconds(20)) as server:
        _raw_echo(server, os.urandom(256 * 1024))
        _stops_on_sigterm(server)


def _raw_echo(server: RunningServer, data: bytes) -> None:
    """Send ``data`` to a raw TCP server and assert that it all comes back."""
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


def _maps_aiofastnet(pid: int) -> bool:
    """Whether the process has aiofastnet's compiled modules loaded (its memory maps)."""
    with open(f"/proc/{pid}/maps") as maps:
        return any("aiofastnet" in line for line in maps)


@pytest.mark.parametrize("loop", LOOPS)
def test_raw_tcp_loads_aiofastnet_only_when_asked(loop: str) -> None:
    """``--loop aiofastnet`` really brings aiofastnet into the server process (the raw echo
    imports nothing else that would), and the echo works on its transports; the other loops
    leave it out. That the loop is patched is tests/bench/test_server_cli.py's business."""
    with running_server("raw-tcp", loop=loop, timeout=seconds(20)) as server:
        _raw_echo(server, b"x" * 70_000)
        assert _maps_aiofastnet(server.pid) is (loop == "aiofastnet")
        _stops_on_sigterm(server)


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("picows", {"compression": True}),
        ("raw-tcp", {"compression": True}),
        ("raw-tcp", {"mode": "broadcast"}),
        ("node-ws", {"loop": "uvloop"}),
        ("node-ws", {"loop": "asyncio"}),
        ("node-ws", {"loop": "aiofastnet"}),
        ("fullduplex", {"loop": None}),
        ("fullduplex", {"loop": "trio"}),
        ("websockets", {"mode": "fanout"}),
        ("asgi-uvicorn-fd", {"loop": "aiofastnet"}),
        ("asgi-uvicorn-fd", {"mode": "broadcast"}),
        ("asgi-hypercorn", {"compression": True}),
    ],
)
def test_unsupported_settings_are_refused(name: str, settings: dict[str, object]) -> None:
    """Asking a server for what it cannot do fails before anything starts."""
    options: dict[str, object] = {"loop": "asyncio", **settings}
    with pytest.raises(ValueError):
        server_command(name, **options)  # type: ignore[arg-type]


def test_specs_match_commands() -> None:
    """Each spec's flags are what its command line accepts."""
    for name, spec in SERVERS.items():
        for loop in spec.loops or (None,):
            command = server_command(
                name, loop=loop, mode="broadcast" if spec.broadcast else "echo"
            )
            assert ("--loop" in command) is (loop is not None)
            assert "--uvloop" not in command
            assert "--port" in command
            assert command[command.index("--port") + 1] == "0"


def test_every_python_server_runs_on_every_loop() -> None:
    """Only Node has no loop to choose; the ASGI rows run on asyncio's loop and uvloop."""
    assert {name for name, spec in SERVERS.items() if not spec.loops} == {"node-ws"}
    for name, spec in SERVERS.items():
        assert spec.loops in (((), LOOPS), (ASGI_LOOPS,))[name.startswith("asgi-")]


def test_asgi_rows_are_not_in_the_default_run() -> None:
    """``make bench`` runs what it ran before; the ASGI rows take ``--servers asgi-...``."""
    assert set(DEFAULT_SERVERS) == {n for n in SERVERS if not n.startswith("asgi-")}


@pytest.mark.parametrize("loop", LOOPS)
def test_server_command_names_the_loop(loop: str) -> None:
    """``--loop LOOP`` once, on the module's command line, with the other settings."""
    command = server_command("websockets", loop=loop, mode="broadcast", compression=True)
    assert command[:3] == [*SERVERS["websockets"].command]
    assert command.count("--loop") == 1
    assert command[command.index("--loop") + 1] == loop
    assert command[command.index("--mode") + 1] == "broadcast"
    assert "--compression" in command


def test_node_takes_no_loop() -> None:
    command = server_command("node-ws", loop=None)
    assert command[0].endswith("node")
    assert "--loop" not in command
