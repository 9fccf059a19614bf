"""Fixtures of the interop tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# The tests live in suite.py (shared by the test modules): have pytest explain its asserts.
pytest.register_assert_rewrite("tests.interop.suite")

from tests.interop.suite import SubprocessServers  # noqa: E402


@pytest.fixture(scope="module")
def servers() -> Iterator[SubprocessServers]:
    """Subprocess servers (Node's, fullduplex's CLI) shared by the tests of one module."""
    shared = SubprocessServers()
    try:
        yield shared
    finally:
        shared.close()
