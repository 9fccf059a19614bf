"""Autobahn group 6: UTF-8 handling of text messages (RFC 6455 section 5.6, 8.1; RFC 3629).

RFC 6455 5.6: text "data is interpreted as UTF-8"; section 8.1: "When an endpoint is to
interpret a byte stream as UTF-8 but finds that the byte stream is not, in fact, a valid UTF-8
stream, that endpoint MUST _Fail the WebSocket Connection_", with close code 1007 (7.4.1:
"data within a message that was not consistent with the type of the message"). Valid is
RFC 3629 UTF-8: no overlong forms, no surrogates (U+D800-U+DFFF), nothing above U+10FFFF, no
5- or 6-byte forms; noncharacters such as U+FFFE are valid. The byte sequences are those of
the Autobahn TestSuite (after Markus Kuhn's UTF-8 decoder stress test).
"""

from __future__ import annotations

import pytest

from tests.conformance.checks import Connect, case, echo, expect_fail, expect_received, pong
from tests.conformance.rawclient import OP_CONT, OP_PING, OP_TEXT, build_frame
from tests.helpers import seconds

__all__: list[str] = []

KOSME = bytes.fromhex("cebae1bdb9cf83cebcceb5")  # "κόσμε" with U+1F79, as in Autobahn
HELLO = "Hello-µ@ßöäüàá-UTF-8!!".encode()


def _h(text: str) -> bytes:
    return bytes.fromhex(text)


# (case id, bytes, valid?)
SEQUENCES: list[tuple[str, bytes, bool]] = [
    ("6.5.1", KOSME, True),
    ("6.5.2", "Hello, 世界! Привет, мир! 🌍".encode(), True),
    ("6.5.3", "\u2135\u2200\u2203 \u2208\u2209 \U0001d11e \U0001d54f".encode(), True),
    # 6.6: prefixes of κόσμε; a prefix ending inside a character is truncated, thus invalid.
    *[(f"6.6.{n}", KOSME[:n], n in (2, 5, 7, 9, 11)) for n in range(1, len(KOSME) + 1)],
    # 6.7: first possible sequence of each length.
    ("6.7.1", _h("00"), True),
    ("6.7.2", _h("c280"), True),
    ("6.7.3", _h("e0a080"), True),
    ("6.7.4", _h("f0908080"), True),
    # 6.8: 5- and 6-byte forms do not exist in RFC 3629.
    ("6.8.1", _h("f888808080"), False),
    ("6.8.2", _h("fc8480808080"), False),
    # 6.9: last possible sequence of each length.
    ("6.9.1", _h("7f"), True),
    ("6.9.2", _h("dfbf"), True),
    ("6.9.3", _h("efbfbf"), True),
    ("6.9.4", _h("f48fbfbf"), True),
    # 6.10: beyond U+10FFFF.
    ("6.10.1", _h("f7bfbfbf"), False),
    ("6.10.2", _h("fbbfbfbfbf"), False),
    ("6.10.3", _h("fdbfbfbfbfbf"), False),
    # 6.11: other boundary conditions.
    ("6.11.1", _h("ed9fbf"), True),
    ("6.11.2", _h("ee8080"), True),
    ("6.11.3", _h("efbfbd"), True),
    ("6.11.4", _h("f48fbfbf"), True),
    ("6.11.5", _h("f4908080"), False),
    # 6.12: unexpected continuation bytes.
    ("6.12.1", _h("80"), False),
    ("6.12.2", _h("bf"), False),
    ("6.12.3", _h("80bf"), False),
    ("6.12.4", _h("80bf80"), False),
    ("6.12.5", _h("80bf80bf"), False),
    ("6.12.6", _h("80bf80bf80"), False),
    ("6.12.7", _h("80bf80bf80bf"), False),
    ("6.12.8", bytes(range(0x80, 0xC0)), False),
    # 6.13: lonely start bytes, each followed by a space.
    ("6.13.1", b"".join(bytes([b, 0x20]) for b in range(0xC0, 0xE0)), False),
    ("6.13.2", b"".join(bytes([b, 0x20]) for b in range(0xE0, 0xF0)), False),
    ("6.13.3", b"".join(bytes([b, 0x20]) for b in range(0xF0, 0xF8)), False),
    ("6.13.4", b"".join(bytes([b, 0x20]) for b in range(0xF8, 0xFC)), False),
    ("6.13.5", b"".join(bytes([b, 0x20]) for b in range(0xFC, 0xFE)), False),
    # 6.14: sequences with their last continuation byte missing.
    ("6.14.1", _h("c0"), False),
    ("6.14.2", _h("e080"), False),
    ("6.14.3", _h("f08080"), False),
    ("6.14.4", _h("f8808080"), False),
    ("6.14.5", _h("fc80808080"), False),
    ("6.14.6", _h("df"), False),
    ("6.14.7", _h("efbf"), False),
    ("6.14.8", _h("f7bfbf"), False),
    ("6.14.9", _h("fbbfbfbf"), False),
    ("6.14.10", _h("fdbfbfbfbf"), False),
    # 6.15: all of 6.14 concatenated.
    ("6.15.1", _h("c0e080f08080f8808080fc80808080dfefbff7bfbffbbfbfbffdbfbfbfbf"), False),
    # 6.16: bytes that never appear in UTF-8.
    ("6.16.1", _h("fe"), False),
    ("6.16.2", _h("ff"), False),
    ("6.16.3", _h("fefeffff"), False),
    # 6.17: overlong forms of "/".
    ("6.17.1", _h("c0af"), False),
    ("6.17.2", _h("e080af"), False),
    ("6.17.3", _h("f08080af"), False),
    ("6.17.4", _h("f8808080af"), False),
    ("6.17.5", _h("fc80808080af"), False),
    # 6.18: maximum overlong forms.
    ("6.18.1", _h("c1bf"), False),
    ("6.18.2", _h("e09fbf"), False),
    ("6.18.3", _h("f08fbfbf"), False),
    ("6.18.4", _h("f887bfbfbf"), False),
    ("6.18.5", _h("fc83bfbfbfbf"), False),
    # 6.19: overlong NUL.
    ("6.19.1", _h("c080"), False),
    ("6.19.2", _h("e08080"), False),
    ("6.19.3", _h("f0808080"), False),
    ("6.19.4", _h("f880808080"), False),
    ("6.19.5", _h("fc8080808080"), False),
    # 6.20: single UTF-16 surrogates.
    ("6.20.1", _h("eda080"), False),
    ("6.20.2", _h("edadbf"), False),
    ("6.20.3", _h("edae80"), False),
    ("6.20.4", _h("edafbf"), False),
    ("6.20.5", _h("edb080"), False),
    ("6.20.6", _h("edbe80"), False),
    ("6.20.7", _h("edbfbf"), False),
    # 6.21: paired UTF-16 surrogates (CESU-8), still invalid UTF-8.
    ("6.21.1", _h("eda080edb080"), False),
    ("6.21.2", _h("eda080edbfbf"), False),
    ("6.21.3", _h("edadbfedb080"), False),
    ("6.21.4", _h("edadbfedbfbf"), False),
    ("6.21.5", _h("edae80edb080"), False),
    ("6.21.6", _h("edae80edbfbf"), False),
    ("6.21.7", _h("edafbfedb080"), False),
    ("6.21.8", _h("edafbfedbfbf"), False),
    # 6.22: noncharacters U+FFFE, U+FFFF and U+nFFFE/U+nFFFF of every plane: valid UTF-8.
    ("6.22.1", _h("efbfbe"), True),
    ("6.22.2", _h("efbfbf"), True),
    *[
        (f"6.22.{3 + 2 * (plane - 1) + k}", chr(plane * 0x10000 + 0xFFFE + k).encode(), True)
        for plane in range(1, 17)
        for k in (0, 1)
    ],
    # 6.23: specials.
    ("6.23.1", _h("efbfbd"), True),  # U+FFFD replacement character
    ("6.23.2", _h("efbbbf"), True),  # U+FEFF byte order mark
    ("6.23.3", _h("eda080") + b"ok", False),
]


@pytest.mark.parametrize(
    ("payload", "valid"), [case(case_id, data, ok) for case_id, data, ok in SEQUENCES]
)
def test_utf8_sequence(connect: Connect, payload: bytes, valid: bool) -> None:
    """RFC 6455 5.6/8.1, RFC 3629: send one TEXT frame (FIN=1) with the case's bytes; a valid
    sequence comes back as the same TEXT message, an invalid one gets CLOSE(1007).
    """
    client = connect()
    client.send_frame(OP_TEXT, payload)
    if valid:
        expect_received(client, [echo(OP_TEXT, payload)])
    else:
        expect_fail(client, 1007)


@pytest.mark.parametrize(
    "fragments",
    [
        case("6.1.1", [b""]),
        case("6.1.2", [b"", b"", b""]),
        case("6.1.3", [b"", b"middle", b""]),
        case("6.2.1", [HELLO]),
        case("6.2.2", [HELLO[:13], HELLO[13:]]),
        case("6.2.3", [HELLO[i : i + 1] for i in range(len(HELLO))]),
        case("6.2.4", [KOSME[i : i + 1] for i in range(len(KOSME))]),
        case("6.2.5", [KOSME[:3], KOSME[3:]]),
        case("6.2.6", [b"clef ", b"\xf0", b"\x9d", b"\x84", b"\x9e", b" end"]),
    ],
)
def test_valid_text_in_fragments(connect: Connect, fragments: list[bytes]) -> None:
    """RFC 6455 5.4/5.6: UTF-8 validity is a property of the whole message, so a character may
    be split across fragments (6.2.3-6.2.6 split inside multi-byte characters, 6.2.6 a 4-byte
    one over four frames). Send TEXT(fin=0, f0), CONT(fin=0, ...), CONT(fin=1, fn), one frame
    per send; expect one TEXT message with the concatenation.
    """
    client = connect()
    for index, fragment in enumerate(fragments):
        client.send_frame(
            OP_TEXT if index == 0 else OP_CONT, fragment, fin=index == len(fragments) - 1
        )
    expect_received(client, [echo(OP_TEXT, b"".join(fragments))])


@pytest.mark.parametrize("chunk", [case("6.3.1", None), case("6.3.2", 1)])
def test_invalid_text_frame(connect: Connect, chunk: int | None) -> None:
    """RFC 6455 8.1: send TEXT("κόσμε" ED A0 80 "edited") (a surrogate inside; 6.3.2: 1 byte
    per send); expect CLOSE(1007).
    """
    client = connect()
    frame = build_frame(OP_TEXT, KOSME + _h("eda080") + b"edited")
    client.send_raw(frame, chunk_size=chunk, pause=0.0002 if chunk else 0.0)
    expect_fail(client, 1007)


@pytest.mark.parametrize(
    ("valid_first", "invalid_next", "rest"),
    [
        case("6.4.1", KOSME, _h("f4908080"), b"edited"),
        case("6.4.2", KOSME + _h("f4"), _h("90"), _h("8080") + b"edited"),
    ],
)
def test_fail_fast_on_second_fragment(
    connect: Connect, valid_first: bytes, invalid_next: bytes, rest: bytes
) -> None:
    """RFC 6455 8.1, fail-fast (Autobahn 6.4.1/6.4.2): send TEXT(fin=0, valid prefix) and
    PING("1"), and expect PONG("1") (the prefix is acceptable); then CONT(fin=0, bytes that make
    the sequence invalid: F4 90 80 80 is above U+10FFFF, F4 then 90 likewise); expect
    CLOSE(1007) while we still hold back the last fragment CONT(fin=1, rest).
    """
    client = connect()
    client.send_frame(OP_TEXT, valid_first, fin=False)
    client.send_frame(OP_PING, b"1")
    expect_received(client, [pong(b"1")])
    client.send_frame(OP_CONT, invalid_next, fin=False)
    expect_fail(client, 1007, timeout=seconds(3))
    # Only now, after the close arrived, would the rest be due; it never is sent.
    assert rest


@pytest.mark.parametrize(
    "first",
    [
        case("6.4.3", b"\xffinvalid first fragment"),
        case("6.4.4", b"slash " + _h("c0af")),
        case("6.4.5", b"surrogate " + _h("eda080")),
        case("6.4.6", _h("80") + b"lonely continuation byte"),
    ],
)
def test_fail_fast_on_first_fragment(connect: Connect, first: bytes) -> None:
    """RFC 6455 8.1, fail-fast: send TEXT(fin=0) whose payload is already invalid UTF-8 (FF;
    overlong C0 AF; surrogate ED A0 80; lone 80) and nothing else; expect CLOSE(1007) while we
    still hold back CONT(fin=1, "rest").
    """
    client = connect()
    client.send_frame(OP_TEXT, first, fin=False)
    expect_fail(client, 1007, timeout=seconds(3))


@pytest.mark.case("6.4.7")
def test_invalid_inside_one_frame_sent_in_chops(connect: Connect) -> None:
    """RFC 6455 8.1 (Autobahn 6.4.3, non-strict form): one TEXT(fin=1) frame "κόσμε" F4 90 80 80
    "edited" written in three chops (header + prefix, the invalid bytes, the rest); expect
    CLOSE(1007). Failing before the frame is complete is allowed but not required here.
    """
    client = connect()
    frame = build_frame(OP_TEXT, KOSME + _h("f4908080") + b"edited")
    header = len(frame) - len(KOSME) - 4 - 6
    for part in (frame[: header + len(KOSME)], frame[header + len(KOSME) : -6], frame[-6:]):
        try:
            client.send_raw(part)
        except (BrokenPipeError, ConnectionResetError):
            break  # the server failed fast and closed: fine
    expect_fail(client, 1007)


@pytest.mark.parametrize(
    ("first", "last"),
    [
        case("6.4.8", KOSME + _h("ce"), b""),
        case("6.4.9", b"euro " + _h("e282"), b""),
        case("6.4.10", b"clef " + _h("f09d84"), b""),
    ],
)
def test_truncated_at_message_end(connect: Connect, first: bytes, last: bytes) -> None:
    """RFC 6455 8.1: a message may not end inside a character. Send TEXT(fin=0, text ending
    with an incomplete sequence: CE / E2 82 / F0 9D 84) and PING("open"); expect PONG("open")
    (the prefix is still completable); then CONT(fin=1, ""); expect CLOSE(1007).
    """
    client = connect()
    client.send_frame(OP_TEXT, first, fin=False)
    client.send_frame(OP_PING, b"open")
    expect_received(client, [pong(b"open")])
    client.send_frame(OP_CONT, last, fin=True)
    expect_fail(client, 1007)
