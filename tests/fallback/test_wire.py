"""Tests for fullduplex.fallback.wire: the lines sent to the client and the POST batches."""

from __future__ import annotations

import json

import pytest

from fullduplex.fallback.wire import HEARTBEAT, Batch, close_line, message_line, parse_batch


def test_lines_are_one_json_object_each() -> None:
    lines = [message_line(1, "a\nb \u2028"), message_line(2, b"\x00\xff"), HEARTBEAT]
    lines.append(close_line(4000, "bye é"))
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)
    assert [json.loads(line) for line in lines] == [
        {"i": 1, "t": "a\nb \u2028"},
        {"i": 2, "b": "AP8="},
        {"h": 1},
        {"c": 4000, "r": "bye é"},
    ]


def test_batches() -> None:
    assert parse_batch(b'{"q": 0, "m": ["x", {"b": "AP8="}], "a": 3}') == Batch(
        0, ["x", b"\x00\xff"], 3, None
    )
    assert parse_batch(b'{"a": 5}') == Batch(None, [], 5, None)
    assert parse_batch(b'{"c": 1000, "r": "bye"}') == Batch(None, [], None, (1000, "bye"))
    assert parse_batch(b'{"q": 1, "m": [], "c": 4000}') == Batch(1, [], None, (4000, ""))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xff",
        b"[" * 100_000,
        b'{"q": 1}',
        b'{"m": []}',
        b'{"q": true, "m": []}',
        b'{"q": 1.5, "m": []}',
        b'{"q": 9007199254740992, "m": []}',
        b'{"a": "1"}',
        b'{"q": 0, "m": [null]}',
        b'{"c": "1000"}',
        b'{"c": 1000, "r": 5}',
    ],
)
def test_bad_batches_raise_value_error(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_batch(body)
