"""Broadcast: deliver one message to 1,000 connected clients, fullduplex vs websockets.

``python -m bench.broadcast [--clients 1000] [--rounds 30] [--repeat 3] [--size 64] [--uvloop]``

Three servers, each in its own subprocess on 127.0.0.1, answer a text message "go" from any
client by sending one ``--size``-byte text message to every connected client:

- ``fullduplex``: a :class:`fullduplex.app.App` endpoint calling
  ``app.sessions(path).broadcast_nowait(message)`` (one frame serialized once, the same bytes
  written to every connection);
- ``websockets loop``: ``websockets.asyncio.server``, ``for ws in connections: await
  ws.send(message)``, what most applications write;
- ``websockets.broadcast``: websockets' own helper, ``broadcast(connections, message)``, for
  reference.

No compression anywhere (the clients offer none). The clients are raw sockets in one separate
process (:mod:`bench.wire`, neither library): they connect, then per round one of them sends
"go" and the process waits, with one epoll loop, until every client has the whole message.

Two figures per server, medians over the rounds (the first three rounds are warm-up):

- **delivery**: from "go" sent to the last client having the message, seen by the clients;
- **fan-out**: the server's own time inside the send loop (or broadcast call), measured with
  ``perf_counter`` around it: the CPU cost of the broadcast itself.

Each repeat runs every server once, in a rotating order; the table shows the median of the
repeats. With two or more CPUs the servers run on the first and the clients on the second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import selectors
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["SERVERS", "main"]

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("fullduplex", "websockets loop", "websockets.broadcast")
_WARMUP_ROUNDS = 3
_URL = re.compile(r"(ws://\S+)")


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[cpu]})


# ---- the servers (one per subprocess) -----------------------------------------------------------


async def _serve_fullduplex(message: str, times: list[float], ready: Callable[[int], None]) -> None:
    from fullduplex.app import App, Session  # noqa: PLC0415 - only in the server process

    app = App()

    @app.on_message("/")
    def on_message(session: Session, received: str | bytes) -> None:
        if received == "go":
            start = time.perf_counter()
            app.sessions("/").broadcast_nowait(message)
            times.append(time.perf_counter() - start)

    await _until_stopped(app.serve("127.0.0.1", 0, compression=None), ready)


async def _serve_websockets(
    message: str, times: list[float], ready: Callable[[int], None], helper: bool
) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve  # noqa: PLC0415

    connections: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        connections.add(ws)
        try:
            async for received in ws:
                if received != "go":
                    continue
                start = time.perf_counter()
                if helper:
                    broadcast(connections, message)
                else:
                    for connection in list(connections):
                        await connection.send(message)
                times.append(time.perf_counter() - start)
        finally:
            connections.discard(ws)

    await _until_stopped(serve(handler, "127.0.0.1", 0, compression=None), ready)


async def _until_stopped(server: Any, ready: Callable[[int], None]) -> None:
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def request_stop() -> None:
        if not stop.done():
            stop.set_result(None)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, request_stop)
    async with server as running:
        ready(running.sockets[0].getsockname()[1])
        await stop


def _server_main(kind: str, size: int, clients: int, use_uvloop: bool) -> int:
    """Run one server until SIGTERM; print its URL first and its fan-out times last."""
    _raise_fd_limit(clients + 256)
    _pin(0)
    message = "x" * size
    times: list[float] = []

    def ready(port: int) -> None:
        print(f"{kind} broadcast server listening on ws://127.0.0.1:{port}/", flush=True)

    if kind == "fullduplex":
        coro = _serve_fullduplex(message, times, ready)
    else:
        coro = _serve_websockets(message, times, ready, helper=kind == "websockets.broadcast")
    loop_factory = None
    if use_uvloop:
        import uvloop  # noqa: PLC0415 - optional

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(coro)
    print(json.dumps({"fanout": times}), flush=True)
    return 0


# ---- the clients (one subprocess, raw sockets) --------------------------------------------------


def _client_main(url: str, clients: int, rounds: int, size: int) -> int:
    """Connect ``clients`` raw clients, run the rounds, print one JSON line of delivery times."""
    from bench.wire import (  # noqa: PLC0415 - keeps the module importable without bench.wire
        OP_TEXT,
        BenchProtocolError,
        build_frame,
        finish_close,
        open_connection,
        send_close,
    )

    _raise_fd_limit(clients + 256)
    _pin(1)
    readers = [open_connection(url, timeout=10.0) for _ in range(clients)]
    # Both servers register a connection in the same step that writes its 101 response, so
    # every client is a member once its handshake returned.
    go = build_frame(OP_TEXT, b"go")
    selector = selectors.DefaultSelector()
    for reader in readers:
        reader.sock.setblocking(False)
        selector.register(reader.sock, selectors.EVENT_READ, reader)
    delivery: list[float] = []
    deadline_per_round = 10.0
    try:
        for _ in range(rounds + _WARMUP_ROUNDS):
            waiting = set(range(len(readers)))
            index = {id(reader): i for i, reader in enumerate(readers)}
            readers[0].sock.send(go)
            start = time.perf_counter()
            last = start
            while waiting:
                if time.perf_counter() - start > deadline_per_round:
                    raise BenchProtocolError(f"{len(waiting)} clients got no message in time")
                for key, _ in selector.select(timeout=1.0):
                    reader = key.data
                    if not reader.fill():
                        raise BenchProtocolError("the server closed a connection")
                    while (frame := reader.next_frame()) is not None:
                        opcode, fin, _, length = frame
                        if opcode >= 0x8:
                            reader.control(opcode, frame[2], length)
                            continue
                        if opcode != OP_TEXT or not fin or length != size:
                            raise BenchProtocolError(f"unexpected frame {frame}")
                        waiting.discard(index[id(reader)])
                        last = time.perf_counter()
            delivery.append(last - start)
    finally:
        selector.close()
        for reader in readers:
            send_close(reader)
        for reader in readers:
            finish_close(reader, timeout=5.0)
    print(json.dumps({"delivery": delivery[_WARMUP_ROUNDS:]}), flush=True)
    return 0


# ---- the driver -------------------------------------------------------------------------------


def _run_case(kind: str, args: argparse.Namespace) -> dict[str, float]:
    """Start the server, run the clients against it, stop it; return the two medians."""
    base = [sys.executable, "-m", "bench.broadcast"]
    common = ["--size", str(args.size), "--clients", str(args.clients)]
    server_command = [*base, "--serve", kind, *common] + (["--uvloop"] if args.uvloop else [])
    server = subprocess.Popen(server_command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        found = _URL.search(server.stdout.readline())
        if found is None:
            raise RuntimeError(f"{kind} server did not start")
        client = subprocess.run(
            [*base, "--client", found[1], "--rounds", str(args.rounds), *common],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if client.returncode != 0:
            raise RuntimeError(f"clients failed against {kind}:\n{client.stderr}")
        delivery = json.loads(client.stdout.splitlines()[-1])["delivery"]
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=60)
        fanout = json.loads(out.splitlines()[-1])["fanout"][_WARMUP_ROUNDS:]
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    return {"delivery": statistics.median(delivery), "fanout": statistics.median(fanout)}


def _driver(args: argparse.Namespace) -> int:
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in SERVERS}
    for repeat in range(args.repeat):
        order = SERVERS[repeat % len(SERVERS) :] + SERVERS[: repeat % len(SERVERS)]
        for kind in order:
            print(f"repeat {repeat + 1}/{args.repeat}: {kind}...", file=sys.stderr, flush=True)
            results[kind].append(_run_case(kind, args))
    loop = "uvloop" if args.uvloop else "asyncio"
    print(
        f"\nOne {args.size}-byte text message to {args.clients} clients ({loop}; median of "
        f"{args.repeat} repeats of the median of {args.rounds} rounds)\n"
    )
    print("| server | delivery to the last client | server fan-out time |")
    print("| --- | ---: | ---: |")
    medians = {}
    for kind in SERVERS:
        delivery = statistics.median(r["delivery"] for r in results[kind])
        fanout = statistics.median(r["fanout"] for r in results[kind])
        medians[kind] = (delivery, fanout)
        print(f"| {kind} | {delivery * 1e3:.2f} ms | {fanout * 1e3:.2f} ms |")
    ours = medians["fullduplex"]
    print()
    for kind in SERVERS[1:]:
        theirs = medians[kind]
        print(
            f"{kind} / fullduplex: delivery x{theirs[0] / ours[0]:.2f}, "
            f"fan-out x{theirs[1] / ours[1]:.2f}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, internally, one of its server or client processes)."""
    parser = argparse.ArgumentParser(prog="python -m bench.broadcast", description=__doc__)
    parser.add_argument("--clients", type=int, default=1000, help="connected clients (1000)")
    parser.add_argument("--rounds", type=int, default=30, help="measured rounds per case (30)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats of every case (3)")
    parser.add_argument("--size", type=int, default=64, help="message size in bytes (64)")
    parser.add_argument("--uvloop", action="store_true", help="run the servers on uvloop")
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return _server_main(args.serve, args.size, args.clients, args.uvloop)
    if args.client:
        return _client_main(args.client, args.clients, args.rounds, args.size)
    return _driver(args)


if __name__ == "__main__":
    raise SystemExit(main())
