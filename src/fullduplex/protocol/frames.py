"""RFC 6455 section 5: opcodes, close codes, frame serialization and incremental parsing.

The parser works on a whole read at a time: :meth:`FrameParser.feed` takes the bytes of one
``data_received`` call and returns every frame they complete, so a read that carries many small
frames costs one pass and one list, not one call per frame.
"""

from __future__ import annotations

import contextlib
import enum
import os
import struct
from types import ModuleType
from typing import NamedTuple

from ..exceptions import PayloadTooBig, ProtocolError

__all__ = [
    "CONTROL_OPCODES",
    "DATA_OPCODES",
    "CloseCode",
    "Frame",
    "FrameParser",
    "Opcode",
    "apply_mask",
    "frame",
    "frame_header",
    "is_valid_close_code",
    "parse_close",
    "serialize_close",
    "serialize_frame",
]


class Opcode(enum.IntEnum):
    """Frame opcodes (RFC 6455 section 5.2). Every other value is reserved."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


DATA_OPCODES = frozenset({Opcode.CONTINUATION, Opcode.TEXT, Opcode.BINARY})
CONTROL_OPCODES = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})
_KNOWN_OPCODES = frozenset(int(op) for op in Opcode)


class CloseCode(enum.IntEnum):
    """Close status codes (RFC 6455 section 7.4.1 and the IANA registry)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005  # never on the wire
    ABNORMAL_CLOSURE = 1006  # never on the wire
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015  # never on the wire


def is_valid_close_code(code: int) -> bool:
    """Tell whether ``code`` may appear in a close frame on the wire (RFC 6455 section 7.4)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class Frame(NamedTuple):
    """One frame as received: already unmasked, not yet decompressed."""

    opcode: int
    payload: bytes
    fin: bool = True
    rsv1: bool = False


def _apply_mask_python(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (RFC 6455 section 5.3)."""
    length = len(data)
    if length == 0:
        return b""
    # One big-integer XOR is much faster than a Python loop over bytes.
    repeated = (mask * (length // 4 + 1))[:length]
    value = int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")
    return value.to_bytes(length, "little")


_speedups: ModuleType | None = None
if not os.environ.get("FULLDUPLEX_NO_EXTENSIONS"):
    # The C build is optional: without it, the pure-Python references in this module are used.
    with contextlib.suppress(ImportError):
        from . import _speedups

apply_mask = _apply_mask_python if _speedups is None else _speedups.apply_mask

_pack_2 = struct.Struct("!BB").pack
_pack_4 = struct.Struct("!BBH").pack
_pack_10 = struct.Struct("!BBQ").pack
_unpack_16 = struct.Struct("!H").unpack_from
_unpack_64 = struct.Struct("!Q").unpack_from


def frame_header(opcode: int, length: int, fin: bool, rsv1: bool, masked: bool = False) -> bytes:
    """Return the header of a frame, up to its payload length (without the masking key)."""
    b0 = opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0)
    mask_bit = 0x80 if masked else 0
    if length < 126:
        return _pack_2(b0, mask_bit | length)
    if length < 65536:
        return _pack_4(b0, mask_bit | 126, length)
    return _pack_10(b0, mask_bit | 127, length)


def _frame_python(
    opcode: int,
    payload: bytes | bytearray | memoryview,
    fin: bool,
    rsv1: bool,
    mask: bytes | None,
) -> bytes:
    """Return the bytes of one frame (the reference for ``_speedups.frame``)."""
    header = frame_header(opcode, len(payload), fin, rsv1, mask is not None)
    if mask is None:
        return header + payload if type(payload) is bytes else header + bytes(payload)
    return header + mask + apply_mask(payload, mask)


#: frame(opcode, payload, fin, rsv1, mask): positional, for the hot path of Connection.
frame = _frame_python if _speedups is None else _speedups.frame


def serialize_frame(
    opcode: int,
    payload: bytes | bytearray | memoryview,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bytes | None = None,
) -> bytes:
    """Return the bytes of one frame.

    Args:
        opcode: The frame's opcode.
        payload: Its payload, not masked.
        fin: Whether this is the last frame of its message.
        rsv1: Whether the payload is compressed (permessage-deflate, first frame only).
        mask: Four bytes to mask the payload with: required from a client, None from a server.
    """
    return frame(opcode, payload, fin, rsv1, mask)


def serialize_close(code: int | None = None, reason: str = "") -> bytes:
    """Return the payload of a close frame: empty without a code, else code and UTF-8 reason.

    Raises:
        ProtocolError: If the code may not be sent or the payload would exceed 125 bytes.
    """
    if code is None:
        if reason:
            raise ProtocolError("a close reason requires a close code")
        return b""
    if not is_valid_close_code(code):
        raise ProtocolError(f"close code {code} may not be sent")
    payload = struct.pack("!H", code) + reason.encode()
    if len(payload) > 125:
        raise ProtocolError("close reason is longer than 123 bytes")
    return payload


def parse_close(payload: bytes) -> tuple[int, str]:
    """Return the code and reason of a received close frame (1005 and "" if it has no code).

    Raises:
        ProtocolError: 1002 for a one-byte payload or a code that may not be sent, 1007 for a
            reason that is not UTF-8.
    """
    if not payload:
        return CloseCode.NO_STATUS_RCVD, ""
    if len(payload) == 1:
        raise ProtocolError("close frame with a one-byte payload")
    (code,) = _unpack_16(payload)
    if not is_valid_close_code(code):
        raise ProtocolError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise ProtocolError("close reason is not valid UTF-8", CloseCode.INVALID_DATA) from None
    return code, reason


class FrameParser:
    """Turns the bytes of a stream into frames, checking every rule that one frame can break.

    Args:
        mask_required: True on a server (client frames must be masked), False on a client
            (server frames must not be).
        max_frame_size: The largest payload accepted in one frame, or None for no limit. It is
            checked as soon as the header arrives, before any payload is buffered.
        allow_rsv1: Whether RSV1 may be set (permessage-deflate was negotiated).
    """

    __slots__ = ("_allow_rsv1", "_buffer", "_mask_required", "_max_frame_size", "error")

    def __init__(
        self,
        *,
        mask_required: bool,
        max_frame_size: int | None = None,
        allow_rsv1: bool = False,
    ) -> None:
        self._mask_required = mask_required
        self._max_frame_size = max_frame_size
        self._allow_rsv1 = allow_rsv1
        self._buffer = bytearray()
        #: The violation that stopped parsing, or None. Once set, feed() returns no more frames.
        self.error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """How many bytes wait for the rest of their frame."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray) -> list[Frame]:
        """Parse ``data`` after whatever was buffered; return the frames it completes.

        Bytes of an incomplete frame stay buffered for the next call. When a frame breaks a
        rule, the frames before it are still returned, :attr:`error` is set to a ProtocolError
        (1002) or PayloadTooBig (1009, a frame longer than ``max_frame_size``), and every later
        call returns nothing: after that, the caller must fail the connection.
        """
        if self.error is not None:
            return []
        buffer = self._buffer
        continuing = bool(buffer)
        if continuing:
            buffer += data
            data = buffer
        frames: list[Frame] = []
        append = frames.append
        size = len(data)
        pos = 0
        while size - pos >= 2:
            b0 = data[pos]
            b1 = data[pos + 1]
            length = b1 & 0x7F
            header_end = pos + 2
            if length == 126:
                header_end = pos + 4
                if header_end > size:
                    break
                (length,) = _unpack_16(data, pos + 2)
            elif length == 127:
                header_end = pos + 10
                if header_end > size:
                    break
                (length,) = _unpack_64(data, pos + 2)
            masked = b1 & 0x80
            if masked:
                header_end += 4
            error = self._header_error(b0, length, masked)
            if error is not None:
                self.error = error
                buffer.clear()
                return frames
            end = header_end + length
            if end > size:
                break
            if masked:
                payload = apply_mask(
                    memoryview(data)[header_end:end], bytes(data[header_end - 4 : header_end])
                )
            else:
                payload = bytes(data[header_end:end])
            append(Frame(b0 & 0x0F, payload, b0 & 0x80 != 0, b0 & 0x40 != 0))
            pos = end
        if continuing:
            del buffer[:pos]
        elif pos < size:
            buffer += memoryview(data)[pos:]
        return frames

    def partial_text(self, start: int, message: int) -> bytes | None:
        """Return the bytes of a text payload that arrived so far in an incomplete frame.

        For validating UTF-8 as it arrives (RFC 6455 section 8.1: fail fast), not only once a
        frame is complete. When the bytes buffered after :meth:`feed` begin with a whole,
        valid header of a frame that carries text, return its payload from offset ``start``
        to the last byte received, unmasked (empty when nothing arrived after ``start``).
        Otherwise return None: no incomplete frame, its header is not complete yet, or the
        frame is not text.

        Args:
            start: The payload bytes already looked at (returned by earlier calls).
            message: The message in progress: 0 if none (then a TEXT frame without RSV1 is
                text), 1 if an uncompressed text message (then a CONTINUATION frame is
                text), any other value if another one (then no frame is).
        """
        buffer = self._buffer
        size = len(buffer)
        if size < 2:
            return None
        b0 = buffer[0]
        opcode = b0 & 0x0F
        if opcode == 1:
            if message or b0 & 0x40:
                return None
        elif opcode != 0 or message != 1:
            return None
        b1 = buffer[1]
        length = b1 & 0x7F
        header_end = 4 if length == 126 else 10 if length == 127 else 2
        if b1 & 0x80:
            header_end += 4
        if header_end > size:
            return None
        # The frame is incomplete, so every byte after its header belongs to its payload.
        begin = header_end + start
        if begin >= size:
            return b""
        if not b1 & 0x80:
            return bytes(buffer[begin:])
        rotation = start & 3
        mask = bytes(buffer[header_end - 4 : header_end])
        return apply_mask(memoryview(buffer)[begin:], mask[rotation:] + mask[:rotation])

    def _header_error(self, b0: int, length: int, masked: int) -> ProtocolError | None:
        """Return the error if a frame header breaks a rule of RFC 6455 section 5, else None."""
        opcode = b0 & 0x0F
        if opcode not in _KNOWN_OPCODES:
            return ProtocolError(f"reserved opcode {opcode:#x}")
        if b0 & 0x30 or (b0 & 0x40 and not self._allow_rsv1):
            return ProtocolError("reserved bit set without a negotiated extension")
        if opcode >= 0x8:
            if not b0 & 0x80:
                return ProtocolError("fragmented control frame")
            if length > 125:
                return ProtocolError("control frame payload longer than 125 bytes")
            if b0 & 0x40:
                return ProtocolError("reserved bit set on a control frame")
        if bool(masked) is not self._mask_required:
            return ProtocolError(
                "client frame is not masked" if self._mask_required else "server frame is masked"
            )
        if length >> 63:
            return ProtocolError("frame length has its most significant bit set")
        if self._max_frame_size is not None and length > self._max_frame_size:
            return PayloadTooBig(
                f"frame of {length} bytes over the local limit ({self._max_frame_size} bytes)"
            )
        return None


#: The reference implementation, kept under its own name when the C twin replaces it.
PythonFrameParser = FrameParser
if _speedups is not None:
    _speedups.setup(Frame, ProtocolError, PayloadTooBig)
    FrameParser = _speedups.FrameParser  # type: ignore[misc]
