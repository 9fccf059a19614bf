"""Codecs: how an endpoint turns WebSocket messages into objects and objects into messages.

An endpoint has one codec. Each received message goes through ``codec.decode`` before
``on_message`` sees it; whatever the endpoint sends goes through ``codec.encode``, once per
broadcast however many sessions receive it. A message the codec cannot decode raises
:class:`DecodeError` with the close code to answer it: the framework calls ``on_error`` and
closes that session with the code, and goes on serving the others.

================== =============================== ==========================================
Codec              decode                          encode
================== =============================== ==========================================
PassthroughCodec   str or bytes, as received       str or bytes-like
TextCodec          str; binary -> 1003             str
BytesCodec         bytes; text -> 1003             bytes-like
JSONCodec()        JSON value; bad JSON -> 1007    JSON value or dataclass instance
JSONCodec(cls)     dataclass ``cls``; bad -> 1007  JSON value or dataclass instance
================== =============================== ==========================================
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from ..exceptions import DecodeError

__all__ = [
    "BytesCodec",
    "Codec",
    "DecodeError",
    "JSONCodec",
    "PassthroughCodec",
    "TextCodec",
]

_UNSUPPORTED_DATA = 1003

T = TypeVar("T")


class Codec(Protocol):
    """What an endpoint's codec provides.

    ``decode`` runs once per received message and ``encode`` once per message sent (once per
    broadcast), so both should be cheap; neither may block.
    """

    def encode(self, obj: Any) -> str | bytes:
        """Return the message for ``obj``: ``str`` is sent as text, ``bytes`` as binary.

        Raises:
            TypeError: ``obj`` is of a type the codec cannot encode (a bug in the caller).
        """
        ...

    def decode(self, message: str | bytes) -> Any:
        """Return the object for a received message.

        Raises:
            DecodeError: The message cannot be decoded; it carries the close code.
        """
        ...


class PassthroughCodec:
    """Messages as they come: ``str`` for text, ``bytes`` for binary. The default codec."""

    __slots__ = ()

    def encode(self, obj: Any) -> str | bytes:
        """Return ``obj`` (bytearray and memoryview become bytes).

        Raises:
            TypeError: ``obj`` is neither ``str`` nor bytes-like.
        """
        if isinstance(obj, str | bytes):
            return obj
        if isinstance(obj, bytearray | memoryview):
            return bytes(obj)
        raise TypeError(f"cannot send {type(obj).__name__}: expected str or bytes")

    def decode(self, message: str | bytes) -> str | bytes:
        """Return the message unchanged."""
        return message


class TextCodec:
    """Text messages only: ``str`` both ways; a binary message closes the session (1003)."""

    __slots__ = ()

    def encode(self, obj: Any) -> str:
        """Return ``obj``, which must be a ``str``.

        Raises:
            TypeError: ``obj`` is not a ``str``.
        """
        if not isinstance(obj, str):
            raise TypeError(f"this endpoint sends text: cannot send {type(obj).__name__}")
        return obj

    def decode(self, message: str | bytes) -> str:
        """Return the text message.

        Raises:
            DecodeError: With 1003, for a binary message.
        """
        if not isinstance(message, str):
            raise DecodeError("binary message to a text endpoint", _UNSUPPORTED_DATA)
        return message


class BytesCodec:
    """Binary messages only: ``bytes`` both ways; a text message closes the session (1003)."""

    __slots__ = ()

    def encode(self, obj: Any) -> bytes:
        """Return ``obj`` as bytes; it must be bytes-like.

        Raises:
            TypeError: ``obj`` is not bytes-like.
        """
        if isinstance(obj, bytes):
            return obj
        if isinstance(obj, bytearray | memoryview):
            return bytes(obj)
        raise TypeError(f"this endpoint sends binary: cannot send {type(obj).__name__}")

    def decode(self, message: str | bytes) -> bytes:
        """Return the binary message.

        Raises:
            DecodeError: With 1003, for a text message.
        """
        if not isinstance(message, bytes):
            raise DecodeError("text message to a binary endpoint", _UNSUPPORTED_DATA)
        return message


class JSONCodec:
    """JSON in text messages, optionally decoded into a dataclass.

    Without a type, :meth:`decode` returns whatever the JSON holds. With a dataclass type,
    the JSON must be an object whose keys are that class's fields (every field without a
    default present, no other key) and whose values match the field types: ``str``, ``int``,
    ``float``, ``bool``, ``None``, nested dataclasses, ``list[X]``, ``dict[str, X]``, unions,
    ``Literal``; other annotations are not checked. A ``ValueError`` or ``TypeError`` raised
    by the class itself (``__post_init__`` validation) also counts as invalid data.

    :meth:`encode` accepts plain JSON values and dataclass instances (also nested in lists and
    dicts), whatever the type given here. Output is compact UTF-8 JSON (no NaN/Infinity).

    Args:
        type: A dataclass to decode messages into, or None for plain JSON values.

    Raises:
        TypeError: ``type`` is not a dataclass.
    """

    __slots__ = ("_convert", "type")

    def __init__(self, type: type[Any] | None = None) -> None:
        if type is not None and not (isinstance(type, _TYPE) and dataclasses.is_dataclass(type)):
            raise TypeError(f"JSONCodec needs a dataclass type, got {type!r}")
        self.type = type
        self._convert: Callable[[Any], Any] | None = None if type is None else _converter(type, {})

    def encode(self, obj: Any) -> str:
        """Return ``obj`` as compact JSON text.

        Raises:
            TypeError: ``obj`` holds a value JSON cannot represent.
            ValueError: ``obj`` holds NaN or an infinity, or a circular reference.
        """
        return _dumps(obj)

    def decode(self, message: str | bytes) -> Any:
        """Return the value of the JSON text (a dataclass instance when a type was given).

        Raises:
            DecodeError: With 1003 for a binary message; with 1007 for invalid JSON or, with a
                type, a value that does not fit it.
        """
        if not isinstance(message, str):
            raise DecodeError("binary message to a JSON endpoint", _UNSUPPORTED_DATA)
        try:
            value = _decode_json(message)
        except (ValueError, RecursionError) as exc:
            raise DecodeError(f"invalid JSON: {exc}") from None
        convert = self._convert
        if convert is None:
            return value
        try:
            return convert(value)
        except (ValueError, TypeError) as exc:
            raise DecodeError(f"JSON does not fit {self.type.__name__}: {exc}") from None  # type: ignore[union-attr]

    def __repr__(self) -> str:
        name = "" if self.type is None else self.type.__name__
        return f"JSONCodec({name})"


_TYPE = type


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _json_default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


_encoder = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_json_default
)
# What _encoder.encode does, without building its options again on every call (about a third
# of the time of encoding a small object): json.loads with an argument builds a decoder per
# call, and JSONEncoder.iterencode its C encoder.
_decode_json = json.JSONDecoder(parse_constant=_reject_constant).decode
_make_encoder: Callable[..., Any] | None = getattr(json.encoder, "c_make_encoder", None)
_encode_str: Callable[[str], str] = json.encoder.encode_basestring


def _dumps(obj: Any) -> str:
    if type(obj) is str:
        return _encode_str(obj)
    if _make_encoder is None:  # pragma: no cover - CPython has the C encoder
        return _encoder.encode(obj)
    # A new markers dict per call: it finds circular references.
    encode = _make_encoder({}, _json_default, _encode_str, None, ":", ",", False, False, False)
    return "".join(encode(obj, 0))


# ---- checking decoded JSON against type annotations -------------------------------------------


def _identity(value: Any) -> Any:
    return value


def _converter(tp: Any, memo: dict[type[Any], Callable[[Any], Any]]) -> Callable[[Any], Any]:
    """Return a function that checks a decoded JSON value against ``tp`` and converts it
    (dataclasses are built, ints become floats where a float is expected). It raises
    ValueError or TypeError on a mismatch. Built once per codec, not per message."""
    if tp is Any or tp is object:
        return _identity
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass_converter(tp, memo)
    if tp is str or tp is bool:
        return _instance_checker(tp)
    if tp is int:
        return _check_int
    if tp is float:
        return _check_float
    if tp is None or tp is type(None):
        return _check_none
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is list and len(args) == 1:
        item = _converter(args[0], memo)

        def convert_list(value: Any) -> Any:
            if not isinstance(value, list):
                raise TypeError(f"expected a list, got {_kind(value)}")
            return [item(element) for element in value]

        return convert_list
    if origin is dict and len(args) == 2:
        item = _converter(args[1], memo)

        def convert_dict(value: Any) -> Any:
            if not isinstance(value, dict):
                raise TypeError(f"expected an object, got {_kind(value)}")
            return {key: item(element) for key, element in value.items()}

        return convert_dict
    if origin is typing.Union or origin is types.UnionType:
        options = [_converter(arg, memo) for arg in args]

        def convert_union(value: Any) -> Any:
            for option in options:
                try:
                    return option(value)
                except (TypeError, ValueError):
                    continue
            raise TypeError(f"{_kind(value)} fits none of {tp}")

        return convert_union
    if origin is typing.Literal:

        def convert_literal(value: Any) -> Any:
            # Compared with their types too: True == 1 in Python, not in JSON.
            if not any(value == arg and type(value) is type(arg) for arg in args):
                raise ValueError(f"expected one of {args!r}, got {value!r}")
            return value

        return convert_literal
    if origin in (list, dict) and not args:
        return _instance_checker(origin)
    if tp in (list, dict):
        return _instance_checker(tp)
    # Anything else (Sequence, custom classes, TypedDict...): accepted as decoded.
    return _identity


def _dataclass_converter(
    cls: type[Any], memo: dict[type[Any], Callable[[Any], Any]]
) -> Callable[[Any], Any]:
    existing = memo.get(cls)
    if existing is not None:
        return existing
    fields: dict[str, Callable[[Any], Any]] = {}
    required: set[str] = set()

    def convert(value: Any) -> Any:
        if not isinstance(value, dict):
            raise TypeError(f"expected a JSON object for {cls.__name__}, got {_kind(value)}")
        unknown = value.keys() - fields.keys()
        if unknown:
            raise TypeError(f"unknown field(s) for {cls.__name__}: {sorted(unknown)}")
        missing = required - value.keys()
        if missing:
            raise TypeError(f"missing field(s) for {cls.__name__}: {sorted(missing)}")
        return cls(**{name: fields[name](element) for name, element in value.items()})

    # Registered before the fields are built, so that recursive dataclasses terminate.
    memo[cls] = convert
    try:
        hints = typing.get_type_hints(cls)
    except Exception:
        hints = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        fields[f.name] = _converter(hints.get(f.name, Any), memo)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.add(f.name)
    return convert


def _instance_checker(tp: type[Any]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, tp):
            raise TypeError(f"expected {tp.__name__}, got {_kind(value)}")
        return value

    return check


def _check_int(value: Any) -> Any:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected int, got {_kind(value)}")
    return value


def _check_float(value: Any) -> Any:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"expected float, got {_kind(value)}")
    return float(value)


def _check_none(value: Any) -> Any:
    if value is not None:
        raise TypeError(f"expected null, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
