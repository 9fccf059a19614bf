"""Real Redis servers for the broker tests, and a TCP relay that can go deaf, all on 127.0.0.1.

:class:`RedisServer` runs one ``redis-server`` process (Debian's package ``redis-server``, 7.0)
on a free port, in a temporary directory of its own, configured entirely on the command line;
:class:`RedisCluster` runs three of them as the masters of a Redis Cluster; :class:`Relay`
(and :class:`ThreadedRelay`, the same on a loop in a thread of its own) sits between a client
and a server and can forward, go deaf or cut every connection::

    with RedisServer(persistence=True) as server:
        ...
        server.kill()  # SIGKILL: with persistence nothing acknowledged is lost
        server.restart()  # same port, same directory

    async with Relay(("127.0.0.1", server.port)) as relay:
        client = redis.asyncio.Redis.from_url(relay.url)
        relay.blackhole()  # TCP stays open, nothing arrives any more

Every process is started in a process group of its own and killed with it; every wait is
bounded by :func:`tests.helpers.seconds`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ipaddress
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from tests.helpers import seconds

__all__ = [
    "RedisCluster",
    "RedisServer",
    "Relay",
    "ThreadedRelay",
    "missing_redis_programs",
]

_T = TypeVar("_T")

HOST = "127.0.0.1"

_MISSING_HINT = (
    "the broker tests need a real Redis: Debian's package redis-server (redis-server and "
    "redis-cli); `make test` installs it (its system-deps step), or `make system-deps`"
)


def missing_redis_programs(*programs: str) -> list[str]:
    """The programs among PROGRAMS (default: redis-server, redis-cli) that are not on PATH."""
    return [p for p in programs or ("redis-server", "redis-cli") if shutil.which(p) is None]


def _require(*programs: str) -> None:
    missing = missing_redis_programs(*programs)
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not found: {_MISSING_HINT}")


# ---- ports ----------------------------------------------------------------------------------


def _port_range() -> tuple[int, int]:
    """Where to look for free ports: below the kernel's ephemeral range when there is room.

    A port outside the ephemeral range cannot be taken as the source port of some outgoing
    connection, which matters for ``restart()``: it binds the same port again.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    if low > 12000:
        return 10000, low - 1
    return 1024, 65535


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    """A port on 127.0.0.1 that nothing is bound to right now (it can be taken before use)."""
    low, high = _port_range()
    for _ in range(200):
        port = random.randint(low, high)
        if _is_free(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # fall back on the kernel
        sock.bind((HOST, 0))
        chosen: int = sock.getsockname()[1]
        return chosen


# ---- a minimal RESP client, so that the helpers need nothing but the standard library -------


class _ReplyError(Exception):
    """Redis answered a command with an error reply (``-ERR ...``, ``-LOADING ...``)."""


def _command(port: int, *args: str, timeout: float) -> bytes:
    """Send one command to 127.0.0.1:PORT and return its reply (a simple, integer or bulk one).

    Raises:
        _ReplyError: On an error reply.
        OSError: When the server cannot be reached or does not answer within TIMEOUT.
    """
    request = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        request += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(request)
        with sock.makefile("rb") as stream:
            line = stream.readline()
            if not line.endswith(b"\r\n"):
                raise ConnectionError(f"short reply from 127.0.0.1:{port}: {line!r}")
            kind, payload = line[:1], line[1:-2]
            if kind == b"-":
                raise _ReplyError(payload.decode(errors="replace"))
            if kind == b"$":
                size = int(payload)
                return b"" if size < 0 else stream.read(size + 2)[:-2]
            return payload


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL PROC's whole process group (it leads one of its own) and reap PROC."""
    if proc.returncode is None:  # not reaped yet, so its pid (= its group's id) is still ours
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=seconds(10))


# Servers still running, killed at interpreter exit should a test run end without stopping them.
_LIVE: set[RedisServer] = set()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_LIVE):
        server.stop()


# ---- one server -----------------------------------------------------------------------------


class _PortTaken(Exception):
    """redis-server exited because a port it was given was taken meanwhile."""


class RedisServer:
    """One real ``redis-server`` on 127.0.0.1, on a free port, in a temporary directory.

    Args:
        persistence: Turn the append-only file on, with ``appendfsync always``: a write is on
            disk before it is acknowledged, so ``kill()`` then ``restart()`` loses nothing.
            Off: no persistence at all, and a restart starts empty.
        args: More ``--option value`` arguments for redis-server.

    Attributes:
        port: The port, chosen by the first ``start()`` and kept by every ``restart()``.
        dir: The server's working directory (its AOF, its log), removed by ``stop()``.
    """

    def __init__(self, *, persistence: bool = False, args: Sequence[str] = ()) -> None:
        self.persistence = persistence
        self.args = tuple(args)
        self.port = 0
        self.dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._started_once = False

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{HOST}:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the redis-server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id of the current redis-server, if any."""
        return None if self._proc is None else self._proc.pid

    def log(self) -> str:
        """What redis-server wrote (warnings and worse), over every start."""
        if self.dir is None:
            return ""
        try:
            return (self.dir / "redis.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def command(self, *args: str) -> bytes:
        """Run one command on this server (simple replies only) and return its reply."""
        return _command(self.port, *args, timeout=seconds(5))

    def _choose_ports(self) -> None:
        self.port = _free_port()

    def _arguments(self) -> list[str]:
        assert self.dir is not None
        arguments = [
            "redis-server",
            *("--port", str(self.port)),
            *("--bind", HOST),
            *("--save", ""),
            *("--appendonly", "yes" if self.persistence else "no"),
            *("--dir", str(self.dir)),
            *("--daemonize", "no"),
            *("--protected-mode", "no"),
            *("--loglevel", "warning"),
        ]
        if self.persistence:
            arguments += ["--appendfsync", "always"]
        return arguments + list(self.args)

    def start(self) -> None:
        """Start redis-server and wait (bounded) until it answers PING.

        The first start chooses a free port, and chooses again if the port was taken between
        choosing and binding; later starts (``restart()``) insist on the same port.

        Raises:
            RuntimeError: redis-server is missing, exited, or did not answer in time.
        """
        if self.running:
            raise RuntimeError(f"redis-server is already running on port {self.port}")
        _require("redis-server")
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="fullduplex-redis-"))
        deadline = time.monotonic() + seconds(15)
        while True:
            if not self._started_once:
                self._choose_ports()
            self._spawn()
            try:
                self._wait_ready(deadline)
            except _PortTaken:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"port {self.port} stayed taken: {self._recent_log()}"
                    ) from None
                if self._started_once:
                    time.sleep(0.05)  # the same port: wait for whoever holds it to let go
                continue
            self._started_once = True
            return

    def _spawn(self) -> None:
        assert self.dir is not None
        log_path = self.dir / "redis.log"
        self._log_offset = log_path.stat().st_size if log_path.exists() else 0
        with log_path.open("ab") as log:
            # stdout to a file, not a pipe: nobody reads it while the server runs.
            self._proc = subprocess.Popen(
                self._arguments(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,  # a process group of its own, killed as a whole
            )
        _LIVE.add(self)

    def _recent_log(self) -> str:
        return self.log()[self._log_offset :].strip()[-2000:]

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        while True:
            if self._proc.poll() is not None:
                _LIVE.discard(self)
                recent = self._recent_log()
                if "Address already in use" in recent:
                    raise _PortTaken
                raise RuntimeError(
                    f"redis-server exited with status {self._proc.returncode}: {recent}"
                )
            try:
                if _command(self.port, "PING", timeout=seconds(1)) == b"PONG":
                    return
            except (OSError, _ReplyError):  # not listening yet, or still loading its AOF
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"redis-server on port {self.port} did not answer PING in time: "
                    f"{self._recent_log()}"
                )
            time.sleep(0.01)

    def kill(self) -> None:
        """SIGKILL the server (and its process group) and wait until it has exited.

        The directory stays, so that ``restart()`` finds the AOF again.
        """
        if self._proc is not None:
            _kill_group(self._proc)
        _LIVE.discard(self)

    def restart(self) -> None:
        """Start the server again on the same port and in the same directory.

        Kills it first if it is still running. With ``persistence`` its data comes back.
        """
        if not self._started_once:
            raise RuntimeError("restart() before start()")
        self.kill()
        self.start()

    def stop(self) -> None:
        """Kill the server and remove its directory. Safe to call more than once."""
        self.kill()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        self._started_once = False

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<RedisServer {self.url} persistence={self.persistence} running={self.running}>"


class _ClusterNode(RedisServer):
    """A master of a :class:`RedisCluster`: cluster mode, its bus on a free port of its own."""

    def __init__(self, *, node_timeout_ms: int = 15_000) -> None:
        super().__init__()
        self.bus_port = 0
        self.node_timeout_ms = node_timeout_ms

    def _choose_ports(self) -> None:
        super()._choose_ports()
        self.bus_port = _free_port()
        while self.bus_port == self.port:
            self.bus_port = _free_port()

    def _arguments(self) -> list[str]:
        return [
            *super()._arguments(),
            *("--cluster-enabled", "yes"),
            *("--cluster-config-file", "nodes.conf"),  # in the node's own directory
            *("--cluster-port", str(self.bus_port)),
            *("--cluster-node-timeout", str(self.node_timeout_ms)),
        ]


# ---- a cluster ------------------------------------------------------------------------------


class RedisCluster:
    """A real Redis Cluster on 127.0.0.1: MASTERS masters, each with REPLICAS replicas (none by
    default), every node on free ports of its own.

    Created with ``redis-cli --cluster create``; ``start()`` returns once every node says
    ``cluster_state:ok`` and knows every other. Creation takes about two seconds (a master
    waits two seconds after its start before it declares the cluster ok).

    Args:
        masters: How many masters (redis-cli wants at least three).
        replicas: How many replicas each master has.
        node_timeout_ms: ``cluster-node-timeout``: how long a master may be unreachable
            before its replica takes over.

    Attributes:
        nodes: Every node, as :class:`RedisServer` objects (without replicas: the masters;
            with them, :meth:`masters` says which are masters now).
    """

    def __init__(
        self, *, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 15_000
    ) -> None:
        if masters < 3:
            raise ValueError("a Redis Cluster needs at least three masters")
        self.replicas = replicas
        count = masters * (1 + replicas)
        self.nodes: list[RedisServer] = [
            _ClusterNode(node_timeout_ms=node_timeout_ms) for _ in range(count)
        ]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """(host, port) of every master, e.g. for ``[ClusterNode(h, p) for h, p in ...]``."""
        return [(HOST, node.port) for node in self.nodes]

    @property
    def urls(self) -> list[str]:
        """``redis://127.0.0.1:PORT`` of every master."""
        return [f"redis://{HOST}:{node.port}" for node in self.nodes]

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT`` of the first master: enough for a cluster client."""
        return self.urls[0]

    def start(self) -> None:
        """Start the masters, create the cluster and wait (bounded) until it is ok everywhere.

        Raises:
            RuntimeError: A program is missing, creation failed, or the cluster was not ok in
                time. Every node started is stopped again first.
        """
        _require("redis-server", "redis-cli")
        try:
            for node in self.nodes:
                node.start()
            self._create()
            self._wait_ok(time.monotonic() + seconds(20))
        except BaseException:
            self.stop()
            raise

    def _create(self) -> None:
        command = [
            "redis-cli",
            "--cluster",
            "create",
            *(f"{host}:{port}" for host, port in self.startup_nodes),
            *("--cluster-replicas", str(self.replicas)),
            "--cluster-yes",
        ]
        try:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=seconds(30),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"redis-cli --cluster create did not finish: {exc}") from None
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")[-2000:]
            raise RuntimeError(f"redis-cli --cluster create failed ({done.returncode}): {output}")

    def _info(self, node: RedisServer) -> dict[str, str]:
        text = _command(node.port, "CLUSTER", "INFO", timeout=seconds(2)).decode()
        return dict(line.split(":", 1) for line in text.split("\r\n") if ":" in line)

    def is_ok(self) -> bool:
        """Whether every master runs, says ``cluster_state:ok`` and knows every other."""
        try:
            for node in self.nodes:
                if not node.running:
                    return False
                info = self._info(node)
                if info.get("cluster_state") != "ok" or info.get("cluster_known_nodes") != str(
                    len(self.nodes)
                ):
                    return False
        except (OSError, _ReplyError):
            return False
        return True

    def _wait_ok(self, deadline: float) -> None:
        while not self.is_ok():
            if time.monotonic() > deadline:
                states = []
                for node in self.nodes:
                    try:
                        states.append(f"{node.port}: {self._info(node)}")
                    except (OSError, _ReplyError) as exc:
                        states.append(f"{node.port}: {exc!r}")
                raise RuntimeError(f"the cluster did not become ok in time: {states}")
            time.sleep(0.05)

    def node_ids(self) -> list[str]:
        """The cluster id of every master, in the order of :attr:`nodes`."""
        return [
            _command(node.port, "CLUSTER", "MYID", timeout=seconds(2)).decode()
            for node in self.nodes
        ]

    def owner_of(self, slot: int) -> int:
        """The index in :attr:`nodes` of the master that owns ``slot`` (as the first running
        node sees the layout)."""
        import redis  # noqa: PLC0415 - the tests' dependency, only the cluster helpers need it

        ports = [node.port for node in self.nodes]
        alive = next(node.port for node in self.nodes if node.running)
        with redis.Redis(port=alive, socket_timeout=seconds(2)) as client:
            for first, last, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if first <= slot <= last:
                    return ports.index(int(master[1]))
        raise LookupError(f"no master owns slot {slot}")

    def move_slot(self, slot: int, to: int) -> None:
        """Move ``slot`` and its keys to master ``to`` (an index in :attr:`nodes`), the way
        ``redis-cli --cluster reshard`` does: IMPORTING, MIGRATING, MIGRATE, SETSLOT NODE."""
        import redis  # noqa: PLC0415

        source = self.owner_of(slot)
        if source == to:
            return
        ids = self.node_ids()
        target_node, source_node = self.nodes[to], self.nodes[source]
        with (
            redis.Redis(port=target_node.port) as target,
            redis.Redis(port=source_node.port) as origin,
        ):
            target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
            origin.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[to])
            while keys := origin.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                origin.execute_command(
                    "MIGRATE", HOST, target_node.port, "", 0, 5000, "KEYS", *keys
                )
            for node in (target_node, source_node, *self.nodes):
                with redis.Redis(port=node.port) as client:
                    client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[to])

    def masters(self) -> list[int]:
        """The indexes in :attr:`nodes` of the running nodes that are masters now."""
        import redis  # noqa: PLC0415 - the tests' dependency, only the cluster helpers need it

        indexes = []
        for index, node in enumerate(self.nodes):
            if not node.running:
                continue
            with redis.Redis(port=node.port, socket_timeout=seconds(2)) as client:
                if client.execute_command("ROLE")[0] in (b"master", "master"):
                    indexes.append(index)
        return indexes

    def flushall(self) -> None:
        """Empty every master."""
        for index in self.masters():
            self.nodes[index].command("FLUSHALL")

    def stop(self) -> None:
        """Kill every master and remove their directories. Safe to call more than once."""
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ---- a relay that can go deaf ---------------------------------------------------------------


def _reset(writer: asyncio.StreamWriter | None) -> None:
    """Close WRITER's connection abruptly: with a TCP RST where the socket allows it."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError, ValueError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One client connection through the relay, and its connection to the target."""

    def __init__(self, client: asyncio.StreamWriter, *, blackholed: bool) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.blackholed = blackholed
        self.task: asyncio.Task[None] | None = None


class Relay:
    """A TCP relay on 127.0.0.1 between clients and TARGET, that can go deaf or cut.

    * forwarding (the start): every connection accepted gets a connection to TARGET of its
      own, and bytes go both ways, EOFs too;
    * ``blackhole()``: from then on nothing is forwarded, in either direction, on current
      connections and on new ones, yet every TCP connection stays open: what a client writes
      is read and dropped, it never sees EOF nor an error (nor does TARGET);
    * ``heal()``: NEW connections are forwarded again; blackholed ones stay deaf for good;
    * ``cut()``: close every current connection abruptly (a TCP RST to both sides).

    Use it on the test's own event loop (``async with Relay(...) as relay``); for code off
    that loop (another process, a sync client) use :class:`ThreadedRelay`.

    Args:
        target: (host, port) to relay to; a loopback address only.

    Attributes:
        port: The port it listens on, once started.
        accepted: How many client connections it accepted, in total.
        relayed: How many bytes it forwarded, both ways.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        host, port = target
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the relay only relays to loopback addresses, not {host!r}")
        self.target = (host, port)
        self.port = 0
        self.accepted = 0
        self.relayed = 0
        self._blackholed = False
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``: the relay's address as a Redis URL."""
        return f"redis://{HOST}:{self.port}/0"

    @property
    def connections(self) -> int:
        """How many client connections the relay holds open right now (deaf ones included)."""
        return len(self._links)

    @property
    def blackholed(self) -> bool:
        """Whether new connections are blackholed (between ``blackhole()`` and ``heal()``)."""
        return self._blackholed

    async def start(self) -> None:
        """Listen on 127.0.0.1, on a free port."""
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, cut every connection and wait (bounded) for their handlers."""
        if self._server is not None:
            self._server.close()
        tasks = [link.task for link in self._links if link.task is not None]
        self.cut()
        if tasks:
            await asyncio.wait(tasks, timeout=seconds(5))
        if self._server is not None:
            await asyncio.wait_for(self._server.wait_closed(), seconds(5))
            self._server = None

    def blackhole(self) -> None:
        """Forward nothing any more, on every current and new connection; keep them open."""
        self._blackholed = True
        for link in self._links:
            link.blackholed = True

    def heal(self) -> None:
        """Forward new connections again; the connections blackholed so far stay deaf."""
        self._blackholed = False

    def cut(self) -> None:
        """Close every current connection abruptly, both sides; keep listening."""
        for link in list(self._links):
            _reset(link.client)
            _reset(link.upstream)
            if link.task is not None:
                link.task.cancel()
        self._links.clear()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(writer, blackholed=self._blackholed)
        link.task = asyncio.current_task()
        self._links.add(link)
        self.accepted += 1
        try:
            if link.blackholed:  # born deaf: do not even reach the target
                await self._copy(reader, None, link)
                return
            try:
                up_reader, link.upstream = await asyncio.wait_for(
                    asyncio.open_connection(*self.target), seconds(5)
                )
            except (OSError, TimeoutError):
                return  # the target is down: the client sees its connection reset
            await asyncio.gather(
                self._copy(reader, link.upstream, link), self._copy(up_reader, writer, link)
            )
        except asyncio.CancelledError:
            pass  # cut() or stop(): end quietly
        finally:
            self._links.discard(link)
            _reset(link.upstream)
            _reset(writer)

    async def _copy(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None, link: _Link
    ) -> None:
        """Copy READER to WRITER until EOF; while the link is deaf, read and drop instead."""
        try:
            while data := await reader.read(65536):
                if link.blackholed or writer is None:
                    continue
                writer.write(data)
                await writer.drain()
                self.relayed += len(data)
        except ConnectionError:
            if writer is None:
                return
            if link.blackholed:
                await asyncio.Future()  # deaf: pass nothing on, hold the other side open
            _reset(writer)
            return
        if writer is None:
            return
        if link.blackholed:
            await asyncio.Future()  # deaf: not even the EOF goes through
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()
            else:
                writer.close()


class ThreadedRelay:
    """A :class:`Relay` on an event loop in a thread of its own: for code off the test's loop.

    The same methods, all plain (not async) and thread-safe: each one runs on the relay's
    loop and returns once done there (so after ``blackhole()`` returns, nothing more goes
    through). ``with ThreadedRelay(target) as relay: ...`` starts and stops it.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self._relay = Relay(target)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def target(self) -> tuple[str, int]:
        """(host, port) it relays to."""
        return self._relay.target

    @property
    def port(self) -> int:
        """The port it listens on, once started."""
        return self._relay.port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return self._relay.url

    @property
    def connections(self) -> int:
        """How many client connections it holds open right now (deaf ones included)."""
        return self._run(lambda: self._relay.connections)

    @property
    def accepted(self) -> int:
        """How many client connections it accepted, in total."""
        return self._run(lambda: self._relay.accepted)

    @property
    def relayed(self) -> int:
        """How many bytes it forwarded, both ways."""
        return self._run(lambda: self._relay.relayed)

    @property
    def blackholed(self) -> bool:
        """Whether new connections are blackholed."""
        return self._run(lambda: self._relay.blackholed)

    def _submit(self, make: Callable[[], Awaitable[_T]]) -> _T:
        """Await MAKE() on the relay's loop and return its result (bounded)."""
        if self._loop is None:
            raise RuntimeError("the relay is not running")

        async def run() -> _T:
            return await make()

        future: Future[_T] = asyncio.run_coroutine_threadsafe(run(), self._loop)
        return future.result(seconds(10))

    def _run(self, function: Callable[[], _T]) -> _T:
        """Call FUNCTION on the relay's loop, or right here when the loop is not running."""
        if self._loop is None:
            return function()

        async def call() -> _T:
            return function()

        return self._submit(call)

    def start(self) -> None:
        """Start the loop's thread, and the relay on it."""
        if self._loop is not None:
            raise RuntimeError("the relay is already running")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="test-redis-relay", daemon=True
        )
        self._thread.start()
        try:
            self._submit(self._relay.start)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the relay, then its loop and thread. Safe to call more than once."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self._submit(self._relay.stop)
        finally:
            self._loop = self._thread = None
            loop.call_soon_threadsafe(loop.stop)
            thread.join(seconds(10))
            if not thread.is_alive():
                loop.close()

    def blackhole(self) -> None:
        """See :meth:`Relay.blackhole`."""
        self._run(self._relay.blackhole)

    def heal(self) -> None:
        """See :meth:`Relay.heal`."""
        self._run(self._relay.heal)

    def cut(self) -> None:
        """See :meth:`Relay.cut`."""
        self._run(self._relay.cut)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
