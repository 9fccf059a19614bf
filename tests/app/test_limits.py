"""Tests for fullduplex.app.limits: refusals before the upgrade, with Retry-After, and the
counts released when connections close."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from fullduplex.app import App, Limits
from fullduplex.app.limits import Admission
from fullduplex.asyncio.client import connect
from fullduplex.exceptions import InvalidStatus
from tests.app.utils import serving, url
from tests.helpers import seconds


def echo_app(limits: Limits) -> App:
    app = App(limits=limits)

    @app.on_message("/echo")
    def echo(session: object, message: str | bytes) -> str | bytes:
        return message

    return app


async def refused(uri: str, **options: object) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as caught:
        async with connect(uri, **options):  # type: ignore[arg-type]
            pass
    return caught.value


async def eventually_admitted(uri: str, **options: object) -> None:
    async with asyncio.timeout(seconds(5)):
        while True:
            with contextlib.suppress(InvalidStatus):
                async with connect(uri, **options) as ws:  # type: ignore[arg-type]
                    await ws.send("in")
                    assert await ws.recv() == "in"
                    return
            await asyncio.sleep(0.05)


async def test_max_connections_503_before_the_upgrade() -> None:
    app = echo_app(Limits(max_connections=3, retry_after=7))
    async with serving(app) as server, contextlib.AsyncExitStack() as stack:
        uri = url(server, "/echo")
        first = [await stack.enter_async_context(connect(uri)) for _ in range(3)]
        error = await refused(uri)
        assert error.status_code == 503
        assert ("Retry-After", "7") in error.headers
        assert error.body == b"the server is at capacity\n"
        await first[0].close()
        await eventually_admitted(uri)  # its place was given back when it closed


async def test_max_per_ip_through_a_trusted_proxy() -> None:
    app = echo_app(Limits(max_per_ip=2, trusted_proxies={"127.0.0.1"}))
    async with serving(app) as server, contextlib.AsyncExitStack() as stack:
        uri = url(server, "/echo")

        def via(client: str) -> dict[str, object]:
            # What a proxy sends; a client-written value on the left is not believed.
            return {"additional_headers": [("X-Forwarded-For", f"6.6.6.6, {client}")]}

        for _ in range(2):
            await stack.enter_async_context(connect(uri, **via("10.0.0.1")))  # type: ignore[arg-type]
        error = await refused(uri, **via("10.0.0.1"))
        assert error.status_code == 429
        assert error.body == b"too many connections from your address\n"
        async with connect(uri, **via("10.0.0.2")) as other:  # type: ignore[arg-type]
            await other.send("x")
            assert await other.recv() == "x"


async def test_max_per_user_from_the_hook() -> None:
    def user(request: object) -> str | None:
        query = request.path.partition("?")[2]  # type: ignore[attr-defined]
        return query.removeprefix("user=") or None

    app = echo_app(Limits(max_per_user=1, user=user))
    async with serving(app) as server, connect(url(server, "/echo?user=ann")):
        error = await refused(url(server, "/echo?user=ann"))
        assert error.status_code == 429
        assert error.body == b"too many connections for this user\n"
        async with connect(url(server, "/echo?user=bob")), connect(url(server, "/echo")):
            pass  # another user, and nobody in particular, are not limited by ann's


async def test_accept_rate_token_bucket() -> None:
    app = echo_app(Limits(rate=0.5, burst=3))
    async with serving(app) as server:
        uri = url(server, "/echo")
        outcomes = []
        for _ in range(6):  # at once: the burst of 3, then refusals
            try:
                async with connect(uri):
                    outcomes.append(101)
            except InvalidStatus as exc:
                outcomes.append(exc.status_code)
        assert outcomes[:3] == [101, 101, 101]
        assert 429 in outcomes[3:]
        await eventually_admitted(uri)  # a token comes back every 2 s


def test_bucket_refills_at_the_rate() -> None:
    now = [0.0]
    admission = Admission(Limits(rate=2, burst=2), clock=lambda: now[0])
    taken = [admission._take_token() for _ in range(3)]
    assert taken == [True, True, False]
    now[0] = 0.49
    assert admission._take_token() is False
    now[0] = 0.51
    assert admission._take_token() is True


@pytest.mark.parametrize(
    "options",
    [
        {"max_connections": 0},
        {"max_per_ip": 0},
        {"rate": 0},
        {"burst": 0},
        {"max_per_user": 2},
        {"retry_after": -1},
    ],
)
def test_invalid_limits(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Limits(**options)  # type: ignore[arg-type]
