"""Tests for fullduplex.fallback.ids: signed, unguessable session ids naming their owner."""

from __future__ import annotations

import pytest

from fullduplex.fallback import SessionIds


def test_new_ids_are_unique_signed_and_name_the_owner() -> None:
    ids = SessionIds("node-1")
    made = {ids.new() for _ in range(1000)}
    assert len(made) == 1000
    for sid in list(made)[:10]:
        owner, nonce, mac = sid.split(".")
        assert owner == "node-1" and len(nonce) == 22 and len(mac) == 22
        assert ids.owner_of(sid) == "node-1"


def test_processes_sharing_a_key_check_each_others_ids() -> None:
    key = b"0123456789abcdef"
    assert SessionIds("a", key).owner_of(SessionIds("b", key).new()) == "b"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda sid: sid + "x", "session id signature is invalid"),
        (lambda sid: "other." + sid.split(".", 1)[1], "session id signature is invalid"),
        (lambda sid: sid.replace(".", "", 1), "malformed session id"),
        (lambda sid: "", "malformed session id"),
        (lambda sid: "a b.c.d", "malformed session id"),
        (lambda sid: "a.é.d", "malformed session id"),
        (lambda sid: sid[:-1] + "é", "session id signature is invalid"),
        (lambda sid: "a." + "b" * 300 + ".c", "malformed session id"),
    ],
)
def test_altered_ids_are_refused(change: object, message: str) -> None:
    ids = SessionIds("node")
    with pytest.raises(ValueError, match=message):
        ids.owner_of(change(ids.new()))  # type: ignore[operator]


def test_another_key_refuses() -> None:
    assert SessionIds("n", b"k" * 16).new() != SessionIds("n", b"k" * 16).new()
    with pytest.raises(ValueError, match="signature"):
        SessionIds("n", b"j" * 16).owner_of(SessionIds("n", b"k" * 16).new())


@pytest.mark.parametrize(("owner", "key"), [("", None), ("a.b", None), ("ok", b"short")])
def test_bad_settings(owner: str, key: bytes | None) -> None:
    with pytest.raises(ValueError):
        SessionIds(owner, key)
