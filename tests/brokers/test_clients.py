"""The redis-py clients of broker URLs (:mod:`fullduplex.brokers.clients`)."""

from __future__ import annotations

import re
import warnings

import pytest
import redis.asyncio
import redis.asyncio.retry

from fullduplex.brokers import clients


class TestNoRetry:
    @pytest.mark.parametrize(
        "url", ["redis://127.0.0.1:1/0", "redis+cluster://127.0.0.1:1"], ids=["one", "cluster"]
    )
    def test_command_client_has_an_asyncio_retry_of_zero_and_no_warning(self, url: str) -> None:
        """redis-py warns (a UserWarning per client) when an asyncio client is given a
        synchronous ``redis.retry.Retry``; the clients are given the asyncio one. Nothing
        connects: port 1 is never dialled by creating a client."""
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            client = clients.async_client(url, timeout=1.0)
        # A RedisCluster keeps its retry as an attribute; a Redis answers get_retry().
        cluster = isinstance(client, redis.asyncio.RedisCluster)
        retry = client.retry if cluster else client.get_retry()
        assert isinstance(retry, redis.asyncio.retry.Retry)
        assert retry.get_retries() == 0

    def test_pubsub_client_has_an_asyncio_retry_of_zero_and_no_warning(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            client = clients.async_node_client(
                "redis://127.0.0.1:1/0", connect_timeout=1.0, host="127.0.0.1", port=2
            )
        retry = client.get_retry()
        assert isinstance(retry, redis.asyncio.retry.Retry)
        assert retry.get_retries() == 0
        assert client.connection_pool.connection_kwargs["port"] == 2


class TestSplitUrl:
    def test_cluster_schemes_become_plain_ones(self) -> None:
        assert clients.split_url("redis+cluster://h:7000") == ("redis://h:7000", True)
        assert clients.split_url("rediss+cluster://h:7000") == ("rediss://h:7000", True)
        assert clients.split_url("redis://h:6379/0") == ("redis://h:6379/0", False)

    def test_other_schemes_are_refused(self) -> None:
        with pytest.raises(ValueError, match="not a Redis URL"):
            clients.split_url("http://h:6379")

    @pytest.mark.parametrize(
        ("url", "why"),
        [
            ("redis://h:port/0", "Port could not be cast"),
            ("redis://h:65536/0", "Port out of range"),
            ("redis://h:6379/zero", "the database must be a number"),
            ("rediss+cluster://h:x", "Port could not be cast"),
        ],
    )
    def test_invalid_urls_are_refused_before_any_connection(self, url: str, why: str) -> None:
        with pytest.raises(ValueError, match=f"invalid Redis URL {re.escape(repr(url))}: {why}"):
            clients.split_url(url)

    def test_a_unix_socket_path_is_not_a_database(self) -> None:
        assert clients.split_url("unix:///run/redis/redis.sock") == (
            "unix:///run/redis/redis.sock",
            False,
        )
