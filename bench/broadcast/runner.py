"""One side-by-side run: every library in turn against the same redis-server.

For each library and repeat: two server processes, ``--receivers`` receiver processes holding
``--connections`` connections between them (connection j on server j % 2), then three phases
published by a fresh publisher process each:

0. warm-up: ``--warmup`` messages, window-bounded, not measured;
1. saturation: window-bounded (at most ``--window`` messages ahead of the deliveries) for
   ``--duration`` seconds; deliveries/s = deliveries / (last delivery - first publish);
2. latency: a fixed rate of half the saturation's messages/s for ``--duration`` seconds;
   p50/p99 of publish-to-deliver over every ``--sample``-th connection.

After each phase the runner waits for every delivery (or for ``--settle`` seconds without
progress: the rest is counted as lost). CPU seconds of redis-server, the two servers, the
receivers and the publisher during phase 1 are read from ``/proc/PID/stat``.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from .redis_server import RedisServer, free_port, stop_process, wait_for_port
from .servers import LIBRARIES, Library

__all__ = ["Options", "PhaseResult", "Result", "run_library"]

ROOT = Path(__file__).resolve().parents[2]
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Options:
    """The run's settings (see ``python -m bench.broadcast --help``)."""

    connections: int = 1000
    receivers: int = 2
    warmup: int = 50
    duration: float = 3.0
    window: int = 20
    sample: int = 10
    settle: float = 5.0
    max_messages: int = 1_000_000
    profile: str = ""  # a directory: run the first server under cProfile, its stats there


@dataclass
class PhaseResult:
    """One phase of one library."""

    published: int = 0
    expected: int = 0
    delivered: int = 0
    seconds: float = 0.0
    rate: float = 0.0  # the publisher's target, messages/s; 0: window-bounded
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    samples: int = 0
    stopped: str = ""

    @property
    def deliveries_per_s(self) -> float:
        """Deliveries (messages x receivers) per second."""
        return self.delivered / self.seconds if self.seconds else 0.0

    @property
    def lost(self) -> int:
        """Deliveries that never arrived."""
        return self.expected - self.delivered


@dataclass
class Result:
    """One library, one repeat."""

    library: str
    connections: int
    saturation: PhaseResult = field(default_factory=PhaseResult)
    latency: PhaseResult = field(default_factory=PhaseResult)
    cpu: dict[str, float] = field(default_factory=dict)  # share of one core, phase 1
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # CPU seconds, phase 1
    error: str = ""

    def cpu_per_delivery_us(self, part: str) -> float:
        """CPU microseconds ``part`` (``servers``, ``redis-server``, ...) spent per delivery
        in the saturation phase."""
        delivered = self.saturation.delivered
        return self.cpu_seconds.get(part, 0.0) * 1e6 / delivered if delivered else 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (with the derived figures)."""
        data = asdict(self)
        for name in ("saturation", "latency"):
            phase: PhaseResult = getattr(self, name)
            data[name]["deliveries_per_s"] = phase.deliveries_per_s
            data[name]["lost"] = phase.lost
        return data


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FULLDUPLEX_BROKER", None)
    env.update(extra or {})
    return env


def _popen(command: list[str], env: dict[str, str], **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, **kwargs)


@contextlib.contextmanager
def _servers(
    library: Library, redis: RedisServer, log: IO[bytes], profile: str = ""
) -> Iterator[list[Any]]:
    """Two server processes of ``library``; yields ``[(process, port), ...]``.

    With ``profile`` (a directory), the first runs under cProfile and leaves its statistics
    in ``PROFILE/LIBRARY.prof`` when it stops.
    """
    started: list[tuple[subprocess.Popen[bytes], int]] = []
    try:
        for index in range(2):
            port = free_port()
            command = library.server_command(port, redis.url)
            if profile and index == 0:
                output = str(Path(profile, f"{library.name}.prof").resolve())
                command[1:1] = ["-m", "cProfile", "-o", output]
            process = _popen(
                command,
                _env(library.server_env(redis.url)),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            started.append((process, port))
        for process, port in started:
            wait_for_port(port, process, 30)
        yield started
    finally:
        for process, _ in started:
            stop_process(process)


def _flush(redis: RedisServer) -> None:
    import redis as redis_py  # noqa: PLC0415

    client = redis_py.Redis.from_url(redis.url)
    try:
        client.flushall()
    finally:
        client.close()


def _delivered(counter: Path, slots: int) -> int:
    data = counter.read_bytes()
    return sum(int.from_bytes(data[i * 8 : i * 8 + 8], sys.byteorder) for i in range(slots))


def _wait_deliveries(counter: Path, slots: int, target: int, settle: float) -> tuple[int, int]:
    """Wait until ``target`` deliveries, or ``settle`` seconds without any.

    Returns:
        The count, and when it last changed (``time.monotonic_ns``, polled every 2 ms).
    """
    last = _delivered(counter, slots)
    changed = time.monotonic_ns()
    while last < target:
        time.sleep(0.002)
        now = _delivered(counter, slots)
        if now != last:
            last, changed = now, time.monotonic_ns()
        elif time.monotonic_ns() - changed > settle * 1e9:
            break
    return last, changed


def _publish(
    library: str,
    redis: RedisServer,
    counter: Path,
    options: Options,
    *,
    phase: int,
    count: int,
    rate: float,
    max_time: float,
) -> tuple[dict[str, Any], subprocess.Popen[bytes]]:
    command = [
        sys.executable,
        "-m",
        "bench.broadcast.publisher",
        "--library",
        library,
        "--redis",
        redis.url,
        "--phase",
        str(phase),
        "--count",
        str(count),
        "--connections",
        str(options.connections),
        "--counter",
        str(counter),
        "--slots",
        str(options.receivers),
        "--window",
        str(options.window),
        "--max-time",
        str(max_time),
    ]
    if rate:
        command += ["--rate", f"{rate:.3f}"]
    process = _popen(command, _env(), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        out, _ = process.communicate(timeout=max_time + 60)
    finally:
        stop_process(process)
    if process.returncode != 0:
        raise RuntimeError(f"the {library} publisher exited with {process.returncode}")
    return json.loads(out.decode().strip().splitlines()[-1]), process


def _percentile(values: list[int], share: float) -> float:
    """The ``share`` quantile (nearest rank) of ``values``, in ms."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))
    return ordered[index] / 1e6


def _phase_result(
    reports: list[dict[str, Any]], phase: int, published: dict[str, Any], connections: int
) -> PhaseResult:
    result = PhaseResult(published=published["published"], stopped=published["stopped"])
    result.expected = result.published * connections
    latencies: list[int] = []
    last = 0
    for report in reports:
        stats = report["phases"].get(str(phase))
        if stats is None:
            continue
        result.delivered += stats["count"]
        last = max(last, stats["last_ns"])
        latencies.extend(stats["latencies_ns"])
    result.seconds = max(0.0, (last - published["start_ns"]) / 1e9)
    result.p50_ms = _percentile(latencies, 0.50)
    result.p99_ms = _percentile(latencies, 0.99)
    result.max_ms = max(latencies) / 1e6 if latencies else 0.0
    result.samples = len(latencies)
    return result


def run_library(
    name: str, redis: RedisServer, options: Options, progress: IO[str] = sys.stderr
) -> Result:
    """Measure one library: servers, receivers, the three phases; everything stopped after."""
    library = LIBRARIES[name]
    result = Result(name, options.connections)
    _flush(redis)
    receivers: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="bench-broadcast-") as directory:
        counter = Path(directory, "counter")
        counter.write_bytes(bytes(8 * options.receivers))
        log_path = Path(directory, "servers.log")
        with open(log_path, "wb") as log:
            try:
                with _servers(library, redis, log, options.profile) as servers:
                    urls = [library.url(port) for _, port in servers]
                    share, extra = divmod(options.connections, options.receivers)
                    for slot in range(options.receivers):
                        count = share + (1 if slot < extra else 0)
                        command = [
                            sys.executable,
                            "-m",
                            "bench.broadcast.receiver",
                            "--kind",
                            library.kind,
                            *(arg for url in urls for arg in ("--url", url)),
                            "--connections",
                            str(count),
                            "--counter",
                            str(counter),
                            "--slot",
                            str(slot),
                            "--sample",
                            str(options.sample),
                        ]
                        receivers.append(
                            _popen(command, _env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                        )
                    ready = 0
                    for receiver in receivers:
                        assert receiver.stdout is not None
                        line = receiver.stdout.readline().decode()
                        if not line.startswith("ready"):
                            raise RuntimeError(f"a receiver did not start: {line!r}")
                        ready += int(line.split()[1])
                    if ready != options.connections:
                        raise RuntimeError(f"{ready} of {options.connections} joined the room")
                    print(f"  {name}: {ready} connections in the room", file=progress)
                    slots = options.receivers
                    # 0: warm-up
                    warm, _ = _publish(
                        name,
                        redis,
                        counter,
                        options,
                        phase=0,
                        count=options.warmup,
                        rate=0,
                        max_time=30,
                    )
                    _wait_deliveries(
                        counter, slots, warm["published"] * options.connections, options.settle
                    )
                    # 1: saturation
                    base = _delivered(counter, slots)
                    pids = {
                        "redis-server": [redis.pid],
                        "servers": [p.pid for p, _ in servers],
                        "receivers": [r.pid for r in receivers],
                    }
                    before = {k: sum(map(_cpu_seconds, v)) for k, v in pids.items()}
                    started = time.monotonic()
                    saturated, _ = _publish(
                        name,
                        redis,
                        counter,
                        options,
                        phase=1,
                        count=options.max_messages,
                        rate=0,
                        max_time=options.duration,
                    )
                    reached, done_ns = _wait_deliveries(
                        counter,
                        slots,
                        base + saturated["published"] * options.connections,
                        options.settle,
                    )
                    elapsed = time.monotonic() - started
                    after = {k: sum(map(_cpu_seconds, v)) for k, v in pids.items()}
                    result.cpu = {k: (after[k] - before[k]) / elapsed for k in pids}
                    result.cpu["publisher"] = saturated["cpu_s"] / elapsed
                    result.cpu_seconds = {k: after[k] - before[k] for k in pids}
                    result.cpu_seconds["publisher"] = saturated["cpu_s"]
                    # 2: latency at half the saturation rate
                    # Messages/s delivered to everyone (the counter, polled every 10 ms).
                    seconds = (done_ns - saturated["start_ns"]) / 1e9
                    delivered_messages = (reached - base) / options.connections
                    rate = max(1.0, delivered_messages / seconds / 2)
                    base = _delivered(counter, slots)
                    fixed, _ = _publish(
                        name,
                        redis,
                        counter,
                        options,
                        phase=2,
                        count=max(1, int(rate * options.duration)),
                        rate=rate,
                        max_time=options.duration * 2 + 5,
                    )
                    _wait_deliveries(
                        counter,
                        slots,
                        base + fixed["published"] * options.connections,
                        options.settle,
                    )
                    reports = []
                    for receiver in receivers:
                        assert receiver.stdin is not None and receiver.stdout is not None
                        receiver.stdin.write(b"report\n")
                        receiver.stdin.flush()
                        reports.append(json.loads(receiver.stdout.readline()))
                    result.saturation = _phase_result(reports, 1, saturated, options.connections)
                    result.latency = _phase_result(reports, 2, fixed, options.connections)
                    result.latency.rate = rate
            except Exception as exc:  # one library's failure is reported, the others run
                result.error = f"{type(exc).__name__}: {exc}"
                log.flush()
                tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
                if tail:
                    result.error += " | " + " / ".join(tail)
            finally:
                for receiver in receivers:
                    stop_process(receiver, grace=2)
    return result


def median(values: list[float]) -> float:
    """The median, 0 for no values."""
    return statistics.median(values) if values else 0.0
