"""``fullduplex drain``: tell a running ``fullduplex serve`` (or ``echo``, ``demo``) to drain.

::

    fullduplex serve app:app --pidfile /run/app.pid --drain 10 --drain-code 1012 &
    fullduplex drain --pidfile /run/app.pid --timeout 30

The command sends SIGTERM, which a server takes as the order to drain: it stops listening
(siblings on the same port keep accepting, ``/readyz`` turns 503), closes its connections in
batches spread over its own ``--drain`` seconds with its own ``--drain-code``, then exits. A
``--workers`` supervisor passes it to every worker, which drain the same way. A signal carries
no arguments, so the spread and the code are the server's options, chosen when it started;
this command then waits for the process to exit, at most ``--timeout`` seconds.

Exit status: 0 when the server exited in time; 1 when it was still running at the timeout
(it keeps draining: it was not killed); 2 when no signal was sent (no such process, an
unreadable pid file, a process that is not a fullduplex server, no permission).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["add_drain_parser", "remove_pidfile", "write_pidfile"]

_DEFAULT_TIMEOUT = 30.0
# How often the waiting command looks at the process: a drain lasts seconds, so 50 ms costs
# nothing and adds at most 50 ms to the reported time.
_POLL = 0.05


def write_pidfile(path: str) -> None:
    """Write this process's pid to ``path`` (through a rename: a reader never sees half)."""
    target = Path(path)
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    partial.write_text(f"{os.getpid()}\n")
    partial.replace(target)


def remove_pidfile(path: str) -> None:
    """Remove ``path`` if it still names this process (a newer server may have replaced it)."""
    with contextlib.suppress(OSError, ValueError):
        if int(Path(path).read_text().strip()) == os.getpid():
            Path(path).unlink()


class _Refused(Exception):
    """No signal was sent; the message says why."""


def _read_pid(args: argparse.Namespace) -> int:
    if args.pid is not None:
        return int(args.pid)
    try:
        text = Path(args.pidfile).read_text().strip()
    except OSError as exc:
        raise _Refused(f"cannot read the pid file {args.pidfile}: {exc.strerror}") from None
    try:
        pid = int(text)
    except ValueError:
        raise _Refused(f"the pid file {args.pidfile} holds no pid: {text[:40]!r}") from None
    if pid <= 0:
        raise _Refused(f"the pid file {args.pidfile} holds no pid: {text[:40]!r}")
    return pid


def _state(pid: int) -> str | None:
    """The process's state letter from /proc (``Z``: exited, not reaped), or None when
    there is no /proc entry."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[0]


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs; a zombie (exited, its parent has not reaped it) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    return _state(pid) != "Z"


def _check_is_server(pid: int) -> None:
    """Refuse to signal a process that is not a fullduplex command (a stale pid file may name
    a pid that another program reuses now)."""
    if pid <= 0:
        raise _Refused(f"not a process id: {pid}")
    if not _alive(pid):
        raise _Refused(f"no process {pid} (has the server already stopped?)")
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return  # no /proc (not Linux): the pid is all we have
    if b"fullduplex" not in command:
        shown = command.replace(b"\0", b" ").decode(errors="replace").strip()[:80]
        raise _Refused(f"process {pid} is not a fullduplex server ({shown})")


def _drain_command(args: argparse.Namespace) -> int:
    prog = "fullduplex drain"
    try:
        pid = _read_pid(args)
        _check_is_server(pid)
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            raise _Refused(f"no process {pid}") from None
        except PermissionError:
            raise _Refused(f"not allowed to signal process {pid}") from None
    except _Refused as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    print(f"{prog}: sent SIGTERM to {pid}; waiting up to {args.timeout:g} s", flush=True)
    deadline = started + args.timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            print(
                f"{prog}: process {pid} still running after {args.timeout:g} s "
                "(still draining, or stuck; it was not killed)",
                file=sys.stderr,
            )
            return 1
        time.sleep(_POLL)
    print(f"{prog}: process {pid} exited after {time.monotonic() - started:.1f} s", flush=True)
    return 0


def _timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return seconds


def add_drain_parser(commands: Any) -> None:
    """Add ``fullduplex drain --pid PID | --pidfile FILE [--timeout SECONDS]``."""
    parser = commands.add_parser(
        "drain",
        help="tell a running server to drain its connections and exit",
        description="Send SIGTERM to a running 'fullduplex serve' (or echo, demo; a --workers "
        "supervisor drains every worker) and wait until it exits. The server stops "
        "listening, closes its connections in batches over its own --drain seconds with its "
        "own --drain-code, then exits. Exit status: 0 when it exited in time, 1 when it was "
        "still running after --timeout (it is not killed), 2 when no signal was sent.",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--pid", type=int, metavar="PID", help="the server's process id")
    which.add_argument(
        "--pidfile",
        metavar="FILE",
        help="read the process id from FILE (written by 'fullduplex serve --pidfile FILE')",
    )
    parser.add_argument(
        "--timeout",
        type=_timeout,
        default=_DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="how long to wait for the server to exit (default %(default)g); choose more "
        "than the server's --drain plus a few seconds",
    )
    parser.set_defaults(func=_drain_command)
