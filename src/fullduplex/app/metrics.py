"""An app's counters, as Prometheus text (no dependency) and as a dict for other systems.

::

    app.metrics_route("/metrics")       # GET /metrics: text/plain; version=0.0.4
    app.metrics.snapshot()              # {"fullduplex_messages_received_total": 12, ...}

Counting is always on and costs an integer add per event (a message adds its count and its
size); only the route is opt-in. Every label set is bounded: endpoints are the app's path
templates (never the paths), close codes outside RFC 6455's are grouped by thousand
(``3xxx``, ``4xxx``), reasons are fixed words. Gauges (connections per endpoint, the broker's
state) are read when scraped, so a scrape costs the number of endpoints, not the number of
connections; the one exception, the send-queue gauge, is opt-in
(``app.metrics_route(send_queue=True)``) and reads every open session.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..brokers.base import Broker

__all__ = [
    "FANOUT_BUCKETS",
    "RTT_BUCKETS",
    "Histogram",
    "Metrics",
    "Traffic",
    "code_label",
    "escape_label",
]

FANOUT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
"""Upper bounds (seconds) of the broadcast fan-out histogram's buckets."""

RTT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Upper bounds (seconds) of the ping round-trip time histogram's buckets."""


def code_label(code: int) -> str:
    """A close code as a bounded label: RFC 6455's as themselves, others by thousand."""
    if 1000 <= code <= 1015:
        return str(code)
    return f"{code // 1000}xxx"


class Histogram:
    """A Prometheus histogram: counts per bucket, a sum and a count.

    Args:
        buckets: The upper bounds, increasing.
    """

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, buckets: Iterable[float]) -> None:
        self.bounds = tuple(buckets)
        self.counts = [0] * len(self.bounds)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count one value."""
        index = bisect.bisect_left(self.bounds, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.count += 1
        self.total += value

    def lines(self, name: str, labels: str = "") -> list[str]:
        """The exposition lines: cumulative ``_bucket`` lines, ``_sum`` and ``_count``."""
        out = []
        running = 0
        prefix = f"{labels}," if labels else ""
        for bound, count in zip(self.bounds, self.counts, strict=True):
            running += count
            out.append(f'{name}_bucket{{{prefix}le="{bound:g}"}} {running}')
        out.append(f'{name}_bucket{{{prefix}le="+Inf"}} {self.count}')
        braces = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{braces} {self.total:.9g}")
        out.append(f"{name}_count{braces} {self.count}")
        return out


class Traffic:
    """The message bytes of one endpoint: a mutable pair that the session loop holds, so that
    counting a message is one integer add.

    Sizes are ``len()`` of the messages as endpoints see them before decoding or after
    encoding: bytes for binary messages, characters for text ones (their UTF-8 size only
    for ASCII text; measuring it exactly would cost an encode per message).
    """

    __slots__ = ("bytes_in", "bytes_out")

    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0


class Metrics:
    """The counters of one app (the framework increments them; read them with
    :meth:`render` or :meth:`snapshot`).

    Attributes:
        opened: Sessions opened, by endpoint template.
        refused: Upgrade requests refused before the 101, by reason (``not_found``,
            ``denied`` by process_request, ``rate``, ``capacity``, ``per_ip``, ``per_user``).
        closed: Sessions closed, by (close code label, who started the close: ``peer``
            (its close frame came first), ``server`` (this side's did, or this side failed
            the connection), or ``none`` (no close frame either way)).
        received: Messages received by endpoints.
        sent: Messages sent by sessions one by one (``session.send``, returned values).
        traffic: Message sizes in and out (one by one) by endpoint template: see
            :class:`Traffic`.
        delivered: Broadcast deliveries (one per member reached).
        broadcasts: Broadcasts (one per message, whatever the number of members).
        broadcast_bytes: Bytes of the frames broadcasts handed to members (each delivery).
        fanout: Seconds to hand one broadcast to this process's members.
        ping_rtt: Each closed session's last measured ping round-trip time (sessions that
            measured none are not counted); observed when the session ends, so a scrape
            does not read the open ones.
        slow_consumers: Slow-consumer actions, by policy (``drop``, ``close``).
        recoveries: Rejoins, by outcome (``recovered`` or the reason it was not).
    """

    __slots__ = (
        "_counters",
        "_gauges",
        "broadcast_bytes",
        "broadcasts",
        "closed",
        "delivered",
        "fanout",
        "opened",
        "ping_rtt",
        "received",
        "recoveries",
        "refused",
        "sent",
        "slow_consumers",
        "traffic",
    )

    def __init__(self) -> None:
        self.opened: dict[str, int] = {}
        self.refused: dict[str, int] = {}
        self.closed: dict[tuple[str, str], int] = {}
        self.received = 0
        self.sent = 0
        self.traffic: dict[str, Traffic] = {}
        self.delivered = 0
        self.broadcasts = 0
        self.broadcast_bytes = 0
        self.fanout = Histogram(FANOUT_BUCKETS)
        self.ping_rtt = Histogram(RTT_BUCKETS)
        self.slow_consumers: dict[str, int] = {}
        self.recoveries: dict[str, int] = {}
        self._gauges: list[Callable[[], Iterable[tuple[str, str, str, float]]]] = []
        self._counters: list[Callable[[], Iterable[tuple[str, str, str, float]]]] = []

    # ---- counting (the framework's hot paths call these) -------------------------------------

    def count(self, counter: dict[str, int], key: str) -> None:
        """Add one to ``counter[key]``."""
        counter[key] = counter.get(key, 0) + 1

    def count_close(self, code: int, by: str) -> None:
        """A session closed with ``code``; ``by``: who started the close."""
        key = (code_label(code), by)
        self.closed[key] = self.closed.get(key, 0) + 1

    def traffic_of(self, endpoint: str) -> Traffic:
        """The :class:`Traffic` of endpoint template ``endpoint`` (created on first use)."""
        traffic = self.traffic.get(endpoint)
        if traffic is None:
            traffic = self.traffic[endpoint] = Traffic()
        return traffic

    def timed_broadcast(self, started: float, delivered: int, size: int = 0) -> None:
        """A broadcast that began at ``started`` (``time.perf_counter()``) reached
        ``delivered`` members, handing them ``size`` bytes in all."""
        self.fanout.observe(time.perf_counter() - started)
        self.broadcasts += 1
        self.delivered += delivered
        self.broadcast_bytes += size

    def add_gauges(self, read: Callable[[], Iterable[tuple[str, str, str, float]]]) -> None:
        """Read gauges at each scrape: ``read()`` yields (name, help, labels, value)."""
        self._gauges.append(read)

    def add_counters(self, read: Callable[[], Iterable[tuple[str, str, str, float]]]) -> None:
        """Read counters kept elsewhere (e.g. the server's refusals) at each scrape, as
        :meth:`add_gauges` does gauges."""
        self._counters.append(read)

    # ---- reading -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, float]:
        """Every sample, by its exposition name with labels, e.g.
        ``'fullduplex_sessions_opened_total{endpoint="/chat/{room}"}'``."""
        samples: dict[str, float] = {}
        for line in self.render().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def render(self, broker: Broker | None = None) -> str:
        """The Prometheus text exposition (format 0.0.4) of every metric."""
        out: list[str] = []

        def family(name: str, kind: str, help_text: str, samples: Iterable[str]) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(samples)

        family(
            "fullduplex_sessions_opened_total",
            "counter",
            "Sessions opened, by endpoint.",
            (
                f'fullduplex_sessions_opened_total{{endpoint="{escape_label(e)}"}} {n}'
                for e, n in sorted(self.opened.items())
            ),
        )
        family(
            "fullduplex_upgrades_refused_total",
            "counter",
            "Upgrade requests refused before the 101, by reason.",
            (
                f'fullduplex_upgrades_refused_total{{reason="{r}"}} {n}'
                for r, n in sorted(self.refused.items())
            ),
        )
        family(
            "fullduplex_sessions_closed_total",
            "counter",
            "Sessions closed, by close code and by who started the close.",
            (
                f'fullduplex_sessions_closed_total{{code="{code}",by="{by}"}} {n}'
                for (code, by), n in sorted(self.closed.items())
            ),
        )
        for name, help_text, value in (
            (
                "fullduplex_messages_received_total",
                "Messages received by endpoints.",
                self.received,
            ),
            ("fullduplex_messages_sent_total", "Messages sent by sessions one by one.", self.sent),
            ("fullduplex_broadcasts_total", "Broadcasts handed to members.", self.broadcasts),
            (
                "fullduplex_broadcast_deliveries_total",
                "Broadcast deliveries (one per member reached).",
                self.delivered,
            ),
            (
                "fullduplex_broadcast_bytes_total",
                "Bytes of the frames broadcasts handed to members, each delivery counted.",
                self.broadcast_bytes,
            ),
        ):
            family(name, "counter", help_text, [f"{name} {value}"])
        traffic = sorted(self.traffic.items())
        family(
            "fullduplex_message_bytes_total",
            "counter",
            "Sizes of the messages received and sent one by one, by endpoint (bytes of binary "
            "messages, characters of text ones).",
            (
                f'fullduplex_message_bytes_total{{endpoint="{escape_label(e)}",dir="{d}"}} {n}'
                for e, t in traffic
                for d, n in (("in", t.bytes_in), ("out", t.bytes_out))
            ),
        )
        family(
            "fullduplex_broadcast_fanout_seconds",
            "histogram",
            "Time to hand one broadcast to this process's members.",
            self.fanout.lines("fullduplex_broadcast_fanout_seconds"),
        )
        family(
            "fullduplex_ping_rtt_seconds",
            "histogram",
            "Last measured ping round-trip time of each session, observed when it closed.",
            self.ping_rtt.lines("fullduplex_ping_rtt_seconds"),
        )
        family(
            "fullduplex_slow_consumer_actions_total",
            "counter",
            "Slow-consumer actions, by policy.",
            (
                f'fullduplex_slow_consumer_actions_total{{policy="{p}"}} {n}'
                for p, n in sorted(self.slow_consumers.items())
            ),
        )
        family(
            "fullduplex_recoveries_total",
            "counter",
            "Rejoins, by outcome.",
            (
                f'fullduplex_recoveries_total{{result="{r}"}} {n}'
                for r, n in sorted(self.recoveries.items())
            ),
        )
        for kind, readers in (("counter", self._counters), ("gauge", self._gauges)):
            read_families: dict[str, tuple[str, list[str]]] = {}
            for read in readers:
                for name, help_text, labels, reading in read():
                    entry = read_families.setdefault(name, (help_text, []))
                    braces = f"{{{labels}}}" if labels else ""
                    entry[1].append(f"{name}{braces} {_number(reading)}")
            for name, (help_text, samples) in read_families.items():
                family(name, kind, help_text, samples)
        if broker is not None:
            for key, value in sorted(broker.stats().items()):
                if key in _BROKER_GAUGES:
                    name = f"fullduplex_broker_{key}"
                    family(name, "gauge", _BROKER_GAUGES[key], [f"{name} {value}"])
                else:
                    name = f"fullduplex_broker_{key}_total"
                    family(name, "counter", f"The broker's {key} counter.", [f"{name} {value}"])
        return "\n".join(out) + "\n"


_BROKER_GAUGES = {
    "groups": "Groups this process is subscribed to.",
    "connections": "The broker's pub/sub connections.",
}


def _number(value: float) -> str:
    """A sample value in full (``:g`` would print 1.23457e+06 for 1234567)."""
    return str(value) if isinstance(value, int) else repr(float(value))


def escape_label(value: str) -> str:
    """A label value as the text format wants it (backslash, quote and newline escaped)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
