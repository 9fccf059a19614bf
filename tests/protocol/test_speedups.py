"""Tests for src/fullduplex/protocol/_speedups.c: the C apply_mask equals the Python reference.

The reference is ``frames._apply_mask_python``. These tests are skipped only when the extension
is not built AND FULLDUPLEX_NO_EXTENSIONS is set (the pure-Python run of ``make test``); a
missing extension without that variable fails every test, so a broken build cannot hide.
"""

from __future__ import annotations

import array
import os
import subprocess
import sys
from collections.abc import Callable
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fullduplex.protocol import frames
from fullduplex.protocol.frames import _apply_mask_python
from tests.helpers import seconds
from tests.protocol.conftest import SPEEDUPS as _SPEEDUPS

__all__: list[str] = []

ApplyMask = Callable[..., bytes]


# Masks chosen so every byte position of the mask matters: distinct bytes, high bits, zero.
MASKS = [b"\x01\x02\x03\x04", b"\xff\x00\xa5\x5a", b"\x00\x00\x00\x00", b"\x37\xfa\x21\x3d"]


@pytest.fixture(scope="module")
def apply_mask(speedups: ModuleType) -> ApplyMask:
    """The C apply_mask."""
    function: ApplyMask = speedups.apply_mask
    return function


def test_extension_is_built() -> None:
    """Fails (not errors) when the build silently dropped the optional extension."""
    if _SPEEDUPS is None and not os.environ.get("FULLDUPLEX_NO_EXTENSIONS"):
        pytest.fail("fullduplex.protocol._speedups is not built", pytrace=False)
    if _SPEEDUPS is None:
        pytest.skip("C extension not built and FULLDUPLEX_NO_EXTENSIONS is set")
    assert callable(_SPEEDUPS.apply_mask)


def _payload(length: int) -> bytes:
    """Deterministic bytes with every value 0..255, so no XOR result can pass by accident."""
    return bytes((i * 7 + 3) & 0xFF for i in range(length))


def _views(data: bytes, offset: int) -> list[bytes | bytearray | memoryview]:
    """``data`` as bytes, bytearray, memoryview, and a memoryview starting ``offset`` bytes
    into a larger buffer (so the C code sees every address alignment)."""
    padded = bytearray(b"\xee" * offset + data + b"\xee" * 5)
    return [
        data,
        bytearray(data),
        memoryview(data),
        memoryview(padded)[offset : offset + len(data)],
    ]


class TestSection5_3Masking:
    """RFC 6455 section 5.3: the C XOR with the repeated mask equals the Python reference."""

    @pytest.mark.parametrize("offset", [0, 1, 2, 3])
    @pytest.mark.parametrize("mask", MASKS)
    def test_lengths_0_to_300(self, apply_mask: ApplyMask, mask: bytes, offset: int) -> None:
        for length in range(301):
            data = _payload(length)
            expected = _apply_mask_python(data, mask)
            for view in _views(data, offset):
                result = apply_mask(view, mask)
                assert result == expected, (length, type(view).__name__)
                assert type(result) is bytes

    @pytest.mark.parametrize("length", [4095, 65536 + 7, 2**20, 2**20 + 13, 4 * 2**20 + 3])
    def test_large_lengths(self, apply_mask: ApplyMask, length: int) -> None:
        data = os.urandom(length)
        mask = b"\x9c\x04\xe1\x7f"
        expected = _apply_mask_python(data, mask)
        for view in _views(data, 3):
            assert apply_mask(view, mask) == expected

    def test_above_the_gil_release_threshold(self, apply_mask: ApplyMask) -> None:
        # 64 MiB and more XOR without the GIL (another code path in the C); the Python reference
        # would need several copies of 64 MiB, so compare with the C result on 1 MiB slices,
        # which test_large_lengths ties to the reference. Slices start at multiples of 4, so
        # the mask lines up with the whole.
        length = 64 * 2**20 + 5
        data = bytearray(os.urandom(length))
        mask = b"\x12\x34\x56\x78"
        result = apply_mask(data, mask)
        assert len(result) == length
        view = memoryview(data)
        chunk = 2**20
        for start in range(0, length, chunk):
            assert result[start : start + chunk] == apply_mask(view[start : start + chunk], mask)
        view.release()

    @pytest.mark.parametrize("mask", MASKS)
    def test_mask_rotations(self, apply_mask: ApplyMask, mask: bytes) -> None:
        # Masking from byte k equals masking with the mask rotated by k: what a client does
        # when it masks a payload in pieces.
        data = _payload(97)
        whole = apply_mask(data, mask)
        for k in range(4):
            rotated = mask[k:] + mask[:k]
            assert apply_mask(data[k:], rotated) == whole[k:]

    def test_masking_twice_restores_the_data(self, apply_mask: ApplyMask) -> None:
        data = _payload(1000)
        assert apply_mask(apply_mask(data, b"\xaa\xbb\xcc\xdd"), b"\xaa\xbb\xcc\xdd") == data

    def test_input_is_not_modified(self, apply_mask: ApplyMask) -> None:
        data = bytearray(_payload(100))
        apply_mask(data, b"\xff\xff\xff\xff")
        assert data == _payload(100)

    def test_mask_may_be_any_bytes_like(self, apply_mask: ApplyMask) -> None:
        data = _payload(50)
        expected = _apply_mask_python(data, b"\x01\x02\x03\x04")
        for mask in (bytearray(b"\x01\x02\x03\x04"), memoryview(b"\x00\x01\x02\x03\x04")[1:]):
            assert apply_mask(data, mask) == expected

    def test_keyword_arguments(self, apply_mask: ApplyMask) -> None:
        data = _payload(10)
        expected = _apply_mask_python(data, b"\x01\x02\x03\x04")
        assert apply_mask(data=data, mask=b"\x01\x02\x03\x04") == expected
        assert apply_mask(data, mask=b"\x01\x02\x03\x04") == expected

    def test_wide_items_are_masked_bytewise(self, apply_mask: ApplyMask) -> None:
        # The buffer protocol gives bytes, whatever the item size of the exporter.
        items = array.array("H", range(40))
        assert apply_mask(memoryview(items), b"\x01\x02\x03\x04") == apply_mask(
            items.tobytes(), b"\x01\x02\x03\x04"
        )

    def test_buffers_are_released(self, apply_mask: ApplyMask) -> None:
        # A bytearray cannot be resized while a buffer export is held: this fails if the C
        # code leaks one, on the success path or the error path.
        data = bytearray(_payload(64))
        mask = bytearray(b"\x01\x02\x03\x04")
        apply_mask(data, mask)
        with pytest.raises(ValueError):
            apply_mask(data, bytearray(b"\x01\x02\x03"))
        data.append(0)
        mask.append(0)
        assert len(data) == 65
        assert len(mask) == 5

    def test_no_reference_leaks(self, apply_mask: ApplyMask) -> None:
        data = _payload(100)
        mask = b"\x01\x02\x03\x04"
        short_mask = b"\x01"
        before = (sys.getrefcount(data), sys.getrefcount(mask), sys.getrefcount(short_mask))
        for _ in range(1000):
            apply_mask(data, mask)
            apply_mask(memoryview(data), mask)
            with pytest.raises(ValueError):
                apply_mask(data, short_mask)
        after = (sys.getrefcount(data), sys.getrefcount(mask), sys.getrefcount(short_mask))
        assert after == before

    @given(
        data=st.binary(max_size=3000),
        mask=st.binary(min_size=4, max_size=4),
        offset=st.integers(min_value=0, max_value=3),
    )
    def test_property_equals_reference(
        self, apply_mask: ApplyMask, data: bytes, mask: bytes, offset: int
    ) -> None:
        expected = _apply_mask_python(data, mask)
        for view in _views(data, offset):
            assert apply_mask(view, mask) == expected


class TestErrors:
    """Bad arguments raise the documented exceptions and nothing is returned."""

    @pytest.mark.parametrize("mask", [b"", b"\x01", b"\x01\x02\x03", b"\x01\x02\x03\x04\x05"])
    def test_mask_must_be_4_bytes(self, apply_mask: ApplyMask, mask: bytes) -> None:
        with pytest.raises(ValueError, match="4 bytes"):
            apply_mask(b"payload", mask)

    def test_mask_length_is_checked_for_empty_data(self, apply_mask: ApplyMask) -> None:
        with pytest.raises(ValueError, match="4 bytes"):
            apply_mask(b"", b"\x01\x02")

    @pytest.mark.parametrize("data", ["text", 1234, None, [1, 2, 3]])
    def test_data_must_be_bytes_like(self, apply_mask: ApplyMask, data: object) -> None:
        with pytest.raises(TypeError):
            apply_mask(data, b"\x01\x02\x03\x04")

    @pytest.mark.parametrize("mask", ["abcd", 1234, None])
    def test_mask_must_be_bytes_like(self, apply_mask: ApplyMask, mask: object) -> None:
        with pytest.raises(TypeError):
            apply_mask(b"payload", mask)

    def test_non_contiguous_data(self, apply_mask: ApplyMask) -> None:
        strided = memoryview(_payload(16))[::2]
        with pytest.raises(BufferError):
            apply_mask(strided, b"\x01\x02\x03\x04")

    @pytest.mark.parametrize(
        ("args", "kwargs"),
        [
            ((), {}),
            ((b"data",), {}),
            ((b"data", b"mask", b"more"), {}),
            ((b"data", b"mask"), {"mask": b"mask"}),
            ((b"data", b"mask"), {"other": 1}),
            ((), {"data": b"data"}),
        ],
    )
    def test_bad_signature(
        self, apply_mask: ApplyMask, args: tuple[object, ...], kwargs: dict[str, object]
    ) -> None:
        with pytest.raises(TypeError):
            apply_mask(*args, **kwargs)


class TestSelection:
    """frames.apply_mask is the C function unless FULLDUPLEX_NO_EXTENSIONS is set."""

    def test_frames_uses_the_extension(self, speedups: ModuleType) -> None:
        if os.environ.get("FULLDUPLEX_NO_EXTENSIONS"):
            assert frames.apply_mask is _apply_mask_python
        else:
            assert frames.apply_mask is speedups.apply_mask

    @pytest.mark.parametrize(("value", "expected"), [("1", "python"), ("", "c")])
    def test_environment_variable(self, speedups: ModuleType, value: str, expected: str) -> None:
        code = (
            "from fullduplex.protocol import frames; "
            "print('python' if frames.apply_mask is frames._apply_mask_python else 'c')"
        )
        env = {k: v for k, v in os.environ.items() if k != "FULLDUPLEX_NO_EXTENSIONS"}
        if value:
            env["FULLDUPLEX_NO_EXTENSIONS"] = value
        result = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds(30),
        )
        assert result.stdout.strip() == expected

    def test_reports_its_code_path(self, speedups: ModuleType) -> None:
        assert speedups.simd in {"avx2", "sse2", "uint64"}
