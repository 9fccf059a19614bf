"""Run a server in worker processes that share one port, and keep them running.

``fullduplex serve --workers N`` and ``--reload`` use it. The parent process serves nothing;
it starts N workers, each a fresh interpreter (multiprocessing's "spawn": no state copied
from the parent, and no event loop carried across a fork) that listens on the same port with
SO_REUSEPORT, so that the kernel spreads new connections over them. Then it supervises:

* A worker that dies while nobody asked it to is started again, at most ``max_restarts``
  times within ``restart_window`` seconds; past that the supervisor stops the others and
  exits with status 1 rather than spin on a crash.
* A worker that dies before it ever listened, when the workers start, ends everything with
  its exit status: the app cannot be imported, the port is taken, and so on.
* SIGINT or SIGTERM to the parent sends SIGTERM to every worker (which closes its connections
  with 1001) and waits ``shutdown_timeout`` seconds at most, then kills what is left.
* SIGHUP to the parent reloads without downtime: slot by slot, a new worker starts and, once
  it listens, the old one drains. With ``sockets`` (the CLI's way) the supervisor holds each
  slot's listening socket, so its queued connections survive any change of worker.
* With ``watch``, a change to a .py file under that directory restarts every worker (after
  the graceful stop above). That needs the optional ``watchfiles`` package (inotify, not
  polling; its filter skips .venv, .git, __pycache__ and the like). A worker that dies in
  this mode, for instance on a syntax error, is started again at the next change.

Each worker has a pipe to the parent: the worker says on it when it listens, and sees the
pipe close if the parent dies, even by SIGKILL; it then stops too, instead of serving on
unsupervised.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Final

__all__ = ["Supervisor", "WorkerChannel", "listening_sockets"]

_logger = logging.getLogger("fullduplex.workers")

_SPAWN: Final = multiprocessing.get_context("spawn")
_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


class WorkerChannel:
    """A worker's end of the pipe to its supervisor, handed to the worker's target.

    Attributes:
        socket: The listening socket the supervisor holds for this worker's slot (serve on it
            rather than binding one), or None when the worker binds its own.
    """

    def __init__(self, conn: Connection, sock: socket.socket | None = None) -> None:
        self._conn = conn
        self.socket = sock

    def ready(self) -> None:
        """Tell the supervisor that this worker listens."""
        self._conn.send(os.getpid())

    def stop_with_parent(self, add_reader: Callable[[int, Callable[[], None]], object]) -> None:
        """Send SIGTERM to this process when the supervisor goes away.

        Args:
            add_reader: The running event loop's ``add_reader``: the pipe becomes readable
                only at its end, since the supervisor never writes to it.
        """
        fired = False

        def parent_gone() -> None:
            nonlocal fired
            if not fired:  # the end of a pipe stays readable: act once
                fired = True
                os.kill(os.getpid(), signal.SIGTERM)

        add_reader(self._conn.fileno(), parent_gone)


def _worker_main(
    target: Callable[..., int | None],
    args: tuple[Any, ...],
    conn: Connection,
    sock: socket.socket | None = None,
) -> None:
    """The body of a worker process: run ``target(*args, channel)`` and exit with its status."""
    # Ctrl-C reaches the whole process group; before the server's own handlers are installed
    # it would print a traceback. The supervisor sends SIGTERM to stop workers anyway.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the supervisor's signal, not a worker's
    status = target(*args, WorkerChannel(conn, sock))
    sys.exit(status or 0)


@contextlib.contextmanager
def listening_sockets(
    host: str | None, port: int, count: int, backlog: int = 100
) -> Iterator[list[socket.socket]]:
    """``count`` sockets listening on one port with SO_REUSEPORT, for the supervisor to hold
    and its workers to serve on, one each.

    Held by the supervisor, a slot's socket (and the connections queued on it) outlives its
    worker: a worker that is restarted, reloaded or replaced takes over the same socket, so
    no connection is refused or reset meanwhile (closing a SO_REUSEPORT listener would reset
    the connections in its queue). The kernel spreads new connections over the sockets.

    Yields:
        The sockets (bound to the port, port 0 picking a free one).

    Raises:
        OSError: The port is taken, or the host cannot be resolved.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    if port != 0:
        with socket.socket(family, kind, proto) as probe:
            # Without SO_REUSEPORT: fails if anything listens there, whose group our sockets
            # would otherwise join (sharing its connections).
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((address[0], port, *address[2:]))  # port 0 only for the first
            if port == 0:
                port = int(sock.getsockname()[1])
            sock.listen(backlog)
            sock.set_inheritable(False)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    slot: int = 0
    ready: bool = False
    stop_by: float | None = None  # set once asked to stop: killed if still alive then


@dataclass
class Supervisor:
    """Start ``workers`` processes running ``target(*args, channel)`` and keep them running.

    ``target`` must be picklable (a module-level function) and so must ``args``; it serves
    until SIGTERM, calls ``channel.ready()`` once it listens (and, preferably,
    ``channel.stop_with_parent(loop.add_reader)``), and returns its exit status.

    Attributes:
        target: What each worker runs.
        args: Its arguments (the channel is appended).
        workers: How many workers run at once.
        max_restarts: How many unexpected deaths are tolerated within ``restart_window``.
        restart_window: Seconds.
        shutdown_timeout: Seconds the workers have to stop after SIGTERM before SIGKILL.
        startup_timeout: Seconds the first workers have to listen.
        watch: Restart every worker when a .py file under this directory changes (needs
            watchfiles).
        on_ready: Called once, when every worker listens for the first time.
        sockets: One listening socket per worker (see :func:`listening_sockets`): the worker
            of slot i serves on ``sockets[i]``, and its replacements after a crash, a reload
            or a change take it over, so that no connection is refused meanwhile. Without
            them, each worker binds its own.

    SIGHUP reloads without downtime: a new worker is started for each slot and, once it
    listens, the old one of that slot gets SIGTERM (it drains its connections) and has
    ``shutdown_timeout`` seconds to end.
    """

    target: Callable[..., int | None]
    args: tuple[Any, ...]
    workers: int = 1
    max_restarts: int = 10
    restart_window: float = 60.0
    shutdown_timeout: float = 10.0
    startup_timeout: float = 60.0
    watch: Path | None = None
    on_ready: Callable[[], object] | None = None
    sockets: list[socket.socket] | None = None
    _running: list[_Worker] = field(default_factory=list, init=False)
    _retiring: list[_Worker] = field(default_factory=list, init=False)
    _deaths: deque[float] = field(default_factory=deque, init=False)
    _announced: bool = field(default=False, init=False)

    def run(self) -> int:
        """Supervise until SIGINT or SIGTERM; return the exit status (0 after a signal).

        Must run in the main thread (it installs signal handlers, restored on return).

        Raises:
            ImportError: ``watch`` is set and watchfiles is not installed.
        """
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        stop_watching = threading.Event()
        changes_r = self._start_watcher(stop_watching) if self.watch is not None else None
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        received: list[int] = []
        reloads: list[int] = []
        handled = (*_STOP_SIGNALS, signal.SIGHUP)
        previous = {signum: signal.getsignal(signum) for signum in handled}
        previous_fd = signal.set_wakeup_fd(wake_w)
        for signum in _STOP_SIGNALS:
            signal.signal(signum, lambda signum, frame: received.append(signum))
        signal.signal(signal.SIGHUP, lambda signum, frame: reloads.append(signum))
        try:
            return self._supervise(wake_r, changes_r, received, reloads)
        finally:
            stop_watching.set()
            self._stop_all()
            signal.set_wakeup_fd(previous_fd)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(wake_r)
            os.close(wake_w)
            if changes_r is not None:
                os.close(changes_r)

    def _supervise(
        self, wake_r: int, changes_r: int | None, received: list[int], reloads: list[int]
    ) -> int:
        for slot in range(self.workers):
            self._start(slot)
        startup_deadline = time.monotonic() + self.startup_timeout
        while not received:
            waitables: list[Any] = [wake_r]
            if changes_r is not None:
                waitables.append(changes_r)
            for worker in self._running:
                waitables.append(worker.process.sentinel)
                if not worker.ready:
                    waitables.append(worker.conn)
            waitables.extend(worker.process.sentinel for worker in self._retiring)
            timeout = None
            if not self._announced and self.watch is None:
                timeout = max(0.0, startup_deadline - time.monotonic())
            stops = [w.stop_by for w in self._retiring if w.stop_by is not None]
            if stops:
                until = max(0.0, min(stops) - time.monotonic())
                timeout = until if timeout is None else min(timeout, until)
            ready = wait(waitables, timeout)
            self._reap_retired()
            starting = not self._announced and self.watch is None
            if not ready and starting and time.monotonic() >= startup_deadline:
                _logger.error("the workers did not start within %g s", self.startup_timeout)
                return 1
            if wake_r in ready:
                os.read(wake_r, 512)
            if reloads and self._announced:
                reloads.clear()
                self._reload(wake_r, received)
                continue
            if changes_r is not None and changes_r in ready:
                if not os.read(changes_r, 512):  # the watcher thread failed and ended
                    _logger.error("no longer watching %s for changes", self.watch)
                    changes_r = None
                    continue
                _logger.warning("changes detected under %s: restarting", self.watch)
                self._stop_all()
                for slot in range(self.workers):
                    self._start(slot)
                continue
            for worker in list(self._running):
                if worker.conn in ready and not worker.ready:
                    with contextlib.suppress(EOFError, OSError):
                        worker.conn.recv()
                        worker.ready = True
                if worker.process.sentinel in ready:
                    status = self._reap(worker)
                    if status is not None:
                        return status
            everyone = len(self._running) == self.workers
            if not self._announced and everyone and all(w.ready for w in self._running):
                self._announced = True
                if self.on_ready is not None:
                    self.on_ready()
        _logger.info("received %s: stopping the workers", signal.Signals(received[0]).name)
        return 0

    def _start(self, slot: int) -> _Worker:
        parent_end, child_end = _SPAWN.Pipe()
        sock = self.sockets[slot] if self.sockets is not None else None
        process = _SPAWN.Process(
            target=_worker_main,
            args=(self.target, self.args, child_end, sock),
            name="fullduplex-worker",
        )
        process.start()
        child_end.close()  # the worker has its copy; the parent keeps only its end
        worker = _Worker(process, parent_end, slot)
        self._running.append(worker)
        _logger.info("started worker %s", process.pid)
        return worker

    def _reload(self, wake_r: int, received: list[int]) -> None:
        """Replace every worker, slot by slot: the new one first, then the old one drains.

        A stop signal meanwhile ends the reload (the caller then stops everything)."""
        _logger.warning("SIGHUP: replacing the workers one by one")
        for old in list(self._running):
            if old not in self._running:
                continue  # it died meanwhile (reaped below, by the main loop)
            new = self._start(old.slot)
            if not self._wait_ready(new, wake_r, received):
                _logger.error("a new worker did not start: the old ones go on")
                return
            self._running.remove(old)
            self._retire(old)
        _logger.warning("reloaded: %d new workers", len(self._running))

    def _wait_ready(self, worker: _Worker, wake_r: int, received: list[int]) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            left = deadline - time.monotonic()
            ready = wait([worker.conn, worker.process.sentinel, wake_r], max(0.0, left))
            self._reap_retired()  # the retiring ones still get killed on time
            if wake_r in ready:
                os.read(wake_r, 512)
                if received:
                    self._running.remove(worker)
                    self._retire(worker)
                    return False
            if worker.conn in ready:
                with contextlib.suppress(EOFError, OSError):
                    worker.conn.recv()
                    worker.ready = True
                    return True
            if worker.process.sentinel in ready or left <= 0:
                self._running.remove(worker)
                self._retire(worker)
                return False

    def _retire(self, worker: _Worker) -> None:
        """Ask ``worker`` to stop (SIGTERM: it drains); kill it after ``shutdown_timeout``."""
        if worker.process.is_alive():
            worker.process.terminate()
        worker.stop_by = time.monotonic() + self.shutdown_timeout
        self._retiring.append(worker)

    def _reap_retired(self) -> None:
        now = time.monotonic()
        for worker in list(self._retiring):
            if worker.process.is_alive():
                if worker.stop_by is not None and now >= worker.stop_by:
                    _logger.warning(
                        "worker %s did not stop in time: killing it", worker.process.pid
                    )
                    worker.process.kill()
                continue
            worker.process.join()
            worker.conn.close()
            self._retiring.remove(worker)

    def _reap(self, worker: _Worker) -> int | None:
        """Handle the death of ``worker``; return an exit status to end supervision, or None."""
        worker.process.join()
        worker.conn.close()
        self._running.remove(worker)
        status = worker.process.exitcode
        shown = f"signal {-status}" if status is not None and status < 0 else f"status {status}"
        if self.watch is not None:
            _logger.error("worker %s exited (%s); waiting for a change", worker.process.pid, shown)
            return None
        if not self._announced:
            _logger.error("worker %s exited (%s) before listening", worker.process.pid, shown)
            return status if status and status > 0 else 1
        now = time.monotonic()
        self._deaths.append(now)
        while self._deaths and self._deaths[0] < now - self.restart_window:
            self._deaths.popleft()
        if len(self._deaths) > self.max_restarts:
            _logger.error(
                "worker %s exited (%s): more than %d restarts in %g s, giving up",
                worker.process.pid,
                shown,
                self.max_restarts,
                self.restart_window,
            )
            return 1
        _logger.warning("worker %s exited (%s): restarting it", worker.process.pid, shown)
        self._start(worker.slot)
        return None

    def _stop_all(self) -> None:
        """SIGTERM every worker; SIGKILL those still running after ``shutdown_timeout``."""
        running, self._running = self._running + self._retiring, []
        self._retiring = []
        for worker in running:
            if worker.process.is_alive():
                worker.process.terminate()
        deadline = time.monotonic() + self.shutdown_timeout
        pending = [worker.process for worker in running]
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            wait([process.sentinel for process in pending], left)
            pending = [process for process in pending if process.exitcode is None]
        for process in pending:
            _logger.warning("worker %s did not stop in time: killing it", process.pid)
            process.kill()
        for worker in running:
            worker.process.join()
            worker.conn.close()

    def _start_watcher(self, stop: threading.Event) -> int:
        """Watch :attr:`watch` in a thread; return a pipe that gets a byte at each change."""
        try:
            # Optional dependency, needed only for --reload.
            import watchfiles  # noqa: PLC0415
        except ImportError:
            raise ImportError(
                "--reload needs watchfiles: pip install 'fullduplex[reload]'"
            ) from None
        changes_r, changes_w = os.pipe()
        where = self.watch
        assert where is not None

        def watch() -> None:
            try:
                for _ in watchfiles.watch(
                    where, watch_filter=watchfiles.PythonFilter(), stop_event=stop, debounce=200
                ):
                    os.write(changes_w, b"!")
            finally:
                os.close(changes_w)

        threading.Thread(target=watch, name="fullduplex-reload", daemon=True).start()
        return changes_r
