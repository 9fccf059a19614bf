"""Tests for fullduplex.app.codecs: decoding received messages, encoding sent ones."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from fullduplex.app.codecs import (
    BytesCodec,
    Codec,
    DecodeError,
    JSONCodec,
    PassthroughCodec,
    TextCodec,
)
from fullduplex.exceptions import ProtocolError, close_code_for


@dataclass
class Point:
    x: int
    y: float = 0.0


@dataclass
class Shape:
    name: str
    points: list[Point]
    tags: dict[str, str] = field(default_factory=dict)
    color: str | None = None
    kind: Literal["open", "closed"] = "open"


@dataclass
class Tree:
    value: int
    children: list[Tree] = field(default_factory=list)


@dataclass
class Positive:
    n: int

    def __post_init__(self) -> None:
        if self.n <= 0:
            raise ValueError("n must be positive")


def _code(codec: Codec, message: str | bytes) -> int:
    with pytest.raises(DecodeError) as info:
        codec.decode(message)
    return info.value.close_code


class TestDecodeError:
    def test_is_a_protocol_error_with_its_code(self) -> None:
        error = DecodeError("bad", 1003)
        assert isinstance(error, ProtocolError)
        assert error.close_code == error.code == 1003
        assert close_code_for(error) == 1003

    def test_default_code_is_1007(self) -> None:
        assert DecodeError("bad").close_code == 1007


class TestPassthroughCodec:
    @pytest.mark.parametrize("message", ["text", b"\x00binary", ""])
    def test_round_trip(self, message: str | bytes) -> None:
        codec = PassthroughCodec()
        assert codec.decode(message) is message
        assert codec.encode(message) is message

    def test_bytes_like(self) -> None:
        assert PassthroughCodec().encode(bytearray(b"ab")) == b"ab"
        assert type(PassthroughCodec().encode(memoryview(b"ab"))) is bytes

    @pytest.mark.parametrize("obj", [1, None, {"a": 1}])
    def test_other_types(self, obj: Any) -> None:
        with pytest.raises(TypeError):
            PassthroughCodec().encode(obj)


class TestTextCodec:
    def test_text(self) -> None:
        assert TextCodec().decode("héllo") == "héllo"
        assert TextCodec().encode("héllo") == "héllo"

    def test_binary_is_unsupported_data(self) -> None:
        assert _code(TextCodec(), b"bytes") == 1003

    def test_encode_refuses_bytes(self) -> None:
        with pytest.raises(TypeError):
            TextCodec().encode(b"bytes")


class TestBytesCodec:
    def test_binary(self) -> None:
        assert BytesCodec().decode(b"\x01") == b"\x01"
        assert BytesCodec().encode(bytearray(b"\x01")) == b"\x01"

    def test_text_is_unsupported_data(self) -> None:
        assert _code(BytesCodec(), "text") == 1003

    def test_encode_refuses_text(self) -> None:
        with pytest.raises(TypeError):
            BytesCodec().encode("text")


class TestJSONCodec:
    @pytest.mark.parametrize("value", [{"a": [1, 2.5, None, True]}, [], "s", 3, None])
    def test_plain_values(self, value: Any) -> None:
        codec = JSONCodec()
        assert codec.decode(json.dumps(value)) == value
        assert json.loads(codec.encode(value)) == value

    def test_encode_is_compact_utf8(self) -> None:
        assert JSONCodec().encode({"k": "é", "l": [1, 2]}) == '{"k":"é","l":[1,2]}'

    @pytest.mark.parametrize("text", ["{", "", "nope", "[1,]", "NaN", '{"a": Infinity}'])
    def test_invalid_json_is_invalid_data(self, text: str) -> None:
        assert _code(JSONCodec(), text) == 1007

    def test_deep_nesting_is_invalid_data(self) -> None:
        assert _code(JSONCodec(), "[" * 100_000 + "]" * 100_000) == 1007

    def test_binary_is_unsupported_data(self) -> None:
        assert _code(JSONCodec(), b"{}") == 1003

    def test_encode_refuses_nan(self) -> None:
        with pytest.raises(ValueError):
            JSONCodec().encode(float("nan"))

    def test_encode_refuses_other_objects(self) -> None:
        with pytest.raises(TypeError):
            JSONCodec().encode({"a": object()})

    def test_encode_refuses_nested_nan_and_circular_references(self) -> None:
        circular: list[Any] = []
        circular.append(circular)
        for value in ({"a": [1.0, float("inf")]}, circular):
            with pytest.raises(ValueError):
                JSONCodec().encode(value)
        # The markers of one call are not left behind for the next.
        assert JSONCodec().encode([[1], [1]]) == "[[1],[1]]"

    @pytest.mark.parametrize(
        "value", ['é\n"', 1, 2.5, True, None, [], {}, {"k": ["é", {"n": None}], "f": -0.5}]
    )
    def test_encode_as_json_encoder_does(self, value: Any) -> None:
        encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        assert JSONCodec().encode(value) == encoder.encode(value)

    def test_byte_order_mark_is_invalid_data(self) -> None:
        assert _code(JSONCodec(), "\ufeff{}") == 1007


class TestJSONDataclass:
    def test_decodes_into_the_dataclass(self) -> None:
        codec = JSONCodec(Shape)
        shape = codec.decode(
            '{"name": "tri", "points": [{"x": 1}, {"x": 2, "y": 3}], "tags": {"a": "b"},'
            ' "color": null, "kind": "closed"}'
        )
        assert shape == Shape("tri", [Point(1), Point(2, 3.0)], {"a": "b"}, None, "closed")
        assert isinstance(shape.points[1].y, float)

    def test_defaults_apply(self) -> None:
        assert JSONCodec(Point).decode('{"x": 5}') == Point(5, 0.0)

    def test_recursive_dataclass(self) -> None:
        tree = JSONCodec(Tree).decode('{"value": 1, "children": [{"value": 2}]}')
        assert tree == Tree(1, [Tree(2)])

    def test_encodes_dataclasses_and_plain_values(self) -> None:
        codec = JSONCodec(Point)
        assert json.loads(codec.encode(Point(1, 2.0))) == {"x": 1, "y": 2.0}
        assert json.loads(codec.encode([Point(1)])) == [{"x": 1, "y": 0.0}]
        assert json.loads(codec.encode({"plain": True})) == {"plain": True}

    def test_round_trip(self) -> None:
        codec = JSONCodec(Shape)
        shape = Shape("sq", [Point(0), Point(1, 1.5)], color="red")
        assert codec.decode(codec.encode(shape)) == shape

    @pytest.mark.parametrize(
        "text",
        [
            '{"y": 1.0}',  # missing field
            '{"x": 1, "z": 2}',  # unknown field
            '{"x": "1"}',  # wrong type
            '{"x": true}',  # bool is not an int in JSON
            '{"x": 1.5}',  # float is not an int
            "[1, 2]",  # not an object
            '{"x": 1, "y": "a"}',
        ],
    )
    def test_wrong_or_missing_fields_are_invalid_data(self, text: str) -> None:
        assert _code(JSONCodec(Point), text) == 1007

    @pytest.mark.parametrize(
        "text",
        [
            '{"name": "a", "points": {}}',
            '{"name": "a", "points": [{"x": "no"}]}',
            '{"name": "a", "points": [], "tags": {"k": 1}}',
            '{"name": "a", "points": [], "color": 1}',
            '{"name": "a", "points": [], "kind": "other"}',
        ],
    )
    def test_nested_mismatches(self, text: str) -> None:
        assert _code(JSONCodec(Shape), text) == 1007

    def test_post_init_validation_is_invalid_data(self) -> None:
        assert _code(JSONCodec(Positive), '{"n": -1}') == 1007
        assert JSONCodec(Positive).decode('{"n": 1}') == Positive(1)

    def test_needs_a_dataclass(self) -> None:
        with pytest.raises(TypeError):
            JSONCodec(dict)
        with pytest.raises(TypeError):
            JSONCodec(Point(1))  # type: ignore[arg-type]

    def test_repr(self) -> None:
        assert repr(JSONCodec(Point)) == "JSONCodec(Point)"
