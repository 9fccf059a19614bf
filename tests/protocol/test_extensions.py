"""Tests of fullduplex.protocol.extensions: RFC 6455 section 9.1, Sec-WebSocket-Extensions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fullduplex.exceptions import InvalidHandshake, NegotiationError
from fullduplex.protocol.extensions import (
    Extension,
    is_token,
    parse_extensions,
    serialize_extensions,
)

TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
tokens = st.text(alphabet=TCHARS, min_size=1, max_size=12)
extension_lists = st.lists(
    st.tuples(tokens, st.lists(st.tuples(tokens, st.none() | tokens), max_size=4)),
    max_size=4,
)


class TestSection9_1Grammar:
    """9.1. Negotiating Extensions: extension-list = 1#extension."""

    @pytest.mark.parametrize(
        ("values", "expected"),
        [
            ([], []),
            ([""], []),
            (["permessage-deflate"], [("permessage-deflate", [])]),
            (
                ["permessage-deflate; client_max_window_bits"],
                [("permessage-deflate", [("client_max_window_bits", None)])],
            ),
            (
                ["permessage-deflate; server_max_window_bits=10; client_no_context_takeover"],
                [
                    (
                        "permessage-deflate",
                        [("server_max_window_bits", "10"), ("client_no_context_takeover", None)],
                    )
                ],
            ),
            # The RFC's own example of two offers of one extension, then another extension.
            (
                ["foo, bar; baz=2"],
                [("foo", []), ("bar", [("baz", "2")])],
            ),
            (
                ["deflate-stream", "mux; max-channels=4; flow-control, deflate-stream"],
                [
                    ("deflate-stream", []),
                    ("mux", [("max-channels", "4"), ("flow-control", None)]),
                    ("deflate-stream", []),
                ],
            ),
            # Optional whitespace everywhere the list and parameter rules allow it.
            (
                ["  a ;  b = 1 ;c\t,\td  "],
                [("a", [("b", "1"), ("c", None)]), ("d", [])],
            ),
            # RFC 9110 section 5.6.1: empty list elements are skipped.
            ([", a, , b ,"], [("a", []), ("b", [])]),
            # Quoted values are unescaped, and must then be tokens.
            (['x; p="10"'], [("x", [("p", "10")])]),
            (['x; p="1\\0"'], [("x", [("p", "10")])]),
            # Order and duplicates are kept: judging them is the extension's job.
            (["x; p=1; p=2"], [("x", [("p", "1"), ("p", "2")])]),
        ],
    )
    def test_parse(self, values: list[str], expected: list[Extension]) -> None:
        assert parse_extensions(values) == expected

    @pytest.mark.parametrize(
        ("value", "position"),
        [
            ("=", 0),  # no extension name
            ("a;", 2),  # no parameter name
            ("a; =1", 3),
            ("a; p=", 5),  # no value
            ("a; p=,", 5),
            ('a; p="1 0"', 5),  # the unescaped quoted value is not a token
            ('a; p=""', 5),
            ('a; p="10', 5),  # unterminated quoted string
            ("a b", 2),  # two tokens without a separator
            ("a; p=1 2", 7),
            ("a; p=1=2", 6),
            ("a/1", 1),
            ("a; p=\u00e9", 5),  # not a token, not quoted
        ],
    )
    def test_invalid_syntax(self, value: str, position: int) -> None:
        with pytest.raises(NegotiationError) as info:
            parse_extensions([value])
        message = str(info.value)
        assert message.startswith(f"invalid Sec-WebSocket-Extensions header {value!r}: expected ")
        assert message.endswith(f" at {position}")
        # A handshake failure the server answers with 400.
        assert isinstance(info.value, InvalidHandshake)
        assert info.value.status == 400

    def test_error_message_names_what_was_expected(self) -> None:
        with pytest.raises(NegotiationError, match=r"expected a parameter name at 2$"):
            parse_extensions(["a;"])
        with pytest.raises(NegotiationError, match=r"expected ',' or ';' at 2$"):
            parse_extensions(["a b"])
        with pytest.raises(NegotiationError, match=r"whose content is a token"):
            parse_extensions(['a; p="x y"'])

    def test_error_in_a_later_header_line(self) -> None:
        with pytest.raises(NegotiationError, match=r"'a;;'"):
            parse_extensions(["permessage-deflate", "a;;"])

    def test_long_invalid_value_is_cut_in_the_message(self) -> None:
        value = "a" * 500 + " b"
        with pytest.raises(NegotiationError) as info:
            parse_extensions([value])
        assert len(str(info.value)) < 200
        assert "..." in str(info.value)


class TestSerialize:
    """Serialization writes the canonical form that parse_extensions reads back."""

    def test_serialize(self) -> None:
        value = serialize_extensions(
            [
                ("permessage-deflate", [("server_max_window_bits", "12"), ("x", None)]),
                ("permessage-deflate", []),
            ]
        )
        assert value == "permessage-deflate; server_max_window_bits=12; x, permessage-deflate"

    def test_serialize_nothing(self) -> None:
        assert serialize_extensions([]) == ""

    @pytest.mark.parametrize(
        "extensions",
        [
            [("bad name", [])],
            [("x", [("bad name", None)])],
            [("x", [("p", "bad value")])],
            [("x", [("p", "")])],
        ],
    )
    def test_serialize_refuses_non_tokens(self, extensions: list[Extension]) -> None:
        with pytest.raises(ValueError, match="not a token"):
            serialize_extensions(extensions)

    @given(extension_lists)
    def test_round_trip(self, extensions: list[Extension]) -> None:
        assert parse_extensions([serialize_extensions(extensions)]) == extensions

    @given(extension_lists, extension_lists)
    def test_lines_form_one_list(self, first: list[Extension], second: list[Extension]) -> None:
        values = [serialize_extensions(first), serialize_extensions(second)]
        assert parse_extensions(values) == first + second


def test_is_token() -> None:
    assert is_token("permessage-deflate")
    assert is_token(TCHARS)
    for value in ("", "a b", "a,b", "a;b", "a=b", '"a"', "a\tb", "\u00e9", "a/b"):
        assert not is_token(value), value
