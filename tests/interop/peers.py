"""Peers for the interop tests: every client runs the same scenario, every server speaks the same
small command protocol, so any client can be paired with any server.

Servers (each an async context manager yielding a :class:`RunningServer`):

* ``node`` — ``tests/interop/node/server.js`` (Node's ``ws``), in a subprocess;
* ``websockets`` / ``fullduplex`` — in-process, with :func:`command_handler`;
* ``fullduplex-cli`` — ``python -m fullduplex echo`` in a subprocess: echo only, no commands.

The command protocol (text messages; anything else is echoed with its type):
``close:CODE:REASON`` closes with that code and reason; ``ping:DATA`` pings with DATA and, on the
pong, sends ``pong:DATA``; ``fragment:N:TEXT`` sends TEXT back in N fragments. A server logs
``open`` and ``close`` events per request path in its :class:`EventLog`.

Clients (:func:`run_client`) run a scenario, a list of steps, documented in
``tests/interop/node/client.js``, and return the same JSON-shaped result whatever the library.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import re
import shutil
import subprocess
import threading
import traceback
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

import websockets.asyncio.client
import websockets.asyncio.server
import websockets.exceptions
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from websockets.typing import Subprotocol

import fullduplex
import fullduplex.exceptions
from tests.helpers import echo_server_process, seconds

__all__ = [
    "MAX_SIZE",
    "NODE_DIR",
    "ClientResult",
    "Deflate",
    "EventLog",
    "RunningServer",
    "command_handler",
    "extension_names",
    "extension_params",
    "node_server",
    "random_payload",
    "require_node",
    "run_client",
    "start_server",
]

NODE_DIR = Path(__file__).parent / "node"
# Large enough for the 16 MiB messages, on every peer.
MAX_SIZE = 64 * 1024 * 1024
# Both libraries' ConnectionClosed: the handler and the client runner serve either.
_CLOSED = (websockets.exceptions.ConnectionClosed, fullduplex.exceptions.ConnectionClosed)
_COMMAND = re.compile(r"(close|ping|fragment):(.*)", re.DOTALL)

ClientResult = dict[str, Any]
Deflate = bool | Mapping[str, bool | int]
"""Compression for a peer: off, on with the library's defaults, or on with RFC 7692 parameters
(``server_no_context_takeover``, ``client_no_context_takeover``, ``server_max_window_bits``,
``client_max_window_bits``): what a client offers, what a server imposes."""


def require_node() -> str:
    """Return the path of ``node``, failing (not skipping) when the Node peers are not set up.

    Raises:
        RuntimeError: node is not on PATH or ``npm ci`` has not run in tests/interop/node.
    """
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed: the interop tests need Node 18+")
    if not (NODE_DIR / "node_modules" / "ws" / "package.json").exists():
        raise RuntimeError(f"Node's ws is missing: run `make node-deps` (npm ci in {NODE_DIR})")
    return node


def random_payload(kind: str, size: int) -> str | bytes:
    """Return ``size`` random bytes, as printable ASCII text when ``kind`` is ``"text"``.

    Random data does not compress, so permessage-deflate is tested on its worst case too.
    """
    data = os.urandom(size)
    if kind == "binary":
        return data
    return data.translate(bytes(32 + i % 95 for i in range(256))).decode("ascii")


def extension_params(header: str | None) -> dict[str, str | bool]:
    """Return the parameters of the first extension in a Sec-WebSocket-Extensions value
    (a parameter without a value maps to True)."""
    if not header:
        return {}
    params: dict[str, str | bool] = {}
    for item in header.split(",")[0].split(";")[1:]:
        name, eq, value = item.strip().partition("=")
        params[name.strip()] = value.strip().strip('"') if eq else True
    return params


def _node_deflate_args(deflate: Deflate) -> list[str]:
    if not deflate:
        return ["--no-deflate"]
    if isinstance(deflate, Mapping):
        return ["--deflate", "--deflate-params", json.dumps(dict(deflate))]
    return ["--deflate"]


def _compression(library: str, role: str, deflate: Deflate) -> dict[str, Any]:
    """Keyword arguments that set up ``deflate`` in websockets or fullduplex."""
    if not deflate:
        return {"compression": None}
    if not isinstance(deflate, Mapping):
        return {"compression": "deflate"}
    params: dict[str, Any] = dict(deflate)
    if library == "fullduplex":
        from fullduplex.protocol.deflate import DeflateOptions  # noqa: PLC0415

        return {"compression": DeflateOptions(**params)}
    factory = ClientPerMessageDeflateFactory if role == "client" else ServerPerMessageDeflateFactory
    return {"compression": None, "extensions": [factory(**params)]}


def extension_names(header: str | None) -> str:
    """Return the extension names in a Sec-WebSocket-Extensions value, comma-joined like ws's
    ``ws.extensions`` ("" when none)."""
    if not header:
        return ""
    return ",".join(item.split(";")[0].strip() for item in header.split(","))


# ---- servers ------------------------------------------------------------------------------------


class EventLog:
    """Thread-safe log of server-side events, keyed by request path.

    The Node server's reader thread and in-process handlers append; tests wait for an event.
    """

    def __init__(self) -> None:
        self._events: list[dict[str, Any]] = []
        self._cond = threading.Condition()

    def append(self, event: dict[str, Any]) -> None:
        """Record one event (a dict with at least "event" and "path")."""
        with self._cond:
            self._events.append(event)
            self._cond.notify_all()

    def wait_sync(self, path: str, kind: str, timeout: float) -> dict[str, Any]:
        """Block until an event ``kind`` for ``path`` is logged; return it.

        Raises:
            TimeoutError: none arrived within ``timeout`` seconds.
        """

        def find() -> dict[str, Any] | None:
            for event in self._events:
                if event.get("path") == path and event.get("event") == kind:
                    return event
            return None

        with self._cond:
            if not self._cond.wait_for(lambda: find() is not None, timeout):
                raise TimeoutError(f"no {kind!r} event for {path}; got {self.for_path(path)}")
            found = find()
            assert found is not None
            return found

    async def wait(self, path: str, kind: str, timeout: float | None = None) -> dict[str, Any]:
        """Like :meth:`wait_sync`, without blocking the event loop."""
        return await asyncio.to_thread(self.wait_sync, path, kind, timeout or seconds(10))

    def for_path(self, path: str) -> list[dict[str, Any]]:
        """Return the events logged so far for ``path``."""
        with self._cond:
            return [event for event in self._events if event.get("path") == path]


@dataclass
class RunningServer:
    """A server under test: its base URL (no path) and its event log."""

    name: str
    url: str
    events: EventLog = field(default_factory=EventLog)
    commands: bool = True  # False for the CLI echo server, which only echoes


async def _ping_and_wait(ws: Any, data: bytes) -> None:
    # websockets: ``await ws.ping()`` returns a future resolved by the pong; fullduplex's
    # documented shape is "an awaitable resolved by the pong". Both are waited for here.
    result = ws.ping(data)
    if inspect.isawaitable(result):
        result = await result
    if inspect.isawaitable(result):
        await result


def command_handler(events: EventLog) -> Callable[[Any], Any]:
    """Return a server handler (for fullduplex.serve or websockets' serve) speaking the command
    protocol; both libraries' connections have the same API shape for what it uses."""

    async def handler(ws: Any) -> None:
        path = ws.request.path
        events.append(
            {
                "event": "open",
                "path": path,
                "protocol": ws.subprotocol or "",
                "extensions": extension_names(ws.response.headers.get("Sec-WebSocket-Extensions")),
            }
        )
        try:
            async for message in ws:
                command = _COMMAND.fullmatch(message) if isinstance(message, str) else None
                if command is None:
                    await ws.send(message)
                elif command[1] == "close":
                    code, _, reason = command[2].partition(":")
                    await ws.close(int(code), reason)
                elif command[1] == "ping":
                    await _ping_and_wait(ws, command[2].encode())
                    await ws.send(f"pong:{command[2]}")
                else:
                    count, _, text = command[2].partition(":")
                    size = -(-len(text) // int(count))
                    await ws.send(text[i * size : (i + 1) * size] for i in range(int(count)))
        except _CLOSED:
            pass  # a close other than 1000/1001 ends the iteration with an exception
        await ws.wait_closed()
        events.append(
            {"event": "close", "path": path, "code": ws.close_code, "reason": ws.close_reason}
        )

    return handler


@contextlib.contextmanager
def node_server(deflate: Deflate, protocols: Sequence[str]) -> Iterator[RunningServer]:
    """Run tests/interop/node/server.js; yield it once it printed its port; stop it after."""
    node = require_node()
    args = [node, str(NODE_DIR / "server.js"), *_node_deflate_args(deflate)]
    if protocols:
        args += ["--protocols", ",".join(protocols)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = RunningServer("node", "")
    ready = threading.Event()

    def read() -> None:
        # First line: the port; then one JSON event per line, until the process exits.
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        if port.isdigit():
            server.url = f"ws://127.0.0.1:{port}"
        ready.set()
        for line in proc.stdout:
            server.events.append(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not ready.wait(seconds(10)) or not server.url:
            proc.kill()
            _, err = proc.communicate(timeout=seconds(10))
            raise RuntimeError(f"node server.js did not start: {err}")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=seconds(10))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(seconds(10))


@contextlib.asynccontextmanager
async def start_server(
    name: str, *, deflate: Deflate = True, protocols: Sequence[str] = ()
) -> AsyncIterator[RunningServer]:
    """Start server ``name`` (node, websockets, fullduplex, fullduplex-cli) on 127.0.0.1 and a
    free port; stop it on exit.

    Args:
        name: Which implementation.
        deflate: Whether and how the server accepts permessage-deflate.
        protocols: Subprotocols the server supports, in its order of preference.
    """
    if name == "node":
        with node_server(deflate, protocols) as server:
            yield server
    elif name == "fullduplex-cli":
        if protocols or isinstance(deflate, Mapping):
            raise ValueError("the CLI echo server has no subprotocols nor deflate parameters")
        with echo_server_process(*([] if deflate else ["--no-compression"])) as url:
            yield RunningServer(name, url, commands=False)
    elif name == "websockets":
        events = EventLog()
        async with websockets.asyncio.server.serve(
            command_handler(events),
            "127.0.0.1",
            0,
            subprotocols=[Subprotocol(p) for p in protocols] or None,
            max_size=MAX_SIZE,
            **_compression("websockets", "server", deflate),
        ) as ws_server:
            port = ws_server.sockets[0].getsockname()[1]
            yield RunningServer(name, f"ws://127.0.0.1:{port}", events)
    elif name == "fullduplex":
        events = EventLog()
        async with fullduplex.serve(
            command_handler(events),
            "127.0.0.1",
            0,
            subprotocols=list(protocols) or None,
            max_message_size=MAX_SIZE,
            **_compression("fullduplex", "server", deflate),
        ) as fd_server:
            yield RunningServer(name, f"ws://127.0.0.1:{fd_server.port}", events)
    else:
        raise ValueError(f"unknown server {name!r}")


# ---- clients ------------------------------------------------------------------------------------


async def _run_node_client(
    url: str, scenario: list[dict[str, Any]], deflate: Deflate, protocols: Sequence[str]
) -> ClientResult:
    node = require_node()
    timeout = seconds(60)
    args = [node, str(NODE_DIR / "client.js"), url, "--timeout", str(int(timeout * 1000))]
    args += _node_deflate_args(deflate)
    if protocols:
        args += ["--protocols", ",".join(protocols)]
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout + seconds(10)):
            out, err = await proc.communicate(json.dumps(scenario).encode())
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    try:
        result: ClientResult = json.loads(out)
    except ValueError:
        return {"error": f"client.js exited {proc.returncode}: {out!r} {err.decode()}"}
    return result


def _describe(message: str | bytes) -> dict[str, Any]:
    data = message.encode() if isinstance(message, str) else message
    out: dict[str, Any] = {
        "type": "text" if isinstance(message, str) else "binary",
        "length": len(data),
        "sha256": sha256(data).hexdigest(),
    }
    if len(data) <= 4096:
        if isinstance(message, str):
            out["text"] = message
        else:
            out["hex"] = message.hex()
    return out


def _unhex_or_text(step: dict[str, Any], part: str) -> str | bytes:
    return (
        bytes.fromhex(part) if step.get("hex") is not None or step.get("type") == "binary" else part
    )


async def _run_step(ws: Any, step: dict[str, Any]) -> dict[str, Any]:
    op = step["op"]
    if op == "echo":
        sent = random_payload(step["type"], step["size"])
        await ws.send(sent)
        got = await ws.recv()
        ok = type(got) is type(sent) and got == sent
        kind = "text" if isinstance(got, str) else "binary"
        length = len(got.encode() if isinstance(got, str) else got)
        return {"ok": ok, "type": kind, "length": length, "sent_length": step["size"]}
    if op == "send":
        parts = step.get("fragments") or [step.get("hex", step.get("text"))]
        data = [_unhex_or_text(step, part) for part in parts]
        await ws.send(data if "fragments" in step else data[0])
        return {"sent": len(parts)}
    if op == "recv":
        return _describe(await ws.recv())
    if op == "ping":
        await _ping_and_wait(ws, step.get("data", "").encode())
        # The awaitable resolves only for a pong carrying the ping's data.
        return {"pong": step.get("data", "")}
    if op == "close":
        await ws.close(step["code"], step["reason"])
        return {"code": ws.close_code, "reason": ws.close_reason}
    if op == "wait_close":
        try:
            message = await ws.recv()
        except _CLOSED as exc:
            # websockets keeps the received close frame in exc.rcvd, fullduplex in exc.code.
            rcvd = getattr(exc, "rcvd", exc)
            return {
                "code": ws.close_code,
                "reason": ws.close_reason,
                "exception": type(exc).__name__,
                "exception_code": getattr(rcvd, "code", None),
                "exception_reason": getattr(rcvd, "reason", None),
            }
        raise AssertionError(f"expected a close, got a message: {message!r:.100}")
    raise ValueError(f"unknown step {step}")


async def _run_python_client(
    name: str,
    url: str,
    scenario: list[dict[str, Any]],
    deflate: Deflate,
    protocols: Sequence[str],
) -> ClientResult:
    result: ClientResult = {
        "protocol": None,
        "extensions": None,
        "response_extensions": None,
        "results": [],
        "pings_received": None,  # neither library exposes received pings
        "close": None,
        "error": None,
    }
    ws: Any = None
    try:
        async with asyncio.timeout(seconds(60)):
            if name == "websockets":
                connection: Any = websockets.asyncio.client.connect(
                    url,
                    subprotocols=[Subprotocol(p) for p in protocols] or None,
                    max_size=MAX_SIZE,
                    **_compression(name, "client", deflate),
                )
            else:
                connection = fullduplex.connect(
                    url,
                    subprotocols=list(protocols) or None,
                    max_message_size=MAX_SIZE,
                    **_compression(name, "client", deflate),
                )
            async with connection as ws:
                result["protocol"] = ws.subprotocol or ""
                header = ws.response.headers.get("Sec-WebSocket-Extensions")
                result["response_extensions"] = header
                result["extensions"] = extension_names(header)
                if name == "websockets":
                    # What the library actually uses, not only what the server answered.
                    result["extensions"] = ",".join(e.name for e in ws.protocol.extensions)
                for step in scenario:
                    result["results"].append(await _run_step(ws, step))
    except Exception as exc:
        result["error"] = "".join(traceback.format_exception(exc))
    if ws is not None and ws.close_code is not None:
        result["close"] = {"code": ws.close_code, "reason": ws.close_reason}
    return result


async def run_client(
    name: str,
    url: str,
    scenario: list[dict[str, Any]],
    *,
    deflate: Deflate = True,
    protocols: Sequence[str] = (),
) -> ClientResult:
    """Run ``scenario`` with client ``name`` (node, websockets, fullduplex) against ``url``.

    Args:
        name: Which implementation.
        url: Full ws:// URL, path included.
        scenario: The steps (see tests/interop/node/client.js).
        deflate: Whether and how the client offers permessage-deflate.
        protocols: Subprotocols the client offers.

    Returns:
        ``{"protocol", "extensions", "response_extensions", "results", "pings_received",
        "close", "error"}``: ``error`` is None unless the run failed, and then holds what
        went wrong (the other keys hold what happened before).
    """
    if name == "node":
        return await _run_node_client(url, scenario, deflate, protocols)
    return await _run_python_client(name, url, scenario, deflate, protocols)
