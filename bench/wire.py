"""The load generator's own minimal WebSocket client: handshake, pre-built frames, frame reader.

It imports neither fullduplex nor websockets, so the client side costs the same whatever the
server. It does only what the benchmark needs: no extensions are offered (so nothing is
compressed, whatever the server allows), masks are fixed per pre-built frame (the server's
unmasking cost does not depend on the mask value), pings are answered, and every echo's length
is checked (its content once per connection).
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
from urllib.parse import urlsplit

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "BenchProtocolError",
    "FrameReader",
    "build_frame",
    "close_connection",
    "finish_close",
    "open_connection",
    "send_close",
]

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD = 16384


class BenchProtocolError(Exception):
    """The server did something the benchmark client does not expect (bad handshake, bad
    frame, wrong echo). The benchmark fails loudly rather than measure a broken exchange."""


def _mask(data: bytes, mask: bytes) -> bytes:
    # One big-integer XOR: only used to pre-build frames, never inside a timed loop.
    length = len(data)
    if not length:
        return b""
    repeated = (mask * (length // 4 + 1))[:length]
    value = int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")
    return value.to_bytes(length, "little")


def build_frame(opcode: int, payload: bytes, *, mask: bytes | None = None) -> bytes:
    """Return one whole client frame (FIN set, masked as RFC 6455 section 5.3 requires).

    Args:
        opcode: The frame's opcode.
        payload: The unmasked payload.
        mask: Four bytes; random when None.

    Returns:
        The frame's bytes, ready to send as many times as wanted.
    """
    if mask is None:
        mask = os.urandom(4)
    length = len(payload)
    b0 = 0x80 | opcode
    if length < 126:
        header = struct.pack("!BB", b0, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", b0, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", b0, 0x80 | 127, length)
    return header + mask + _mask(payload, mask)


class FrameReader:
    """Reads server frames from one socket into one reusable buffer.

    Works with blocking sockets (:meth:`read_message`) and non-blocking ones (:meth:`fill` when
    the selector says readable, then :meth:`next_frame` until it returns None).

    Args:
        sock: A connected socket, after the handshake.
        initial: Bytes already received after the handshake response.
        capacity: Initial buffer size; grows if one frame needs more.
    """

    __slots__ = ("_buf", "_end", "_start", "_view", "sock")

    def __init__(self, sock: socket.socket, initial: bytes = b"", capacity: int = 1 << 16) -> None:
        self.sock = sock
        self._buf = bytearray(max(capacity, len(initial) * 2))
        self._buf[: len(initial)] = initial
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = len(initial)

    def _make_room(self, need: int) -> None:
        """Make sure ``need`` bytes fit after the read position: move or grow the buffer."""
        if self._start + need <= len(self._buf):
            return
        pending = self._end - self._start
        if need > len(self._buf):
            self._view.release()
            new = bytearray(max(need, 2 * len(self._buf)))
            new[:pending] = self._buf[self._start : self._end]
            self._buf = new
            self._view = memoryview(new)
        else:
            self._buf[:pending] = self._buf[self._start : self._end]
        self._start = 0
        self._end = pending

    def fill(self) -> int:
        """Receive once into the buffer; return the byte count (0 at EOF).

        Raises:
            BlockingIOError: On a non-blocking socket with nothing to read.
        """
        if self._end == len(self._buf):
            self._make_room(len(self._buf) - self._start + 1)
        count = self.sock.recv_into(self._view[self._end :])
        self._end += count
        return count

    def next_frame(self) -> tuple[int, bool, int, int] | None:
        """Return (opcode, fin, payload offset, payload length) of the next complete frame, or
        None if the buffer does not hold one yet. The payload stays valid until the next
        call to fill() or next_frame().

        Raises:
            BenchProtocolError: If the server sent a masked frame.
        """
        buf = self._buf
        start = self._start
        available = self._end - start
        if available < 2:
            return None
        b0 = buf[start]
        b1 = buf[start + 1]
        if b1 & 0x80:
            raise BenchProtocolError("server frame is masked")
        length = b1 & 0x7F
        header = 2
        if length == 126:
            header = 4
            if available < 4:
                return None
            length = int.from_bytes(buf[start + 2 : start + 4], "big")
        elif length == 127:
            header = 10
            if available < 10:
                return None
            length = int.from_bytes(buf[start + 2 : start + 10], "big")
        total = header + length
        if available < total:
            self._make_room(total)
            return None
        self._start = start + total
        return b0 & 0x0F, bool(b0 & 0x80), start + header, length

    def payload(self, offset: int, length: int) -> bytes:
        """Copy a payload returned by next_frame() (only to check content, not on hot paths)."""
        return bytes(self._buf[offset : offset + length])

    def read_message(self) -> tuple[int, int, int]:
        """Block until a whole data message arrives; answer pings on the way.

        Returns:
            (opcode, total payload length, offset of the last frame's payload). The offset is
            only meaningful for single-frame messages.

        Raises:
            BenchProtocolError: On EOF, a close frame or an unexpected frame.
        """
        opcode = -1
        total = 0
        while True:
            frame = self.next_frame()
            if frame is None:
                if not self.fill():
                    raise BenchProtocolError("server closed the connection")
                continue
            op, fin, offset, length = frame
            if op >= 0x8:
                self.control(op, offset, length)
                continue
            if op != OP_CONTINUATION:
                opcode = op
            total += length
            if fin:
                return opcode, total, offset

    def control(self, opcode: int, offset: int, length: int) -> None:
        """Handle a control frame in the middle of data: pong a ping, ignore a pong.

        Raises:
            BenchProtocolError: On a close frame (the server must not close first).
        """
        if opcode == OP_PING:
            self.sock.sendall(build_frame(OP_PONG, self.payload(offset, length)))
        elif opcode == OP_CLOSE:
            raise BenchProtocolError(f"server closed: {self.payload(offset, length)!r}")


def open_connection(url: str, *, timeout: float) -> FrameReader:
    """Connect and perform the opening handshake (RFC 6455 section 4.1) with a blocking socket.

    Args:
        url: ``ws://host:port/path``.
        timeout: The socket timeout, for the handshake and every later blocking call.

    Returns:
        A FrameReader on the connected, blocking socket (TCP_NODELAY set).

    Raises:
        BenchProtocolError: If the server does not accept the handshake.
        OSError: If the connection fails.
    """
    parts = urlsplit(url)
    if parts.scheme != "ws" or parts.hostname is None or parts.port is None:
        raise ValueError(f"expected ws://host:port/..., got {url!r}")
    sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16))
    path = parts.path or "/"
    request = (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {parts.hostname}:{parts.port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    ).encode()
    sock.sendall(request)
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(4096)
        if not chunk or len(received) > _MAX_HEAD:
            sock.close()
            raise BenchProtocolError(f"bad handshake response: {received[:200]!r}")
        received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if not lines[0].startswith(b"HTTP/1.1 101"):
        sock.close()
        raise BenchProtocolError(f"handshake refused: {lines[0]!r}")
    expected = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"sec-websocket-accept") != expected:
        sock.close()
        raise BenchProtocolError("wrong Sec-WebSocket-Accept")
    if headers.get(b"sec-websocket-extensions"):
        sock.close()
        raise BenchProtocolError("server enabled an extension that was not offered")
    return FrameReader(sock, rest)


def close_connection(reader: FrameReader, *, timeout: float) -> None:
    """Run the closing handshake: send close 1000, wait for the server's close frame and EOF
    (at most ``timeout`` seconds each), then close the socket.

    Errors are swallowed: by now the measurement is over.
    """
    send_close(reader)
    finish_close(reader, timeout=timeout)


def send_close(reader: FrameReader) -> None:
    """Start the closing handshake: send a close frame with code 1000 (blocking).

    Errors are swallowed; :func:`finish_close` still closes the socket.
    """
    sock = reader.sock
    try:
        sock.setblocking(True)
        sock.settimeout(10.0)
        sock.sendall(build_frame(OP_CLOSE, struct.pack("!H", 1000)))
    except OSError:
        pass


def finish_close(reader: FrameReader, *, timeout: float) -> None:
    """After :func:`send_close`: wait for the server's close frame and its EOF, then close.

    Sending every close first and then finishing each lets many connections close in about one
    round trip, and bounds a server that never closes TCP to ``timeout`` per connection.
    """
    sock = reader.sock
    try:
        sock.settimeout(timeout)
        while True:
            frame = reader.next_frame()
            if frame is None:
                if not reader.fill():
                    break
                continue
            if frame[0] == OP_CLOSE:
                # The server closes TCP after its close frame (RFC 6455 section 7.1.1).
                while reader.fill():
                    pass
                break
    except OSError:
        pass
    finally:
        sock.close()
