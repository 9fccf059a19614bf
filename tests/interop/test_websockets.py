"""Interop with Python's websockets: fullduplex's server with websockets' client, and
fullduplex's client with websockets' server (``websockets.asyncio.server.serve``, in-process).

The Node-websockets control pairs in test_node_ws.py validate the peers and the tests.
"""

from __future__ import annotations

import pytest

from tests.interop.suite import InteropSuite, Pair

pytestmark = pytest.mark.interop


@pytest.fixture(
    params=[
        Pair("websockets", "fullduplex").param(),
        Pair("fullduplex", "websockets").param(),
    ]
)
def pair(request: pytest.FixtureRequest) -> Pair:
    """The (client, server) implementations of one run."""
    value: Pair = request.param
    return value


class TestWebsockets(InteropSuite):
    """Every interop test, for each pair above."""
