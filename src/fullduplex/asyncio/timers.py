"""Coarse timers for connection timeouts: many deadlines on one event loop, one asyncio timer.

Every connection has deadlines (opening handshake, keepalive ping and its pong, closing
handshake) that are seconds long and almost always cancelled or moved before they fire. With
``loop.call_later`` each one is a TimerHandle in the loop's heap: allocated, pushed with
comparisons written in Python, and left in the heap when cancelled until it reaches the top
or asyncio purges the heap (once half of it is cancelled). Profiled, those timers took ~12%
of the server's time per handshake.

Here a deadline is rounded up to the next multiple of :data:`RESOLUTION` and put in that tick's
bucket; the loop has one TimerHandle, for the earliest tick that has a bucket. Setting a
deadline is an append to a list, cancelling it sets a field. The price: a callback runs up to
RESOLUTION seconds late, which no network timeout notices; a cancelled deadline stays in its
bucket (a list slot) until its tick. Callbacks run in an empty contextvars context, not in
the context of the code that set the deadline.

On Linux that one timer is not even the loop's: it is a timerfd, which the loop watches like a
socket. A loop with any timer of its own passes a timeout to every epoll_wait, and the kernel
arms and disarms a high-resolution timer for each call: profiled, ~7% of a server's time on
one connection's round trips (picows has no timers there). A timerfd is armed only when the
earliest deadline changes, and epoll_wait waits without a timeout. Elsewhere (or if the loop
cannot watch it) the loop's own call_at does the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ctypes
import heapq
import math
import os
import sys
import weakref
from collections.abc import Callable
from typing import Final

__all__ = ["RESOLUTION", "Deadline", "Timers", "timers_for"]

#: How late a callback may run, in seconds: deadlines are rounded up to a multiple of this.
RESOLUTION: Final = 0.05
# Longer delays (infinity included) are this long: ~31 years, far beyond any timeout.
_MAX_DELAY: Final = 2.0**30


class Deadline:
    """One scheduled callback; :meth:`cancel` stops it from running."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[], object]) -> None:
        #: What runs at the deadline; None once it ran or was cancelled.
        self.callback: Callable[[], object] | None = callback

    def cancel(self) -> None:
        """Do not run the callback (a no-op once it ran)."""
        self.callback = None


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _Itimerspec(ctypes.Structure):
    _fields_ = (("it_interval", _Timespec), ("it_value", _Timespec))


class _TimerFD:
    """A one-shot Linux timerfd (timerfd_create(2)), through ctypes (os has it from 3.13 only)."""

    _CLOCK_MONOTONIC = 1
    _TFD_NONBLOCK = os.O_NONBLOCK
    _TFD_CLOEXEC = os.O_CLOEXEC
    _libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None

    def __init__(self) -> None:
        libc = self._libc
        if libc is None:
            raise OSError("timerfd is Linux-only")
        fd: int = libc.timerfd_create(self._CLOCK_MONOTONIC, self._TFD_NONBLOCK | self._TFD_CLOEXEC)
        if fd < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))
        self.fd = fd
        self._spec = _Itimerspec()

    def set(self, delay: float) -> None:
        """Fire once, ``delay`` seconds from now (at once if it is not positive)."""
        value = self._spec.it_value
        if delay <= 0:
            value.tv_sec, value.tv_nsec = 0, 1  # zero would disarm it
        else:
            seconds = int(delay)
            value.tv_sec, value.tv_nsec = seconds, int((delay - seconds) * 1e9) or 1
        assert self._libc is not None
        if self._libc.timerfd_settime(self.fd, 0, ctypes.byref(self._spec), None) < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))

    def clear(self) -> None:
        """Consume the expiration, so that the fd stops being readable."""
        with contextlib.suppress(BlockingIOError):  # already consumed
            os.read(self.fd, 8)


class Timers:
    """The deadlines of one event loop (see the module doc). Use :func:`timers_for`."""

    __slots__ = (
        "__weakref__",
        "_armed",
        "_buckets",
        "_handle",
        "_loop",
        "_ticks",
        "_timerfd",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weak: the loop holds this object (through its reader callback), not the reverse, so
        # that a loop nobody uses any more is freed, and its timerfd closed.
        self._loop = weakref.ref(loop)
        # Tick number (deadline / RESOLUTION, rounded up) -> the deadlines due then.
        self._buckets: dict[int, list[Deadline]] = {}
        # The ticks that have a bucket, as a heap of ints (compared in C).
        self._ticks: list[int] = []
        # The tick the timer is armed for, 0 when it is not armed.
        self._armed = 0
        # The loop's timer, when it is the loop's call_at rather than a timerfd.
        self._handle: asyncio.TimerHandle | None = None
        self._timerfd: _TimerFD | None = None
        try:
            timerfd = _TimerFD()
        except (OSError, AttributeError):  # not Linux, or no timerfd in this libc
            return
        try:
            # The reader's handle copies the current context: an empty one, so that callbacks
            # do not run in whichever context created the first connection.
            contextvars.Context().run(loop.add_reader, timerfd.fd, self._timerfd_fired)
        except (NotImplementedError, OSError):  # e.g. a proactor loop
            os.close(timerfd.fd)
            return
        except BaseException:
            os.close(timerfd.fd)
            raise
        self._timerfd = timerfd
        weakref.finalize(self, os.close, timerfd.fd)

    def call_later(self, delay: float, callback: Callable[[], object]) -> Deadline:
        """Run ``callback()`` in ``delay`` seconds, or up to RESOLUTION seconds later."""
        loop = self._loop()
        assert loop is not None  # only called by the loop's own connections
        if not delay < _MAX_DELAY:  # also true of NaN
            delay = _MAX_DELAY
        tick = math.ceil((loop.time() + delay) / RESOLUTION)
        deadline = Deadline(callback)
        bucket = self._buckets.get(tick)
        if bucket is not None:
            bucket.append(deadline)
            return deadline
        if not self._armed or tick < self._armed:
            self._arm(loop, tick)  # first: if it fails, nothing is left behind
        self._buckets[tick] = [deadline]
        heapq.heappush(self._ticks, tick)
        return deadline

    def _arm(self, loop: asyncio.AbstractEventLoop, tick: int) -> None:
        self._armed = tick
        if self._timerfd is not None:
            self._timerfd.set(tick * RESOLUTION - loop.time())
            return
        if self._handle is not None:
            self._handle.cancel()
        self._handle = loop.call_at(tick * RESOLUTION, self._run, context=contextvars.Context())

    def _timerfd_fired(self) -> None:
        assert self._timerfd is not None
        self._timerfd.clear()
        self._run()

    def _run(self) -> None:
        """Run every deadline of the ticks that are due; arm the timer for the next one."""
        loop = self._loop()
        if loop is None:
            return
        self._handle = None
        # A timer may fire a hair before its time (within the clock's resolution): the armed
        # tick is due even if the clock has not quite reached it.
        due = max(self._armed, math.floor(loop.time() / RESOLUTION))
        self._armed = 0
        ticks = self._ticks
        try:
            while ticks and ticks[0] <= due:
                tick = heapq.heappop(ticks)
                bucket = self._buckets.pop(tick)
                for index, deadline in enumerate(bucket):
                    callback = deadline.callback
                    if callback is None:
                        continue
                    deadline.callback = None
                    try:
                        callback()
                    except Exception as exc:  # one failing callback must not stop the others
                        loop.call_exception_handler(
                            {
                                "message": "exception in a fullduplex timer callback",
                                "exception": exc,
                            }
                        )
                    except BaseException:
                        # KeyboardInterrupt, SystemExit: the rest of the bucket still runs,
                        # at the next tick.
                        rest = bucket[index + 1 :]
                        if rest:
                            self._buckets.setdefault(tick, []).extend(rest)
                            if tick not in ticks:
                                heapq.heappush(ticks, tick)
                        raise
        finally:
            # A callback may have armed the timer (for a new deadline) already.
            if ticks and (not self._armed or ticks[0] < self._armed):
                self._arm(loop, ticks[0])


_ATTRIBUTE: Final = "_fullduplex_timers"
# For loops that take no attribute (none known: asyncio's and uvloop's both do). A loop in it
# lives as long as a pending deadline's callback refers to it.
_timers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Timers] = weakref.WeakKeyDictionary()


def timers_for(loop: asyncio.AbstractEventLoop) -> Timers:
    """Return the Timers of ``loop``, created on first use (from the loop's thread).

    They are an attribute of the loop, not an entry of a global table: pending deadlines refer
    to connections, which refer to the loop, so a table would keep alive every loop dropped
    with a deadline pending; as an attribute they make a cycle that the garbage collector
    frees, closing the timerfd.
    """
    timers: Timers | None = getattr(loop, _ATTRIBUTE, None)
    if timers is None:
        timers = _timers.get(loop)
    if timers is None:
        timers = Timers(loop)
        try:
            setattr(loop, _ATTRIBUTE, timers)
        except AttributeError:
            _timers[loop] = timers
    return timers
