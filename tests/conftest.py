"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import echo_server_process


@pytest.fixture(scope="session")
def echo_url() -> Iterator[str]:
    """The ws:// URL of a real ``python -m fullduplex echo`` server on 127.0.0.1, shared."""
    with echo_server_process() as url:
        yield url
