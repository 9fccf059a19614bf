"""Coarse timers: deadlines rounded up to RESOLUTION, one asyncio timer per loop."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

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


async def test_many_deadlines_use_one_loop_timer() -> None:
    loop = asyncio.get_running_loop()
    timers = Timers(loop)
    armed: list[float] = []
    original = loop.call_at

    def counting_call_at(
        when: float, callback: Any, *args: Any, **kwargs: Any
    ) -> asyncio.TimerHandle:
        armed.append(when)
        return original(when, callback, *args, **kwargs)

    loop.call_at = counting_call_at  # type: ignore[method-assign,assignment]
    try:
        ran: list[int] = []
        for i in range(1000):
            timers.call_later(0.05 + (i % 3) * 0.001, functools.partial(ran.append, i))
        assert len(armed) == 1  # the 1,000 deadlines share one loop timer
        await asyncio.sleep(0.05 + RESOLUTION + SLACK)
        assert sorted(ran) == list(range(1000))
    finally:
        del loop.call_at  # back to the class's method


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
