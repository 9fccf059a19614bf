"""Fuzz targets: each takes arbitrary bytes and checks what must hold for every input.

A target returns normally for an input that was handled correctly, however invalid the
input, and raises (AssertionError, or the unexpected exception itself) for a bug: a crash, an
exception type the callers do not handle, a C parser that disagrees with the pure-Python
reference, a compressed round trip that changes the data. The same functions run under
hypothesis (tests/fuzz/test_fuzz.py, in ``make test``) and under atheris (``make fuzz``).

Parameters (split points, flags, limits) come from the first bytes of the input, so that a
coverage-guided fuzzer can explore them too.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from fullduplex.exceptions import (
    InvalidHandshake,
    InvalidMessage,
    PayloadTooBig,
    ProtocolError,
    ProxyError,
    SecurityError,
)
from fullduplex.protocol import frames
from fullduplex.protocol.connection import Connection, Role
from fullduplex.protocol.deflate import PerMessageDeflate
from fullduplex.protocol.handshake import Request, ServerHandshake
from fullduplex.protocol.http11 import RequestHead, check_incomplete_head, parse_request_head
from fullduplex.proxy import HTTPConnectHandshake, SOCKS5Handshake

__all__ = ["TARGETS"]


def _frames_from_source() -> ModuleType:
    """frames.py itself, loaded from its source without its C twin.

    The build compiles frames.py with Cython, so ``frames.PythonFrameParser`` is the
    reference's compiled form; this is the reference as written, for a three-way comparison
    (and for atheris to instrument). The environment switch is set only while it loads, so
    the C parser's setup is left alone.
    """
    path = Path(frames.__file__).parent / "frames.py"
    spec = importlib.util.spec_from_file_location("fullduplex.protocol._frames_source", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import would: atheris instruments what is there
    before = os.environ.get("FULLDUPLEX_NO_EXTENSIONS")
    os.environ["FULLDUPLEX_NO_EXTENSIONS"] = "1"
    try:
        spec.loader.exec_module(module)
    finally:
        if before is None:
            del os.environ["FULLDUPLEX_NO_EXTENSIONS"]
        else:
            os.environ["FULLDUPLEX_NO_EXTENSIONS"] = before
    assert module._speedups is None
    return module


_SOURCE_FRAMES = _frames_from_source()


def _split(data: bytes, count: int) -> tuple[list[int], bytes]:
    """Take ``count`` parameter bytes off the front of ``data`` (zeros when it is short)."""
    head = list(data[:count]) + [0] * max(0, count - len(data))
    return head, data[count:]


def _pieces(data: bytes, seed: int) -> list[bytes]:
    """Cut ``data`` into up to four pieces at points derived from ``seed``."""
    if not data:
        return [b""]
    cuts = sorted({(seed * (i + 7) * 2654435761) % (len(data) + 1) for i in range(seed % 4)})
    pieces, start = [], 0
    for cut in cuts:
        pieces.append(data[start:cut])
        start = cut
    pieces.append(data[start:])
    return pieces


def http_request_head(data: bytes) -> None:
    """The HTTP/1.1 request reader: a head parses or fails with InvalidMessage, nothing else;
    what parses holds no line break, and the incomplete-head check agrees with the parse."""
    try:
        head = parse_request_head(data)
    except InvalidMessage:
        head = None
    if head is not None:
        assert isinstance(head, RequestHead)
        for name, value in head.fields:
            assert name and "\r" not in name + value and "\n" not in name + value
            assert value == value.strip(" \t")
        assert " " not in head.method + head.target
    try:
        check_incomplete_head(data, 0, 16384)
    except (InvalidMessage, SecurityError):
        # A head the incremental check refuses can never become valid: the same bytes,
        # complete, must not parse either (a false refusal would reject a valid client).
        assert head is None or len(data) > 16384, data
    if head is not None and data.endswith(b"\r\n") and len(data) <= 16384:
        # Fed incrementally, the prefix before its last CRLF never looks invalid.
        check_incomplete_head(data[:-1], 0, 16384)


def server_handshake(data: bytes) -> None:
    """The server's opening handshake, as the server drives it: receive the bytes in pieces,
    accept the request or reject it; every failure is an InvalidHandshake whose rejection
    response serializes (the server sends it), and every accepted request yields a 101."""
    (seed, flags), data = _split(data, 2)
    handshake = ServerHandshake(
        subprotocols=["chat", "superchat"] if flags & 1 else None,
        max_header_size=1024 if flags & 2 else 16384,
        max_header_count=8 if flags & 4 else 128,
    )
    request = None
    try:
        for piece in _pieces(data, seed):
            got = handshake.receive_data(piece)
            if got is not None:
                request = got
        if request is None:
            handshake.receive_eof()
            return
        assert isinstance(request, Request)
        response = handshake.accept(request)
    except InvalidHandshake as exc:
        rejection = handshake.reject_for(exc)
        assert 400 <= rejection.status < 600, rejection.status
        wire = handshake.serialize(rejection)
        assert wire.startswith(f"HTTP/1.1 {rejection.status} ".encode())
        return
    assert response.status == 101, response.status
    assert handshake.serialize(response).startswith(b"HTTP/1.1 101 ")


def _frames_or_error(parser: object, pieces: list[bytes]) -> tuple[list[object], object, int]:
    found: list[object] = []
    for piece in pieces:
        found.extend(parser.feed(piece))  # type: ignore[attr-defined]
    error = parser.error  # type: ignore[attr-defined]
    described = None if error is None else (type(error), str(error), getattr(error, "code", 0))
    return found, described, parser.buffered  # type: ignore[attr-defined]


def frame_parser(data: bytes) -> None:
    """The frame parser: the pure-Python reference from source, its Cython-compiled form and
    the hand-written C twin return the same frames, the same error (type, message, close
    code) and buffer the same bytes, whatever the input and however it is cut; none raises."""
    (seed, flags, limit), data = _split(data, 3)
    options = {
        "mask_required": bool(flags & 1),
        "allow_rsv1": bool(flags & 2),
        "max_frame_size": (limit * 37) if flags & 4 else None,
    }
    pieces = _pieces(data, seed)
    reference = _frames_or_error(_SOURCE_FRAMES.FrameParser(**options), pieces)
    compiled_reference = _frames_or_error(frames.PythonFrameParser(**options), pieces)  # type: ignore[arg-type]
    assert compiled_reference == reference, (options, pieces)
    if frames._speedups is not None:
        compiled = _frames_or_error(frames._speedups.FrameParser(**options), pieces)  # type: ignore[arg-type]
        assert compiled == reference, (options, pieces)
    # No byte is invented: the frames (at their shortest encoding; a longer length form is
    # accepted, as by most implementations) and the buffered rest fit in what came.
    found, error, buffered = reference
    if error is None:
        consumed = sum(_wire_size(f, bool(flags & 1)) for f in found)  # type: ignore[arg-type]
        assert consumed + buffered <= len(data), (consumed, buffered, len(data))
        assert buffered < len(data) or not found


def _wire_size(frame: frames.Frame, masked: bool) -> int:
    length = len(frame.payload)
    header = 2 if length < 126 else 4 if length < 65536 else 10
    return header + (4 if masked else 0) + length


def deflate(data: bytes) -> None:
    """permessage-deflate: arbitrary compressed input inflates or fails with ProtocolError
    (1007) or PayloadTooBig (1009), never past its limit; compressing anything and inflating
    it gives it back, under every window size and context-takeover setting."""
    (bits, flags, limit), data = _split(data, 3)
    window = 8 + bits % 8
    codec = PerMessageDeflate(
        local_no_context_takeover=bool(flags & 1),
        remote_no_context_takeover=bool(flags & 2),
        local_max_window_bits=window,
        remote_max_window_bits=window,
    )
    max_length = limit * 64 if flags & 4 else None
    try:
        out = codec.decompress(data, bool(flags & 8), max_length)
    except PayloadTooBig:
        pass
    except ProtocolError as exc:
        assert exc.code == 1007, exc.code  # type: ignore[attr-defined]
    else:
        assert max_length is None or len(out) <= max_length
    # Round trips, twice (context takeover), cut into frames.
    sender = PerMessageDeflate(
        local_no_context_takeover=bool(flags & 1), local_max_window_bits=window
    )
    receiver = PerMessageDeflate(
        remote_no_context_takeover=bool(flags & 1), remote_max_window_bits=window
    )
    for _ in range(2):
        pieces = _pieces(data, limit)
        inflated = b"".join(
            receiver.decompress(
                sender.compress(piece, i == len(pieces) - 1), i == len(pieces) - 1, None
            )
            for i, piece in enumerate(pieces)
        )
        assert inflated == data


def connection(data: bytes) -> None:
    """The sans-I/O connection, server side, with and without permessage-deflate: any bytes
    give events, or a failure with a close frame to send; never an exception."""
    (seed, flags, limit), data = _split(data, 3)
    conn = Connection(
        Role.SERVER,
        deflate=PerMessageDeflate() if flags & 1 else None,
        max_message_size=limit * 16 if flags & 2 else 2**20,
    )
    for piece in _pieces(data, seed):
        conn.receive_data(piece)
        conn.events_received()
        for chunk in conn.data_to_send():
            assert isinstance(chunk, bytes)
    conn.receive_eof()
    conn.events_received()
    conn.data_to_send()
    if conn.failure is not None:
        assert isinstance(conn.failure, ProtocolError), conn.failure


def proxy_http_connect(data: bytes) -> None:
    """The HTTP CONNECT response reader: the tunnel opens, waits for more, or fails with a
    ProxyError; what comes after a 2xx head is kept as trailing data."""
    (seed,), data = _split(data, 1)
    handshake = HTTPConnectHandshake("example.com", 443, max_header_size=4096)
    handshake.data_to_send()
    try:
        opened = False
        for piece in _pieces(data, seed):
            if handshake.receive_data(piece):
                opened = True
                break
        if not opened:
            handshake.receive_eof()
    except ProxyError:
        pass


def proxy_socks5(data: bytes) -> None:
    """The SOCKS5 reply reader, with and without credentials: the tunnel opens, waits, or
    fails with a ProxyError (InvalidProxyMessage or SOCKSProxyError)."""
    (seed, flags), data = _split(data, 2)
    credentials = ("user", "secret") if flags & 1 else None
    host = ("example.com", "192.0.2.1", "2001:db8::1")[flags % 3]
    handshake = SOCKS5Handshake(host, 1080, credentials=credentials)
    try:
        for piece in _pieces(data, seed):
            handshake.data_to_send()
            if handshake.receive_data(piece):
                return
        handshake.receive_eof()
    except ProxyError:
        pass


TARGETS: dict[str, Callable[[bytes], None]] = {
    "http_request_head": http_request_head,
    "server_handshake": server_handshake,
    "frame_parser": frame_parser,
    "deflate": deflate,
    "connection": connection,
    "proxy_http_connect": proxy_http_connect,
    "proxy_socks5": proxy_socks5,
}
