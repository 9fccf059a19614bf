"""Tests for the C FrameParser in _speedups.c: it behaves exactly like frames.PythonFrameParser.

Same frames, same buffering, same error (class, code and message) at the same point, for streams
of valid and invalid frames cut anywhere. Skipped or failed like test_speedups.py when the
extension is missing (see its docstring).
"""

from __future__ import annotations

import gc
import os
import sys
import tracemalloc
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fullduplex.exceptions import PayloadTooBig, ProtocolError
from fullduplex.protocol import frames
from fullduplex.protocol.frames import Frame, PythonFrameParser, serialize_frame

__all__: list[str] = []

MASK = b"\x37\xfa\x21\x3d"


@pytest.fixture(autouse=True)
def _set_up(speedups: ModuleType) -> None:
    """frames.py calls setup() only when it uses the C parser; these tests use it regardless."""
    speedups.setup(Frame, ProtocolError, PayloadTooBig)


def _outcome(parser: Any, chunks: list[bytes]) -> tuple[list[Frame], Any, int]:
    """Feed every chunk; return all frames, the error as (class, code, message), and buffered."""
    out: list[Frame] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    error = parser.error
    described = None if error is None else (type(error), error.code, str(error))
    return out, described, parser.buffered


def _both(speedups: ModuleType, **options: Any) -> tuple[Any, Any]:
    return speedups.FrameParser(**options), PythonFrameParser(**options)


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


_frame = st.builds(
    lambda opcode, payload, fin, rsv1, masked: serialize_frame(
        opcode, payload, fin=fin, rsv1=rsv1, mask=MASK if masked else None
    ),
    st.sampled_from([0, 1, 2, 8, 9, 10]),
    st.one_of(st.binary(max_size=140), st.binary(min_size=65530, max_size=65540)),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)


class TestSameAsReference:
    """Property tests: any stream, any cuts, any options."""

    @settings(max_examples=150, deadline=None)
    @given(
        stream=st.lists(_frame, max_size=6),
        noise=st.binary(max_size=12),
        cuts=st.lists(st.integers(min_value=0, max_value=70000), max_size=6),
        options=st.fixed_dictionaries(
            {
                "mask_required": st.booleans(),
                "allow_rsv1": st.booleans(),
                "max_frame_size": st.one_of(st.none(), st.integers(0, 70000)),
            }
        ),
    )
    def test_random_streams(
        self,
        speedups: ModuleType,
        stream: list[bytes],
        noise: bytes,
        cuts: list[int],
        options: dict[str, Any],
    ) -> None:
        data = b"".join(stream) + noise
        fast, reference = _both(speedups, **options)
        assert _outcome(fast, _cut(data, cuts)) == _outcome(reference, _cut(data, cuts))

    @settings(max_examples=200, deadline=None)
    @given(data=st.binary(max_size=64), cuts=st.lists(st.integers(0, 64), max_size=4))
    def test_random_bytes(
        self,
        speedups: ModuleType,
        data: bytes,
        cuts: list[int],
    ) -> None:
        fast, reference = _both(speedups, mask_required=True, max_frame_size=40)
        assert _outcome(fast, _cut(data, cuts)) == _outcome(reference, _cut(data, cuts))


class TestDetails:
    def test_frames_are_frame_instances(self, speedups: ModuleType) -> None:
        parser = speedups.FrameParser(mask_required=True)
        (frame,) = parser.feed(serialize_frame(1, b"hi", mask=MASK))
        assert type(frame) is Frame
        assert frame == Frame(1, b"hi", True, False)
        assert frame.opcode == 1 and frame.payload == b"hi" and frame.fin is True

    def test_64_bit_length_with_the_top_bit_set(self, speedups: ModuleType) -> None:
        data = b"\x82\xff\x80" + b"\x00" * 7 + MASK
        fast, reference = _both(speedups, mask_required=True)
        assert _outcome(fast, [data]) == _outcome(reference, [data])
        assert fast.error.code == 1002

    def test_oversized_frame_is_payload_too_big(self, speedups: ModuleType) -> None:
        parser = speedups.FrameParser(mask_required=False, max_frame_size=3)
        assert parser.feed(b"\x82\x04") == []
        assert isinstance(parser.error, PayloadTooBig)
        assert str(parser.error) == "frame of 4 bytes over the local limit (3 bytes)"

    def test_no_frames_after_an_error(self, speedups: ModuleType) -> None:
        parser = speedups.FrameParser(mask_required=False)
        assert parser.feed(b"\x81\x01a\x83\x00\x81\x01b") == [Frame(1, b"a", True, False)]
        assert isinstance(parser.error, ProtocolError)
        assert parser.feed(b"\x81\x01c") == []
        assert parser.buffered == 0

    def test_accepts_any_bytes_like(self, speedups: ModuleType) -> None:
        data = serialize_frame(2, b"abc")
        for chunk in (data, bytearray(data), memoryview(data)):
            parser = speedups.FrameParser(mask_required=False)
            assert parser.feed(chunk) == [Frame(2, b"abc", True, False)]

    def test_mask_required_is_keyword_only_and_required(
        self,
        speedups: ModuleType,
    ) -> None:
        with pytest.raises(TypeError):
            speedups.FrameParser()
        with pytest.raises(TypeError):
            speedups.FrameParser(True)

    def test_no_reference_leaks(self, speedups: ModuleType) -> None:
        data = serialize_frame(1, b"x" * 100, mask=MASK) * 3
        parser = speedups.FrameParser(mask_required=True)

        def run() -> None:
            for _ in range(200):
                parser.feed(data[:150])
                parser.feed(data[150:])

        run()
        gc.collect()
        before = sys.gettotalrefcount() if hasattr(sys, "gettotalrefcount") else None
        blocks = sys.getallocatedblocks()
        run()
        gc.collect()
        if before is not None:
            assert sys.gettotalrefcount() - before < 50
        assert sys.getallocatedblocks() - blocks < 50


def test_frames_uses_the_c_parser(speedups: ModuleType) -> None:
    if os.environ.get("FULLDUPLEX_NO_EXTENSIONS"):
        assert frames.FrameParser is PythonFrameParser
    else:
        assert frames.FrameParser is speedups.FrameParser


class TestFrame:
    """The C frame() equals frames._frame_python, the reference."""

    @pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
    @pytest.mark.parametrize("mask", [None, MASK])
    def test_lengths_and_masks(self, speedups: ModuleType, length: int, mask: bytes | None) -> None:
        payload = bytes(range(256)) * (length // 256) + bytes(range(length % 256))
        for opcode, fin, rsv1 in [(1, True, False), (2, False, True), (0, True, False)]:
            expected = frames._frame_python(opcode, payload, fin, rsv1, mask)
            assert speedups.frame(opcode, payload, fin, rsv1, mask) == expected

    def test_any_bytes_like(self, speedups: ModuleType) -> None:
        expected = frames._frame_python(2, b"abc", True, False, MASK)
        for payload in (bytearray(b"abc"), memoryview(b"abc")):
            assert speedups.frame(2, payload, True, False, MASK) == expected
        assert speedups.frame(2, b"abc", True, False, bytearray(MASK)) == expected

    def test_bad_arguments(self, speedups: ModuleType) -> None:
        with pytest.raises(ValueError, match="4 bytes"):
            speedups.frame(1, b"", True, False, b"abc")
        with pytest.raises(TypeError):
            speedups.frame(1, "text", True, False, None)
        with pytest.raises(TypeError):
            speedups.frame(1, b"")

    def test_serialize_frame_uses_it(self, speedups: ModuleType) -> None:
        if os.environ.get("FULLDUPLEX_NO_EXTENSIONS"):
            assert frames.frame is frames._frame_python
        else:
            assert frames.frame is speedups.frame


class TestLargeFrames:
    """Frames of 64 KiB and more are filled in place as they arrive: same results."""

    @settings(max_examples=60, deadline=None)
    @given(
        length=st.integers(65530, 300_000),
        cuts=st.lists(st.integers(0, 310_000), max_size=8),
        masked=st.booleans(),
        tail=st.binary(max_size=20),
    )
    def test_same_as_reference(
        self, speedups: ModuleType, length: int, cuts: list[int], masked: bool, tail: bytes
    ) -> None:
        payload = bytes(range(256)) * (length // 256 + 1)
        data = serialize_frame(2, payload[:length], mask=MASK if masked else None)
        data += serialize_frame(1, b"next", mask=MASK if masked else None) + tail
        fast, reference = _both(speedups, mask_required=masked)
        pieces = _cut(data, cuts)
        out_fast, out_reference = [], []
        for piece in pieces:
            out_fast.extend(fast.feed(piece))
            out_reference.extend(reference.feed(piece))
            assert fast.buffered == reference.buffered
        assert out_fast == out_reference
        assert out_fast[0].payload == payload[:length]

    def test_buffer_is_released_after_a_large_frame(self, speedups: ModuleType) -> None:
        parser = speedups.FrameParser(mask_required=True)
        data = serialize_frame(2, b"x" * 100_000, mask=MASK)
        # Byte by byte at first, so that the header and some payload are buffered.
        for i in range(20):
            assert parser.feed(data[i : i + 1]) == []
        (frame,) = parser.feed(data[20:])
        assert frame.payload == b"x" * 100_000
        assert parser.buffered == 0

    def test_grown_piece_by_piece_to_the_exact_payload(self, speedups: ModuleType) -> None:
        payload = os.urandom(1_000_003)
        data = serialize_frame(2, payload, mask=MASK)
        parser = speedups.FrameParser(mask_required=True)
        frames_out = []
        for start in range(0, len(data), 4093):  # hundreds of pieces: many doublings
            frames_out.extend(parser.feed(data[start : start + 4093]))
        assert [frame.payload for frame in frames_out] == [payload]
        assert parser.buffered == 0


class TestAnnouncedIsNotReserved:
    """Memory grows with the bytes received, never with the bytes a header announces (the
    attack: the header of a 16 MiB frame and one byte, on many connections)."""

    def test_header_of_a_large_frame_reserves_little(self, speedups: ModuleType) -> None:
        header = serialize_frame(2, b"\0" * (16 * 1024 * 1024 - 1), mask=MASK)[:14]
        parsers = [speedups.FrameParser(mask_required=True) for _ in range(31)]
        tracemalloc.start()
        try:
            for parser in parsers:
                assert parser.feed(header + b"x") == []
            used, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert all(parser.buffered == 15 for parser in parsers)
        assert used < 31 * 200 * 1024, used  # 16 MiB each before: 496 MiB in all


class TestPartialText:
    """partial_text: the text received so far of an incomplete frame, as the reference says."""

    @settings(max_examples=150, deadline=None)
    @given(
        stream=st.lists(_frame, max_size=4),
        cuts=st.lists(st.integers(min_value=0, max_value=70000), max_size=6),
        masked=st.booleans(),
    )
    def test_same_as_reference(
        self, speedups: ModuleType, stream: list[bytes], cuts: list[int], masked: bool
    ) -> None:
        fast, reference = _both(speedups, mask_required=masked, allow_rsv1=True)
        for piece in _cut(b"".join(stream), cuts):
            fast.feed(piece)
            reference.feed(piece)
            for start in (0, 1, 3, 6, 65536, 70000):
                for message in (0, 1, 2):
                    expected = reference.partial_text(start, message)
                    assert fast.partial_text(start, message) == expected

    @pytest.mark.parametrize("length", [10, 200, 70_000])
    @pytest.mark.parametrize("masked", [False, True])
    def test_unmasks_from_any_offset(self, speedups: ModuleType, length: int, masked: bool) -> None:
        payload = bytes(range(256)) * (length // 256 + 1)
        data = serialize_frame(1, payload[:length], mask=MASK if masked else None)
        for parser in _both(speedups, mask_required=masked):
            assert parser.partial_text(0, 0) is None  # nothing buffered
            assert parser.feed(data[:-1]) == []
            header = len(data) - length
            assert parser.partial_text(0, 0) == payload[: length - 1]
            assert parser.partial_text(5, 0) == payload[5 : length - 1]
            assert parser.partial_text(length, 0) == b""
            assert parser.partial_text(0, 1) is None  # a TEXT frame inside a message
            assert header > 0

    def test_continuation_only_inside_a_text_message(self, speedups: ModuleType) -> None:
        data = serialize_frame(0, b"abcdef", fin=True)[:-2]
        for parser in _both(speedups, mask_required=False):
            parser.feed(data)
            assert parser.partial_text(0, 1) == b"abcd"
            assert parser.partial_text(0, 0) is None
            assert parser.partial_text(0, 2) is None

    def test_bad_arguments(self, speedups: ModuleType) -> None:
        parser = speedups.FrameParser(mask_required=False)
        with pytest.raises(ValueError, match="negative"):
            parser.partial_text(-1, 0)
        with pytest.raises(TypeError):
            parser.partial_text(0)
