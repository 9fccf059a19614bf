"""Strict conformance (issue 14, item 8): the two kinds of Autobahn case that passed only
non-strictly, in both roles.

(a) A valid message followed by a bad frame in one write (Autobahn 3.2, 3.3, 4.1.3/4,
4.2.3/4, 5.15): the message parsed before the violation is delivered, and its echo reaches the
peer before the close frame (RFC 6455 section 7.1.7 fails the connection at the violation,
not before it). (b) Invalid UTF-8 in the middle of a text frame that arrives in pieces
(Autobahn 6.4.3/6.4.4): the connection fails (1007) as soon as the bad bytes arrive, while the
rest of the frame is still held back (RFC 6455 section 8.1).

Server role: ``fullduplex echo`` (an ``async for`` handler) against the raw client. Client
role: ``fullduplex.connect`` with an echoing ``async for`` loop against a raw server written
here, which reads the client's masked frames itself.
"""

from __future__ import annotations

import asyncio
import re
import struct
from collections.abc import Awaitable, Callable

import pytest
from _pytest.mark.structures import ParameterSet

from fullduplex.asyncio.client import connect as ws_connect
from fullduplex.exceptions import ConnectionClosed
from tests.conformance.checks import Connect, case, echo, expect_fail
from tests.conformance.rawclient import (
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    RSV2,
    RSV3,
    accept_key,
    build_frame,
    mask_payload,
)
from tests.helpers import seconds

__all__: list[str] = []

KOSME = bytes.fromhex("cebae1bdb9cf83cebcceb5")  # "κόσμε" with U+1F79, as in Autobahn


def _violations(masked: bool, role: str) -> list[ParameterSet]:
    """(case, valid message(s) and a violation for one write, the echoes expected first).

    Case ids: the Autobahn case, then "strict" and the role of fullduplex.
    """

    def f(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
        return build_frame(opcode, payload, fin=fin, rsv=rsv, masked=masked)

    hello = f(OP_TEXT, b"Hello")
    ping = f(OP_PING, b"after")
    return [
        case(f"3.2-strict-{role}", hello + f(OP_TEXT, b"Hello", rsv=RSV2) + ping, [b"Hello"]),
        case(f"3.3-strict-{role}", hello + f(OP_TEXT, b"Hello", rsv=RSV3) + ping, [b"Hello"]),
        case(f"4.1.3-strict-{role}", hello + f(5, b"reserved") + ping, [b"Hello"]),
        case(f"4.1.4-strict-{role}", hello + f(6, b"reserved") + ping, [b"Hello"]),
        case(f"4.2.3-strict-{role}", hello + f(0xD, b"reserved") + ping, [b"Hello"]),
        case(f"4.2.4-strict-{role}", hello + f(0xE, b"reserved") + ping, [b"Hello"]),
        case(
            f"5.15-strict-{role}",
            f(OP_TEXT, b"fragment1", fin=False)
            + f(OP_CONT, b"fragment2")
            + f(OP_CONT, b"fragment3", fin=False)
            + f(OP_TEXT, b"fragment4"),
            [b"fragment1fragment2"],
        ),
        case(
            f"5.1-after-message-strict-{role}",
            hello + f(OP_PING, b"p", fin=False) + ping,
            [b"Hello"],
        ),
    ]


# 6.4.3: the invalid sequence arrives whole in the second chop; 6.4.4: only up to the byte
# that makes it invalid (F4 90), the rest of it in the third chop.
def _chops(role: str) -> list[ParameterSet]:
    return [
        case(f"6.4.3-strict-{role}", KOSME, bytes.fromhex("f4908080"), b"edited"),
        case(
            f"6.4.4-strict-{role}", KOSME, bytes.fromhex("f490"), bytes.fromhex("8080") + b"edited"
        ),
    ]


# ---- server role ---------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "echoes"), _violations(masked=True, role="server"))
def test_server_echoes_before_failing(connect: Connect, data: bytes, echoes: list[bytes]) -> None:
    """RFC 6455 7.1.7 (Autobahn 3.2, 3.3, 4.1.3/4, 4.2.3/4, 5.15, strictly): send valid
    message(s) and a violation in one write; expect the echo first, then CLOSE(1002), and no
    pong for the ping after the violation.
    """
    client = connect()
    client.send_raw(data)
    expect_fail(client, 1002, before=[echo(OP_TEXT, message) for message in echoes])


@pytest.mark.parametrize(("valid", "invalid", "rest"), _chops("server"))
def test_server_fails_in_the_middle_of_a_frame(
    connect: Connect, valid: bytes, invalid: bytes, rest: bytes
) -> None:
    """RFC 6455 8.1 (Autobahn 6.4.3/6.4.4, strictly): one TEXT(fin=1) frame in three chops:
    header and a valid prefix, the bytes that make it invalid, the rest. Expect CLOSE(1007)
    after the second chop, while the third is held back.
    """
    client = connect()
    frame = build_frame(OP_TEXT, valid + invalid + rest)
    header = len(frame) - len(valid) - len(invalid) - len(rest)
    client.send_raw(frame[: header + len(valid)])
    client.send_raw(frame[header + len(valid) : header + len(valid) + len(invalid)])
    expect_fail(client, 1007, timeout=seconds(3))


# ---- client role ---------------------------------------------------------------------------

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[object]]


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one frame from the client: it must be masked; return (opcode, unmasked payload)."""
    b0, b1 = await reader.readexactly(2)
    assert b1 & 0x80, "a client frame must be masked"
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    key = await reader.readexactly(4)
    return b0 & 0x0F, mask_payload(await reader.readexactly(length), key)


async def _frames_until_close(reader: asyncio.StreamReader) -> list[tuple[int, bytes]]:
    frames = []
    while True:
        frame = await asyncio.wait_for(_read_frame(reader), seconds(5))
        frames.append(frame)
        if frame[0] == OP_CLOSE:
            return frames


async def _echo_client_against(script: Script) -> object:
    """Run ``script`` as a raw server after its 101; connect an echoing client; return what
    the script returned."""
    result: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            key = re.search(rb"Sec-WebSocket-Key: (\S+)", head, re.IGNORECASE)
            assert key is not None
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + accept_key(key.group(1).decode()).encode()
                + b"\r\n\r\n"
            )
            result.set_result(await script(reader, writer))
        except BaseException as exc:  # handed to the test, whatever it is
            if not result.done():
                result.set_exception(exc)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with ws_connect(f"ws://127.0.0.1:{port}/", close_timeout=seconds(2)) as ws:
            try:
                async for message in ws:
                    await ws.send(message)
            except ConnectionClosed:
                pass
        return await asyncio.wait_for(result, seconds(5))
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(("data", "echoes"), _violations(masked=False, role="client"))
async def test_client_echoes_before_failing(data: bytes, echoes: list[bytes]) -> None:
    """RFC 6455 7.1.7, client role: a raw server writes valid message(s) and a violation at
    once; the client's echo must arrive before its CLOSE(1002).
    """

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> object:
        writer.write(data)
        return await _frames_until_close(reader)

    frames = await _echo_client_against(script)
    assert isinstance(frames, list)
    assert frames[:-1] == [(OP_TEXT, message) for message in echoes]
    assert frames[-1][0] == OP_CLOSE
    assert frames[-1][1][:2] == (1002).to_bytes(2, "big")


@pytest.mark.parametrize(("valid", "invalid", "rest"), _chops("client"))
async def test_client_fails_in_the_middle_of_a_frame(
    valid: bytes, invalid: bytes, rest: bytes
) -> None:
    """RFC 6455 8.1, client role: a raw server writes one TEXT frame in chops; the client must
    send CLOSE(1007) after the invalid chop, before the rest of the frame is written.
    """

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> object:
        frame = build_frame(OP_TEXT, valid + invalid + rest, masked=False)
        header = len(frame) - len(valid) - len(invalid) - len(rest)
        writer.write(frame[: header + len(valid)])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(frame[header + len(valid) : header + len(valid) + len(invalid)])
        await writer.drain()
        return await _frames_until_close(reader)

    frames = await _echo_client_against(script)
    assert frames == [(OP_CLOSE, (1007).to_bytes(2, "big") + b"invalid data")]
