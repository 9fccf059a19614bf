"""Fixtures for the thread-based client's tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.helpers import seconds


@pytest.fixture(autouse=True)
def no_thread_left() -> Iterator[None]:
    """Fail a test that leaves a thread of its own running: reader threads included."""
    before = set(threading.enumerate())
    yield
    left = []
    for thread in set(threading.enumerate()) - before:
        thread.join(seconds(5))
        if thread.is_alive():
            left.append(thread.name)
    assert not left, f"threads still running: {left}"
