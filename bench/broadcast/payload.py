"""The benchmark message: 256 ASCII bytes that carry their send time and phase.

``@`` + the send time (``time.monotonic_ns()``, 19 digits) + the phase (1 digit) + the
sequence number (9 digits), padded with ``x``. Every library delivers it inside its own
envelope (socket.io: ``42["m","@..."]``), so a receiver finds it by its ``@``.
"""

from __future__ import annotations

__all__ = ["MARK", "SIZE", "make", "parse"]

SIZE = 256
MARK = b"@"
_HEAD = 1 + 19 + 1 + 9


def make(sent_ns: int, phase: int, seq: int) -> str:
    """The message sent at ``sent_ns`` (monotonic ns), in ``phase`` (0-9), number ``seq``."""
    head = f"@{sent_ns:019d}{phase:d}{seq:09d}"
    return head + "x" * (SIZE - _HEAD)


def parse(data: bytes, start: int = 0, end: int | None = None) -> tuple[int, int] | None:
    """``(sent_ns, phase)`` of the message in ``data[start:end]``, or None if there is none."""
    at = data.find(MARK, start, len(data) if end is None else end)
    if at < 0:
        return None
    return int(data[at + 1 : at + 20]), data[at + 20] - 48
