"""Autobahn group 4: reserved opcodes (RFC 6455 section 5.2).

RFC 6455 5.2: opcodes 0x3-0x7 are "reserved for further non-control frames" and 0xB-0xF "for
further control frames"; "If an unknown opcode is received, the receiving endpoint MUST _Fail
the WebSocket Connection_." Expect CLOSE(1002) (section 7.4.1) and nothing after it.
"""

from __future__ import annotations

import pytest
from _pytest.mark.structures import ParameterSet

from tests.conformance.checks import Connect, case, echo, expect_fail, expect_received
from tests.conformance.rawclient import OP_PING, OP_TEXT, build_frame

__all__: list[str] = []

RESERVED_OPCODES = [3, 4, 5, 6, 7, 11, 12, 13, 14, 15]


def _cases(variant: int) -> list[ParameterSet]:
    return [case(f"4.{1 if op < 8 else 2}.{variant}.{op}", op) for op in RESERVED_OPCODES]


@pytest.mark.parametrize("opcode", _cases(1))
def test_reserved_opcode(connect: Connect, opcode: int) -> None:
    """RFC 6455 5.2: send one frame with the reserved ``opcode`` and payload "reserved";
    expect CLOSE(1002).
    """
    client = connect()
    client.send_frame(opcode, b"reserved")
    expect_fail(client, 1002)


@pytest.mark.parametrize("opcode", _cases(2))
def test_reserved_opcode_after_valid_echo(connect: Connect, opcode: int) -> None:
    """RFC 6455 5.2, 7.1.7: send TEXT("hello") and wait for the echo (so the server's
    application is not racing the failure); then send a frame with the reserved ``opcode`` and
    an empty payload followed by PING("after") in one write; expect CLOSE(1002), no pong.
    """
    client = connect()
    client.send_frame(OP_TEXT, b"hello")
    expect_received(client, [echo(OP_TEXT, b"hello")])
    client.send_raw(build_frame(opcode) + build_frame(OP_PING, b"after"))
    expect_fail(client, 1002)
