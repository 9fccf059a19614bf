"""Optional C accelerator for fullduplex.protocol; the pure-Python code is the reference."""

from typing_extensions import Buffer

__all__ = ["apply_mask", "simd"]

simd: str
"""Which code path apply_mask uses on this machine: "avx2", "sse2" or "uint64"."""

def apply_mask(data: Buffer, mask: Buffer) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (RFC 6455 section 5.3).

    Equal to ``frames._apply_mask_python`` for every valid input.

    Args:
        data: Any C-contiguous bytes-like object (bytes, bytearray, memoryview...).
        mask: Exactly four bytes, any bytes-like object.

    Returns:
        New bytes, as long as ``data`` (in bytes).

    Raises:
        ValueError: If ``mask`` is not exactly 4 bytes long.
        TypeError: If ``data`` or ``mask`` does not support the buffer protocol.
        BufferError: If ``data`` is not C-contiguous.
    """
