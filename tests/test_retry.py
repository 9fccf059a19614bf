"""Tests for fullduplex/retry.py's Reconnection: the schedule both reconnecting loops share."""

from __future__ import annotations

import logging

import pytest

from fullduplex.exceptions import InvalidStatus
from fullduplex.retry import Reconnection

__all__: list[str] = []


def _schedule() -> Reconnection:
    return Reconnection((1.0, 2.0, 4.0), "ws://example/", logging.getLogger("test.retry"))


def test_no_wait_before_the_first_attempt() -> None:
    assert _schedule().delay == 0.0


def test_failures_back_off_within_growing_bounds() -> None:
    schedule = _schedule()
    bounds = [1.0, 2.0, 4.0, 4.0]
    for bound in bounds:
        schedule.failed(ConnectionRefusedError())
        assert 0.0 <= schedule.delay <= bound


def test_a_final_failure_is_raised_as_it_is() -> None:
    schedule = _schedule()
    refused = InvalidStatus(403)
    with pytest.raises(InvalidStatus) as info:
        schedule.failed(refused)
    assert info.value is refused
    assert schedule.delay == 0.0


def test_reconnecting_starts_a_fresh_sequence(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="test.retry")
    schedule = _schedule()
    for _ in range(5):
        schedule.failed(OSError("down"))
    schedule.reconnecting()
    assert schedule.delay <= 1.0  # the first bound again, not the grown one
    messages = [record.getMessage() for record in caplog.records]
    assert sum("retrying in" in message for message in messages) == 5
    assert "reconnecting in" in messages[-1]
