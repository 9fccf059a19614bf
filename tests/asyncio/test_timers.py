"""Coarse timers: deadlines rounded up to RESOLUTION, one asyncio timer per loop."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import os
import sys
import weakref
from typing import Any

import pytest

from fullduplex.asyncio import timers as timers_module
from fullduplex.asyncio.client import connect
from fullduplex.asyncio.server import serve
from fullduplex.asyncio.timers import RESOLUTION, Timers, timers_for
from tests.helpers import seconds

# How late a callback may run on a busy test machine, beyond the rounding.
SLACK = seconds(0.5)


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


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(sys.platform != "linux", reason="counts /proc/self/fd")
def test_loops_dropped_with_pending_deadlines_are_freed() -> None:
    async def leave_a_deadline_pending() -> None:
        loop = asyncio.get_running_loop()
        # The callback refers to the loop, as a connection's keepalive does.
        timers_for(loop).call_later(60, loop.stop)

    async def leave_connections_open() -> None:
        # A callback-style server and a client still open when the loop ends: their keepalive
        # and the server's open deadlines are pending.
        server = await serve(lambda ws: None, "127.0.0.1", 0)
        await connect(f"ws://127.0.0.1:{server.port}")

    for scenario in (leave_a_deadline_pending, leave_connections_open):
        asyncio.run(scenario())  # warm-up: imports, caches
        gc.collect()
        before = _open_fds()
        refs: list[weakref.ref[asyncio.AbstractEventLoop]] = []
        for _ in range(3):
            loop = asyncio.new_event_loop()
            refs.append(weakref.ref(loop))
            try:
                loop.run_until_complete(scenario())
            finally:
                loop.close()
            del loop
        gc.collect()
        assert [ref() for ref in refs] == [None, None, None], scenario.__name__
        assert _open_fds() <= before, scenario.__name__  # timerfds and sockets closed


async def test_callbacks_run_in_an_empty_context() -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    request_id.set("first")
    loop = asyncio.get_running_loop()
    timers = Timers(loop)
    seen: list[str] = []
    timers.call_later(0.01, lambda: seen.append(request_id.get("none")))
    await asyncio.sleep(RESOLUTION * 2 + SLACK)
    assert seen == ["none"]


async def test_a_base_exception_loses_no_deadline() -> None:
    loop = asyncio.get_running_loop()
    timers = Timers(loop)
    ran: list[str] = []

    def interrupt() -> None:
        raise KeyboardInterrupt

    timers.call_later(0.01, interrupt)
    timers.call_later(0.01, lambda: ran.append("same tick"))
    timers.call_later(0.3, lambda: ran.append("later tick"))
    with pytest.raises(KeyboardInterrupt):
        timers._run()  # as the loop would, once the tick is due
    # The loop itself would stop here; the timers must still run everything else.
    await asyncio.sleep(0.3 + RESOLUTION + SLACK)
    assert ran == ["same tick", "later tick"]


async def test_an_infinite_delay_is_accepted_and_never_runs() -> None:
    timers = Timers(asyncio.get_running_loop())
    ran: list[str] = []
    timers.call_later(float("inf"), lambda: ran.append("inf"))
    timers.call_later(0.01, lambda: ran.append("soon"))
    await asyncio.sleep(RESOLUTION * 2 + SLACK)
    assert ran == ["soon"]


async def test_a_loop_that_cannot_watch_a_timerfd_gets_call_at(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()

    def refuse(*args: object) -> None:
        raise NotImplementedError  # as a proactor loop does

    monkeypatch.setattr(loop, "add_reader", refuse)
    timers = Timers(loop)
    monkeypatch.undo()
    assert timers._timerfd is None
    ran: list[str] = []
    timers.call_later(0.01, lambda: ran.append("ran"))
    await asyncio.sleep(RESOLUTION * 2 + SLACK)
    assert ran == ["ran"]
