"""Interop with Node's ``ws`` (tests/interop/node/): fullduplex's server with ws's client, and
fullduplex's client with ws's server.

The control pairs put Python's websockets in fullduplex's place: they pass whatever the state of
fullduplex, and prove that the Node peers and the tests are right.
"""

from __future__ import annotations

import pytest

from tests.interop.suite import InteropSuite, Pair

pytestmark = pytest.mark.interop


@pytest.fixture(
    params=[
        Pair("node", "fullduplex").param(),
        Pair("fullduplex", "node").param(),
        Pair("node", "websockets").param(control=True),
        Pair("websockets", "node").param(control=True),
    ]
)
def pair(request: pytest.FixtureRequest) -> Pair:
    """The (client, server) implementations of one run."""
    value: Pair = request.param
    return value


class TestNodeWs(InteropSuite):
    """Every interop test, for each pair above."""
