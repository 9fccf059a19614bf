"""Fixtures for the app tests: every asyncio test runs on asyncio's loop and on uvloop's."""

from __future__ import annotations

from tests.asyncio.conftest import pytest_asyncio_loop_factories

__all__ = ["pytest_asyncio_loop_factories"]
