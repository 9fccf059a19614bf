"""Coarse timers: deadlines rounded up to RESOLUTION, one asyncio timer per loop."""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import sys
import weakref
from typing import Any

import pytest

from fullduplex.asyncio import timers as timers_module
from fullduplex.asyncio.timers import RESOLUTION, Timers, timers_for

# How late a callback may run on a busy test machine, beyond the rounding.
SLACK = 0.5


async def test_callbacks_run_in_deadline_order_never_early() -> None:
    loop = asyncio.get_running_loop()
    timers = Timers(loop)
    ran: list[tuple[str, float]] = []
    start = loop.time()
    for name, delay in (("c", 0.15), ("a", 0.01), ("b", 0.08), ("a2", 0.01)):
        timers.call_later(delay, lambda name=name: ran.append((name, loop.time() - start)))
    await asyncio.sleep(0.15 + RESOLUTION + SLACK)
    assert [name for name, _ in ran] == ["a", "a2", "b", "c"]
    delays = {"a": 0.01, "a2": 0.01, "b": 0.08, "c": 0.15}
    for name, elapsed in ran:
        # Never early (the loop clock may run a hair ahead of the deadline's rounding).
        assert elapsed >= delays[name] - 0.002, (name, elapsed)
        assert elapsed <= delays[name] + RESOLUTION + SLACK, (name, elapsed)


async def test_a_cancelled_deadline_does_not_run() -> None:
    timers = Timers(asyncio.get_running_loop())
    ran: list[str] = []
    timers.call_later(0.01, lambda: ran.append("kept"))
    timers.call_later(0.01, lambda: ran.append("cancelled")).cancel()
    late = timers.call_later(0.2, lambda: ran.append("late"))
    await asyncio.sleep(RESOLUTION * 2 + 0.05)
    late.cancel()
    await asyncio.sleep(0.2 + RESOLUTION)
    assert ran == ["kept"]


@pytest.mark.parametrize("timerfd", [True, False], ids=["timerfd", "call_at"])
async def test_many_deadlines_need_at_most_one_loop_timer(
    timerfd: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not timerfd:
        monkeypatch.setattr(timers_module._TimerFD, "_libc", None)  # as on macOS or Windows
    loop = asyncio.get_running_loop()
    armed: list[float] = []
    original = loop.call_at

    def counting_call_at(
        when: float, callback: Any, *args: Any, **kwargs: Any
    ) -> asyncio.TimerHandle:
        armed.append(when)
        return original(when, callback, *args, **kwargs)

    loop.call_at = counting_call_at  # type: ignore[method-assign,assignment]
    try:
        timers = Timers(loop)
        assert (timers._timerfd is not None) is (timerfd and sys.platform == "linux")
        ran: list[int] = []
        for i in range(1000):
            timers.call_later(0.05 + (i % 3) * 0.001, functools.partial(ran.append, i))
        # The 1,000 deadlines share one loop timer, or none at all with a timerfd (so that
        # the loop's epoll_wait calls need no timeout).
        assert len(armed) == (0 if timers._timerfd is not None else 1)
        await asyncio.sleep(0.05 + RESOLUTION + SLACK)
        assert sorted(ran) == list(range(1000))
    finally:
        del loop.call_at  # back to the class's method


@pytest.mark.skipif(sys.platform != "linux", reason="timerfd is Linux-only")
def test_a_timerfd_leaves_asyncios_timer_heap_empty() -> None:
    async def check() -> None:
        loop = asyncio.get_running_loop()
        timers = Timers(loop)
        assert timers._timerfd is not None
        ran: list[str] = []
        timers.call_later(0.02, lambda: ran.append("ran"))
        assert not loop._scheduled  # type: ignore[attr-defined]
        await asyncio.sleep(0.02 + RESOLUTION + SLACK)
        assert ran == ["ran"]

    asyncio.run(check())


def test_a_timers_loop_is_freed_with_its_timerfd() -> None:
    loop = asyncio.new_event_loop()
    timers = timers_for(loop)
    fd = timers._timerfd.fd if timers._timerfd is not None else None
    loop.close()
    loop_ref = weakref.ref(loop)
    del loop, timers
    gc.collect()
    assert loop_ref() is None  # its Timers did not keep it alive
    if fd is not None:
        with pytest.raises(OSError):
            os.fstat(fd)  # closed


async def test_an_earlier_deadline_rearms_the_loop_timer() -> None:
    loop = asyncio.get_running_loop()
    timers = Timers(loop)
    ran: list[str] = []
    start = loop.time()
    timers.call_later(5.0, lambda: ran.append("later"))
    timers.call_later(0.01, lambda: ran.append("sooner"))
    await asyncio.sleep(RESOLUTION * 2 + 0.05)
    assert ran == ["sooner"]
    assert loop.time() - start < 5.0


async def test_a_failing_callback_is_reported_and_the_others_still_run() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    timers = Timers(loop)
    ran: list[str] = []

    def fail() -> None:
        raise RuntimeError("boom")

    timers.call_later(0.01, fail)
    timers.call_later(0.01, lambda: ran.append("after"))
    await asyncio.sleep(RESOLUTION * 2 + 0.05)
    assert ran == ["after"]
    (context,) = reported
    assert isinstance(context["exception"], RuntimeError)


async def test_a_callback_may_set_a_new_deadline() -> None:
    timers = Timers(asyncio.get_running_loop())
    ran: list[str] = []

    def first() -> None:
        ran.append("first")
        timers.call_later(0, lambda: ran.append("second"))

    timers.call_later(0.01, first)
    await asyncio.sleep(RESOLUTION * 3 + 0.1)
    assert ran == ["first", "second"]


async def test_one_timers_object_per_loop() -> None:
    loop = asyncio.get_running_loop()
    assert timers_for(loop) is timers_for(loop)
    other = asyncio.new_event_loop()
    try:
        assert timers_for(other) is not timers_for(loop)
    finally:
        other.close()
