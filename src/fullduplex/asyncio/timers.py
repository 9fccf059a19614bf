"""Coarse timers for connection timeouts: many deadlines on one event loop, one asyncio timer.

Every connection has deadlines (opening handshake, keepalive ping and its pong, closing
handshake) that are seconds long and almost always cancelled or moved before they fire. With
``loop.call_later`` each one is a TimerHandle in the loop's heap: allocated, pushed with
comparisons written in Python, and left in the heap when cancelled until its time comes (a
server that accepts 7,000 connections a second keeps ~70,000 of them there with a 10 s open
timeout). Profiled, those timers took ~12% of the server's time per handshake.

Here a deadline is rounded up to the next multiple of :data:`RESOLUTION` and put in that tick's
bucket; the loop has one TimerHandle, for the earliest tick that has a bucket. Setting a
deadline is an append to a list, cancelling it sets a field. The price: a callback runs up to
RESOLUTION seconds late, which no network timeout notices.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import weakref
from collections.abc import Callable
from typing import Final

__all__ = ["RESOLUTION", "Deadline", "Timers", "timers_for"]

#: How late a callback may run, in seconds: deadlines are rounded up to a multiple of this.
RESOLUTION: Final = 0.05


class Deadline:
    """One scheduled callback; :meth:`cancel` stops it from running."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[], object]) -> None:
        #: What runs at the deadline; None once it ran or was cancelled.
        self.callback: Callable[[], object] | None = callback

    def cancel(self) -> None:
        """Do not run the callback (a no-op once it ran)."""
        self.callback = None


class Timers:
    """The deadlines of one event loop (see the module doc). Use :func:`timers_for`."""

    __slots__ = ("__weakref__", "_armed", "_buckets", "_handle", "_loop", "_ticks")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # Tick number (deadline / RESOLUTION, rounded up) -> the deadlines due then.
        self._buckets: dict[int, list[Deadline]] = {}
        # The ticks that have a bucket, as a heap of ints (compared in C).
        self._ticks: list[int] = []
        # The loop's timer for the earliest tick, and that tick.
        self._handle: asyncio.TimerHandle | None = None
        self._armed = 0

    def call_later(self, delay: float, callback: Callable[[], object]) -> Deadline:
        """Run ``callback()`` in ``delay`` seconds, or up to RESOLUTION seconds later."""
        tick = math.ceil((self._loop.time() + delay) / RESOLUTION)
        deadline = Deadline(callback)
        bucket = self._buckets.get(tick)
        if bucket is not None:
            bucket.append(deadline)
            return deadline
        self._buckets[tick] = [deadline]
        heapq.heappush(self._ticks, tick)
        if self._handle is None or tick < self._armed:
            self._arm(tick)
        return deadline

    def _arm(self, tick: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed = tick
        self._handle = self._loop.call_at(tick * RESOLUTION, self._run)

    def _run(self) -> None:
        """Run every deadline of the ticks that are due; arm the timer for the next one."""
        self._handle = None
        # The loop may run its timer a hair before its time (within its clock resolution):
        # the armed tick is due even if the clock has not quite reached it.
        due = max(self._armed, math.floor(self._loop.time() / RESOLUTION))
        ticks = self._ticks
        while ticks and ticks[0] <= due:
            for deadline in self._buckets.pop(heapq.heappop(ticks)):
                callback = deadline.callback
                if callback is None:
                    continue
                deadline.callback = None
                try:
                    callback()
                except Exception as exc:  # one failing callback must not stop the others
                    self._loop.call_exception_handler(
                        {"message": "exception in a fullduplex timer callback", "exception": exc}
                    )
        if ticks and self._handle is None:
            self._arm(ticks[0])


_timers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Timers] = weakref.WeakKeyDictionary()


def timers_for(loop: asyncio.AbstractEventLoop) -> Timers:
    """Return the Timers of ``loop``, created on first use."""
    timers = _timers.get(loop)
    if timers is None:
        timers = _timers[loop] = Timers(loop)
    return timers
