"""The fallback transports' messages on the wire, I/O-free.

Server to client (the streamed or polled response body): one JSON object per line (NDJSON)::

    {"i": 7, "t": "hello"}        text message number 7
    {"i": 8, "b": "AAEC"}         binary message number 8 (base64)
    {"h": 1}                      heartbeat
    {"c": 1000, "r": "bye"}       the session closed with this code and reason: the last line

Client to server (the body of a POST to ``send``), one JSON object::

    {"q": 3, "m": ["hi", {"b": "AAEC"}], "a": 6}

``q`` numbers the batch (0, 1, 2...: a retried batch keeps its number, and the server delivers
each number once), ``m`` holds its messages (a string is a text message, ``{"b": ...}`` a binary
one), ``a`` acknowledges every server message up to that number (the server forgets them), and
``"c"``/``"r"`` close the session. ``q`` and ``m`` go together; ``{"a": 6}`` alone is an ack.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, NamedTuple

__all__ = ["HEARTBEAT", "Batch", "close_line", "message_line", "parse_batch"]

HEARTBEAT = b'{"h":1}\n'
"""The heartbeat line."""

_MAX_INT = 2**53 - 1  # what JavaScript numbers hold exactly


def message_line(number: int, message: str | bytes) -> bytes:
    """The line of message ``number``."""
    if isinstance(message, str):
        text = json.dumps(message, ensure_ascii=False)
        return b'{"i":%d,"t":%s}\n' % (number, text.encode())
    return b'{"i":%d,"b":"%s"}\n' % (number, base64.b64encode(message))


def close_line(code: int, reason: str) -> bytes:
    """The last line of a closed session."""
    return json.dumps({"c": code, "r": reason}, ensure_ascii=False).encode() + b"\n"


class Batch(NamedTuple):
    """A parsed POST body.

    Attributes:
        seq: The batch number, or None for an ack or close alone.
        messages: The messages (str: text, bytes: binary), in order.
        ack: The last server message number the client received, or None.
        close: ``(code, reason)`` when the client closes the session, else None.
    """

    seq: int | None
    messages: list[str | bytes]
    ack: int | None
    close: tuple[int, str] | None


def _number(value: Any, name: str) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_INT:
        raise ValueError(f'"{name}" must be a non-negative integer')
    return value


def parse_batch(body: bytes) -> Batch:
    """Parse a POST body.

    Raises:
        ValueError: The body is not a valid batch (the message is a one-line reason).
    """
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ValueError("the body is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    seq = ack = None
    messages: list[str | bytes] = []
    if "q" in data or "m" in data:
        seq = _number(data.get("q"), "q")
        items = data.get("m")
        if not isinstance(items, list):
            raise ValueError('"m" must be a list of messages')
        for item in items:
            if isinstance(item, str):
                messages.append(item)
            elif isinstance(item, dict) and isinstance(item.get("b"), str):
                try:
                    messages.append(base64.b64decode(item["b"], validate=True))
                except (binascii.Error, ValueError):
                    raise ValueError("a binary message is not valid base64") from None
            else:
                raise ValueError('a message must be a string or {"b": base64}')
    if "a" in data:
        ack = _number(data["a"], "a")
    close = None
    if "c" in data:
        code = data["c"]
        reason = data.get("r", "")
        if type(code) is not int or not isinstance(reason, str):
            raise ValueError('"c" must be a close code and "r" a string')
        close = (code, reason)
    return Batch(seq, messages, ack, close)
