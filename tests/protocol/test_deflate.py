"""Tests of fullduplex.protocol.deflate: RFC 7692, permessage-deflate."""

from __future__ import annotations

import itertools
import os
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fullduplex.exceptions import NegotiationError, PayloadTooBig, ProtocolError
from fullduplex.protocol.deflate import (
    EXTENSION_NAME,
    DeflateOptions,
    PerMessageDeflate,
    client_accept,
    client_offer_header,
    client_offers,
    deflate_options,
    server_accept,
    server_negotiate,
)
from fullduplex.protocol.extensions import Extension, ExtensionParam, parse_extensions

HELLO = b"Hello"
# RFC 7692 section 7.2.3.1: "Hello" as one compressed DEFLATE block, tail removed.
HELLO_COMPRESSED = bytes.fromhex("f248cdc9c90700")
# Section 7.2.3.2: the same message again, compressed with the first one in the window.
HELLO_AGAIN_COMPRESSED = bytes.fromhex("f200110000")


def pair(
    *,
    client_no_context_takeover: bool = False,
    server_no_context_takeover: bool = False,
    client_bits: int = 15,
    server_bits: int = 15,
) -> tuple[PerMessageDeflate, PerMessageDeflate]:
    """A client codec and a server codec that agree, as a negotiation would leave them."""
    client = PerMessageDeflate(
        local_no_context_takeover=client_no_context_takeover,
        remote_no_context_takeover=server_no_context_takeover,
        local_max_window_bits=client_bits,
        remote_max_window_bits=server_bits,
    )
    server = PerMessageDeflate(
        local_no_context_takeover=server_no_context_takeover,
        remote_no_context_takeover=client_no_context_takeover,
        local_max_window_bits=server_bits,
        remote_max_window_bits=client_bits,
    )
    return client, server


def send(sender: PerMessageDeflate, message: bytes, cuts: list[int] = []) -> list[bytes]:  # noqa: B006
    """Compress ``message`` as frames split at ``cuts``; return the frame payloads."""
    bounds = [0, *sorted(cut for cut in cuts if 0 < cut < len(message)), len(message)]
    pieces = [message[a:b] for a, b in itertools.pairwise(bounds)]
    return [sender.compress(piece, i == len(pieces) - 1) for i, piece in enumerate(pieces)]


def receive(
    receiver: PerMessageDeflate, payloads: list[bytes], max_length: int | None = None
) -> bytes:
    """Decompress the frames of one message, spending a message budget as Connection does."""
    out = b""
    for i, payload in enumerate(payloads):
        budget = None if max_length is None else max_length - len(out)
        out += receiver.decompress(payload, i == len(payloads) - 1, budget)
    return out


class TestSection7_2_3Examples:
    """7.2.3. Examples: the RFC's byte sequences, compressed and decompressed."""

    def test_7_2_3_1_one_compressed_block(self) -> None:
        codec = PerMessageDeflate()
        assert codec.compress(HELLO, True) == HELLO_COMPRESSED
        assert PerMessageDeflate().decompress(HELLO_COMPRESSED, True, None) == HELLO

    def test_7_2_3_1_fragmented(self) -> None:
        # "0x41 0x03 0xf2 0x48 0xcd" then "0x80 0x04 0xc9 0xc9 0x07 0x00".
        codec = PerMessageDeflate()
        first = codec.decompress(bytes.fromhex("f248cd"), False, None)
        second = codec.decompress(bytes.fromhex("c9c90700"), True, None)
        assert first + second == HELLO

    def test_7_2_3_2_sharing_the_window(self) -> None:
        sender = PerMessageDeflate()
        assert sender.compress(HELLO, True) == HELLO_COMPRESSED
        assert sender.compress(HELLO, True) == HELLO_AGAIN_COMPRESSED
        receiver = PerMessageDeflate()
        assert receiver.decompress(HELLO_COMPRESSED, True, None) == HELLO
        assert receiver.decompress(HELLO_AGAIN_COMPRESSED, True, None) == HELLO

    def test_7_2_3_2_no_context_takeover_sends_the_same_bytes_again(self) -> None:
        sender = PerMessageDeflate(local_no_context_takeover=True)
        assert sender.compress(HELLO, True) == HELLO_COMPRESSED
        assert sender.compress(HELLO, True) == HELLO_COMPRESSED

    def test_7_2_3_2_no_context_takeover_resets_the_receiver(self) -> None:
        # A receiver told that the peer resets its context starts every message empty, so
        # a back-reference into the previous message is invalid data.
        receiver = PerMessageDeflate(remote_no_context_takeover=True)
        assert receiver.decompress(HELLO_COMPRESSED, True, None) == HELLO
        with pytest.raises(ProtocolError) as info:
            receiver.decompress(HELLO_AGAIN_COMPRESSED, True, None)
        assert info.value.code == 1007

    def test_7_2_3_3_block_with_no_compression(self) -> None:
        payload = bytes.fromhex("000500faff48656c6c6f00")
        assert PerMessageDeflate().decompress(payload, True, None) == HELLO

    def test_7_2_3_4_block_with_bfinal_set(self) -> None:
        codec = PerMessageDeflate()
        assert codec.decompress(bytes.fromhex("f348cdc9c9070000"), True, None) == HELLO
        # The stream ended; the next message starts a new one and is read all the same.
        assert codec.decompress(HELLO_COMPRESSED, True, None) == HELLO

    def test_7_2_3_4_bfinal_then_more_data_in_the_same_message(self) -> None:
        # After a final block, what follows is a new DEFLATE stream; it is inflated too.
        codec = PerMessageDeflate()
        payload = bytes.fromhex("f348cdc9c90700") + HELLO_COMPRESSED
        assert codec.decompress(payload, True, None) == HELLO + HELLO

    def test_7_2_3_4_bfinal_at_the_end_of_a_fragment(self) -> None:
        codec = PerMessageDeflate()
        assert codec.decompress(bytes.fromhex("f348cdc9c90700"), False, None) == HELLO
        # A new stream starts with the next fragment.
        sender = PerMessageDeflate()
        assert codec.decompress(sender.compress(b"!", False), False, None) == b"!"
        assert codec.decompress(sender.compress(b"", True), True, None) == b""
        assert codec.decompress(HELLO_COMPRESSED, True, None) == HELLO

    def test_7_2_3_5_two_deflate_blocks_in_one_message(self) -> None:
        payload = bytes.fromhex("f24805000000ffffcac9c90700")
        assert PerMessageDeflate().decompress(payload, True, None) == HELLO

    def test_7_2_3_6_empty_message(self) -> None:
        # Compressing nothing leaves a single 00 once the tail is removed.
        assert PerMessageDeflate().compress(b"", True) == b"\x00"
        assert PerMessageDeflate().decompress(b"\x00", True, None) == b""


class TestSection7_2_1Compression:
    """7.2.1. Compression: every frame is flushed; the last loses 00 00 ff ff."""

    def test_non_final_frames_keep_the_flush_marker(self) -> None:
        codec = PerMessageDeflate()
        payload = codec.compress(b"Hel", False)
        assert payload.endswith(b"\x00\x00\xff\xff")
        last = codec.compress(b"lo", True)
        assert not last.endswith(b"\x00\x00\xff\xff")
        assert PerMessageDeflate().decompress(payload, False, None) == b"Hel"

    def test_accepts_bytearray_and_memoryview(self) -> None:
        assert PerMessageDeflate().compress(bytearray(HELLO), True) == HELLO_COMPRESSED
        assert PerMessageDeflate().compress(memoryview(HELLO), True) == HELLO_COMPRESSED
        codec = PerMessageDeflate()
        assert codec.decompress(memoryview(HELLO_COMPRESSED), True, None) == HELLO
        assert codec.decompress(bytearray(HELLO_AGAIN_COMPRESSED), True, None) == HELLO

    def test_zlib_objects_are_created_lazily_and_dropped_without_context_takeover(self) -> None:
        codec = PerMessageDeflate(local_no_context_takeover=True, remote_no_context_takeover=True)
        assert codec._encoder is None and codec._decoder is None
        codec.compress(b"Hel", False)
        assert codec._encoder is not None  # kept within a message
        codec.compress(b"lo", True)
        assert codec._encoder is None  # nothing held between messages
        codec.decompress(bytes.fromhex("f248cd"), False, None)
        assert codec._decoder is not None
        codec.decompress(bytes.fromhex("c9c90700"), True, None)
        assert codec._decoder is None

    def test_context_takeover_keeps_zlib_objects(self) -> None:
        codec = PerMessageDeflate()
        codec.compress(HELLO, True)
        codec.decompress(HELLO_COMPRESSED, True, None)
        assert codec._encoder is not None and codec._decoder is not None

    @pytest.mark.parametrize("bits", range(8, 16))
    def test_window_bits_bound_the_distances(self, bits: int) -> None:
        # A repetitive message whose repeats lie further apart than any small window; a raw
        # inflater with exactly the negotiated window must read what the codec wrote. zlib
        # refuses to compress with 8 bits, and the codec's 9-bit stand-in must still fit 8.
        message = os.urandom(300) * 200
        codec = PerMessageDeflate(local_max_window_bits=bits)
        payloads = send(codec, message, [7000, 21000]) + send(codec, message)
        inflater = zlib.decompressobj(-bits)
        data = b"".join(payloads[:2]) + payloads[2] + b"\x00\x00\xff\xff"
        assert inflater.decompress(data) == message
        assert inflater.decompress(payloads[3] + b"\x00\x00\xff\xff") == message

    @pytest.mark.parametrize("bits", [8, 9, 12])
    def test_small_window_decompressor_reads_its_peer(self, bits: int) -> None:
        client, server = pair(client_bits=bits, server_bits=bits)
        message = b"abc" * 1000 + os.urandom(100) + b"abc" * 1000
        assert receive(server, send(client, message, [10, 3000])) == message
        assert receive(client, send(server, message)) == message


class TestSection7_2_2Decompression:
    """7.2.2. Decompression, bounded by the message size budget."""

    def test_exactly_the_limit_is_allowed(self) -> None:
        message = b"x" * 1000
        payloads = send(PerMessageDeflate(), message)
        assert receive(PerMessageDeflate(), payloads, max_length=1000) == message

    def test_one_byte_over_the_limit_is_refused(self) -> None:
        payloads = send(PerMessageDeflate(), b"x" * 1001)
        with pytest.raises(PayloadTooBig) as info:
            receive(PerMessageDeflate(), payloads, max_length=1000)
        assert info.value.code == 1009
        assert "1000 bytes were left" in str(info.value)

    def test_budget_spent_across_frames(self) -> None:
        sender = PerMessageDeflate()
        payloads = send(sender, b"x" * 600, [300])
        receiver = PerMessageDeflate()
        assert receiver.decompress(payloads[0], False, 500) == b"x" * 300
        with pytest.raises(PayloadTooBig):
            receiver.decompress(payloads[1], True, 200)

    def test_zero_budget(self) -> None:
        assert PerMessageDeflate().decompress(b"\x00", True, 0) == b""
        with pytest.raises(PayloadTooBig):
            PerMessageDeflate().decompress(HELLO_COMPRESSED, True, 0)

    def test_limit_applies_after_a_final_block(self) -> None:
        payload = bytes.fromhex("f348cdc9c90700") + HELLO_COMPRESSED
        assert PerMessageDeflate().decompress(payload, True, 10) == HELLO * 2
        with pytest.raises(PayloadTooBig):
            PerMessageDeflate().decompress(payload, True, 9)

    def test_compression_bomb_is_refused_without_inflating_it(self) -> None:
        # 64 MiB of zeros deflate to about 64 KiB; with a 1 MiB budget, the codec must refuse
        # after producing at most 1 MiB + 1 byte, never the 64 MiB.
        bomb = send(PerMessageDeflate(compress_level=9), bytes(64 * 2**20))[0]
        assert len(bomb) < 100 * 2**10
        tracemalloc.start()
        try:
            with pytest.raises(PayloadTooBig):
                PerMessageDeflate().decompress(bomb, True, 2**20)
            _, bounded_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            # The control: the same bomb inflated without a budget shows the measure works.
            assert len(PerMessageDeflate().decompress(bomb[: len(bomb) // 8], False, None)) > (
                4 * 2**20
            )
            _, unbounded_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert bounded_peak < 3 * 2**20
        assert unbounded_peak > 4 * 2**20

    @pytest.mark.parametrize(
        "payload",
        [
            b"\xff\xff\xff\xff",  # reserved block type 11
            bytes.fromhex("f200110000"),  # a distance into an empty window
            b"\x00\x05\x00\x00\x00Hello",  # stored block with LEN/NLEN mismatch
        ],
    )
    def test_corrupt_data_is_1007(self, payload: bytes) -> None:
        codec = PerMessageDeflate()
        with pytest.raises(ProtocolError) as info:
            codec.decompress(payload, True, None)
        assert info.value.code == 1007
        assert not isinstance(info.value, PayloadTooBig)
        assert str(info.value).startswith("invalid compressed data")


message_lists = st.lists(
    st.one_of(
        st.binary(max_size=2000),
        st.sampled_from([b"", HELLO, b"abc" * 700, bytes(5000)]),
    ),
    min_size=1,
    max_size=5,
)


class TestRoundTrip:
    """compress then decompress yields the messages, whatever the frame and read splits."""

    @settings(max_examples=60, deadline=None)
    @given(
        messages=message_lists,
        cuts=st.lists(st.integers(min_value=1, max_value=6000), max_size=4),
        client_nct=st.booleans(),
        server_nct=st.booleans(),
        client_bits=st.integers(min_value=8, max_value=15),
        server_bits=st.integers(min_value=8, max_value=15),
    )
    def test_both_directions(
        self,
        *,
        messages: list[bytes],
        cuts: list[int],
        client_nct: bool,
        server_nct: bool,
        client_bits: int,
        server_bits: int,
    ) -> None:
        client, server = pair(
            client_no_context_takeover=client_nct,
            server_no_context_takeover=server_nct,
            client_bits=client_bits,
            server_bits=server_bits,
        )
        for message in messages:
            assert receive(server, send(client, message, cuts)) == message
            assert receive(client, send(server, message, cuts)) == message

    @settings(max_examples=60, deadline=None)
    @given(messages=message_lists, data=st.data())
    def test_compressed_stream_split_anywhere(
        self, messages: list[bytes], data: st.DataObject
    ) -> None:
        # The frames of a compressed message are an arbitrary split of one DEFLATE stream:
        # the receiver must not care where the sender cut it.
        sender, receiver = PerMessageDeflate(), PerMessageDeflate()
        for message in messages:
            stream = b"".join(send(sender, message))
            cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=4))
            bounds = [0, *sorted(cuts), len(stream)]
            frames = [stream[a:b] for a, b in itertools.pairwise(bounds)]
            assert receive(receiver, frames, max_length=len(message)) == message


class TestDeflateOptions:
    """The options' defaults and checks."""

    def test_defaults_are_memory_conscious(self) -> None:
        options = DeflateOptions()
        assert options.server_max_window_bits == 12
        assert options.client_max_window_bits == 12
        assert options.mem_level == 5
        assert not options.server_no_context_takeover
        assert not options.client_no_context_takeover

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"server_max_window_bits": 7},
            {"server_max_window_bits": 16},
            {"client_max_window_bits": 0},
            {"compress_level": 10},
            {"compress_level": -2},
            {"mem_level": 0},
            {"mem_level": 10},
        ],
    )
    def test_invalid_values(self, kwargs: dict[str, int]) -> None:
        with pytest.raises(ValueError, match="must be between"):
            DeflateOptions(**kwargs)  # type: ignore[arg-type]


class TestSection7_1ClientOffer:
    """7.1. Negotiation, client side: the offers."""

    @pytest.mark.parametrize(
        ("options", "header"),
        [
            (
                DeflateOptions(),
                "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12, "
                "permessage-deflate",
            ),
            (
                DeflateOptions(server_max_window_bits=None, client_max_window_bits=None),
                "permessage-deflate",
            ),
            (
                DeflateOptions(
                    server_max_window_bits=None,
                    client_max_window_bits=None,
                    client_no_context_takeover=True,
                ),
                "permessage-deflate; client_no_context_takeover",
            ),
            (
                DeflateOptions(server_max_window_bits=None, client_max_window_bits=15),
                "permessage-deflate; client_max_window_bits=15, permessage-deflate",
            ),
            (
                DeflateOptions(
                    server_no_context_takeover=True,
                    client_no_context_takeover=True,
                    server_max_window_bits=10,
                    client_max_window_bits=None,
                ),
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                "server_max_window_bits=10, permessage-deflate; client_no_context_takeover",
            ),
        ],
    )
    def test_offer(self, options: DeflateOptions, header: str) -> None:
        assert client_offer_header(options) == header
        assert parse_extensions([header]) == client_offers(options)


def only(params: list[ExtensionParam]) -> list[Extension]:
    return [(EXTENSION_NAME, params)]


def no_limits(**kwargs: object) -> DeflateOptions:
    """Options without the default window limits, plus ``kwargs``."""
    base: dict[str, object] = {"server_max_window_bits": None, "client_max_window_bits": None}
    base.update(kwargs)
    return DeflateOptions(**base)  # type: ignore[arg-type]


class TestSection7_1ServerChoice:
    """7.1. Negotiation, server side: the first acceptable offer wins."""

    @pytest.mark.parametrize("offered", [False, True])
    @pytest.mark.parametrize("configured", [False, True])
    def test_7_1_1_1_server_no_context_takeover(self, offered: bool, configured: bool) -> None:
        params: list[ExtensionParam] = [("server_no_context_takeover", None)] if offered else []
        accepted = server_accept(only(params), no_limits(server_no_context_takeover=configured))
        assert accepted is not None
        response, codec = accepted
        expected = offered or configured
        assert (("server_no_context_takeover", None) in response[1]) is expected
        assert codec.local_no_context_takeover is expected
        assert codec.remote_no_context_takeover is False

    @pytest.mark.parametrize("offered", [False, True])
    @pytest.mark.parametrize("configured", [False, True])
    def test_7_1_1_2_client_no_context_takeover(self, offered: bool, configured: bool) -> None:
        params: list[ExtensionParam] = [("client_no_context_takeover", None)] if offered else []
        accepted = server_accept(only(params), no_limits(client_no_context_takeover=configured))
        assert accepted is not None
        response, codec = accepted
        expected = offered or configured
        assert (("client_no_context_takeover", None) in response[1]) is expected
        assert codec.remote_no_context_takeover is expected
        assert codec.local_no_context_takeover is False

    @pytest.mark.parametrize(
        ("offered", "configured", "expected"),
        [
            (None, None, None),
            (None, 9, 9),
            (None, 12, 12),
            ("8", None, 8),
            ("8", 12, 8),
            ("10", 12, 10),
            ("15", 12, 12),
            ("12", 12, 12),
            ("15", None, 15),
            ("13", 9, 9),
        ],
    )
    def test_7_1_2_1_server_max_window_bits(
        self, offered: str | None, configured: int | None, expected: int | None
    ) -> None:
        params: list[ExtensionParam] = (
            [("server_max_window_bits", offered)] if offered is not None else []
        )
        accepted = server_accept(only(params), no_limits(server_max_window_bits=configured))
        assert accepted is not None
        response, codec = accepted
        if expected is None:
            assert response == (EXTENSION_NAME, [])
            assert codec.local_max_window_bits == 15
        else:
            assert response == (EXTENSION_NAME, [("server_max_window_bits", str(expected))])
            assert codec.local_max_window_bits == expected
        assert codec.remote_max_window_bits == 15

    @pytest.mark.parametrize(
        ("offered", "configured", "expected"),
        [
            # Not offered: the server cannot limit the client, and accepts it anyway.
            ("absent", None, None),
            ("absent", 12, None),
            # Offered without a value: the server's limit, if it has one.
            (None, None, None),
            (None, 9, 9),
            (None, 12, 12),
            # Offered with a value: the client's own limit, lowered by the server's.
            ("8", None, 8),
            ("8", 12, 8),
            ("10", 12, 10),
            ("15", 12, 12),
            ("15", None, 15),
        ],
    )
    def test_7_1_2_2_client_max_window_bits(
        self, offered: str | None, configured: int | None, expected: int | None
    ) -> None:
        params: list[ExtensionParam] = (
            [] if offered == "absent" else [("client_max_window_bits", offered)]
        )
        accepted = server_accept(only(params), no_limits(client_max_window_bits=configured))
        assert accepted is not None
        response, codec = accepted
        if expected is None:
            assert response == (EXTENSION_NAME, [])
            assert codec.remote_max_window_bits == 15
        else:
            assert response == (EXTENSION_NAME, [("client_max_window_bits", str(expected))])
            assert codec.remote_max_window_bits == expected
        assert codec.local_max_window_bits == 15

    def test_defaults_answer_a_browser_offer(self) -> None:
        # What Chrome and Firefox send.
        offers = parse_extensions(["permessage-deflate; client_max_window_bits"])
        accepted = server_accept(offers, DeflateOptions())
        assert accepted is not None
        response, codec = accepted
        assert response == (
            EXTENSION_NAME,
            [("server_max_window_bits", "12"), ("client_max_window_bits", "12")],
        )
        assert (codec.local_max_window_bits, codec.remote_max_window_bits) == (12, 12)
        assert (codec.compress_level, codec.mem_level) == (6, 5)

    def test_all_four_parameters(self) -> None:
        offers = parse_extensions(
            [
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                "server_max_window_bits=10; client_max_window_bits=11"
            ]
        )
        accepted = server_accept(offers, DeflateOptions())
        assert accepted is not None
        response, codec = accepted
        assert response == (
            EXTENSION_NAME,
            [
                ("server_no_context_takeover", None),
                ("client_no_context_takeover", None),
                ("server_max_window_bits", "10"),
                ("client_max_window_bits", "11"),
            ],
        )
        assert codec.local_no_context_takeover and codec.remote_no_context_takeover
        assert (codec.local_max_window_bits, codec.remote_max_window_bits) == (10, 11)

    @pytest.mark.parametrize(
        "params",
        [
            [("server_max_window_bits", None)],  # needs a value in an offer
            [("server_max_window_bits", "7")],
            [("server_max_window_bits", "16")],
            [("server_max_window_bits", "08")],  # no leading zeros
            [("server_max_window_bits", "ten")],
            [("client_max_window_bits", "16")],
            [("client_max_window_bits", "0")],
            [("server_no_context_takeover", "1")],  # takes no value
            [("client_no_context_takeover", "true")],
            [("client_max_window_bits", None), ("client_max_window_bits", "10")],  # duplicate
            [("server_no_context_takeover", None), ("server_no_context_takeover", None)],
            [("x_unknown", None)],
        ],
    )
    def test_invalid_offer_is_declined(self, params: list[ExtensionParam]) -> None:
        assert server_accept(only(params), DeflateOptions()) is None
        # ... and the next offer is considered.
        offers: list[Extension] = [
            (EXTENSION_NAME, params),
            (EXTENSION_NAME, [("client_no_context_takeover", None)]),
        ]
        accepted = server_accept(offers, no_limits())
        assert accepted is not None
        assert accepted[0] == (EXTENSION_NAME, [("client_no_context_takeover", None)])

    def test_first_acceptable_offer_wins(self) -> None:
        offers = parse_extensions(
            ["permessage-deflate; server_max_window_bits=10, permessage-deflate"]
        )
        accepted = server_accept(offers, no_limits())
        assert accepted is not None
        assert accepted[0] == (EXTENSION_NAME, [("server_max_window_bits", "10")])

    def test_other_extensions_are_skipped(self) -> None:
        offers = parse_extensions(["x-webkit-deflate-frame, permessage-deflate; x=1"])
        assert server_accept(offers, DeflateOptions()) is None
        offers = parse_extensions(["x-webkit-deflate-frame, permessage-deflate"])
        accepted = server_accept(offers, no_limits())
        assert accepted is not None and accepted[0] == (EXTENSION_NAME, [])

    def test_no_offer(self) -> None:
        assert server_accept([], DeflateOptions()) is None

    def test_server_negotiate(self) -> None:
        values = ["permessage-deflate; client_max_window_bits"]
        first = server_negotiate(values, DeflateOptions())
        second = server_negotiate(values, DeflateOptions())
        assert first is not None and second is not None
        assert (
            first[0]
            == second[0]
            == ("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12")
        )
        # Answers may be remembered, codecs never: each connection has its own zlib state.
        assert first[1] is not second[1]
        assert server_negotiate([], DeflateOptions()) is None
        assert server_negotiate(["x-other"], DeflateOptions()) is None
        with pytest.raises(NegotiationError):
            server_negotiate(["permessage-deflate;"], DeflateOptions())

    def test_server_negotiate_long_values(self) -> None:
        values = ["x-other; p=" + "a" * 300, "permessage-deflate; server_no_context_takeover"]
        accepted = server_negotiate(values, no_limits())
        assert accepted is not None
        assert accepted[0] == "permessage-deflate; server_no_context_takeover"
        assert accepted[1].local_no_context_takeover


class TestSection7_1ClientValidation:
    """7.1. Negotiation, client side: validating the server's response."""

    @pytest.mark.parametrize("in_response", [False, True])
    @pytest.mark.parametrize("requested", [False, True])
    def test_7_1_1_1_server_no_context_takeover(self, in_response: bool, requested: bool) -> None:
        # The server may add it unasked; a response without it accepted the plain offer.
        params: list[ExtensionParam] = [("server_no_context_takeover", None)] if in_response else []
        codec = client_accept(params, DeflateOptions(server_no_context_takeover=requested))
        assert codec.remote_no_context_takeover is in_response
        assert codec.local_no_context_takeover is False

    @pytest.mark.parametrize("in_response", [False, True])
    @pytest.mark.parametrize("declared", [False, True])
    def test_7_1_1_2_client_no_context_takeover(self, in_response: bool, declared: bool) -> None:
        params: list[ExtensionParam] = [("client_no_context_takeover", None)] if in_response else []
        codec = client_accept(params, DeflateOptions(client_no_context_takeover=declared))
        assert codec.local_no_context_takeover is (in_response or declared)
        assert codec.remote_no_context_takeover is False

    @pytest.mark.parametrize(
        ("requested", "in_response", "expected"),
        [
            (None, None, 15),
            (None, "8", 8),
            (None, "15", 15),
            (12, None, 15),  # the server accepted the plain offer
            (12, "8", 8),
            (12, "12", 12),
            (12, "13", NegotiationError),  # more than asked for
            (9, "15", NegotiationError),
        ],
    )
    def test_7_1_2_1_server_max_window_bits(
        self, requested: int | None, in_response: str | None, expected: int | type[Exception]
    ) -> None:
        params: list[ExtensionParam] = (
            [("server_max_window_bits", in_response)] if in_response is not None else []
        )
        options = DeflateOptions(server_max_window_bits=requested)
        if isinstance(expected, int):
            assert client_accept(params, options).remote_max_window_bits == expected
        else:
            with pytest.raises(expected, match="exceeds the"):
                client_accept(params, options)

    @pytest.mark.parametrize(
        ("offered", "in_response", "expected"),
        [
            (None, None, 15),
            (None, "10", NegotiationError),  # only if offered
            (12, None, 12),  # the client keeps the limit it declared
            (12, "9", 9),
            (12, "12", 12),
            (12, "15", 12),  # the server ignored the hint; the client still keeps its word
            (15, "8", 8),
        ],
    )
    def test_7_1_2_2_client_max_window_bits(
        self, offered: int | None, in_response: str | None, expected: int | type[Exception]
    ) -> None:
        params: list[ExtensionParam] = (
            [("client_max_window_bits", in_response)] if in_response is not None else []
        )
        options = DeflateOptions(client_max_window_bits=offered)
        if isinstance(expected, int):
            assert client_accept(params, options).local_max_window_bits == expected
        else:
            with pytest.raises(expected, match="in response but not in offer"):
                client_accept(params, options)

    @pytest.mark.parametrize(
        ("params", "message"),
        [
            ([("client_max_window_bits", None)], "invalid value for client_max_window_bits"),
            ([("server_max_window_bits", None)], "invalid value for server_max_window_bits"),
            ([("server_max_window_bits", "7")], "invalid value"),
            ([("server_max_window_bits", "010")], "invalid value"),
            ([("client_max_window_bits", "16")], "invalid value"),
            ([("server_no_context_takeover", "x")], "takes no value"),
            ([("client_no_context_takeover", "1")], "takes no value"),
            (
                [("server_no_context_takeover", None), ("server_no_context_takeover", None)],
                "duplicate permessage-deflate parameter: server_no_context_takeover",
            ),
            (
                [("server_max_window_bits", "10"), ("server_max_window_bits", "10")],
                "duplicate",
            ),
            ([("mystery", None)], "unknown permessage-deflate parameter: mystery"),
        ],
    )
    def test_invalid_response(self, params: list[ExtensionParam], message: str) -> None:
        with pytest.raises(NegotiationError, match=message):
            client_accept(params, DeflateOptions())

    def test_codec_settings_follow_the_options(self) -> None:
        codec = client_accept([], DeflateOptions(compress_level=1, mem_level=9))
        assert (codec.compress_level, codec.mem_level) == (1, 9)
        assert "local_max_window_bits=12" in repr(codec)


@pytest.mark.parametrize(
    ("client_options", "server_options"),
    [
        (DeflateOptions(), DeflateOptions()),
        (no_limits(), no_limits()),
        (DeflateOptions(server_no_context_takeover=True), DeflateOptions()),
        (DeflateOptions(client_no_context_takeover=True), no_limits()),
        (no_limits(), DeflateOptions(client_no_context_takeover=True, server_max_window_bits=8)),
        (DeflateOptions(server_max_window_bits=9, client_max_window_bits=8), DeflateOptions()),
    ],
)
def test_negotiated_codecs_talk(
    client_options: DeflateOptions, server_options: DeflateOptions
) -> None:
    """Offer, choice and validation end with two codecs that understand each other."""
    accepted = server_accept(client_offers(client_options), server_options)
    assert accepted is not None
    response, server = accepted
    client = client_accept(response[1], client_options)
    assert client.local_max_window_bits == server.remote_max_window_bits
    assert client.remote_max_window_bits == server.local_max_window_bits
    assert client.local_no_context_takeover == server.remote_no_context_takeover
    assert client.remote_no_context_takeover == server.local_no_context_takeover
    for message in [HELLO, b"abc" * 2000, HELLO]:
        assert receive(server, send(client, message, [100])) == message
        assert receive(client, send(server, message)) == message


class TestDeflateOptionsFromCompression:
    """The ``compression`` option of serve(), connect() and the sync client."""

    def test_values(self) -> None:
        assert deflate_options(None) is None
        assert deflate_options("deflate") == DeflateOptions()
        custom = DeflateOptions(server_no_context_takeover=True)
        assert deflate_options(custom) is custom
        with pytest.raises(ValueError, match="unsupported compression 'gzip'"):
            deflate_options("gzip")
