"""RFC 6455 section 9.1: parse and serialize the Sec-WebSocket-Extensions header.

The grammar, with RFC 9110's list rule (``1#``) and optional whitespace around separators::

    Sec-WebSocket-Extensions = 1#extension
    extension       = extension-token *( ";" extension-param )
    extension-token = token
    extension-param = token [ "=" ( token / quoted-string ) ]

A quoted value must be a token once unescaped. The header may be split across several header
lines; they form one list. Empty list elements (``a, , b``) are skipped, as RFC 9110 section 5.6.1
asks of recipients.

An extension is represented as ``(name, params)`` where ``params`` is a list of
``(name, value)`` pairs and ``value`` is None for a parameter without a value. Order and
duplicates are kept: deciding whether a duplicate is an error is the extension's job
(see :mod:`fullduplex.protocol.deflate`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..exceptions import NegotiationError

__all__ = [
    "Extension",
    "ExtensionParam",
    "is_token",
    "parse_extensions",
    "serialize_extensions",
]

ExtensionParam = tuple[str, str | None]
"""One extension parameter: its name and its value (None when it has no value)."""

Extension = tuple[str, list[ExtensionParam]]
"""One extension of the list: its name and its parameters, in header order."""

# RFC 9110 section 5.6.2: tchar. Compiled once; matching with .match(value, pos) scans in C and
# avoids slicing the header at every step.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 section 5.6.4: quoted-string, qdtext and quoted-pair (obs-text is \x80-\xff).
_QUOTED = re.compile(r'"((?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*)"')
_UNESCAPE = re.compile(r"\\(.)")
_SHOWN = 80  # characters of a bad header quoted in an error message


def is_token(value: str) -> bool:
    """Return True if ``value`` is an RFC 9110 token (one or more tchar)."""
    return _TOKEN.fullmatch(value) is not None


def _error(header: str, pos: int, expected: str) -> NegotiationError:
    # Show where parsing stopped; repr() keeps the one-line message free of control characters
    # and the cut keeps it short, since this message is the body of the HTTP 400 response.
    shown = repr(header if len(header) <= _SHOWN else header[:_SHOWN] + "...")
    return NegotiationError(
        f"invalid Sec-WebSocket-Extensions header {shown}: expected {expected} at {pos}"
    )


def _skip_ows(header: str, pos: int, end: int) -> int:
    """Return the index of the first character at or after ``pos`` that is not SP or HTAB."""
    while pos < end and header[pos] in " \t":
        pos += 1
    return pos


def _parse_one(header: str, result: list[Extension]) -> None:
    """Parse one header line and append its extensions to ``result``."""
    end = len(header)
    pos = _skip_ows(header, 0, end)
    while pos < end:
        if header[pos] == ",":  # an empty list element
            pos = _skip_ows(header, pos + 1, end)
            continue
        match = _TOKEN.match(header, pos)
        if match is None:
            raise _error(header, pos, "an extension name")
        name = match.group()
        params: list[ExtensionParam] = []
        pos = _skip_ows(header, match.end(), end)
        while pos < end and header[pos] == ";":
            pos = _skip_ows(header, pos + 1, end)
            match = _TOKEN.match(header, pos)
            if match is None:
                raise _error(header, pos, "a parameter name")
            param = match.group()
            value: str | None = None
            pos = _skip_ows(header, match.end(), end)
            if pos < end and header[pos] == "=":
                pos = _skip_ows(header, pos + 1, end)
                match = _TOKEN.match(header, pos)
                if match is not None:
                    value = match.group()
                else:
                    match = _QUOTED.match(header, pos)
                    if match is None:
                        raise _error(header, pos, "a token or a quoted string")
                    value = _UNESCAPE.sub(r"\1", match.group(1))
                    # RFC 6455 section 9.1: the unescaped value MUST be a token.
                    if not is_token(value):
                        raise _error(header, pos, "a quoted string whose content is a token")
                pos = _skip_ows(header, match.end(), end)
            params.append((param, value))
        result.append((name, params))
        if pos < end:
            if header[pos] != ",":
                raise _error(header, pos, "',' or ';'")
            pos = _skip_ows(header, pos + 1, end)


def parse_extensions(values: Sequence[str]) -> list[Extension]:
    """Parse every Sec-WebSocket-Extensions header line of a message into one list.

    Args:
        values: The values of all Sec-WebSocket-Extensions header lines, in order. An empty
            sequence yields an empty list.

    Returns:
        The extensions in header order, each ``(name, [(param, value or None), ...])``.
        Quoted values are returned unescaped. Names keep their case; callers compare them
        case-sensitively, as the IANA registry lists them in lower case.

    Raises:
        NegotiationError: If a value does not match the grammar (HTTP status 400).
    """
    result: list[Extension] = []
    for header in values:
        _parse_one(header, result)
    return result


def serialize_extensions(extensions: Sequence[Extension]) -> str:
    """Build a Sec-WebSocket-Extensions header value.

    Args:
        extensions: ``(name, params)`` pairs as returned by :func:`parse_extensions`.

    Returns:
        The value, e.g. ``"permessage-deflate; client_max_window_bits=12, x-foo"``.
        Values are written as tokens, the canonical form; ``parse_extensions`` reads it back
        to the same list.

    Raises:
        ValueError: If a name or value is not a token: the caller built an invalid offer.
    """
    parts = []
    for name, params in extensions:
        if not is_token(name):
            raise ValueError(f"extension name is not a token: {name!r}")
        items = [name]
        for param, value in params:
            if not is_token(param):
                raise ValueError(f"extension parameter name is not a token: {param!r}")
            if value is None:
                items.append(param)
            elif is_token(value):
                items.append(f"{param}={value}")
            else:
                raise ValueError(f"extension parameter value is not a token: {value!r}")
        parts.append("; ".join(items))
    return ", ".join(parts)
