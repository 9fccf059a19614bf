"""Autobahn group 2: ping and pong (RFC 6455 section 5.5.2, 5.5.3, 5.4)."""

from __future__ import annotations

import pytest

from tests.conformance.checks import (
    Connect,
    case,
    echo,
    expect_close,
    expect_fail,
    expect_received,
    pong,
)
from tests.conformance.rawclient import (
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    build_frame,
)

__all__: list[str] = []

BINARY_PAYLOAD = b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"


@pytest.mark.parametrize(
    ("payload", "chunk"),
    [
        case("2.1", b"", None),
        case("2.2", b"Hello, world!", None),
        case("2.3", BINARY_PAYLOAD, None),
        case("2.4", b"\xfe" * 125, None),
        case("2.6", b"\xfe" * 125, 1),
    ],
)
def test_ping_gets_pong_with_same_payload(
    connect: Connect, payload: bytes, chunk: int | None
) -> None:
    """RFC 6455 5.5.2/5.5.3: send PING(payload); expect PONG with "identical Application data".
    2.4 is the largest legal control payload (125 bytes); 2.6 writes that frame 1 byte per send.
    Then CLOSE(1000) gets CLOSE(1000) and the server closes TCP.
    """
    client = connect()
    client.send_frame(OP_PING, payload, chunk_size=chunk, pause=0.0002 if chunk else 0.0)
    expect_received(client, [pong(payload)])
    client.send_close(1000)
    expect_close(client, 1000, reply=False)


@pytest.mark.case("2.5")
def test_ping_126_bytes(connect: Connect) -> None:
    """RFC 6455 5.5: "All control frames MUST have a payload length of 125 bytes or less".
    Send PING with 126 payload bytes (16-bit length form); expect CLOSE(1002), no pong.
    """
    client = connect()
    client.send_frame(OP_PING, b"\xfe" * 126)
    expect_fail(client, 1002)


@pytest.mark.parametrize("payload", [case("2.7", b""), case("2.8", b"unsolicited pong payload")])
def test_unsolicited_pong_ignored(connect: Connect, payload: bytes) -> None:
    """RFC 6455 5.5.3: "A response to an unsolicited Pong frame is not expected."
    Send PONG(payload) then CLOSE(1000); expect only CLOSE(1000) back, then TCP close.
    """
    client = connect()
    client.send_frame(OP_PONG, payload)
    client.send_close(1000)
    expect_close(client, 1000, reply=False)


@pytest.mark.case("2.9")
def test_unsolicited_pong_then_ping(connect: Connect) -> None:
    """RFC 6455 5.5.3: send PONG("ping payload") then PING("ping payload"); expect exactly one
    PONG("ping payload") (for the ping), then CLOSE(1000) answers our CLOSE(1000).
    """
    client = connect()
    client.send_frame(OP_PONG, b"ping payload")
    client.send_frame(OP_PING, b"ping payload")
    client.send_close(1000)
    expect_close(client, 1000, before=[pong(b"ping payload")], reply=False)


@pytest.mark.parametrize("chunk", [case("2.10", None), case("2.11", 1)])
def test_ten_pings_ten_pongs_in_order(connect: Connect, chunk: int | None) -> None:
    """RFC 6455 5.5.2/5.5.3: send PING("payload-0") ... PING("payload-9") (2.11: 1 byte per
    send); expect ten PONGs with the same payloads in the same order.
    """
    client = connect()
    payloads = [f"payload-{i}".encode() for i in range(10)]
    data = b"".join(build_frame(OP_PING, p) for p in payloads)
    client.send_raw(data, chunk_size=chunk, pause=0.0002 if chunk else 0.0)
    expect_received(client, [pong(p) for p in payloads])


@pytest.mark.case("2.12")
def test_ping_between_fragments_answered_before_message_ends(connect: Connect) -> None:
    """RFC 6455 5.4: "Control frames MAY be injected in the middle of a fragmented message".
    Send TEXT(fin=0, "frag1-"), PING("inside"); expect PONG("inside") while the message is
    still open (the pong must not wait for the message); then CONT(fin=1, "frag2") and expect
    TEXT "frag1-frag2".
    """
    client = connect()
    client.send_frame(OP_TEXT, b"frag1-", fin=False)
    client.send_frame(OP_PING, b"inside")
    expect_received(client, [pong(b"inside")])
    client.send_frame(OP_CONT, b"frag2", fin=True)
    expect_received(client, [echo(OP_TEXT, b"frag1-frag2")])
