"""Optional C accelerator for fullduplex.protocol; the pure-Python code is the reference."""

from typing_extensions import Buffer

from ..exceptions import ProtocolError
from .frames import Frame

__all__ = ["FrameParser", "apply_mask", "frame", "setup", "simd"]

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

class FrameParser:
    """The C twin of :class:`fullduplex.protocol.frames.FrameParser` (same API and results)."""

    error: ProtocolError | None

    def __init__(
        self, *, mask_required: bool, max_frame_size: int | None = None, allow_rsv1: bool = False
    ) -> None: ...
    @property
    def buffered(self) -> int:
        """How many bytes wait for the rest of their frame."""
    def feed(self, data: Buffer, /) -> list[Frame]:
        """Parse ``data`` after whatever was buffered; return the frames it completes."""
    def partial_text(self, start: int, message: int, /) -> bytes | None:
        """The text payload of an incomplete frame received so far, from ``start`` on."""

def setup(
    frame_type: type[Frame],
    protocol_error: type[ProtocolError],
    payload_too_big: type[ProtocolError],
    /,
) -> None:
    """Give FrameParser the classes it creates; frames.py calls it once, at import."""

def frame(opcode: int, payload: Buffer, fin: bool, rsv1: bool, mask: Buffer | None, /) -> bytes:
    """Return the bytes of one frame (equal to ``frames._frame_python``)."""
