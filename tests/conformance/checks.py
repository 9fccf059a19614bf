"""Expectations shared by the conformance cases, on top of :mod:`tests.conformance.rawclient`.

Each helper states one RFC outcome precisely: an echo, a close with a given code (and nothing
else before or after it), the server closing TCP, and the server still serving afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import pytest
from _pytest.mark.structures import ParameterSet

from tests.conformance.rawclient import (
    OP_BINARY,
    OP_CLOSE,
    OP_PONG,
    OP_TEXT,
    PeerClosed,
    RawClient,
    Received,
)
from tests.helpers import seconds

__all__ = [
    "Connect",
    "assert_server_serves",
    "case",
    "echo",
    "expect_close",
    "expect_fail",
    "expect_received",
    "pong",
]


Connect = Callable[..., RawClient]
"""The ``connect`` fixture: ``connect(url=None, *, extensions=None, headers=()) -> RawClient``."""


def case(case_id: str, *values: object) -> ParameterSet:
    """A pytest parameter named after the conformance ``case_id`` and marked with it."""
    return pytest.param(*values, id=case_id, marks=pytest.mark.case(case_id))


def echo(opcode: int, payload: bytes) -> Received:
    """The message the echo server must send back for a message it received."""
    return Received(opcode, payload)


def pong(payload: bytes) -> Received:
    """The pong that must answer a ping with ``payload`` (RFC 6455 section 5.5.3)."""
    return Received(OP_PONG, payload)


def expect_received(
    client: RawClient, expected: Sequence[Received], *, timeout: float | None = None
) -> None:
    """Read exactly ``len(expected)`` messages/control frames and compare them in order."""
    got: list[Received] = []
    for _ in expected:
        try:
            got.append(client.recv(timeout))
        except (TimeoutError, PeerClosed) as exc:
            raise AssertionError(f"expected {list(expected)}, got {got} and then {exc}") from exc
    assert got == list(expected), f"expected {list(expected)}, got {got}"


def expect_close(
    client: RawClient,
    codes: int | Collection[int | None] | None,
    *,
    before: Sequence[Received] = (),
    or_before: Sequence[Sequence[Received]] = (),
    reason: bytes | None = None,
    reply: bool = True,
    timeout: float | None = None,
) -> Received:
    """Expect ``before`` (exactly), then a close frame with a code in ``codes``, then TCP EOF.

    Args:
        client: the connection.
        codes: the acceptable close code(s); None stands for a close frame without payload.
        before: the only messages/control frames allowed before the close, in order. Anything
            else (an echo, a pong...) after a protocol violation fails the case: a failed
            connection must not process further input (RFC 6455 section 7.1.7).
        or_before: other sequences accepted in place of ``before``.
        reason: when given, the exact close reason expected.
        reply: answer the server's close frame with ours, as RFC 6455 section 5.5.1 requires
            of an endpoint that did not send one yet.
        timeout: seconds to wait for each step; seconds(5) when None.

    Returns:
        The close frame received.
    """
    allowed = {codes} if codes is None or isinstance(codes, int) else set(codes)
    got: list[Received] = []
    while True:
        try:
            item = client.recv(timeout)
        except (TimeoutError, PeerClosed) as exc:
            raise AssertionError(
                f"expected a close with code {sorted(allowed, key=str)} after {list(before)}; "
                f"got {got} and then: {exc}"
            ) from exc
        if item.opcode == OP_CLOSE:
            break
        got.append(item)
    options = [list(before)] + [list(option) for option in or_before]
    assert got in options, f"before the close: expected {' or '.join(map(str, options))}, got {got}"
    assert item.close_code in allowed, (
        f"close code {item.close_code} (reason {item.close_reason!r}), expected one of "
        f"{sorted(allowed, key=str)}"
    )
    if reason is not None:
        got_reason = item.close_reason
        assert got_reason == reason, f"close reason {got_reason!r}, expected {reason!r}"
    if reply:
        client.send_close(item.close_code, b"")
    client.wait_eof(timeout)
    return item


def assert_server_serves(url: str) -> None:
    """A fresh connection still gets a text and a binary echo and a clean close.

    Run after every protocol violation: failing one connection must not hurt the server.
    """
    try:
        client = RawClient.connect(url, timeout=seconds(5))
    except (OSError, PeerClosed) as exc:
        raise AssertionError(f"the server stopped serving: {exc!r}") from exc
    with client:
        client.send_frame(OP_TEXT, b"still alive")
        client.send_frame(OP_BINARY, b"\x00\xff")
        expect_received(client, [echo(OP_TEXT, b"still alive"), echo(OP_BINARY, b"\x00\xff")])
        client.send_close(1000)
        expect_close(client, 1000, reply=False)


def expect_fail(
    client: RawClient,
    codes: int | Collection[int | None],
    *,
    before: Sequence[Received] = (),
    timeout: float | None = None,
) -> Received:
    """The server must fail the connection with ``codes`` and keep serving others.

    See :func:`expect_close` for ``before``.
    """
    item = expect_close(client, codes, before=before, timeout=timeout)
    assert_server_serves(client.url)
    return item
