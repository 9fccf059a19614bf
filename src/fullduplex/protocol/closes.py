"""The close codes and reasons of a connection, as an I/O layer without a protocol
:class:`~fullduplex.protocol.connection.Connection` of its own records them (the ASGI
adapter, the fallback transports' sessions).
"""

from __future__ import annotations

from ..exceptions import ConnectionClosed

__all__ = ["CloseRecord"]


class CloseRecord:
    """What the peer closed with (``_close_code``, ``_close_reason``) and what this side did
    (``_sent_code``, ``_sent_reason``); None codes until then. Subclasses set them."""

    __slots__ = ("_close_code", "_close_reason", "_sent_code", "_sent_reason")

    def __init__(self) -> None:
        self._close_code: int | None = None
        self._close_reason = ""
        self._sent_code: int | None = None
        self._sent_reason = ""

    @property
    def close_code(self) -> int | None:
        """The peer's close code once it closed, else the code this side closed with, else
        None."""
        return self._close_code if self._close_code is not None else self._sent_code

    @property
    def close_reason(self) -> str | None:
        """The reason that goes with :attr:`close_code` (None while it is None)."""
        if self._close_code is not None:
            return self._close_reason
        return self._sent_reason if self._sent_code is not None else None

    def _closed(self) -> ConnectionClosed:
        """The exception that says how the connection closed (1006 from the peer if it sent
        no close)."""
        return ConnectionClosed.create(
            self._close_code if self._close_code is not None else 1006,
            self._close_reason,
            self._sent_code,
            self._sent_reason,
        )
