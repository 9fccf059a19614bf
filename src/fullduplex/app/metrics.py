"""An app's counters, as Prometheus text (no dependency) and as a dict for other systems.

::

    app.metrics_route("/metrics")       # GET /metrics: text/plain; version=0.0.4
    app.metrics.snapshot()              # {"fullduplex_messages_received_total": 12, ...}

Counting is always on and costs an integer increment per event; only the route is opt-in.
Every label set is bounded: endpoints are the app's path templates (never the paths), close
codes outside RFC 6455's are grouped by thousand (``3xxx``, ``4xxx``), reasons are fixed
words. Gauges (connections per endpoint, the broker's state) are read when scraped, so a
scrape costs the number of endpoints, not the number of connections.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..brokers.base import Broker

__all__ = ["FANOUT_BUCKETS", "Histogram", "Metrics", "code_label", "escape_label"]

FANOUT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
"""Upper bounds (seconds) of the broadcast fan-out histogram's buckets."""


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


class Metrics:
    """The counters of one app (the framework increments them; read them with
    :meth:`render` or :meth:`snapshot`).

    Attributes:
        opened: Sessions opened, by endpoint template.
        refused: Upgrade requests refused before the 101, by reason (``not_found``,
            ``denied`` by process_request, ``rate``, ``capacity``, ``per_ip``, ``per_user``).
        closed: Sessions closed, by (close code label, who sent a close frame: ``peer``,
            ``server`` only, or ``none``).
        received: Messages received by endpoints.
        sent: Messages sent by sessions one by one (``session.send``, returned values).
        delivered: Broadcast deliveries (one per member reached).
        broadcasts: Broadcasts (one per message, whatever the number of members).
        fanout: Seconds to hand one broadcast to this process's members.
        slow_consumers: Slow-consumer actions, by policy (``drop``, ``close``).
        recoveries: Rejoins, by outcome (``recovered`` or the reason it was not).
    """

    __slots__ = (
        "_gauges",
        "broadcasts",
        "closed",
        "delivered",
        "fanout",
        "opened",
        "received",
        "recoveries",
        "refused",
        "sent",
        "slow_consumers",
    )

    def __init__(self) -> None:
        self.opened: dict[str, int] = {}
        self.refused: dict[str, int] = {}
        self.closed: dict[tuple[str, str], int] = {}
        self.received = 0
        self.sent = 0
        self.delivered = 0
        self.broadcasts = 0
        self.fanout = Histogram(FANOUT_BUCKETS)
        self.slow_consumers: dict[str, int] = {}
        self.recoveries: dict[str, int] = {}
        self._gauges: list[Callable[[], Iterable[tuple[str, str, str, float]]]] = []

    # ---- counting (the framework's hot paths call these) -------------------------------------

    def count(self, counter: dict[str, int], key: str) -> None:
        """Add one to ``counter[key]``."""
        counter[key] = counter.get(key, 0) + 1

    def count_close(self, code: int, by: str) -> None:
        """A session closed with ``code``; ``by``: who sent a close frame."""
        key = (code_label(code), by)
        self.closed[key] = self.closed.get(key, 0) + 1

    def timed_broadcast(self, started: float, delivered: int) -> None:
        """A broadcast that began at ``started`` (``time.perf_counter()``) reached
        ``delivered`` members."""
        self.fanout.observe(time.perf_counter() - started)
        self.broadcasts += 1
        self.delivered += delivered

    def add_gauges(self, read: Callable[[], Iterable[tuple[str, str, str, float]]]) -> None:
        """Read gauges at each scrape: ``read()`` yields (name, help, labels, value)."""
        self._gauges.append(read)

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
            "Sessions closed, by close code and by who sent a close frame.",
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
        ):
            family(name, "counter", help_text, [f"{name} {value}"])
        family(
            "fullduplex_broadcast_fanout_seconds",
            "histogram",
            "Time to hand one broadcast to this process's members.",
            self.fanout.lines("fullduplex_broadcast_fanout_seconds"),
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
        gauges: dict[str, tuple[str, list[str]]] = {}
        for read in self._gauges:
            for name, help_text, labels, reading in read():
                entry = gauges.setdefault(name, (help_text, []))
                braces = f"{{{labels}}}" if labels else ""
                entry[1].append(f"{name}{braces} {_number(reading)}")
        for name, (help_text, samples) in gauges.items():
            family(name, "gauge", help_text, samples)
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
