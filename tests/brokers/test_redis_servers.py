"""Tests of the test helpers themselves: real redis-server processes, a cluster, the relay."""

from __future__ import annotations

import asyncio
import socket

import pytest
import redis
import redis.asyncio
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.brokers.redis_servers import RedisCluster, RedisServer, Relay, ThreadedRelay
from tests.helpers import seconds

PING = b"*1\r\n$4\r\nPING\r\n"


def sync_client(url: str, socket_timeout: float | None = None) -> redis.Redis:
    """A sync client that does not retry: every failure shows."""
    return redis.Redis.from_url(
        url,
        retry=Retry(NoBackoff(), 0),
        socket_connect_timeout=seconds(2),
        socket_timeout=socket_timeout,
    )


def async_client(url: str, socket_timeout: float | None = None) -> redis.asyncio.Redis:
    """An asyncio client that does not retry: every failure shows."""
    return redis.asyncio.Redis.from_url(
        url,
        retry=AsyncRetry(NoBackoff(), 0),
        socket_connect_timeout=seconds(2),
        socket_timeout=socket_timeout,
    )


# ---- RedisServer ----------------------------------------------------------------------------


async def test_server_answers_ping(redis_server: RedisServer) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    with sync_client(redis_server.url) as client:
        assert client.ping()
    client_a = async_client(redis_server.url)
    try:
        assert await client_a.ping()
        assert (await client_a.config_get("appendonly"))["appendonly"] == "no"
        assert (await client_a.config_get("bind"))["bind"] == "127.0.0.1"
    finally:
        await client_a.aclose()


def test_kill_makes_connections_fail(redis_server: RedisServer) -> None:
    with sync_client(redis_server.url) as client:
        assert client.ping()
        redis_server.kill()
        assert not redis_server.running
        with pytest.raises(redis.ConnectionError):
            client.ping()  # the open connection is gone...
        with pytest.raises(redis.ConnectionError):
            client.ping()  # ...and no new one is accepted
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", redis_server.port), timeout=seconds(1)).close()


def test_restart_without_persistence_starts_empty(redis_server: RedisServer) -> None:
    port, pid = redis_server.port, redis_server.pid
    with sync_client(redis_server.url) as client:
        client.set("key", "value")
        redis_server.kill()
        redis_server.restart()
        assert (redis_server.port, redis_server.running) == (port, True)
        assert redis_server.pid != pid
        assert client.get("key") is None  # the pool reconnects on the same port


def test_restart_with_persistence_keeps_what_was_acknowledged(
    redis_server_aof: RedisServer,
) -> None:
    port = redis_server_aof.port
    with sync_client(redis_server_aof.url) as client:
        assert client.config_get("appendfsync")["appendfsync"] == "always"
        client.set("key", "value")
        client.rpush("list", "a", "b")
        redis_server_aof.kill()  # SIGKILL: no shutdown, no final save
        redis_server_aof.restart()
        assert redis_server_aof.port == port
        assert client.get("key") == b"value"
        assert client.lrange("list", 0, -1) == [b"a", b"b"]


def test_context_manager_stops_and_cleans_up() -> None:
    with RedisServer() as server:
        directory = server.dir
        assert directory is not None
        assert directory.is_dir()
        assert server.running
    assert not server.running
    assert not directory.exists()


# ---- RedisCluster ---------------------------------------------------------------------------


async def test_cluster_is_ok_with_three_masters(redis_cluster: RedisCluster) -> None:
    assert len(redis_cluster.startup_nodes) == 3
    assert redis_cluster.url == redis_cluster.urls[0]
    for url in redis_cluster.urls:
        client = async_client(url)
        try:
            info = await client.cluster("INFO")
            assert info["cluster_state"] == "ok"
            assert int(info["cluster_known_nodes"]) == 3
            assert int(info["cluster_size"]) == 3  # masters serving slots
            nodes = await client.cluster("NODES")
            assert len(nodes) == 3
            assert all("master" in node["flags"] for node in nodes.values())
        finally:
            await client.aclose()


async def test_cluster_client_reaches_every_master(redis_cluster: RedisCluster) -> None:
    cluster = AsyncRedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in redis_cluster.startup_nodes]
    )
    try:
        await cluster.initialize()
        keys = [f"key-{i}" for i in range(30)]
        nodes = [cluster.get_node_from_key(key) for key in keys]
        ports = {node.port for node in nodes if node is not None}
        assert ports == {port for _, port in redis_cluster.startup_nodes}
        for key in keys:
            assert await cluster.set(key, key)
        for key in keys:
            assert await cluster.get(key) == key.encode()
    finally:
        await cluster.aclose()
    # the same through the URL of one master
    cluster = AsyncRedisCluster.from_url(redis_cluster.url)
    try:
        assert await cluster.get("key-0") == b"key-0"
    finally:
        await cluster.aclose()


# ---- Relay ----------------------------------------------------------------------------------


async def test_relay_forwards(redis_server: RedisServer) -> None:
    async with Relay(("127.0.0.1", redis_server.port)) as relay:
        assert relay.url == f"redis://127.0.0.1:{relay.port}/0"
        client = async_client(relay.url)
        try:
            assert await client.set("key", "value")
            assert await client.get("key") == b"value"
            assert (relay.accepted, relay.connections) == (1, 1)
            assert relay.relayed > 0
        finally:
            await client.aclose()


async def test_relay_blackhole_keeps_tcp_open_but_deaf(redis_server: RedisServer) -> None:
    async with Relay(("127.0.0.1", redis_server.port)) as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        try:
            writer.write(PING)
            assert await asyncio.wait_for(reader.readline(), seconds(2)) == b"+PONG\r\n"

            relay.blackhole()
            writer.write(PING)
            await writer.drain()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.read(1), seconds(0.3))  # no reply, no EOF
            assert not reader.at_eof()
            assert relay.connections == 1
            # Redis still holds the relay's connection too (and this one): nothing was closed.
            direct = sync_client(redis_server.url)
            with direct:
                assert len(direct.client_list()) == 2

            # a redis-py client through the blackholed relay times out
            client = async_client(relay.url, socket_timeout=seconds(0.3))
            try:
                with pytest.raises(redis.TimeoutError):
                    await client.ping()
            finally:
                await client.aclose()

            # heal: new connections work again, the blackholed one stays deaf
            relay.heal()
            client = async_client(relay.url)
            try:
                assert await client.ping()
            finally:
                await client.aclose()
            writer.write(PING)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.read(1), seconds(0.3))
        finally:
            writer.close()


async def test_relay_cut_is_a_connection_error(redis_server: RedisServer) -> None:
    async with Relay(("127.0.0.1", redis_server.port)) as relay:
        client = async_client(relay.url)
        try:
            assert await client.ping()
            relay.cut()
            with pytest.raises(redis.ConnectionError):
                await client.ping()
            assert relay.connections == 0
            assert await client.ping()  # the relay still listens: a new connection works
            assert relay.accepted == 2
        finally:
            await client.aclose()


async def test_relay_to_a_dead_target_resets_the_client(redis_server: RedisServer) -> None:
    async with Relay(("127.0.0.1", redis_server.port)) as relay:
        redis_server.kill()
        client = async_client(relay.url)
        try:
            with pytest.raises(redis.ConnectionError):
                await client.ping()
        finally:
            await client.aclose()


def test_relay_only_relays_to_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        Relay(("192.0.2.1", 6379))


def test_threaded_relay(redis_server: RedisServer) -> None:
    relay = ThreadedRelay(("127.0.0.1", redis_server.port))
    with relay, sync_client(relay.url, socket_timeout=seconds(0.3)) as client:
        assert client.ping()
        assert relay.connections == 1
        relay.blackhole()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        relay.heal()
        assert client.ping()  # redis-py dropped the timed-out connection: a new one
        # the sync pool checks an idle connection before use and silently replaces a dead
        # one, so the cut shows on a raw socket: a reset
        raw = socket.create_connection(("127.0.0.1", relay.port), timeout=seconds(2))
        with raw:
            raw.sendall(PING)
            assert raw.recv(100) == b"+PONG\r\n"
            relay.cut()
            assert relay.connections == 0
            with pytest.raises(ConnectionResetError):
                raw.recv(100)
        assert client.ping()
        assert relay.accepted == 4
    assert relay.connections == 0


def test_start_chooses_another_port_when_the_first_is_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.brokers import redis_servers  # noqa: PLC0415 - to patch its port chooser

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port = taken.getsockname()[1]
        choices = iter([taken_port])
        real_free_port = redis_servers._free_port
        monkeypatch.setattr(
            redis_servers, "_free_port", lambda: next(choices, None) or real_free_port()
        )
        with RedisServer() as server:
            assert server.port not in (0, taken_port)
            assert "Address already in use" in server.log()
            with sync_client(server.url) as client:
                assert client.ping()
