"""A tiny, independent WebSocket client: the conformance suite's oracle.

Nothing here imports fullduplex. The handshake (RFC 6455 section 4.1), the frame builder with
client masking (section 5.2/5.3), the frame reader and permessage-deflate (RFC 7692, through
stdlib ``zlib``) are written from the RFCs so that a bug in fullduplex's own framing or
compression code cannot hide behind the same bug in the test client.

The client is deliberately blocking and single-threaded: every test sends exactly the bytes it
wants, in the chunks it wants, and then reads with a deadline. Everything the *server* sends is
validated strictly (unmasked frames, control frames <= 125 bytes and unfragmented, RSV bits only
as negotiated, valid UTF-8 text, well-formed close payloads); a violation raises
:class:`ServerViolation`, which is a server bug.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import struct
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tests.helpers import seconds

__all__ = [
    "GUID",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "RSV1",
    "RSV2",
    "RSV3",
    "DeflateParams",
    "Frame",
    "HttpResponse",
    "PeerClosed",
    "RawClient",
    "Received",
    "ServerViolation",
    "accept_key",
    "build_frame",
    "close_payload",
    "http_exchange",
    "mask_payload",
    "parse_extensions",
    "upgrade_request",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

RSV1 = 0x40
RSV2 = 0x20
RSV3 = 0x10

_DEFLATE_TAIL = b"\x00\x00\xff\xff"
_RECV_SIZE = 1 << 18


class ServerViolation(AssertionError):
    """The server sent something RFC 6455 / RFC 7692 forbids (a server bug)."""


class PeerClosed(Exception):
    """The server closed (or reset) the TCP connection."""


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------


def mask_payload(payload: bytes, key: bytes) -> bytes:
    """Return ``payload`` XOR-ed with the 4-byte ``key`` repeated (RFC 6455 section 5.3).

    One big-integer XOR instead of a per-byte loop keeps a 16 MiB message well under a second.
    """
    n = len(payload)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")).to_bytes(
        n, "little"
    )


def build_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
    masked: bool = True,
) -> bytes:
    """Serialize one frame as a client sends it (RFC 6455 section 5.2).

    Args:
        opcode: any 4-bit value, including reserved ones (tests send those on purpose).
        payload: the unmasked payload; control-frame limits are NOT enforced here.
        fin: the FIN bit.
        rsv: any combination of RSV1 | RSV2 | RSV3.
        mask: the masking key; random when None.
        masked: False sends an unmasked frame (a client MUST NOT, section 5.1).

    Returns:
        The frame bytes, with the shortest length encoding.
    """
    first = (0x80 if fin else 0) | rsv | (opcode & 0x0F)
    mask_bit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", first, mask_bit | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not masked:
        return header + payload
    key = os.urandom(4) if mask is None else mask
    return header + key + mask_payload(payload, key)


def close_payload(code: int | None = None, reason: bytes = b"") -> bytes:
    """Return a close frame payload: nothing, or a 2-byte code followed by raw reason bytes."""
    if code is None:
        return reason
    return struct.pack("!H", code) + reason


@dataclass(frozen=True)
class Frame:
    """One frame as the server sent it (payload as on the wire: never masked, maybe deflated)."""

    opcode: int
    payload: bytes
    fin: bool
    rsv: int


@dataclass(frozen=True)
class Received:
    """One thing the client received: a whole data message or one control frame.

    ``opcode`` is OP_TEXT / OP_BINARY (``payload`` is the whole, decompressed message), OP_PING,
    OP_PONG or OP_CLOSE. ``compressed`` tells whether the message had RSV1 set.
    """

    opcode: int
    payload: bytes
    compressed: bool = field(default=False, compare=False)

    @property
    def close_code(self) -> int | None:
        """The close code of a close frame, None when the payload is empty."""
        assert self.opcode == OP_CLOSE
        if not self.payload:
            return None
        return int(struct.unpack("!H", self.payload[:2])[0])

    @property
    def close_reason(self) -> bytes:
        """The raw reason bytes of a close frame."""
        assert self.opcode == OP_CLOSE
        return self.payload[2:]

    def __repr__(self) -> str:
        names = {1: "TEXT", 2: "BINARY", 8: "CLOSE", 9: "PING", 10: "PONG"}
        name = names.get(self.opcode, str(self.opcode))
        if self.opcode == OP_CLOSE:
            return f"<CLOSE code={self.close_code} reason={self.close_reason!r}>"
        shown = self.payload if len(self.payload) <= 40 else self.payload[:40] + b"..."
        return f"<{name} {len(self.payload)} bytes {shown!r}>"


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value for ``key`` (RFC 6455 section 4.2.2, item 5.4)."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def upgrade_request(
    host: str,
    path: str = "/",
    *,
    key: str | None = None,
    extensions: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    omit: Sequence[str] = (),
    method: str = "GET",
    version: str = "13",
) -> tuple[bytes, str]:
    """Build an opening handshake request (RFC 6455 section 4.1).

    Args:
        host: the Host header value.
        path: the request target.
        key: the Sec-WebSocket-Key; random when None.
        extensions: a Sec-WebSocket-Extensions value to offer, if any.
        headers: extra headers appended as given.
        omit: names of standard headers to leave out (case-insensitive).
        method: the request method.
        version: the Sec-WebSocket-Version value.

    Returns:
        The request bytes and the key used.
    """
    key = base64.b64encode(os.urandom(16)).decode("ascii") if key is None else key
    standard = [
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", version),
    ]
    if extensions is not None:
        standard.append(("Sec-WebSocket-Extensions", extensions))
    skip = {name.lower() for name in omit}
    lines = [f"{method} {path} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in standard if name.lower() not in skip]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), key


@dataclass
class HttpResponse:
    """A parsed HTTP response head (header names lower-cased) and whatever body was read."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    def get_all(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in order."""
        name = name.lower()
        return [value for key, value in self.headers if key == name]

    def get(self, name: str) -> str | None:
        """The values of header ``name`` joined with ", ", or None when absent."""
        values = self.get_all(name)
        return ", ".join(values) if values else None


def _parse_head(head: bytes) -> HttpResponse:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ServerViolation(f"malformed HTTP status line: {lines[0]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ServerViolation(f"malformed HTTP header line: {line!r}")
        headers.append((name.strip().lower(), value.strip()))
    return HttpResponse(int(parts[1]), parts[2] if len(parts) > 2 else "", headers)


def _read_head(sock: socket.socket, deadline: float) -> tuple[HttpResponse, bytes]:
    """Read a response head; return it and the bytes that followed it."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > 65536:
            raise ServerViolation("HTTP response head larger than 64 KiB")
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise PeerClosed(f"connection closed before a complete HTTP response: {buffer!r}")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    return _parse_head(head), rest


def _split_host_port(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    assert parts.scheme == "ws", url
    assert parts.hostname is not None and parts.port is not None, url
    return parts.hostname, parts.port, parts.path or "/"


def _open(url: str) -> socket.socket:
    host, port, _ = _split_host_port(url)
    sock = socket.create_connection((host, port), timeout=seconds(5))
    # Each send() must leave as its own segment so "1 byte at a time" reaches the server as
    # separate reads as far as TCP allows.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def http_exchange(url: str, request: bytes, *, timeout: float | None = None) -> HttpResponse:
    """Send raw ``request`` bytes to the server of ``url``; read a whole non-101 response.

    The body is read per Content-Length, else until the server closes. A reset after the head
    arrived ends the body (a server may reset when it closes with unread request bytes).

    Raises:
        PeerClosed: the server closed or reset before sending a response head.
    """
    timeout = seconds(5) if timeout is None else timeout
    deadline = time.monotonic() + timeout
    sock = _open(url)
    try:
        # The server may answer and close before reading everything (e.g. a huge header
        # block): whatever response it sent is still in our receive buffer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        response, body = _read_head(sock, deadline)
        if response.status == 101:
            response.body = body
            return response
        length = response.get("content-length")
        wanted = int(length) if length is not None and length.isdigit() else None
        while wanted is None or len(body) < wanted:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                if wanted is None:
                    break
                raise
            if not chunk:
                break
            body += chunk
        response.body = body if wanted is None else body[:wanted]
        return response
    finally:
        sock.close()


# --------------------------------------------------------------------------------------------
# permessage-deflate
# --------------------------------------------------------------------------------------------


def parse_extensions(header: str) -> list[tuple[str, dict[str, str | None]]]:
    """Parse a Sec-WebSocket-Extensions value (RFC 6455 section 9.1; no quoted strings needed).

    Raises:
        ServerViolation: a parameter appears twice in one extension.
    """
    result: list[tuple[str, dict[str, str | None]]] = []
    for item in header.split(","):
        if not item.strip():
            continue
        name, *params = (part.strip() for part in item.split(";"))
        parsed: dict[str, str | None] = {}
        for param in params:
            key, sep, value = param.partition("=")
            key = key.strip().lower()
            if key in parsed:
                raise ServerViolation(f"duplicate extension parameter {key!r} in {header!r}")
            parsed[key] = value.strip().strip('"') if sep else None
        result.append((name.lower(), parsed))
    return result


@dataclass
class DeflateParams:
    """The negotiated permessage-deflate parameters (RFC 7692 section 7.1)."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 15
    client_max_window_bits: int = 15


class _Deflate:
    """Client side of permessage-deflate: compress what we send, inflate what the server sends."""

    def __init__(self, params: DeflateParams) -> None:
        self.params = params
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None

    def compress(self, data: bytes) -> bytes:
        """Compress one whole message (RFC 7692 section 7.2.1): sync flush, tail removed."""
        if self._compressor is None or self.params.client_no_context_takeover:
            self._compressor = zlib.compressobj(
                6, zlib.DEFLATED, -self.params.client_max_window_bits
            )
        out = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(_DEFLATE_TAIL)
        return out[: -len(_DEFLATE_TAIL)]

    def decompress(self, data: bytes) -> bytes:
        """Inflate one whole server message (RFC 7692 section 7.2.2).

        The window is the negotiated server_max_window_bits, and a fresh context is used per
        message under server_no_context_takeover: a server that breaks either rule produces
        back-references zlib refuses ("invalid distance too far back").

        Raises:
            ServerViolation: the data does not inflate.
        """
        if self._decompressor is None or self.params.server_no_context_takeover:
            self._decompressor = zlib.decompressobj(-self.params.server_max_window_bits)
        try:
            return self._decompressor.decompress(data + _DEFLATE_TAIL)
        except zlib.error as exc:
            raise ServerViolation(
                f"server's compressed message does not inflate with {self.params}: {exc}"
            ) from exc


def _negotiate(offer: str, response: str | None) -> DeflateParams | None:
    """Validate the server's permessage-deflate response against our offer(s).

    With several offers, the response must be a valid answer to at least one of them (the
    first that fits gives the parameters).

    Raises:
        ServerViolation: the response breaks RFC 7692 section 7.1.
    """
    if response is None:
        return None
    extensions = parse_extensions(response)
    if len(extensions) != 1 or extensions[0][0] != "permessage-deflate":
        raise ServerViolation(f"server accepted extensions we did not offer: {response!r}")
    errors = []
    for name, offered in parse_extensions(offer):
        if name != "permessage-deflate":
            continue
        try:
            return _check_response(offered, extensions[0][1], response)
        except ServerViolation as exc:
            errors.append(str(exc))
    raise ServerViolation("; ".join(errors) or f"no permessage-deflate offer for {response!r}")


def _check_response(
    offered: dict[str, str | None], accepted: dict[str, str | None], response: str
) -> DeflateParams:
    params = DeflateParams()
    for key, value in accepted.items():
        if key in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                raise ServerViolation(f"{key} takes no value (RFC 7692 7.1.1): {response!r}")
            setattr(params, key, True)
        elif key in ("server_max_window_bits", "client_max_window_bits"):
            if value is None or not value.isdigit() or not 8 <= int(value) <= 15:
                raise ServerViolation(f"{key} needs a value 8..15 (RFC 7692 7.1.2): {response!r}")
            setattr(params, key, int(value))
        else:
            raise ServerViolation(f"unknown permessage-deflate parameter {key!r}: {response!r}")
    # RFC 7692 7.1.1.1: an offered server_no_context_takeover must be in the response.
    if "server_no_context_takeover" in offered and not params.server_no_context_takeover:
        raise ServerViolation(f"server_no_context_takeover offered but not accepted: {response!r}")
    # RFC 7692 7.1.2.1: the response's server_max_window_bits is <= the offered value.
    offered_server_bits = offered.get("server_max_window_bits")
    if offered_server_bits is not None:
        if "server_max_window_bits" not in accepted:
            raise ServerViolation(f"server_max_window_bits offered but not accepted: {response!r}")
        if not offered_server_bits.isdigit():
            raise ServerViolation(f"accepted an invalid server_max_window_bits: {response!r}")
        if params.server_max_window_bits > int(offered_server_bits):
            raise ServerViolation(f"server_max_window_bits above the offer: {response!r}")
    # RFC 7692 7.1.2.2: client_max_window_bits only in a response to an offer that has it.
    if "client_max_window_bits" in accepted and "client_max_window_bits" not in offered:
        raise ServerViolation(
            f"client_max_window_bits in the response but not in the offer: {response!r}"
        )
    offered_client_bits = offered.get("client_max_window_bits")
    if offered_client_bits is not None and offered_client_bits.isdigit():
        # We promised this window in the offer; never use a larger one.
        params.client_max_window_bits = min(params.client_max_window_bits, int(offered_client_bits))
    if "client_no_context_takeover" in offered:
        # Offering it is our promise to reset, whatever the server answers (7.1.1.2).
        params.client_no_context_takeover = True
    return params


# --------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------


class RawClient:
    """One WebSocket connection opened with a raw handshake; speaks frames, strictly.

    Use :meth:`connect`. Every method that reads takes a deadline; nothing blocks for longer.
    """

    def __init__(
        self,
        url: str,
        sock: socket.socket,
        response: HttpResponse,
        buffered: bytes,
        deflate: DeflateParams | None,
    ) -> None:
        self.url = url
        self.sock = sock
        self.response = response
        self.deflate_params = deflate
        self._deflate = _Deflate(deflate) if deflate is not None else None
        self._buffer = bytearray(buffered)
        self._eof = False
        self._fragments: list[Frame] = []

    # -- opening and closing --------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        extensions: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        timeout: float | None = None,
        first_data: bytes = b"",
        chunk_size: int | None = None,
    ) -> RawClient:
        """Open a TCP connection to ``url`` and complete the opening handshake.

        Args:
            url: ``ws://host:port[/path]``.
            extensions: a Sec-WebSocket-Extensions offer, or None.
            headers: extra request headers.
            timeout: seconds for the whole handshake; seconds(5) when None.
            first_data: bytes (frames) sent in the same write as the request.
            chunk_size: write the request ``chunk_size`` bytes per send.

        Raises:
            ServerViolation: the response is not a valid 101 (RFC 6455 section 4.1, 4.2.2).
        """
        timeout = seconds(5) if timeout is None else timeout
        host, port, path = _split_host_port(url)
        request, key = upgrade_request(
            f"{host}:{port}", path, extensions=extensions, headers=headers
        )
        sock = _open(url)
        try:
            data = request + first_data
            step = chunk_size or len(data)
            for start in range(0, len(data), step):
                sock.sendall(data[start : start + step])
                if chunk_size:
                    time.sleep(0.0002)  # pacing, so the server reads the request in pieces
            response, rest = _read_head(sock, time.monotonic() + timeout)
            if response.status != 101:
                raise ServerViolation(f"expected 101, got {response.status} {response.reason}")
            upgrade = (response.get("upgrade") or "").lower()
            connection = [v.strip().lower() for v in (response.get("connection") or "").split(",")]
            if upgrade != "websocket" or "upgrade" not in connection:
                raise ServerViolation(f"bad Upgrade/Connection in 101: {response.headers}")
            if response.get_all("sec-websocket-accept") != [accept_key(key)]:
                raise ServerViolation(f"wrong Sec-WebSocket-Accept: {response.headers}")
            ext_header = response.get("sec-websocket-extensions")
            if extensions is None and ext_header is not None:
                raise ServerViolation(f"extension accepted without an offer: {ext_header!r}")
            deflate = _negotiate(extensions, ext_header) if extensions is not None else None
        except BaseException:
            sock.close()
            raise
        return cls(url, sock, response, rest, deflate)

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- sending --------------------------------------------------------------------------

    def send_raw(self, data: bytes, *, chunk_size: int | None = None, pause: float = 0.0) -> None:
        """Write bytes, optionally ``chunk_size`` bytes per send with ``pause`` between them.

        The pause is pacing, not synchronization: it gives the server a chance to read a frame
        in pieces, which is what the chunked cases exercise.
        """
        self.sock.settimeout(seconds(10))
        if chunk_size is None:
            self.sock.sendall(data)
            return
        for start in range(0, len(data), chunk_size):
            try:
                self.sock.sendall(data[start : start + chunk_size])
            except (BrokenPipeError, ConnectionResetError):
                # The server failed the connection before the last piece, as a strict one
                # may (behind a proxy, that closes our side at once): what it sent before
                # closing is still to be read, and the test's reads judge it.
                return
            if pause:
                time.sleep(pause)

    def send_frame(
        self,
        opcode: int,
        payload: bytes = b"",
        *,
        fin: bool = True,
        rsv: int = 0,
        masked: bool = True,
        chunk_size: int | None = None,
        pause: float = 0.0,
    ) -> None:
        """Build one frame with :func:`build_frame` and send it (see :meth:`send_raw`)."""
        frame = build_frame(opcode, payload, fin=fin, rsv=rsv, masked=masked)
        self.send_raw(frame, chunk_size=chunk_size, pause=pause)

    def compress(self, data: bytes) -> bytes:
        """Compress one whole message with the negotiated parameters (deflate required)."""
        assert self._deflate is not None, "permessage-deflate was not negotiated"
        return self._deflate.compress(data)

    def send_compressed(self, opcode: int, data: bytes, *, fragments: int = 1) -> None:
        """Send a compressed message: RSV1 on the first frame only (RFC 7692 section 6.1)."""
        payload = self.compress(data)
        size = max(1, -(-len(payload) // fragments))
        pieces = [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]
        frames = b"".join(
            build_frame(
                opcode if index == 0 else OP_CONT,
                piece,
                fin=index == len(pieces) - 1,
                rsv=RSV1 if index == 0 else 0,
            )
            for index, piece in enumerate(pieces)
        )
        self.send_raw(frames)

    def send_close(self, code: int | None = 1000, reason: bytes = b"") -> None:
        """Send a close frame; ignore a connection the server already tore down."""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_frame(OP_CLOSE, close_payload(code, reason))

    # -- receiving ------------------------------------------------------------------------

    def _fill(self, deadline: float) -> None:
        if self._eof:
            raise PeerClosed("the server closed the connection")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for the server")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(_RECV_SIZE)
        except TimeoutError:
            raise TimeoutError("timed out waiting for the server") from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self._eof = True
            raise PeerClosed("the server closed the connection")
        self._buffer += chunk

    def _need(self, n: int, deadline: float) -> None:
        while len(self._buffer) < n:
            self._fill(deadline)

    def recv_frame(self, timeout: float | None = None) -> Frame:
        """Read exactly one frame and check the RFC 6455 section 5 rules for a server's frame.

        Raises:
            TimeoutError: no whole frame within ``timeout`` (seconds(5) when None).
            PeerClosed: the server closed the TCP connection first.
            ServerViolation: the frame is masked, or a control frame is long or fragmented.
        """
        deadline = time.monotonic() + (seconds(5) if timeout is None else timeout)
        self._need(2, deadline)
        first, second = self._buffer[0], self._buffer[1]
        if second & 0x80:
            raise ServerViolation("server sent a masked frame (RFC 6455 section 5.1)")
        length = second & 0x7F
        offset = 2
        if length == 126:
            self._need(4, deadline)
            length = struct.unpack_from("!H", self._buffer, 2)[0]
            offset = 4
        elif length == 127:
            self._need(10, deadline)
            length = struct.unpack_from("!Q", self._buffer, 2)[0]
            offset = 10
        self._need(offset + length, deadline)
        payload = bytes(self._buffer[offset : offset + length])
        del self._buffer[: offset + length]
        frame = Frame(first & 0x0F, payload, bool(first & 0x80), first & 0x70)
        if frame.opcode >= 8:
            if not frame.fin or length > 125:
                raise ServerViolation(f"bad control frame from server (section 5.5): {frame}")
            if frame.rsv:
                raise ServerViolation(f"RSV bits on a server control frame: {frame}")
        elif frame.opcode not in (OP_CONT, OP_TEXT, OP_BINARY):
            raise ServerViolation(f"server sent reserved opcode {frame.opcode}")
        return frame

    def recv(self, timeout: float | None = None) -> Received:
        """Read the next whole message or control frame (data fragments are reassembled).

        Raises:
            TimeoutError, PeerClosed: as :meth:`recv_frame`.
            ServerViolation: bad fragmentation, RSV bits, compression, UTF-8 or close payload.
        """
        deadline = time.monotonic() + (seconds(5) if timeout is None else timeout)
        while True:
            frame = self.recv_frame(max(deadline - time.monotonic(), 0.001))
            if frame.opcode >= 8:
                if frame.opcode == OP_CLOSE:
                    _check_close_payload(frame.payload)
                return Received(frame.opcode, frame.payload)
            self._check_data_rsv(frame)
            if frame.opcode == OP_CONT and not self._fragments:
                raise ServerViolation("server sent a continuation frame with no message open")
            if frame.opcode != OP_CONT and self._fragments:
                raise ServerViolation("server started a message inside a fragmented one")
            self._fragments.append(frame)
            if frame.fin:
                return self._assemble()

    def _check_data_rsv(self, frame: Frame) -> None:
        allowed = RSV1 if (self._deflate is not None and frame.opcode != OP_CONT) else 0
        if frame.rsv & ~allowed:
            raise ServerViolation(f"server frame with RSV bits {frame.rsv:#x} not negotiated")

    def _assemble(self) -> Received:
        frames, self._fragments = self._fragments, []
        opcode = frames[0].opcode
        compressed = bool(frames[0].rsv & RSV1)
        data = b"".join(frame.payload for frame in frames)
        if compressed:
            assert self._deflate is not None
            data = self._deflate.decompress(data)
        if opcode == OP_TEXT:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ServerViolation(f"server sent invalid UTF-8 text: {exc}") from exc
        return Received(opcode, data, compressed)

    def wait_eof(self, timeout: float | None = None) -> None:
        """Wait until the server closes TCP, failing if it sends any frame meanwhile.

        Raises:
            TimeoutError: the server kept the connection open (RFC 6455 section 7.1.1 wants the
                server to close TCP first after the close handshake).
            ServerViolation: the server sent a frame after its close frame (section 5.5.1).
        """
        deadline = time.monotonic() + (seconds(5) if timeout is None else timeout)
        while True:
            if self._buffer:
                try:
                    frame = self.recv_frame(max(deadline - time.monotonic(), 0.001))
                except PeerClosed:
                    raise ServerViolation(
                        f"server closed TCP in the middle of a frame: {bytes(self._buffer)!r}"
                    ) from None
                raise ServerViolation(f"server sent a frame after its close frame: {frame}")
            try:
                self._fill(deadline)
            except PeerClosed:
                return
            except TimeoutError:
                raise TimeoutError(
                    "the server did not close the TCP connection after the close frames"
                ) from None


def _check_close_payload(payload: bytes) -> None:
    """A server's close frame must itself be well formed (RFC 6455 section 5.5.1, 7.4)."""
    if len(payload) == 1:
        raise ServerViolation("server sent a close frame with a 1-byte payload")
    if len(payload) >= 2:
        code = struct.unpack("!H", payload[:2])[0]
        if not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
            raise ServerViolation(f"server sent close code {code}, which may not be sent")
        try:
            payload[2:].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ServerViolation(f"server's close reason is not UTF-8: {payload!r}") from exc
