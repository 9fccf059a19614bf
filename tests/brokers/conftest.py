"""Fixtures for the broker tests: real redis-server processes on 127.0.0.1, on free ports.

A missing redis-server is a failure, never a skip: a skipped test must not count as passed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.brokers.redis_servers import RedisCluster, RedisServer, missing_redis_programs

__all__ = ["redis_cluster", "redis_server", "redis_server_aof"]


def _require(*programs: str) -> None:
    """Fail the test, with what to do, when a Redis program is not installed."""
    missing = missing_redis_programs(*programs)
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: the broker tests need a real Redis, Debian's "
            "package redis-server; `make test` installs it (its system-deps step does: run "
            "`make system-deps`)",
            pytrace=False,
        )


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server without persistence: a restart brings it back empty."""
    _require("redis-server")
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_server_aof() -> Iterator[RedisServer]:
    """A fresh redis-server with an fsync-always AOF: kill() then restart() loses nothing."""
    _require("redis-server")
    with RedisServer(persistence=True) as server:
        yield server


class _SharedCluster:
    """The cluster of a test module, replaced by a new one when a test left it broken."""

    def __init__(self) -> None:
        self.cluster: RedisCluster | None = None

    def get(self) -> RedisCluster:
        if self.cluster is not None and not self.cluster.is_ok():
            self.cluster.stop()
            self.cluster = None
        if self.cluster is None:
            cluster = RedisCluster()
            cluster.start()  # stops whatever it started when it fails
            self.cluster = cluster
        return self.cluster

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None


@pytest.fixture(scope="module")
def _shared_redis_cluster() -> Iterator[_SharedCluster]:
    shared = _SharedCluster()
    try:
        yield shared
    finally:
        shared.stop()


@pytest.fixture
def redis_cluster(_shared_redis_cluster: _SharedCluster) -> RedisCluster:
    """A Redis Cluster of three masters, emptied for each test.

    Creating one takes about two seconds, so a test module shares one: each test gets it
    empty, and a test that left it broken (a node killed...) gets it replaced for the next.
    """
    _require("redis-server", "redis-cli")
    cluster = _shared_redis_cluster.get()
    cluster.flushall()
    return cluster
