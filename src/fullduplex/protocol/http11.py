"""HTTP/1.1 for the server's opening handshake, I/O-free: read a request head, write a response.

Only what a WebSocket server needs (RFC 9112): a request head without a body, and one response.
The head is decoded as latin-1 once and checked by compiled regular expressions, so a whole
head is validated and split into fields in two passes in C instead of a Python loop per line
(h11 took about 35 us per handshake; this takes a few).

What it accepts is what h11 accepts (the client side still uses h11, and a property test
compares the two), with two deliberate differences, both allowed by RFC 9112:

* obs-fold (a field line starting with SP or HTAB) is refused; h11 unfolds it (section 5.2).
* a line ending with a bare LF is refused; h11 accepts it (section 2.2).

A request that announces a body (Transfer-Encoding, or a Content-Length other than 0) is
reported by :attr:`RequestHead.has_body`: this reader never reads a body.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

from ..exceptions import InvalidMessage, SecurityError

__all__ = [
    "RequestHead",
    "check_incomplete_head",
    "parse_request_head",
    "serialize_response",
]

# RFC 9110 section 5.6.2: tchar.
_TCHAR = r"[-!#$%&'*+.^_`|~0-9A-Za-z]"
# h11's field-vchar for what it receives: anything but NUL and ASCII whitespace (so obs-text
# and most CTLs are kept, as RFC 9110 section 5.5 allows a recipient to); the text is latin-1,
# so every character is one byte.
_RECEIVED_VCHAR = r"[^\x00\t\n\x0b\x0c\r ]"
# RFC 9110 section 5.5: field-vchar = VCHAR / obs-text, for what this side sends.
_SENT_VCHAR = r"[\x21-\x7e\x80-\xff]"
# A field line without its CRLF: name, colon, OWS, value (interior SP/HTAB only), OWS.
# Possessive quantifiers keep the matching linear whatever the input.
_FIELD = rf"({_TCHAR}++):[ \t]*+((?:{_RECEIVED_VCHAR}++(?:[ \t]++{_RECEIVED_VCHAR}++)*+)?+)[ \t]*+"
# RFC 9112 section 3: method SP request-target SP HTTP-version (targets as h11: VCHAR only).
_REQUEST_LINE = rf"({_TCHAR}++) ([\x21-\x7e]++) HTTP/([0-9]\.[0-9])"

_REQUEST_LINE_RE = re.compile(_REQUEST_LINE)
_REQUEST_HEAD_RE = re.compile(rf"{_REQUEST_LINE}\r\n")
# Anchored just after a CRLF and unable to cross a line end, a match covers exactly one whole
# field line: as many matches as lines means every line is valid, in one pass that also
# extracts the fields. (Anchoring at any LF would let a bare LF start a line.)
_FIELDS_RE = re.compile(rf"(?<=\r\n){_FIELD}\r\n")
_FIELD_LINE_RE = re.compile(_FIELD)
# A field value holds no CRLF, so a CRLF followed by a name starts a field line.
_HOST_RE = re.compile(r"\r\nhost:", re.IGNORECASE | re.ASCII)
# A body is announced by Transfer-Encoding, or by a Content-Length other than a single 0.
_BODY_RE = re.compile(
    r"\r\n(?:transfer-encoding:|content-length:(?![ \t]*0[ \t]*\r\n))", re.IGNORECASE | re.ASCII
)
_BARE_LF_RE = re.compile(rb"(?<!\r)\n")
_TCHAR_BYTES = frozenset(
    b"-!#$%&'*+.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

_SENT_NAME_RE = re.compile(rf"{_TCHAR}+")
_SENT_VALUE_RE = re.compile(rf"(?:{_SENT_VCHAR}+(?:[ \t]+{_SENT_VCHAR}+)*)?")
# RFC 9112 section 4: reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ), optional.
_SENT_REASON_RE = re.compile(r"[\t \x21-\x7e\x80-\xff]*")

_SHOWN = 80  # characters of a bad line quoted in an error message


class RequestHead(NamedTuple):
    """A parsed request head.

    Attributes:
        method: The method, e.g. "GET".
        target: The request target, e.g. "/chat?room=1".
        http_version: The version, e.g. "1.1".
        fields: The header fields as ``(name, value)``, in order, names as received, values
            without their surrounding whitespace, both decoded as latin-1.
        has_body: True if the request announces a body (Transfer-Encoding, or a
            Content-Length other than 0).
    """

    method: str
    target: str
    http_version: str
    fields: list[tuple[str, str]]
    has_body: bool


def _shown(line: str | bytes) -> str:
    # repr() keeps the one-line reason free of control characters, and the cut keeps the
    # response small: the reason is the body of the 400 sent to the peer.
    if isinstance(line, bytes):
        line = line.decode("latin-1")
    return repr(line if len(line) <= _SHOWN else line[:_SHOWN] + "...")


def _invalid(reason: str) -> InvalidMessage:
    return InvalidMessage(f"invalid HTTP request: {reason}")


def _request_line_problem(line: str) -> str | None:
    if not line:
        return "empty line before the request line"
    if _REQUEST_LINE_RE.fullmatch(line) is None:
        return f"bad request line: {_shown(line)}"
    return None


def check_incomplete_head(buffer: bytes | bytearray, start: int, max_size: int) -> None:
    """Check the bytes of a request head that is not complete yet.

    Refuses early what can never become a valid head, so that a TLS handshake on a plain
    port or a client with bare-LF line endings is answered at once instead of timing out.

    Args:
        buffer: The bytes received so far, without b"\\r\\n\\r\\n".
        start: How many of them a previous call already checked.
        max_size: The most bytes a head may take.

    Raises:
        SecurityError: ``buffer`` exceeds ``max_size``.
        InvalidMessage: ``buffer`` does not start with a method, has a bare LF, or has a
            complete request line that is not valid.
    """
    if len(buffer) > max_size:
        raise SecurityError(f"request head is larger than {max_size} bytes")
    if buffer and buffer[0] not in _TCHAR_BYTES:
        first = bytes(buffer[: _SHOWN + 1]).partition(b"\r\n")[0].decode("latin-1")
        raise _invalid(_request_line_problem(first) or f"bad request line: {_shown(first)}")
    if _BARE_LF_RE.search(buffer, max(start - 1, 0)) is not None:
        raise _invalid("a line ends with LF without CR")
    # A request line that ends in these bytes is checked now: what is not HTTP (an SSH or
    # SMTP banner, say) is answered at once instead of waiting for the open timeout. Only
    # when a CRLF arrived, so a head sent byte by byte costs one scan per line.
    if buffer.find(b"\r\n", max(start - 1, 0)) >= 0:
        line = bytes(buffer[: buffer.find(b"\r\n")]).decode("latin-1")
        problem = _request_line_problem(line)
        if problem is not None:
            raise _invalid(problem)


def parse_request_head(head: bytes | bytearray) -> RequestHead:
    """Parse a complete request head.

    Args:
        head: The bytes from the request line to the CRLF that ends the last field line,
            i.e. everything before the empty line (for a head without fields, the request
            line and its CRLF).

    Returns:
        The request head. HTTP/1.1 requires exactly one Host field (RFC 9112 section 3.2).

    Raises:
        InvalidMessage: The head breaks the grammar; the message names the first bad line.
    """
    text = head.decode("latin-1")
    if not text.endswith("\r\n"):
        # Bytes after the last CRLF would belong to no line that is checked, and be ignored.
        raise _invalid("the head does not end with CRLF")
    match = _REQUEST_HEAD_RE.match(text)
    if match is None:
        raise _invalid(_head_problem(text))
    fields = _FIELDS_RE.findall(text, match.end())
    if len(fields) != text.count("\r\n") - 1:
        raise _invalid(_head_problem(text))
    method, target, http_version = match.groups()
    hosts = len(_HOST_RE.findall(text))
    if hosts > 1:
        raise _invalid("more than one Host header")
    if hosts == 0 and http_version == "1.1":
        raise _invalid("missing Host header")
    return RequestHead(method, target, http_version, fields, _BODY_RE.search(text) is not None)


def _head_problem(text: str) -> str:
    """Name the first line of ``text`` that breaks the grammar (only called on failure)."""
    lines = text.split("\r\n")
    problem = _request_line_problem(lines[0])
    if problem is not None:
        return problem
    for line in lines[1:-1]:  # text ends with CRLF: the last item is empty
        if line[:1] in (" ", "\t"):
            return f"obsolete line folding is not allowed: {_shown(line)}"
        if _FIELD_LINE_RE.fullmatch(line) is None:
            return f"bad header line: {_shown(line)}"
    return f"bad request head: {_shown(text)}"  # pragma: no cover - a line is always to blame


def serialize_response(
    status: int, reason: str, fields: Iterable[tuple[str, str]], body: bytes = b""
) -> bytes:
    """Return the bytes of an HTTP/1.1 response, checking every part first.

    Args:
        status: The status code, 100 to 999.
        reason: The reason phrase (may be empty).
        fields: The header fields, written as given (the caller adds any framing field).
        body: The body.

    Raises:
        ValueError: A part breaks the grammar (which would let a value inject a field or a
            response): names the first bad one.
    """
    if not 100 <= status <= 999:
        raise ValueError(f"status must be 100 to 999, got {status}")
    if _SENT_REASON_RE.fullmatch(reason) is None:
        raise ValueError(f"invalid reason phrase {_shown(reason)}")
    lines = [f"HTTP/1.1 {status} {reason}\r\n"]
    for name, value in fields:
        if _SENT_NAME_RE.fullmatch(name) is None:
            raise ValueError(f"invalid header name {_shown(name)}")
        if _SENT_VALUE_RE.fullmatch(value) is None:
            raise ValueError(f"invalid value of header {name}: {_shown(value)}")
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    # Every character was checked to be at most \xff: latin-1 cannot fail.
    data = "".join(lines).encode("latin-1")
    return data + body if body else data
