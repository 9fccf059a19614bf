"""The load generator: one process, library-neutral, as cheap per message as Python allows.

``python -m bench.loadgen --url ws://127.0.0.1:PORT --workloads rr16,rr1k,conc64,big1m``
runs each workload against the echo server at URL and prints one JSON object per workload on
stdout. Frames are built once before the clock starts; the timed loops only send those bytes,
read the echo with :class:`bench.wire.FrameReader` and check its length. Each result carries the
load generator's own CPU time (getrusage) and, with ``--server-pid``, the server's and the rest
of the machine's, so a reader can tell which side was the bottleneck. With ``--cpus`` it pins
itself and the server (see :class:`Workload`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench.wire import (
    OP_BINARY,
    OP_TEXT,
    BenchProtocolError,
    FrameReader,
    build_frame,
    finish_close,
    open_connection,
    send_close,
)

__all__ = ["WORKLOADS", "Workload", "main", "run_workload"]


@dataclass(frozen=True, slots=True)
class Workload:
    """One benchmark case.

    Attributes:
        name: Short key used on the command line and in results.
        title: What it is, for the table.
        kind: "rr" (one connection, one message in flight, latency recorded) or "concurrent"
            (``connections`` connections with one message in flight each).
        size: Payload size in bytes.
        opcode: OP_TEXT or OP_BINARY.
        connections: How many connections.
        max_count: Upper bound on measured messages, whatever the duration.
        same_cpu: With pinning, run the server and the load generator on the same CPU (one
            message in flight: the two sides never run at once, and a wake-up across CPUs,
            ~50 us on a VM, would be most of a round trip) rather than on two.
    """

    name: str
    title: str
    kind: str
    size: int
    opcode: int
    connections: int
    max_count: int
    same_cpu: bool


WORKLOADS = {
    w.name: w
    for w in (
        Workload("rr16", "(a) req/resp 16 B text", "rr", 16, OP_TEXT, 1, 2_000_000, True),
        Workload("rr1k", "(a) req/resp 1 KiB text", "rr", 1024, OP_TEXT, 1, 2_000_000, True),
        Workload(
            "conc64", "(b) 50 conns, 64 B text", "concurrent", 64, OP_TEXT, 50, 5_000_000, False
        ),
        # One message in flight too, but a 1 MiB one: both sides copy at the same time.
        Workload("big1m", "(c) 1 MiB binary echo", "rr", 2**20, OP_BINARY, 1, 20_000, False),
    )
}


def _payload(workload: Workload) -> bytes:
    if workload.opcode == OP_TEXT:
        # Valid UTF-8 that is not one repeated byte.
        alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789"
        return (alphabet * (workload.size // len(alphabet) + 1))[: workload.size]
    return os.urandom(workload.size)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _process_cpu_seconds(pid: int | None) -> float | None:
    """CPU seconds (user + system) a process has used so far, from /proc; None elsewhere."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            text = stat.read()
    except OSError:
        return None
    # Fields after the command name, which may itself contain spaces and parentheses.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _machine_busy_seconds() -> float | None:
    """CPU seconds all CPUs have spent busy since boot, from /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal (guest time is already in user).
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


def _check_echo(reader: FrameReader, frame: bytes, payload: bytes, opcode: int) -> None:
    """Send one message and check that the echo is the same message (content and type)."""
    reader.sock.sendall(frame)
    got_opcode, length, offset = reader.read_message()
    if got_opcode != opcode or length != len(payload):
        raise BenchProtocolError(f"bad echo: opcode {got_opcode}, {length} bytes")
    if reader.payload(offset, length) != payload:
        raise BenchProtocolError("echo differs from the message sent")


def _run_rr(
    reader: FrameReader, workload: Workload, frame: bytes, duration: float, warmup: float
) -> tuple[int, int, float, list[int]]:
    """One message in flight on one connection.

    Returns:
        (measured count, count including the warm-up, measured seconds, latencies in ns).
    """
    send = reader.sock.sendall
    read = reader.read_message
    size = workload.size
    clock = time.perf_counter_ns
    warmup_end = clock() + int(warmup * 1e9)
    warmup_count = 0
    while clock() < warmup_end:
        send(frame)
        read()
        warmup_count += 1
    latencies: list[int] = []
    record = latencies.append
    count = 0
    max_count = workload.max_count
    start = before = clock()
    deadline = start + int(duration * 1e9)
    while count < max_count:
        send(frame)
        _, length, _ = read()
        after = clock()
        if length != size:
            raise BenchProtocolError(f"echo of {length} bytes, sent {size}")
        record(after - before)
        count += 1
        if after >= deadline:
            break
        before = after
    return count, count + warmup_count, (clock() - start) / 1e9, latencies


def _send_rest(reader: FrameReader, data: bytes, sent: int) -> None:
    """Finish a partial send on a non-blocking socket (rare: small frames, empty buffers)."""
    sock = reader.sock
    timeout = sock.gettimeout()
    sock.setblocking(True)
    sock.settimeout(10.0)
    try:
        sock.sendall(data[sent:])
    finally:
        sock.settimeout(timeout)
        sock.setblocking(False)


def _run_concurrent(
    readers: list[FrameReader],
    workload: Workload,
    frame: bytes,
    *,
    duration: float,
    warmup: float,
    timeout: float,
) -> tuple[int, int, float]:
    """One message in flight on each connection, driven by one selector (epoll on Linux).

    Counts echoes completed between the end of the warm-up and the deadline; then stops sending
    and drains what is in flight.

    Returns:
        (measured count, count of every echo including warm-up and drain, measured seconds).
    """
    selector = selectors.DefaultSelector()
    for reader in readers:
        reader.sock.setblocking(False)
        selector.register(reader.sock, selectors.EVENT_READ, reader)
    size = workload.size
    frame_length = len(frame)
    in_flight = 0
    for reader in readers:
        sent = reader.sock.send(frame)
        if sent != frame_length:
            _send_rest(reader, frame, sent)
        in_flight += 1
    clock = time.perf_counter
    counting_from = clock() + warmup
    deadline = counting_from + duration
    counting = False
    sending = True
    count = 0
    total = 0
    start = stop = counting_from
    try:
        while in_flight:
            events = selector.select(timeout)
            if not events:
                raise BenchProtocolError(f"no echo for {timeout} s")
            for key, _ in events:
                reader = key.data
                try:
                    if not reader.fill():
                        raise BenchProtocolError("server closed a connection")
                except BlockingIOError:
                    continue
                while (frame_info := reader.next_frame()) is not None:
                    opcode, _, offset, length = frame_info
                    if opcode >= 0x8:
                        reader.control(opcode, offset, length)
                        continue
                    if length != size:
                        raise BenchProtocolError(f"echo of {length} bytes, sent {size}")
                    total += 1
                    if counting:
                        count += 1
                    if sending:
                        sent = reader.sock.send(frame)
                        if sent != frame_length:
                            _send_rest(reader, frame, sent)
                    else:
                        in_flight -= 1
            now = clock()
            if not counting and now >= counting_from:
                counting = True
                start = now
                deadline = now + duration
            elif counting and sending and (now >= deadline or count >= workload.max_count):
                sending = False
                stop = now
    finally:
        selector.close()
        for reader in readers:
            reader.sock.setblocking(True)
            reader.sock.settimeout(timeout)
    return count, total, stop - start


def run_workload(
    url: str,
    workload: Workload,
    *,
    duration: float,
    warmup: float,
    timeout: float,
    server_pid: int | None,
    cpus: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Run one workload against the echo server at ``url``.

    Connections are opened and each echo checked once before the clock starts; they are closed
    with a close handshake after it stops.

    Args:
        url: The server's ws:// URL.
        workload: What to run.
        duration: Measured seconds (the loop stops at the first message after it, or at
            ``workload.max_count`` messages).
        warmup: Seconds of the same traffic before measuring.
        timeout: Socket timeout: a server silent this long fails the benchmark.
        server_pid: The server's process id, to report its CPU use (Linux), or None.
        cpus: Two CPU numbers to pin to (Linux), or None to let the OS place both processes:
            the server goes on the first, the load generator on the second, or on the first
            too if ``workload.same_cpu``.

    Returns:
        A JSON-serializable result: counts, rates, latencies (request/response only); CPU use
        of the load generator, the server and the rest of the machine as shares of one core
        (over warm-up and measurement); the server's CPU time per echoed message.

    Raises:
        BenchProtocolError: If the server misbehaves.
        OSError: On a network error or timeout.
    """
    if cpus is not None and server_pid is not None:
        server_cpu, client_cpu = cpus
        # Pins the server's main thread, which runs its event loop.
        os.sched_setaffinity(server_pid, {server_cpu})
        os.sched_setaffinity(0, {server_cpu if workload.same_cpu else client_cpu})
    payload = _payload(workload)
    frame = build_frame(workload.opcode, payload)
    readers = [open_connection(url, timeout=timeout) for _ in range(workload.connections)]
    try:
        for reader in readers:
            _check_echo(reader, frame, payload, workload.opcode)
        cpu_before = _cpu_seconds()
        server_before = _process_cpu_seconds(server_pid)
        machine_before = _machine_busy_seconds()
        wall_before = time.perf_counter()
        latencies: list[int] = []
        if workload.kind == "rr":
            count, total, elapsed, latencies = _run_rr(
                readers[0], workload, frame, duration, warmup
            )
        else:
            count, total, elapsed = _run_concurrent(
                readers, workload, frame, duration=duration, warmup=warmup, timeout=timeout
            )
        # CPU shares cover warm-up and measurement alike (same traffic), so divide by the
        # wall time of both.
        wall = time.perf_counter() - wall_before
        cpu = _cpu_seconds() - cpu_before
        server_after = _process_cpu_seconds(server_pid)
        machine_after = _machine_busy_seconds()
    finally:
        for reader in readers:
            send_close(reader)
        for reader in readers:
            finish_close(reader, timeout=min(timeout, 2.0))
    result: dict[str, Any] = {
        "workload": workload.name,
        "count": count,
        "elapsed": elapsed,
        "messages_per_s": count / elapsed if elapsed > 0 else 0.0,
        "mb_per_s": count * workload.size / elapsed / 1e6 if elapsed > 0 else 0.0,
        "client_cpu": cpu / wall,
        "server_cpu": (
            (server_after - server_before) / wall
            if server_before is not None and server_after is not None
            else None
        ),
    }
    # Everything else the machine did meanwhile (other processes, interrupts): when it is high,
    # the two sides of the benchmark were competing for CPUs and the numbers are noisy.
    result["other_cpu"] = None
    if (
        machine_before is not None
        and machine_after is not None
        and server_before is not None
        and server_after is not None
    ):
        others = (machine_after - machine_before) - cpu - (server_after - server_before)
        result["other_cpu"] = max(0.0, others) / wall
    # The server's CPU time per echoed message: the most direct comparison of two servers,
    # whatever the client costs and however the processes were placed.
    result["server_us_per_message"] = None
    if server_before is not None and server_after is not None and total:
        result["server_us_per_message"] = (server_after - server_before) / total * 1e6
    if latencies:
        latencies.sort()
        result["p50_us"] = latencies[len(latencies) // 2] / 1e3
        result["p99_us"] = latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)] / 1e3
    return result


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the workloads, print one JSON line per result."""
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--url", required=True, help="the echo server's ws:// URL")
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS), help=f"comma-separated: {','.join(WORKLOADS)}"
    )
    parser.add_argument("--duration", type=float, default=2.0, help="measured seconds per case")
    parser.add_argument("--warmup", type=float, default=0.2, help="warm-up seconds per case")
    parser.add_argument("--timeout", type=float, default=10.0, help="socket timeout, seconds")
    parser.add_argument("--server-pid", type=int, default=None, help="to report its CPU use")
    parser.add_argument(
        "--cpus", default=None, help="pin: SERVER_CPU,OTHER_CPU (needs --server-pid; Linux)"
    )
    args = parser.parse_args(argv)
    names = [name for name in args.workloads.split(",") if name]
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads: {', '.join(unknown)}")
    cpus: tuple[int, int] | None = None
    if args.cpus:
        first, _, second = args.cpus.partition(",")
        cpus = (int(first), int(second or first))
    for name in names:
        try:
            result = run_workload(
                args.url,
                WORKLOADS[name],
                duration=args.duration,
                warmup=args.warmup,
                timeout=args.timeout,
                server_pid=args.server_pid,
                cpus=cpus,
            )
        except (BenchProtocolError, OSError) as exc:
            # One line the orchestrator can show; the results printed so far stay valid.
            print(f"{name}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            return 1
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
