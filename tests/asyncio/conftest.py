"""Fixtures for the asyncio tests: a real echo server on 127.0.0.1, on a free port."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator, Callable

import pytest

from fullduplex.asyncio.server import Server, serve
from tests.asyncio.utils import echo

__all__ = ["echo_server", "pytest_asyncio_loop_factories"]


@pytest.fixture
async def echo_server() -> AsyncIterator[Server]:
    """An echo server with default options; closed after the test."""
    async with serve(echo, "127.0.0.1", 0) as server:
        yield server


def _aiofastnet_loop() -> asyncio.AbstractEventLoop:
    """asyncio's loop, its create_server / create_connection patched to aiofastnet's."""
    import aiofastnet  # noqa: PLC0415 - optional

    loop = asyncio.new_event_loop()
    aiofastnet.patch_loop(loop)
    return loop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Run every asyncio test on asyncio's own loop, on that loop with aiofastnet's transports
    and on uvloop's: their transports differ (uvloop's and aiofastnet's do not even subclass
    asyncio.Transport)."""
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    if item.get_closest_marker("asyncio_loop_only") is not None:
        return factories
    if importlib.util.find_spec("aiofastnet") is not None:  # in the test extras
        factories["aiofastnet"] = _aiofastnet_loop
    try:
        import uvloop  # noqa: PLC0415 - optional
    except ImportError:  # pragma: no cover - uvloop is in the test extras
        pass
    else:
        factories["uvloop"] = uvloop.new_event_loop
    return factories
