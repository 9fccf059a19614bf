"""Fixtures and case bookkeeping for the conformance suite.

The suite targets ``python -m fullduplex echo`` by default. With
``FULLDUPLEX_CONFORMANCE_TARGET=websockets`` it targets a `websockets` echo server instead
(tests/conformance/reference_server.py), which is how the suite itself is validated; with
``FULLDUPLEX_CONFORMANCE_TARGET=nginx`` it targets ``fullduplex echo`` behind a real nginx
configured by ``fullduplex proxy-config`` (tests/test_proxy_config.py runs it that way).

Every case carries ``@pytest.mark.case("<id>")`` (ids follow the Autobahn TestSuite numbering
where a case has an Autobahn counterpart). A case listed in the deviations of the current
target is marked ``xfail(strict=True)``: an unexpected pass fails too, so the list never rots.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from tests.conformance.checks import Connect
from tests.conformance.rawclient import RawClient
from tests.helpers import echo_server_process, stop_process
from tests.reverse_proxies import nginx_in_front

__all__ = [
    "EXPECTED_DEVIATIONS",
    "NGINX_DEVIATIONS",
    "REFERENCE_DEVIATIONS",
    "TARGET",
    "server_process",
]

TARGET = os.environ.get("FULLDUPLEX_CONFORMANCE_TARGET", "fullduplex")

# Cases where fullduplex knowingly deviates from the expectation written in the case, with why.
# Add an entry only after discussing it: a failing case is a server bug until shown otherwise.
EXPECTED_DEVIATIONS: dict[str, str] = {}

# Where `websockets` 17 (the reference used to validate this suite) differs from the strict
# reading these cases assert. They are facts about websockets, not targets for fullduplex.
_NOT_FAIL_FAST = (
    "validates UTF-8 only once the whole message is assembled (asyncio/messages.py), so an "
    "invalid fragment is reported after the last fragment, not before"
)
_MULTILINE_426 = "the 426 body adds a second paragraph about browsers (not one line)"
REFERENCE_DEVIATIONS: dict[str, str] = {
    "6.4.1": _NOT_FAIL_FAST,
    "6.4.2": _NOT_FAIL_FAST,
    "6.4.3": _NOT_FAIL_FAST,
    "6.4.4": _NOT_FAIL_FAST,
    "6.4.5": _NOT_FAIL_FAST,
    "6.4.6": _NOT_FAIL_FAST,
    "7.1.6": "answers a close inside a fragmented message with 1002 'incomplete fragmented "
    "message' (RFC 6455 5.4 allows control frames between fragments)",
    "9.1.7": "counts a ping between fragments against max_size (1009 before the pong)",
    "H.7": _MULTILINE_426,
    "H.8": _MULTILINE_426,
    "H.9": _MULTILINE_426,
    "H.10": "accepts an upgrade request without a Host header",
    "H.11": "answers Sec-WebSocket-Version: 8 with 400 and no Sec-WebSocket-Version header "
    "(RFC 6455 4.4 wants one, e.g. with 426)",
}

# What nginx in front changes: the configuration `fullduplex proxy-config nginx` prints (the
# nginx documentation's) rewrites some requests or answers them itself. Facts about nginx.
NGINX_DEVIATIONS: dict[str, str] = {
    "H.8": "the Upgrade/Connection map sends 'Connection: upgrade' upstream whenever the "
    "client sent Upgrade, so a request with 'Connection: keep-alive' is upgraded",
    "H.10": "nginx answers a request without Host itself, with its HTML 400 page",
    "H.14": "nginx speaks HTTP/1.1 upstream (proxy_http_version 1.1), so an HTTP/1.0 "
    "upgrade request is upgraded",
}


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``case`` marker (the project runs with --strict-markers)."""
    config.addinivalue_line("markers", "case(case_id): a conformance case, by its id")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the current target's deviations xfail(strict=True); refuse duplicate case ids."""
    deviations = {
        "fullduplex": EXPECTED_DEVIATIONS,
        "nginx": NGINX_DEVIATIONS,
    }.get(TARGET, REFERENCE_DEVIATIONS)
    seen: dict[str, str] = {}
    for item in items:
        marker = item.get_closest_marker("case")
        if marker is None:
            continue
        case_id = str(marker.args[0])
        if case_id in seen and seen[case_id] != item.nodeid:
            raise pytest.UsageError(f"case {case_id} used by {seen[case_id]} and {item.nodeid}")
        seen[case_id] = item.nodeid
        if case_id in deviations:
            item.add_marker(
                pytest.mark.xfail(reason=f"{TARGET}: {deviations[case_id]}", strict=True)
            )


_URL_LINE = re.compile(rb"(wss?://[^\s]+)")
_REFERENCE = Path(__file__).with_name("reference_server.py")


@contextmanager
def _reference_server_process(*args: str) -> Iterator[str]:
    """Run the websockets reference echo server like ``echo_server_process`` runs ours."""
    proc = subprocess.Popen(
        [sys.executable, str(_REFERENCE), "--host", "127.0.0.1", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        match = _URL_LINE.search(proc.stdout.readline())
        if match is None:
            raise RuntimeError("the reference server did not print its URL")
        yield match.group(1).decode().rstrip("/")
    finally:
        stop_process(proc)


@contextmanager
def _behind_nginx(*args: str) -> Iterator[str]:
    """``fullduplex echo ARGS`` behind nginx (every path); yields the URL through nginx."""
    with (
        echo_server_process(*args) as url,
        tempfile.TemporaryDirectory() as runtime,
        nginx_in_front(Path(runtime), int(url.rpartition(":")[2]), path="/") as port,
    ):
        yield f"ws://127.0.0.1:{port}"


def server_process(*args: str) -> AbstractContextManager[str]:
    """Start the echo server under test with CLI ``args``; yields its ws:// URL."""
    if TARGET == "fullduplex":
        return echo_server_process(*args)
    if TARGET == "nginx":
        return _behind_nginx(*args)
    if TARGET == "websockets":
        return _reference_server_process(*args)
    raise pytest.UsageError(f"unknown FULLDUPLEX_CONFORMANCE_TARGET {TARGET!r}")


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """A fresh echo server per test module (default options), so a crash stays local."""
    with server_process() as url:
        yield url


@pytest.fixture(scope="module")
def limited_url() -> Iterator[str]:
    """An echo server started with ``--max-message-size 65536``."""
    with server_process("--max-message-size", "65536") as url:
        yield url


@pytest.fixture
def connect(request: pytest.FixtureRequest) -> Iterator[Connect]:
    """Factory: ``connect(url=None, *, extensions=None, headers=())`` -> an open RawClient.

    ``url`` defaults to the module's ``server_url`` (started only when needed). Every client it
    opens is closed when the test ends.
    """
    clients: list[RawClient] = []

    def factory(
        url: str | None = None,
        *,
        extensions: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> RawClient:
        if url is None:
            url = str(request.getfixturevalue("server_url"))
        client = RawClient.connect(url, extensions=extensions, headers=headers)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()
