"""Tests of fullduplex.protocol.frames: RFC 6455 section 5 framing and section 7.4 close codes."""

from __future__ import annotations

import itertools
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fullduplex.exceptions import PayloadTooBig, ProtocolError
from fullduplex.protocol import frames
from fullduplex.protocol.frames import (
    CONTROL_OPCODES,
    DATA_OPCODES,
    CloseCode,
    Frame,
    FrameParser,
    Opcode,
    apply_mask,
    is_valid_close_code,
    parse_close,
    serialize_close,
    serialize_frame,
)
from tests.protocol.conftest import RFC_MASK

VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, *range(1007, 1015), 3000, 3999, 4000, 4999]
INVALID_CLOSE_CODES = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1999, 2000, 2999, 5000, 65535]
RESERVED_OPCODES = [*range(0x3, 0x8), *range(0xB, 0x10)]


def server_parser(*, max_frame_size: int | None = None, allow_rsv1: bool = False) -> FrameParser:
    """A parser as a server uses it: client frames must be masked."""
    return FrameParser(mask_required=True, max_frame_size=max_frame_size, allow_rsv1=allow_rsv1)


def client_parser(*, max_frame_size: int | None = None, allow_rsv1: bool = False) -> FrameParser:
    """A parser as a client uses it: server frames must not be masked."""
    return FrameParser(mask_required=False, max_frame_size=max_frame_size, allow_rsv1=allow_rsv1)


def parse_one(parser: FrameParser, data: bytes) -> Frame:
    """Feed ``data`` and assert it is exactly one valid frame; return it."""
    result = parser.feed(data)
    assert parser.error is None, parser.error
    assert parser.buffered == 0
    assert len(result) == 1
    return result[0]


def parse_error(parser: FrameParser, data: bytes) -> ProtocolError:
    """Feed ``data`` and assert that it yields no frame and an error; return the error."""
    assert parser.feed(data) == []
    assert parser.error is not None
    return parser.error


def header(b0: int, length: int, *, masked: bool = False) -> bytes:
    """A frame header for ``length`` in the shortest encoding, mask key excluded."""
    mask_bit = 0x80 if masked else 0
    if length < 126:
        return bytes([b0, mask_bit | length])
    if length < 65536:
        return bytes([b0, mask_bit | 126]) + struct.pack("!H", length)
    return bytes([b0, mask_bit | 127]) + struct.pack("!Q", length)


class TestSection5_7Examples:
    """RFC 6455 section 5.7, byte for byte, serialized and parsed."""

    UNMASKED_HELLO = bytes([0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
    MASKED_HELLO = bytes([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
    FRAGMENT_HEL = bytes([0x01, 0x03, 0x48, 0x65, 0x6C])
    FRAGMENT_LO = bytes([0x80, 0x02, 0x6C, 0x6F])
    UNMASKED_PING = bytes([0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
    MASKED_PONG = bytes([0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])

    def test_unmasked_text(self) -> None:
        assert serialize_frame(Opcode.TEXT, b"Hello") == self.UNMASKED_HELLO
        assert parse_one(client_parser(), self.UNMASKED_HELLO) == Frame(Opcode.TEXT, b"Hello")

    def test_masked_text(self) -> None:
        assert serialize_frame(Opcode.TEXT, b"Hello", mask=RFC_MASK) == self.MASKED_HELLO
        assert parse_one(server_parser(), self.MASKED_HELLO) == Frame(Opcode.TEXT, b"Hello")

    def test_fragmented_unmasked_text(self) -> None:
        assert serialize_frame(Opcode.TEXT, b"Hel", fin=False) == self.FRAGMENT_HEL
        assert serialize_frame(Opcode.CONTINUATION, b"lo") == self.FRAGMENT_LO
        parser = client_parser()
        assert parser.feed(self.FRAGMENT_HEL + self.FRAGMENT_LO) == [
            Frame(Opcode.TEXT, b"Hel", fin=False),
            Frame(Opcode.CONTINUATION, b"lo", fin=True),
        ]

    def test_unmasked_ping(self) -> None:
        assert serialize_frame(Opcode.PING, b"Hello") == self.UNMASKED_PING
        assert parse_one(client_parser(), self.UNMASKED_PING) == Frame(Opcode.PING, b"Hello")

    def test_masked_pong(self) -> None:
        assert serialize_frame(Opcode.PONG, b"Hello", mask=RFC_MASK) == self.MASKED_PONG
        assert parse_one(server_parser(), self.MASKED_PONG) == Frame(Opcode.PONG, b"Hello")

    def test_256_bytes_binary(self) -> None:
        payload = bytes(range(256))
        data = serialize_frame(Opcode.BINARY, payload)
        assert data[:4] == bytes([0x82, 0x7E, 0x01, 0x00])
        assert data[4:] == payload
        assert parse_one(client_parser(), data) == Frame(Opcode.BINARY, payload)

    def test_64_kib_binary(self) -> None:
        payload = bytes(range(256)) * 256
        data = serialize_frame(Opcode.BINARY, payload)
        assert data[:10] == bytes([0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0])
        assert data[10:] == payload
        assert parse_one(client_parser(), data) == Frame(Opcode.BINARY, payload)


class TestSection5_2BaseFraming:
    """RFC 6455 section 5.2: header fields, lengths, reserved bits and opcodes."""

    @pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 65537])
    def test_length_boundaries_unmasked(self, length: int) -> None:
        payload = bytes(i % 251 for i in range(length))
        data = serialize_frame(Opcode.BINARY, payload)
        expected_header = header(0x82, length)
        assert data == expected_header + payload
        assert parse_one(client_parser(), data) == Frame(Opcode.BINARY, payload)

    @pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 65537])
    def test_length_boundaries_masked(self, length: int) -> None:
        payload = bytes(i % 251 for i in range(length))
        data = serialize_frame(Opcode.BINARY, payload, mask=RFC_MASK)
        expected_header = header(0x82, length, masked=True) + RFC_MASK
        assert data[: len(expected_header)] == expected_header
        assert data[len(expected_header) :] == apply_mask(payload, RFC_MASK)
        assert parse_one(server_parser(), data) == Frame(Opcode.BINARY, payload)

    @pytest.mark.parametrize("length", [125, 126, 65535, 65536])
    def test_header_alone_is_buffered(self, length: int) -> None:
        # Every byte but the last leaves the frame incomplete; the last one completes it.
        data = serialize_frame(Opcode.BINARY, b"x" * length)
        parser = client_parser()
        assert parser.feed(data[:-1]) == []
        assert parser.error is None
        assert parser.buffered == len(data) - 1
        assert parser.feed(data[-1:]) == [Frame(Opcode.BINARY, b"x" * length)]
        assert parser.buffered == 0

    @pytest.mark.parametrize(
        "prefix", [b"\x82", b"\x82\x7e", b"\x82\x7e\x01", b"\x82\x7f" + bytes(7)]
    )
    def test_incomplete_length_is_buffered(self, prefix: bytes) -> None:
        parser = client_parser()
        assert parser.feed(prefix) == []
        assert parser.error is None
        assert parser.buffered == len(prefix)

    def test_fin_and_rsv1_flags(self) -> None:
        data = serialize_frame(Opcode.TEXT, b"x", fin=False, rsv1=True)
        assert data[0] == 0x41
        frame = parse_one(client_parser(allow_rsv1=True), data)
        assert frame == Frame(Opcode.TEXT, b"x", fin=False, rsv1=True)

    def test_64_bit_length_with_most_significant_bit(self) -> None:
        data = bytes([0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0])
        error = parse_error(client_parser(), data)
        assert type(error) is ProtocolError
        assert error.code == 1002

    def test_largest_64_bit_length_is_not_an_error_without_limit(self) -> None:
        # 2**63 - 1 is a legal length: the parser waits for the payload.
        data = bytes([0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        parser = client_parser()
        assert parser.feed(data) == []
        assert parser.error is None

    @pytest.mark.parametrize("opcode", RESERVED_OPCODES)
    def test_reserved_opcode(self, opcode: int) -> None:
        error = parse_error(client_parser(), bytes([0x80 | opcode, 0]))
        assert error.code == 1002

    @pytest.mark.parametrize("bit", [0x20, 0x10, 0x30])
    @pytest.mark.parametrize("allow_rsv1", [False, True])
    def test_rsv2_rsv3(self, bit: int, allow_rsv1: bool) -> None:
        error = parse_error(client_parser(allow_rsv1=allow_rsv1), bytes([0x81 | bit, 0]))
        assert error.code == 1002

    @pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION])
    def test_rsv1_without_extension(self, opcode: int) -> None:
        error = parse_error(client_parser(), bytes([0xC0 | opcode, 0]))
        assert error.code == 1002

    @pytest.mark.parametrize("opcode", sorted(CONTROL_OPCODES))
    def test_rsv1_on_control_frame_with_extension(self, opcode: int) -> None:
        error = parse_error(client_parser(allow_rsv1=True), bytes([0xC0 | opcode, 0]))
        assert error.code == 1002

    @pytest.mark.parametrize("opcode", sorted(CONTROL_OPCODES))
    def test_fragmented_control_frame(self, opcode: int) -> None:
        error = parse_error(client_parser(), bytes([opcode, 0]))
        assert error.code == 1002

    @pytest.mark.parametrize("opcode", sorted(CONTROL_OPCODES))
    def test_control_frame_payload_125(self, opcode: int) -> None:
        data = serialize_frame(opcode, b"p" * 125)
        assert parse_one(client_parser(), data) == Frame(opcode, b"p" * 125)

    @pytest.mark.parametrize("opcode", sorted(CONTROL_OPCODES))
    def test_control_frame_payload_126(self, opcode: int) -> None:
        # The error is found from the header alone: no payload byte has arrived.
        error = parse_error(client_parser(), bytes([0x80 | opcode, 126, 0, 126]))
        assert error.code == 1002

    def test_opcode_sets(self) -> None:
        assert {Opcode.CONTINUATION, Opcode.TEXT, Opcode.BINARY} == DATA_OPCODES
        assert {Opcode.CLOSE, Opcode.PING, Opcode.PONG} == CONTROL_OPCODES
        assert [int(op) for op in Opcode] == [0, 1, 2, 8, 9, 10]


class TestSection5_1Masking:
    """RFC 6455 section 5.1: a server rejects unmasked frames, a client rejects masked ones."""

    def test_unmasked_client_frame_at_server(self) -> None:
        error = parse_error(server_parser(), serialize_frame(Opcode.TEXT, b"Hello"))
        assert error.code == 1002
        assert "not masked" in str(error)

    def test_masked_server_frame_at_client(self) -> None:
        data = serialize_frame(Opcode.TEXT, b"Hello", mask=RFC_MASK)
        error = parse_error(client_parser(), data)
        assert error.code == 1002
        assert "masked" in str(error)

    def test_unmasked_control_frame_at_server(self) -> None:
        error = parse_error(server_parser(), serialize_frame(Opcode.PING, b""))
        assert error.code == 1002


class TestSection5_3MaskingAlgorithm:
    """RFC 6455 section 5.3: apply_mask, in C when built and in pure Python."""

    @pytest.mark.parametrize("length", [*range(70), 127, 128, 255, 256, 1000, 65537])
    def test_matches_reference(self, length: int) -> None:
        data = bytes((i * 7 + 3) % 256 for i in range(length))
        expected = bytes(b ^ RFC_MASK[i % 4] for i, b in enumerate(data))
        assert apply_mask(data, RFC_MASK) == expected
        assert frames._apply_mask_python(data, RFC_MASK) == expected

    @pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
    def test_buffer_types(self, kind: type) -> None:
        data = kind(b"Hello")
        assert apply_mask(data, RFC_MASK) == bytes([0x7F, 0x9F, 0x4D, 0x51, 0x58])
        assert frames._apply_mask_python(data, RFC_MASK) == bytes([0x7F, 0x9F, 0x4D, 0x51, 0x58])

    def test_returns_bytes(self) -> None:
        assert type(apply_mask(bytearray(b"abc"), RFC_MASK)) is bytes
        assert type(frames._apply_mask_python(bytearray(b"abc"), RFC_MASK)) is bytes
        assert type(frames._apply_mask_python(b"", RFC_MASK)) is bytes

    def test_involution(self) -> None:
        data = os.urandom(1001)
        assert apply_mask(apply_mask(data, RFC_MASK), RFC_MASK) == data

    def test_implementation_selected_by_environment(self) -> None:
        if os.environ.get("FULLDUPLEX_NO_EXTENSIONS"):
            assert apply_mask is frames._apply_mask_python
        else:
            # The accelerator must be built for the normal run; the Makefile builds it.
            assert apply_mask is not frames._apply_mask_python
            assert apply_mask.__module__ == "fullduplex.protocol._speedups"

    @pytest.mark.parametrize("kind", [bytearray, memoryview])
    @pytest.mark.parametrize("mask", [None, RFC_MASK])
    def test_serialize_buffer_payloads(self, kind: type, mask: bytes | None) -> None:
        expected = serialize_frame(Opcode.BINARY, b"payload", mask=mask)
        data = serialize_frame(Opcode.BINARY, kind(b"payload"), mask=mask)
        assert type(data) is bytes
        assert data == expected


class TestMaxFrameSize:
    """A frame longer than max_frame_size is refused from its header (1009)."""

    def test_at_limit(self) -> None:
        data = serialize_frame(Opcode.BINARY, b"x" * 100)
        assert parse_one(client_parser(max_frame_size=100), data).payload == b"x" * 100

    @pytest.mark.parametrize("length", [101, 126, 65536])
    def test_over_limit_from_header_alone(self, length: int) -> None:
        # Only the header is fed: the limit must be enforced before the payload is buffered.
        error = parse_error(client_parser(max_frame_size=100), header(0x82, length))
        assert type(error) is PayloadTooBig
        assert error.code == 1009

    def test_over_limit_before_mask_key(self) -> None:
        error = parse_error(server_parser(max_frame_size=10), header(0x82, 11, masked=True))
        assert error.code == 1009

    def test_limit_applies_to_control_frames(self) -> None:
        error = parse_error(client_parser(max_frame_size=4), serialize_frame(Opcode.PING, b"Hello"))
        assert error.code == 1009

    def test_other_errors_win_over_size(self) -> None:
        # A frame breaking the masking rule and the limit is reported as 1002.
        error = parse_error(server_parser(max_frame_size=1), header(0x82, 5))
        assert error.code == 1002


class TestFrameParserError:
    """FrameParser.error: frames before a bad one are returned, nothing after it."""

    def test_frames_before_bad_frame_returned(self) -> None:
        good = serialize_frame(Opcode.TEXT, b"a") + serialize_frame(Opcode.BINARY, b"b")
        bad = bytes([0x83, 0])
        after = serialize_frame(Opcode.TEXT, b"c")
        parser = client_parser()
        assert parser.feed(good + bad + after) == [
            Frame(Opcode.TEXT, b"a"),
            Frame(Opcode.BINARY, b"b"),
        ]
        assert parser.error is not None
        assert parser.error.code == 1002
        assert parser.buffered == 0
        # Once failed, the parser returns nothing, whatever arrives.
        assert parser.feed(after) == []
        assert parser.buffered == 0

    def test_error_after_buffered_bytes(self) -> None:
        good = serialize_frame(Opcode.TEXT, b"hello")
        parser = client_parser()
        assert parser.feed(good[:3]) == []
        assert parser.buffered == 3
        assert parser.feed(good[3:] + bytes([0x8F, 0])) == [Frame(Opcode.TEXT, b"hello")]
        assert parser.error is not None
        assert parser.buffered == 0

    def test_error_is_none_initially(self) -> None:
        parser = client_parser()
        assert parser.error is None
        assert parser.buffered == 0


def _stream() -> tuple[bytes, list[Frame]]:
    """Masked frames of every kind and length encoding, with the frames they must parse to."""
    specs = [
        Frame(Opcode.TEXT, "héllo".encode()),
        Frame(Opcode.BINARY, b"", fin=False),
        Frame(Opcode.PING, b"ping"),
        Frame(Opcode.CONTINUATION, bytes(range(200)), fin=False),
        Frame(Opcode.PONG, b""),
        Frame(Opcode.CONTINUATION, b"x" * 300),
        Frame(Opcode.CLOSE, b"\x03\xe8bye"),
    ]
    masks = [bytes([i, i + 1, i + 2, i + 3]) for i in range(len(specs))]
    data = b"".join(
        serialize_frame(f.opcode, f.payload, fin=f.fin, mask=mask)
        for f, mask in zip(specs, masks, strict=True)
    )
    return data, specs


class TestChunking:
    """The parser returns the same frames however a stream is split into reads."""

    def test_one_byte_at_a_time(self) -> None:
        data, expected = _stream()
        parser = server_parser()
        result: list[Frame] = []
        for i in range(len(data)):
            result += parser.feed(data[i : i + 1])
        assert result == expected
        assert parser.error is None
        assert parser.buffered == 0

    def test_every_split_in_two(self) -> None:
        data, expected = _stream()
        for cut in range(len(data) + 1):
            parser = server_parser()
            result = parser.feed(data[:cut]) + parser.feed(data[cut:])
            assert result == expected, cut
            assert parser.buffered == 0

    def test_bytearray_input(self) -> None:
        data, expected = _stream()
        parser = server_parser()
        result = parser.feed(bytearray(data[:50])) + parser.feed(bytearray(data[50:]))
        assert result == expected

    def test_empty_feed(self) -> None:
        parser = client_parser()
        assert parser.feed(b"") == []
        assert parser.feed(b"\x81") == []
        assert parser.feed(b"") == []
        assert parser.feed(b"\x00") == [Frame(Opcode.TEXT, b"")]

    def test_input_not_retained(self) -> None:
        # The parser copies what it buffers: a caller may reuse its read buffer.
        data = bytearray(serialize_frame(Opcode.BINARY, b"abcdef"))
        parser = client_parser()
        assert parser.feed(data[:4]) == []
        tail = data[4:]
        data[:] = b"\xff" * len(data)
        assert parser.feed(tail) == [Frame(Opcode.BINARY, b"abcdef")]

    @settings(max_examples=200, deadline=None)
    @given(
        frames_=st.lists(
            st.tuples(
                st.sampled_from([0, 1, 2, 8, 9, 10]),
                st.binary(max_size=300),
                st.booleans(),
                st.binary(min_size=4, max_size=4),
            ),
            max_size=8,
        ),
        cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=12),
    )
    def test_any_chunking(
        self, frames_: list[tuple[int, bytes, bool, bytes]], cuts: list[int]
    ) -> None:
        expected = []
        data = b""
        for opcode, raw, more, mask in frames_:
            # Control frames are never fragmented and carry at most 125 bytes.
            payload = raw[:125] if opcode >= 8 else raw
            fin = opcode >= 8 or not more
            expected.append(Frame(opcode, payload, fin))
            data += serialize_frame(opcode, payload, fin=fin, mask=mask)
        points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
        parser = server_parser()
        result: list[Frame] = []
        for start, end in itertools.pairwise(points):
            result += parser.feed(data[start:end])
        assert result == expected
        assert parser.error is None
        assert parser.buffered == 0


class TestFuzz:
    """Arbitrary bytes never raise: they give frames, or an error with 1002 or 1009."""

    @settings(max_examples=200, deadline=None)
    @given(
        chunks=st.lists(st.binary(max_size=64), max_size=8),
        mask_required=st.booleans(),
        allow_rsv1=st.booleans(),
        max_frame_size=st.one_of(st.none(), st.integers(min_value=0, max_value=200)),
    )
    def test_random_bytes(
        self,
        chunks: list[bytes],
        mask_required: bool,
        allow_rsv1: bool,
        max_frame_size: int | None,
    ) -> None:
        parser = FrameParser(
            mask_required=mask_required, max_frame_size=max_frame_size, allow_rsv1=allow_rsv1
        )
        for chunk in chunks:
            for frame in parser.feed(chunk):
                assert frame.opcode in {0, 1, 2, 8, 9, 10}
                assert allow_rsv1 or not frame.rsv1
                if max_frame_size is not None:
                    assert len(frame.payload) <= max_frame_size
        if parser.error is not None:
            assert parser.error.code in {1002, 1009}
            assert parser.buffered == 0
        assert parser.buffered <= sum(len(c) for c in chunks)


class TestSection7_4StatusCodes:
    """RFC 6455 sections 5.5.1 and 7.4: the close frame payload."""

    @pytest.mark.parametrize("code", VALID_CLOSE_CODES)
    def test_valid_code(self, code: int) -> None:
        assert is_valid_close_code(code)
        payload = serialize_close(code, "bye")
        assert payload == struct.pack("!H", code) + b"bye"
        assert parse_close(payload) == (code, "bye")

    @pytest.mark.parametrize("code", INVALID_CLOSE_CODES)
    def test_invalid_code(self, code: int) -> None:
        assert not is_valid_close_code(code)
        with pytest.raises(ProtocolError):
            serialize_close(code)
        with pytest.raises(ProtocolError) as info:
            parse_close(struct.pack("!H", code))
        assert info.value.code == 1002

    def test_no_code(self) -> None:
        assert serialize_close() == b""
        assert serialize_close(None) == b""
        assert parse_close(b"") == (1005, "")

    def test_reason_without_code(self) -> None:
        with pytest.raises(ProtocolError):
            serialize_close(None, "why")

    def test_one_byte_payload(self) -> None:
        with pytest.raises(ProtocolError) as info:
            parse_close(b"\x03")
        assert info.value.code == 1002

    def test_code_only(self) -> None:
        assert serialize_close(1000) == b"\x03\xe8"
        assert parse_close(b"\x03\xe8") == (1000, "")

    def test_invalid_utf8_reason(self) -> None:
        with pytest.raises(ProtocolError) as info:
            parse_close(b"\x03\xe8\xff")
        assert info.value.code == 1007

    def test_truncated_utf8_reason(self) -> None:
        with pytest.raises(ProtocolError) as info:
            parse_close(b"\x03\xe8" + "é".encode()[:1])
        assert info.value.code == 1007

    def test_non_ascii_reason(self) -> None:
        payload = serialize_close(4000, "déjà vu ✓")
        assert parse_close(payload) == (4000, "déjà vu ✓")

    def test_reason_123_bytes(self) -> None:
        assert len(serialize_close(1000, "r" * 123)) == 125
        # 61 two-byte characters and one ASCII: 123 bytes, not characters.
        assert len(serialize_close(1000, "é" * 61 + "r")) == 125

    @pytest.mark.parametrize("reason", ["r" * 124, "é" * 62])
    def test_reason_over_123_bytes(self, reason: str) -> None:
        with pytest.raises(ProtocolError):
            serialize_close(1000, reason)

    def test_close_code_enum(self) -> None:
        assert int(CloseCode.NORMAL_CLOSURE) == 1000
        assert int(CloseCode.NO_STATUS_RCVD) == 1005
        assert int(CloseCode.ABNORMAL_CLOSURE) == 1006
        assert int(CloseCode.MESSAGE_TOO_BIG) == 1009
        assert int(CloseCode.TLS_HANDSHAKE) == 1015
        # The codes that never travel on the wire are not valid to send.
        for code in CloseCode:
            assert is_valid_close_code(code) is (code not in {1005, 1006, 1015})
