"""Fixtures and helpers shared by the sans-I/O protocol tests.

Every frame a client sends is masked with a mask from ``connection.generate_mask``; the fixtures
here replace it, so the bytes a test expects are fixed (RFC 6455 section 5.7 uses 37 fa 21 3d).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from fullduplex.protocol import connection as connection_module
from fullduplex.protocol.connection import SEND_EOF, Connection, Role, State
from fullduplex.protocol.deflate import PerMessageDeflate
from fullduplex.protocol.frames import Frame, FrameParser, Opcode, parse_close, serialize_frame

__all__ = [
    "RFC_MASK",
    "SPEEDUPS",
    "Pair",
    "SpyDeflate",
    "assert_failing",
    "assert_frame_sent",
    "assert_nothing_sent",
    "frames_sent",
]

#: The masking key of the examples in RFC 6455 section 5.7.
RFC_MASK = b"\x37\xfa\x21\x3d"


@pytest.fixture
def fixed_mask(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """Make every client frame use the RFC 6455 section 5.7 mask; return that mask."""

    def generate_mask(size: int) -> bytes:
        assert size == 4
        return RFC_MASK

    monkeypatch.setattr(connection_module, "generate_mask", generate_mask)
    return RFC_MASK


@pytest.fixture
def counting_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make client masks deterministic but different for every frame (00000001, 00000002...).

    A mask that changes from frame to frame catches a parser that reuses the previous key.
    """
    counter = iter(range(1, 2**32))

    def generate_mask(size: int) -> bytes:
        assert size == 4
        return next(counter).to_bytes(4, "big")

    monkeypatch.setattr(connection_module, "generate_mask", generate_mask)


@pytest.fixture
def client(fixed_mask: bytes) -> Connection:
    """A client Connection, OPEN, with the RFC example mask."""
    return Connection(Role.CLIENT)


@pytest.fixture
def server() -> Connection:
    """A server Connection, OPEN."""
    return Connection(Role.SERVER)


@pytest.fixture
def pair(counting_masks: None) -> Pair:
    """A client and a server Connection wired together in memory."""
    return Pair()


class Pair:
    """A client and a server whose output is delivered to each other by :meth:`pump`.

    Args:
        client: The client side (a new Connection(Role.CLIENT) by default).
        server: The server side (a new Connection(Role.SERVER) by default).
    """

    def __init__(self, client: Connection | None = None, server: Connection | None = None) -> None:
        self.client = client if client is not None else Connection(Role.CLIENT)
        self.server = server if server is not None else Connection(Role.SERVER)
        #: Whether each side asked to end its TCP connection (sent SEND_EOF).
        self.client_eof = False
        self.server_eof = False

    def pump(self, chunker: Callable[[bytes], list[bytes]] | None = None, rounds: int = 10) -> None:
        """Deliver what each side wants to send to the other until neither has anything left.

        SEND_EOF from one side becomes receive_eof() on the other, as a TCP half-close would.

        Args:
            chunker: Splits the bytes of one batch into the reads the peer receives; by
                default the whole batch is one read.
            rounds: A bound on the exchanges, so a bug that loops forever fails instead.
        """
        for _ in range(rounds):
            moved = self._move(self.client, self.server, chunker, "client")
            moved |= self._move(self.server, self.client, chunker, "server")
            if not moved:
                return
        raise AssertionError(f"the peers still exchange data after {rounds} rounds")

    def _move(
        self,
        source: Connection,
        target: Connection,
        chunker: Callable[[bytes], list[bytes]] | None,
        side: str,
    ) -> bool:
        chunks = source.data_to_send()
        if not chunks:
            return False
        eof = SEND_EOF in chunks
        data = b"".join(chunks)
        if data:
            for read in chunker(data) if chunker is not None else [data]:
                target.receive_data(read)
        if eof:
            setattr(self, f"{side}_eof", True)
            target.receive_eof()
        return True


def frames_sent(conn: Connection, *, apply_failure: bool = True) -> tuple[list[Frame], bool]:
    """Take ``conn.data_to_send(apply_failure)`` and parse it as the peer would.

    Returns:
        The frames, and whether SEND_EOF was requested (it must be the last item).
    """
    chunks = conn.data_to_send(apply_failure=apply_failure)
    eof = False
    if chunks and chunks[-1] == SEND_EOF:
        eof = True
        chunks = chunks[:-1]
    assert SEND_EOF not in chunks, "SEND_EOF must be the last item of data_to_send()"
    # RSV1 is allowed here; callers compare the flag itself.
    parser = FrameParser(mask_required=conn.role is Role.CLIENT, allow_rsv1=True)
    frames = parser.feed(b"".join(chunks))
    assert parser.error is None, parser.error
    assert parser.buffered == 0, "data_to_send() ended in the middle of a frame"
    return frames, eof


def assert_frame_sent(
    conn: Connection,
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv1: bool = False,
    eof: bool = False,
) -> None:
    """Assert that ``conn`` has exactly one frame to send, equal to the one described."""
    frames, sent_eof = frames_sent(conn)
    assert frames == [Frame(opcode, payload, fin, rsv1)]
    assert sent_eof is eof


def assert_nothing_sent(conn: Connection) -> None:
    """Assert that ``conn`` has nothing to send, not even SEND_EOF."""
    assert conn.data_to_send() == []


def assert_failing(conn: Connection, code: int) -> None:
    """Assert that ``conn`` just failed with ``code`` after receiving data from an OPEN state.

    The failure is recorded, a close frame with ``code`` is the only thing queued (a server
    also asks to end TCP), the state is LOCAL_CLOSING, and further input is dropped.
    """
    assert conn.failure is not None
    assert conn.failure.code == code
    assert conn.state is State.LOCAL_CLOSING
    assert conn.close_expected()
    assert conn.close_sent is not None
    assert conn.close_sent.code == code
    frames, eof = frames_sent(conn)
    assert len(frames) == 1
    assert frames[0].opcode == Opcode.CLOSE
    assert parse_close(frames[0].payload)[0] == code
    assert eof is (conn.role is Role.SERVER)
    # Input is dropped from now on: even a valid close frame changes nothing.
    mask = b"\x00\x00\x00\x00" if conn.role is Role.SERVER else None
    conn.receive_data(serialize_frame(Opcode.CLOSE, b"\x03\xe8", mask=mask))
    assert conn.close_rcvd is None
    assert conn.data_to_send() == []


class SpyDeflate(PerMessageDeflate):
    """The real permessage-deflate codec, recording what Connection asks it to decompress."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: (fin, max_length) of every decompress() call, in order.
        self.decompress_calls: list[tuple[bool, int | None]] = []

    def decompress(
        self, data: bytes | bytearray | memoryview, fin: bool, max_length: int | None
    ) -> bytes:
        """Record the call, then decompress as PerMessageDeflate does."""
        self.decompress_calls.append((fin, max_length))
        return super().decompress(data, fin, max_length)


def _load_speedups() -> ModuleType | None:
    try:
        return importlib.import_module("fullduplex.protocol._speedups")
    except ImportError:
        return None


#: The C accelerator module, or None when it is not built.
SPEEDUPS = _load_speedups()


@pytest.fixture(scope="module")
def speedups() -> ModuleType:
    """The built extension module; skip or fail (see the module docstring) if it is missing."""
    if SPEEDUPS is None:
        if os.environ.get("FULLDUPLEX_NO_EXTENSIONS"):
            pytest.skip("C extension not built and FULLDUPLEX_NO_EXTENSIONS is set")
        pytest.fail(
            "fullduplex.protocol._speedups is not built: run `make extension`, "
            "or set FULLDUPLEX_NO_EXTENSIONS=1 to test the pure-Python code only",
            pytrace=False,
        )
    return SPEEDUPS
