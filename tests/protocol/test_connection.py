"""Tests of fullduplex.protocol.connection: the sans-I/O state machine (RFC 6455 sections 5-8)."""

from __future__ import annotations

import itertools
import logging
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fullduplex.exceptions import (
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
    PayloadTooBig,
    ProtocolError,
)
from fullduplex.protocol import connection as connection_module
from fullduplex.protocol.connection import (
    SEND_EOF,
    Close,
    Connection,
    Event,
    Ping,
    Pong,
    Role,
    State,
)
from fullduplex.protocol.deflate import PerMessageDeflate
from fullduplex.protocol.frames import (
    Frame,
    FrameParser,
    Opcode,
    apply_mask,
    serialize_close,
    serialize_frame,
)
from tests.protocol.conftest import (
    RFC_MASK,
    Pair,
    SpyDeflate,
    assert_failing,
    assert_frame_sent,
    assert_nothing_sent,
    frames_sent,
)

INVALID_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000]
MASK = b"\x01\x02\x03\x04"


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """A frame as a client sends it (masked): feed it to a server."""
    return serialize_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=MASK)


def server_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """A frame as a server sends it (unmasked): feed it to a client."""
    return serialize_frame(opcode, payload, fin=fin, rsv1=rsv1)


def frame_to(conn: Connection, opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A frame as ``conn``'s peer sends it."""
    if conn.role is Role.SERVER:
        return client_frame(opcode, payload, fin=fin)
    return server_frame(opcode, payload, fin=fin)


def state_of(conn: Connection) -> State:
    """``conn.state``, read through a call so that type checkers do not narrow it."""
    return conn.state


@pytest.fixture(params=[Role.CLIENT, Role.SERVER], ids=["client", "server"])
def conn(request: pytest.FixtureRequest, fixed_mask: bytes) -> Connection:
    """A Connection of either role."""
    return Connection(request.param)


class TestSection5_7Examples:
    """RFC 6455 section 5.7 examples produced by Connection.send_* (fixed mask 37 fa 21 3d)."""

    def test_masked_text_from_client(self, client: Connection) -> None:
        client.send_text("Hello")
        assert client.data_to_send() == [
            bytes([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
        ]

    def test_unmasked_text_from_server(self, server: Connection) -> None:
        server.send_text("Hello")
        assert server.data_to_send() == [bytes([0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])]

    def test_fragmented_text_from_server(self, server: Connection) -> None:
        server.send_text("Hel", fin=False)
        server.send_continuation("lo", fin=True)
        assert server.data_to_send() == [
            bytes([0x01, 0x03, 0x48, 0x65, 0x6C]),
            bytes([0x80, 0x02, 0x6C, 0x6F]),
        ]

    def test_unmasked_ping_from_server(self, server: Connection) -> None:
        server.send_ping(b"Hello")
        assert server.data_to_send() == [bytes([0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])]

    def test_masked_pong_from_client(self, client: Connection) -> None:
        client.send_pong(b"Hello")
        assert client.data_to_send() == [
            bytes([0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
        ]

    def test_256_bytes_binary(self, server: Connection) -> None:
        server.send_binary(b"\x00" * 256)
        (data,) = server.data_to_send()
        assert data[:4] == bytes([0x82, 0x7E, 0x01, 0x00])
        assert len(data) == 4 + 256

    def test_64_kib_binary(self, server: Connection) -> None:
        payload = b"\x00" * 65536
        server.send_binary(payload)
        # From SPLIT_PAYLOAD_MIN on, the header and the payload itself, not a copy.
        header, sent = server.data_to_send()
        assert header == bytes([0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0])
        assert sent is payload

    def test_large_payload_from_a_client_is_one_masked_chunk(self, client: Connection) -> None:
        client.send_binary(b"\x00" * 65536)
        (data,) = client.data_to_send()
        assert data[:14] == bytes([0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0]) + RFC_MASK
        assert data[14:] == RFC_MASK * (65536 // 4)

    def test_client_receives_unmasked_hello(self, client: Connection) -> None:
        client.receive_data(bytes([0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F]))
        assert client.events_received() == ["Hello"]

    def test_server_receives_masked_hello(self, server: Connection) -> None:
        server.receive_data(
            bytes([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
        )
        assert server.events_received() == ["Hello"]

    def test_server_receives_masked_pong(self, server: Connection) -> None:
        server.receive_data(
            bytes([0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
        )
        assert server.events_received() == [Pong(b"Hello")]
        assert_nothing_sent(server)


class TestInitialState:
    def test_attributes(self, conn: Connection) -> None:
        assert conn.state is State.OPEN
        assert conn.close_rcvd is None
        assert conn.close_sent is None
        assert conn.failure is None
        assert conn.close_code == 1006
        assert conn.close_reason == ""
        assert not conn.close_expected()
        assert conn.events_received() == []
        assert conn.data_to_send() == []

    def test_role(self) -> None:
        assert Connection(Role.CLIENT).role is Role.CLIENT
        assert Connection(Role.SERVER).role is Role.SERVER

    def test_send_eof_marker(self) -> None:
        assert SEND_EOF == b""

    def test_default_mask_source(self) -> None:
        # Real masks must come from a CSPRNG (RFC 6455 section 10.3).
        assert connection_module.generate_mask is os.urandom


class TestSection6DataFrames:
    """Sending and receiving whole messages (RFC 6455 sections 5.6 and 6)."""

    def test_text_str_and_bytes(self, server: Connection) -> None:
        server.send_text("café")
        server.send_text("café".encode())
        frames, _ = frames_sent(server)
        assert frames == [Frame(Opcode.TEXT, "café".encode())] * 2

    @pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
    def test_binary_buffer_types(self, server: Connection, kind: type) -> None:
        server.send_binary(kind(b"\x00\xff"))
        assert_frame_sent(server, Opcode.BINARY, b"\x00\xff")

    def test_client_masks(self, counting_masks: None) -> None:
        client = Connection(Role.CLIENT)
        client.send_binary(b"abcd")
        client.send_binary(b"abcd")
        first, second = client.data_to_send()
        assert first[2:6] == b"\x00\x00\x00\x01"
        assert second[2:6] == b"\x00\x00\x00\x02"
        assert first[1] & 0x80
        assert first[6:] == apply_mask(b"abcd", b"\x00\x00\x00\x01")
        assert second[6:] == apply_mask(b"abcd", b"\x00\x00\x00\x02")

    def test_receive_text_and_binary(self, conn: Connection) -> None:
        conn.receive_data(
            frame_to(conn, Opcode.TEXT, "héllo".encode())
            + frame_to(conn, Opcode.BINARY, b"\xff\x00")
            + frame_to(conn, Opcode.TEXT, b"")
            + frame_to(conn, Opcode.BINARY, b"")
        )
        events = conn.events_received()
        assert events == ["héllo", b"\xff\x00", "", b""]
        assert [type(e) for e in events] == [str, bytes, str, bytes]
        assert_nothing_sent(conn)

    def test_events_are_forgotten(self, conn: Connection) -> None:
        conn.receive_data(frame_to(conn, Opcode.TEXT, b"a"))
        assert conn.events_received() == ["a"]
        assert conn.events_received() == []

    def test_data_to_send_is_forgotten(self, conn: Connection) -> None:
        conn.send_text("a")
        assert len(conn.data_to_send()) == 1
        assert conn.data_to_send() == []

    def test_empty_events_list_is_not_shared(self, server: Connection) -> None:
        # A list returned by events_received() belongs to the caller: events that arrive
        # later must not appear in it (and must still be returned by the next call).
        events = server.events_received()
        assert events == []
        server.receive_data(client_frame(Opcode.TEXT, b"later"))
        assert events == []
        assert server.events_received() == ["later"]

    def test_empty_data_to_send_list_is_not_shared(self, server: Connection) -> None:
        # Same contract for data_to_send(): a caller appending to the list it got must not
        # inject bytes into the connection's output.
        out = server.data_to_send()
        assert out == []
        out.append(b"garbage")
        assert server.data_to_send() == []


class TestSection5_4Fragmentation:
    """RFC 6455 section 5.4: fragments, reassembly, control frames in between."""

    def test_reassembly_with_control_frames(self, server: Connection) -> None:
        server.receive_data(
            client_frame(Opcode.TEXT, b"Hel", fin=False)
            + client_frame(Opcode.PING, b"p1")
            + client_frame(Opcode.CONTINUATION, b"l", fin=False)
            + client_frame(Opcode.PONG, b"p2")
            + client_frame(Opcode.CONTINUATION, b"", fin=False)
            + client_frame(Opcode.CONTINUATION, b"o", fin=True)
        )
        assert server.events_received() == [Ping(b"p1"), Pong(b"p2"), "Hello"]
        assert_frame_sent(server, Opcode.PONG, b"p1")

    def test_one_byte_at_a_time(self, server: Connection) -> None:
        stream = (
            client_frame(Opcode.TEXT, "hé".encode(), fin=False)
            + client_frame(Opcode.PING, b"p")
            + client_frame(Opcode.CONTINUATION, "llo €".encode())
            + client_frame(Opcode.BINARY, b"\x00" * 300)
            + client_frame(Opcode.CLOSE, close_payload(1000, "done"))
        )
        for i in range(len(stream)):
            server.receive_data(bytearray(stream[i : i + 1]))
        assert server.events_received() == [
            Ping(b"p"),
            "héllo €",
            b"\x00" * 300,
            Close(1000, "done"),
        ]
        frames, eof = frames_sent(server)
        # The close reply echoes the peer's payload: code and reason.
        assert frames == [
            Frame(Opcode.PONG, b"p"),
            Frame(Opcode.CLOSE, close_payload(1000, "done")),
        ]
        assert eof

    def test_binary_reassembly(self, client: Connection) -> None:
        client.receive_data(server_frame(Opcode.BINARY, b"\x01", fin=False))
        assert client.events_received() == []
        client.receive_data(server_frame(Opcode.CONTINUATION, b"\x02", fin=False))
        assert client.events_received() == []
        client.receive_data(server_frame(Opcode.CONTINUATION, b"\x03", fin=True))
        assert client.events_received() == [b"\x01\x02\x03"]

    def test_messages_after_fragmented_message(self, server: Connection) -> None:
        server.receive_data(
            client_frame(Opcode.TEXT, b"a", fin=False)
            + client_frame(Opcode.CONTINUATION, b"b")
            + client_frame(Opcode.BINARY, b"c", fin=False)
            + client_frame(Opcode.CONTINUATION, b"d")
            + client_frame(Opcode.TEXT, b"e")
        )
        assert server.events_received() == ["ab", b"cd", "e"]

    @pytest.mark.parametrize("fin", [True, False])
    def test_continuation_without_message(self, conn: Connection, fin: bool) -> None:
        conn.receive_data(frame_to(conn, Opcode.CONTINUATION, b"x", fin=fin))
        assert conn.events_received() == []
        assert_failing(conn, 1002)

    @pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
    @pytest.mark.parametrize("fin", [True, False])
    def test_new_message_while_one_is_open(
        self, server: Connection, opcode: int, fin: bool
    ) -> None:
        server.receive_data(client_frame(Opcode.BINARY, b"a", fin=False))
        server.receive_data(client_frame(opcode, b"b", fin=fin))
        assert server.events_received() == []
        assert_failing(server, 1002)

    def test_send_fragmented(self, server: Connection) -> None:
        server.send_binary(b"a", fin=False)
        server.send_ping(b"between")
        server.send_continuation(b"b", fin=False)
        server.send_continuation("c", fin=True)
        server.send_text("next")
        frames, _ = frames_sent(server)
        assert frames == [
            Frame(Opcode.BINARY, b"a", fin=False),
            Frame(Opcode.PING, b"between"),
            Frame(Opcode.CONTINUATION, b"b", fin=False),
            Frame(Opcode.CONTINUATION, b"c"),
            Frame(Opcode.TEXT, b"next"),
        ]

    @pytest.mark.parametrize("fin", [True, False])
    def test_send_continuation_without_message(self, conn: Connection, fin: bool) -> None:
        with pytest.raises(InvalidState):
            conn.send_continuation(b"x", fin=fin)
        assert conn.data_to_send() == []

    def test_send_continuation_after_message_ended(self, conn: Connection) -> None:
        conn.send_text("a", fin=False)
        conn.send_continuation("b", fin=True)
        with pytest.raises(InvalidState):
            conn.send_continuation("c", fin=True)

    @pytest.mark.parametrize("second", ["text", "binary"])
    @pytest.mark.parametrize("fin", [True, False])
    def test_second_message_while_fragmented_send_open(
        self, conn: Connection, second: str, fin: bool
    ) -> None:
        conn.send_text("a", fin=False)
        conn.data_to_send()
        with pytest.raises(InvalidState):
            if second == "text":
                conn.send_text("b", fin=fin)
            else:
                conn.send_binary(b"b", fin=fin)
        assert conn.data_to_send() == []
        # The open message can still be finished.
        conn.send_continuation("c", fin=True)
        assert len(conn.data_to_send()) == 1


class TestSection8_1Utf8:
    """RFC 6455 section 8.1: text must be UTF-8; fail as soon as it cannot be (1007)."""

    @pytest.mark.parametrize(
        "payload",
        [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ok\xce", b"\xce\xbaz\xbf"],
    )
    def test_invalid_single_frame(self, conn: Connection, payload: bytes) -> None:
        conn.receive_data(frame_to(conn, Opcode.TEXT, payload))
        assert conn.events_received() == []
        assert_failing(conn, 1007)

    @pytest.mark.parametrize(
        "payload", [b"\xff", b"ok\xc0", b"\xf4\x90", b"\xce\xba\xe1\xbd\xb9\xf4\x90"]
    )
    def test_invalid_first_fragment_fails_at_once(self, server: Connection, payload: bytes) -> None:
        # Only the first fragment has arrived: the connection must not wait for the rest.
        server.receive_data(client_frame(Opcode.TEXT, payload, fin=False))
        assert server.events_received() == []
        assert_failing(server, 1007)

    def test_invalid_middle_fragment_fails_at_once(self, server: Connection) -> None:
        server.receive_data(client_frame(Opcode.TEXT, "κό".encode(), fin=False))
        server.receive_data(client_frame(Opcode.CONTINUATION, b"\xf4\x90\x80\x80", fin=False))
        assert_failing(server, 1007)

    @pytest.mark.parametrize("text", ["é", "€", "😀", "aé€😀z"])
    def test_character_split_across_fragments(self, server: Connection, text: str) -> None:
        data = text.encode()
        # One byte per fragment: every multi-byte character is split at every position.
        stream = b"".join(
            client_frame(
                Opcode.TEXT if i == 0 else Opcode.CONTINUATION,
                data[i : i + 1],
                fin=i == len(data) - 1,
            )
            for i in range(len(data))
        )
        server.receive_data(stream)
        assert server.events_received() == [text]
        assert server.failure is None
        assert_nothing_sent(server)

    @pytest.mark.parametrize("tail", [b"\xce", b"\xe2\x82", b"\xf0\x9f\x98"])
    def test_truncated_at_end(self, server: Connection, tail: bytes) -> None:
        server.receive_data(client_frame(Opcode.TEXT, b"ok", fin=False))
        assert server.failure is None
        server.receive_data(client_frame(Opcode.CONTINUATION, tail, fin=True))
        assert server.events_received() == []
        assert_failing(server, 1007)

    def test_invalid_utf8_in_binary_is_fine(self, server: Connection) -> None:
        server.receive_data(client_frame(Opcode.BINARY, b"\xff", fin=False))
        server.receive_data(client_frame(Opcode.CONTINUATION, b"\xfe"))
        assert server.events_received() == [b"\xff\xfe"]

    def test_decoder_is_reset_between_messages(self, server: Connection) -> None:
        server.receive_data(
            client_frame(Opcode.TEXT, "é".encode(), fin=False)
            + client_frame(Opcode.CONTINUATION, b"")
            + client_frame(Opcode.BINARY, b"\xa9", fin=False)
            + client_frame(Opcode.CONTINUATION, b"")
        )
        assert server.events_received() == ["é", b"\xa9"]
        assert server.failure is None


class TestSection8_1Utf8InPartialFrames:
    """RFC 6455 section 8.1, fail fast: invalid text fails as soon as its bytes arrive, even in
    the middle of a frame that is not complete yet (Autobahn 6.4.3/6.4.4)."""

    KOSME = "κόσμε".encode()

    @pytest.mark.parametrize("repeat", [1, 10_000], ids=["small", "large"])
    def test_invalid_bytes_fail_before_the_frame_completes(
        self, conn: Connection, repeat: int
    ) -> None:
        # 6.4.3: one frame in three chops: header and a valid prefix, the invalid bytes, the
        # rest. The large variant (over 64 KiB) takes the C parser's direct path.
        prefix = self.KOSME * repeat
        data = frame_to(conn, Opcode.TEXT, prefix + b"\xf4\x90\x80\x80" + b"edited")
        cut = len(data) - 10
        conn.receive_data(data[:cut])
        assert conn.failure is None
        assert_nothing_sent(conn)
        conn.receive_data(data[cut : cut + 4])
        assert conn.events_received() == []
        assert_failing(conn, 1007)

    def test_fails_at_the_first_byte_that_cannot_continue(self, conn: Connection) -> None:
        # 6.4.4: F4 arrives alone (still completable), then 90 (above U+10FFFF): fail there.
        data = frame_to(conn, Opcode.TEXT, self.KOSME + b"\xf4\x90\x80\x80" + b"edited")
        cut = len(data) - 10
        conn.receive_data(data[: cut + 1])
        assert conn.failure is None
        assert_nothing_sent(conn)
        conn.receive_data(data[cut + 1 : cut + 2])
        assert_failing(conn, 1007)

    def test_in_a_continuation_frame(self, server: Connection) -> None:
        # The continuation starts in the middle of a character begun by the first fragment.
        server.receive_data(client_frame(Opcode.TEXT, self.KOSME + b"\xf4", fin=False))
        assert server.failure is None
        data = client_frame(Opcode.CONTINUATION, b"\x90\x80\x80edited")
        server.receive_data(data[:-7])
        assert_failing(server, 1007)

    def test_after_complete_frames_in_the_same_read(self, server: Connection) -> None:
        bad = client_frame(Opcode.TEXT, b"ok \xff and more")
        server.receive_data(client_frame(Opcode.PING, b"p") + bad[:-5])
        assert server.events_received() == [Ping(b"p")]
        frames, eof = frames_sent(server)
        assert [f.opcode for f in frames] == [Opcode.PONG, Opcode.CLOSE]
        assert parse_close_code(frames[1].payload) == 1007
        assert eof

    @pytest.mark.parametrize("text", ["aé€😀z" * 3, "😀"])
    def test_valid_text_one_byte_per_read(self, conn: Connection, text: str) -> None:
        data = frame_to(conn, Opcode.TEXT, text.encode(), fin=False)
        data += frame_to(conn, Opcode.CONTINUATION, text.encode())
        for i in range(len(data)):
            conn.receive_data(data[i : i + 1])
        assert conn.events_received() == [text * 2]
        assert conn.failure is None
        assert_nothing_sent(conn)

    def test_binary_frames_are_not_checked(self, server: Connection) -> None:
        data = client_frame(Opcode.BINARY, b"\xff\xfe" * 10)
        server.receive_data(data[:-3])
        assert server.failure is None
        server.receive_data(data[-3:])
        assert server.events_received() == [b"\xff\xfe" * 10]

    def test_binary_continuations_are_not_checked(self, server: Connection) -> None:
        server.receive_data(client_frame(Opcode.BINARY, b"\xff", fin=False))
        server.receive_data(client_frame(Opcode.CONTINUATION, b"\xfe\xfe\xfe")[:-1])
        assert server.failure is None

    def test_compressed_text_is_checked_once_decompressed(self) -> None:
        server = Connection(Role.SERVER, deflate=PerMessageDeflate())
        # Compressed bytes are not UTF-8: the partial frame must not be decoded as text.
        data = client_frame(Opcode.TEXT, b"\xff\xfe\xfd\xfc\xfb", rsv1=True)
        server.receive_data(data[:-2])
        assert server.failure is None


def parse_close_code(payload: bytes) -> int:
    """The code of a close frame's payload."""
    return int.from_bytes(payload[:2], "big")


class TestSection7_1_7FailureAfterValidMessages:
    """A read with valid messages and then a violation (Autobahn 3.2, 4.1.3, 5.15...): the
    messages are delivered, and replies sent to them go out before the close frame."""

    VIOLATIONS = {
        "rsv2": (0x40 >> 1, Opcode.TEXT, b"hello", 1002),
        "reserved opcode 5": (0, 5, b"", 1002),
        "reserved opcode 0xB": (0, 0xB, b"", 1002),
        "fragmented ping": (0, Opcode.PING, b"p", 1002),
        "continuation without message": (0, Opcode.CONTINUATION, b"x", 1002),
        "invalid utf-8": (0, Opcode.TEXT, b"\xff", 1007),
    }

    def bad_frame(self, conn: Connection, kind: str) -> tuple[bytes, int]:
        rsv, opcode, payload, code = self.VIOLATIONS[kind]
        fin = kind != "fragmented ping"
        header = frame_to(conn, opcode, payload, fin=fin)
        return bytes([header[0] | rsv]) + header[1:], code

    @pytest.mark.parametrize("kind", list(VIOLATIONS))
    def test_reply_goes_before_the_close_frame(self, conn: Connection, kind: str) -> None:
        bad, code = self.bad_frame(conn, kind)
        conn.receive_data(
            frame_to(conn, Opcode.TEXT, b"hello") + bad + frame_to(conn, Opcode.PING, b"after")
        )
        assert conn.events_received() == ["hello"]
        assert conn.failure_pending
        assert state_of(conn) is State.OPEN
        conn.send_text("hello")
        frames, eof = frames_sent(conn)
        assert [(f.opcode, f.payload[:2]) for f in frames] == [
            (Opcode.TEXT, b"he"),
            (Opcode.CLOSE, code.to_bytes(2, "big")),
        ]
        assert eof is (conn.role is Role.SERVER)
        assert not conn.failure_pending
        assert conn.failure is not None and conn.failure.code == code
        assert state_of(conn) is State.LOCAL_CLOSING
        assert conn.close_sent == Close(code, conn.close_sent.reason if conn.close_sent else "")

    def test_close_frame_on_the_next_data_to_send_without_reply(self, server: Connection) -> None:
        bad, _ = self.bad_frame(server, "rsv2")
        server.receive_data(client_frame(Opcode.BINARY, b"\x00") + bad)
        assert server.events_received() == [b"\x00"]
        assert server.failure is None
        frames, eof = frames_sent(server)
        assert [f.opcode for f in frames] == [Opcode.CLOSE]
        assert eof
        assert server.failure is not None and server.failure.code == 1002

    def test_data_to_send_can_leave_the_failure_held(self, server: Connection) -> None:
        # A driver whose handler answers later writes each reply as it comes, then the close.
        bad, _ = self.bad_frame(server, "rsv2")
        server.receive_data(client_frame(Opcode.TEXT, b"a") + client_frame(Opcode.TEXT, b"b") + bad)
        assert server.events_received() == ["a", "b"]
        for text in ("a", "b"):
            server.send_text(text)
            frames, eof = frames_sent(server, apply_failure=False)
            assert [(f.opcode, f.payload) for f in frames] == [(Opcode.TEXT, text.encode())]
            assert not eof
            assert server.failure_pending
            assert state_of(server) is State.OPEN
        assert server.data_to_send(apply_failure=False) == []
        frames, eof = frames_sent(server)
        assert [f.opcode for f in frames] == [Opcode.CLOSE]
        assert eof
        assert not server.failure_pending
        assert server.failure is not None and server.failure.code == 1002

    def test_pong_and_message_before_the_violation(self, server: Connection) -> None:
        bad, _ = self.bad_frame(server, "reserved opcode 5")
        server.receive_data(client_frame(Opcode.PING, b"1") + client_frame(Opcode.TEXT, b"m") + bad)
        assert server.events_received() == [Ping(b"1"), "m"]
        frames, _ = frames_sent(server)
        assert [f.opcode for f in frames] == [Opcode.PONG, Opcode.CLOSE]

    def test_input_is_dropped_while_pending(self, server: Connection) -> None:
        bad, _ = self.bad_frame(server, "rsv2")
        server.receive_data(client_frame(Opcode.TEXT, b"a") + bad)
        server.receive_data(client_frame(Opcode.TEXT, b"b"))
        assert server.events_received() == ["a"]
        assert server.close_code_final

    def test_violation_alone_is_not_held(self, server: Connection) -> None:
        bad, _ = self.bad_frame(server, "rsv2")
        server.receive_data(bad)
        assert not server.failure_pending
        assert_failing(server, 1002)

    def test_events_taken_before_the_violation_are_not_waited_for(self, server: Connection) -> None:
        server.receive_data(client_frame(Opcode.TEXT, b"a"))
        assert server.events_received() == ["a"]
        bad, _ = self.bad_frame(server, "rsv2")
        server.receive_data(bad)
        assert not server.failure_pending

    @pytest.mark.parametrize("how", ["send_close", "fail", "receive_eof"])
    def test_other_ways_out_send_the_failure(self, server: Connection, how: str) -> None:
        bad, _ = self.bad_frame(server, "reserved opcode 0xB")
        server.receive_data(client_frame(Opcode.TEXT, b"a") + bad)
        if how == "send_close":
            server.send_close(1000)
        elif how == "fail":
            server.fail(1011)
        else:
            server.receive_eof()
        assert not server.failure_pending
        assert server.close_sent is not None and server.close_sent.code == 1002
        assert server.failure is not None and server.failure.code == 1002
        frames, eof = frames_sent(server)
        assert [f.opcode for f in frames] == [Opcode.CLOSE]
        assert eof


class TestSection10_4Limits:
    """RFC 6455 section 10.4: max_message_size and max_frame_size (1009)."""

    def test_default_limit(self) -> None:
        assert connection_module.DEFAULT_MAX_MESSAGE_SIZE == 2**20
        server = Connection(Role.SERVER)
        server.receive_data(client_frame(Opcode.BINARY, b"x" * 2**20))
        assert server.events_received() == [b"x" * 2**20]
        server.receive_data(client_frame(Opcode.BINARY, b"x" * (2**20 + 1)))
        assert_failing(server, 1009)

    @pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
    def test_single_frame_at_limit(self, opcode: int) -> None:
        server = Connection(Role.SERVER, max_message_size=10)
        server.receive_data(client_frame(opcode, b"x" * 10))
        assert server.events_received() == ["x" * 10 if opcode == Opcode.TEXT else b"x" * 10]

    @pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
    def test_single_frame_over_limit_from_header(self, opcode: int) -> None:
        server = Connection(Role.SERVER, max_message_size=10)
        # The header alone: the limit is enforced before the payload arrives.
        server.receive_data(bytes([0x80 | opcode, 0x80 | 11]))
        assert isinstance(server.failure, PayloadTooBig)
        assert_failing(server, 1009)

    @pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
    def test_single_frame_over_message_limit_under_frame_limit(self, opcode: int) -> None:
        server = Connection(Role.SERVER, max_message_size=10, max_frame_size=100)
        server.receive_data(client_frame(opcode, b"x" * 11))
        assert server.events_received() == []
        assert_failing(server, 1009)

    @pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
    def test_fragments_at_limit(self, opcode: int) -> None:
        server = Connection(Role.SERVER, max_message_size=10)
        server.receive_data(
            client_frame(opcode, b"x" * 4, fin=False)
            + client_frame(Opcode.CONTINUATION, b"x" * 4, fin=False)
            + client_frame(Opcode.CONTINUATION, b"x" * 2)
        )
        assert len(server.events_received()) == 1
        assert server.failure is None

    @pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
    def test_fragments_over_limit(self, opcode: int) -> None:
        server = Connection(Role.SERVER, max_message_size=10)
        server.receive_data(
            client_frame(opcode, b"x" * 4, fin=False)
            + client_frame(Opcode.CONTINUATION, b"x" * 4, fin=False)
        )
        assert server.failure is None
        server.receive_data(client_frame(Opcode.CONTINUATION, b"x" * 3, fin=False))
        assert server.events_received() == []
        assert_failing(server, 1009)

    def test_limit_is_per_message(self) -> None:
        server = Connection(Role.SERVER, max_message_size=10)
        for _ in range(3):
            server.receive_data(
                client_frame(Opcode.BINARY, b"x" * 6, fin=False)
                + client_frame(Opcode.CONTINUATION, b"x" * 4)
            )
        assert server.events_received() == [b"x" * 10] * 3

    def test_no_limit(self) -> None:
        server = Connection(Role.SERVER, max_message_size=None)
        big = b"x" * (2**20 + 1)
        server.receive_data(
            client_frame(Opcode.BINARY, big, fin=False) + client_frame(Opcode.CONTINUATION, big)
        )
        assert server.events_received() == [big + big]

    def test_explicit_frame_limit(self) -> None:
        server = Connection(Role.SERVER, max_message_size=100, max_frame_size=5)
        server.receive_data(
            client_frame(Opcode.BINARY, b"x" * 5, fin=False)
            + client_frame(Opcode.CONTINUATION, b"y" * 5)
        )
        assert server.events_received() == [b"x" * 5 + b"y" * 5]
        server.receive_data(client_frame(Opcode.BINARY, b"x" * 6))
        assert_failing(server, 1009)

    def test_frame_limit_without_message_limit(self) -> None:
        server = Connection(Role.SERVER, max_message_size=None, max_frame_size=5)
        server.receive_data(client_frame(Opcode.BINARY, b"x" * 6))
        assert_failing(server, 1009)

    def test_zero_limit(self) -> None:
        server = Connection(Role.SERVER, max_message_size=0)
        server.receive_data(client_frame(Opcode.TEXT, b"") + client_frame(Opcode.PING, b""))
        assert server.events_received() == ["", Ping(b"")]
        assert_frame_sent(server, Opcode.PONG, b"")
        server.receive_data(client_frame(Opcode.TEXT, b"x"))
        assert_failing(server, 1009)


class TestSection5_5_2Ping:
    """RFC 6455 sections 5.5.2 and 5.5.3: pings are answered, pongs reported."""

    def test_ping_answered_without_reading_events(self, conn: Connection) -> None:
        conn.receive_data(frame_to(conn, Opcode.PING, b"Hello"))
        # The application has not called events_received(): the pong is queued anyway.
        assert_frame_sent(conn, Opcode.PONG, b"Hello")
        assert conn.events_received() == [Ping(b"Hello")]

    def test_each_ping_answered_in_order(self, conn: Connection) -> None:
        conn.receive_data(
            frame_to(conn, Opcode.PING, b"1")
            + frame_to(conn, Opcode.PING, b"")
            + frame_to(conn, Opcode.PING, b"3" * 125)
        )
        frames, eof = frames_sent(conn)
        assert frames == [
            Frame(Opcode.PONG, b"1"),
            Frame(Opcode.PONG, b""),
            Frame(Opcode.PONG, b"3" * 125),
        ]
        assert not eof

    def test_pong_event(self, conn: Connection) -> None:
        conn.receive_data(frame_to(conn, Opcode.PONG, b"beat"))
        assert conn.events_received() == [Pong(b"beat")]
        assert_nothing_sent(conn)

    def test_no_pong_after_sending_close(self, conn: Connection) -> None:
        conn.send_close()
        conn.data_to_send()
        conn.receive_data(frame_to(conn, Opcode.PING, b"late"))
        assert conn.events_received() == [Ping(b"late")]
        assert_nothing_sent(conn)

    def test_send_ping_and_pong(self, conn: Connection) -> None:
        conn.send_ping()
        conn.send_ping(b"x" * 125)
        conn.send_pong()
        conn.send_pong(b"y" * 125)
        frames, _ = frames_sent(conn)
        assert frames == [
            Frame(Opcode.PING, b""),
            Frame(Opcode.PING, b"x" * 125),
            Frame(Opcode.PONG, b""),
            Frame(Opcode.PONG, b"y" * 125),
        ]

    @pytest.mark.parametrize("method", ["send_ping", "send_pong"])
    def test_control_payload_126(self, conn: Connection, method: str) -> None:
        with pytest.raises(ValueError):
            getattr(conn, method)(b"x" * 126)
        assert conn.data_to_send() == []
        assert conn.state is State.OPEN


def close_payload(code: int | None, reason: str = "") -> bytes:
    return serialize_close(code, reason)


class TestSection7CloseHandshake:
    """RFC 6455 section 7: the close handshake, started by either side."""

    def test_client_starts(self, pair: Pair) -> None:
        client, server = pair.client, pair.server
        client.send_close(1000, "bye")
        assert client.state is State.LOCAL_CLOSING
        assert client.close_expected()
        assert client.close_sent == Close(1000, "bye")
        frames, eof = frames_sent(client)
        assert frames == [Frame(Opcode.CLOSE, close_payload(1000, "bye"))]
        assert not eof  # a client never ends TCP first

        server.receive_data(client_frame(Opcode.CLOSE, close_payload(1000, "bye")))
        assert server.events_received() == [Close(1000, "bye")]
        assert server.state is State.REMOTE_CLOSING
        assert server.close_expected()
        assert server.close_rcvd == Close(1000, "bye")
        assert server.close_sent == Close(1000, "bye")
        # The server echoes the close payload, then ends the TCP connection.
        frames, eof = frames_sent(server)
        assert frames == [Frame(Opcode.CLOSE, close_payload(1000, "bye"))]
        assert eof

        client.receive_data(server_frame(Opcode.CLOSE, close_payload(1000, "bye")))
        assert client.events_received() == [Close(1000, "bye")]
        assert client.state is State.LOCAL_CLOSING  # until the TCP connection ends
        assert client.close_expected()
        assert_nothing_sent(client)

        client.receive_eof()
        assert state_of(client) is State.CLOSED
        assert not client.close_expected()
        assert client.data_to_send() == [SEND_EOF]
        server.receive_eof()
        assert state_of(server) is State.CLOSED
        assert server.data_to_send() == []  # its EOF was already requested

        assert client.close_code == 1000
        assert client.close_reason == "bye"
        assert server.close_code == 1000
        assert server.close_reason == "bye"
        for conn in (client, server):
            assert isinstance(conn.close_exc(), ConnectionClosedOK)

    def test_server_starts(self, pair: Pair) -> None:
        client, server = pair.client, pair.server
        server.send_close(1001, "going away")
        assert server.state is State.LOCAL_CLOSING
        frames, eof = frames_sent(server)
        assert frames == [Frame(Opcode.CLOSE, close_payload(1001, "going away"))]
        assert not eof  # the server waits for the client's close frame

        client.receive_data(server_frame(Opcode.CLOSE, close_payload(1001, "going away")))
        assert client.events_received() == [Close(1001, "going away")]
        assert client.state is State.REMOTE_CLOSING
        assert client.close_expected()
        frames, eof = frames_sent(client)
        assert frames == [Frame(Opcode.CLOSE, close_payload(1001, "going away"))]
        assert not eof  # the client waits for the server to end TCP

        server.receive_data(client_frame(Opcode.CLOSE, close_payload(1001, "going away")))
        assert server.events_received() == [Close(1001, "going away")]
        assert server.state is State.LOCAL_CLOSING
        assert server.data_to_send() == [SEND_EOF]

        client.receive_eof()
        assert state_of(client) is State.CLOSED
        assert client.data_to_send() == [SEND_EOF]
        assert client.close_code == 1001
        assert client.close_reason == "going away"
        assert isinstance(client.close_exc(), ConnectionClosedOK)
        assert isinstance(server.close_exc(), ConnectionClosedOK)

    @pytest.mark.parametrize("initiator", ["client", "server"])
    def test_pumped_handshake(self, pair: Pair, initiator: str) -> None:
        getattr(pair, initiator).send_close(4000, "custom")
        pair.pump()
        assert pair.client.state is State.CLOSED
        assert pair.server.state is State.CLOSED
        assert pair.server_eof  # the server ended the TCP connection
        assert not pair.client.close_expected()
        other = pair.server if initiator == "client" else pair.client
        assert other.close_rcvd == Close(4000, "custom")
        assert other.close_sent == Close(4000, "custom")
        for conn in (pair.client, pair.server):
            exc = conn.close_exc()
            assert isinstance(exc, ConnectionClosedError)
            assert exc.code == 4000

    def test_simultaneous_close(self, pair: Pair) -> None:
        pair.client.send_close(1000, "c")
        pair.server.send_close(1000, "s")
        client_bytes = b"".join(pair.client.data_to_send())
        server_bytes = b"".join(pair.server.data_to_send())
        pair.server.receive_data(client_bytes)
        pair.client.receive_data(server_bytes)
        # Each side has already sent its close frame: no second one.
        assert pair.server.data_to_send() == [SEND_EOF]
        assert pair.client.data_to_send() == []
        assert pair.client.state is State.LOCAL_CLOSING
        assert pair.server.state is State.LOCAL_CLOSING
        assert pair.client.close_rcvd == Close(1000, "s")
        assert pair.server.close_rcvd == Close(1000, "c")
        assert pair.client.close_sent == Close(1000, "c")

    def test_close_without_code(self, server: Connection) -> None:
        server.receive_data(client_frame(Opcode.CLOSE, b""))
        assert server.events_received() == [Close(1005, "")]
        assert server.close_code == 1005
        assert server.close_reason == ""
        # The reply has no code either: 1005 may not be sent.
        frames, eof = frames_sent(server)
        assert frames == [Frame(Opcode.CLOSE, b"")]
        assert eof

    def test_close_exc_after_peer_closes_without_code(self, server: Connection) -> None:
        # Connection.close_exc(): "ConnectionClosedOK when both sides closed with 1000 or 1001
        # (or the peer with no code)". The reply echoes "no code", which is not an error.
        server.receive_data(client_frame(Opcode.CLOSE, b""))
        server.receive_eof()
        exc = server.close_exc()
        assert exc.code == 1005
        assert isinstance(exc, ConnectionClosedOK)

    def test_send_close_without_code(self, pair: Pair) -> None:
        pair.client.send_close(None)
        assert pair.client.close_sent == Close(1005, "")
        frames, _ = frames_sent(pair.client)
        assert frames == [Frame(Opcode.CLOSE, b"")]

    def test_send_close_default_code(self, conn: Connection) -> None:
        conn.send_close()
        assert conn.close_sent == Close(1000, "")
        frames, _ = frames_sent(conn)
        assert frames == [Frame(Opcode.CLOSE, b"\x03\xe8")]

    def test_close_exc_error_codes(self, client: Connection) -> None:
        client.send_close(1000)
        client.receive_data(server_frame(Opcode.CLOSE, close_payload(1011, "oops")))
        exc = client.close_exc()
        assert isinstance(exc, ConnectionClosedError)
        assert (exc.code, exc.reason, exc.sent_code, exc.sent_reason) == (1011, "oops", 1000, "")

    def test_close_exc_sent_error_code(self, client: Connection) -> None:
        client.send_close(1008, "policy")
        client.receive_data(server_frame(Opcode.CLOSE, close_payload(1000)))
        exc = client.close_exc()
        assert isinstance(exc, ConnectionClosedError)
        assert (exc.sent_code, exc.sent_reason) == (1008, "policy")

    def test_eof_without_close_frame(self, conn: Connection) -> None:
        conn.receive_eof()
        assert conn.state is State.CLOSED
        assert conn.close_code == 1006
        assert conn.close_rcvd is None
        exc = conn.close_exc()
        assert isinstance(exc, ConnectionClosedError)
        assert exc.code == 1006
        assert exc.sent_code is None
        assert conn.data_to_send() == [SEND_EOF]

    def test_eof_after_sending_close(self, conn: Connection) -> None:
        conn.send_close(1000)
        conn.data_to_send()
        conn.receive_eof()
        assert conn.state is State.CLOSED
        assert conn.close_code == 1006
        assert isinstance(conn.close_exc(), ConnectionClosedError)

    def test_data_after_close_frame_ignored(self, conn: Connection) -> None:
        conn.receive_data(
            frame_to(conn, Opcode.TEXT, b"before")
            + frame_to(conn, Opcode.CLOSE, close_payload(1000))
            + frame_to(conn, Opcode.TEXT, b"after")
            + frame_to(conn, Opcode.PING, b"")
            + b"\xff\xff garbage"
        )
        conn.receive_data(frame_to(conn, Opcode.TEXT, b"later"))
        assert conn.events_received() == ["before", Close(1000, "")]
        frames, _ = frames_sent(conn)
        assert frames == [Frame(Opcode.CLOSE, close_payload(1000))]
        assert conn.failure is None

    def test_messages_still_received_while_closing(self, conn: Connection) -> None:
        conn.send_close()
        conn.data_to_send()
        conn.receive_data(frame_to(conn, Opcode.TEXT, b"in flight"))
        assert conn.events_received() == ["in flight"]

    @pytest.mark.parametrize(
        ("payload", "code"),
        [(b"\x03", 1002), (b"\x03\xed", 1002), (b"\x00\x00", 1002), (b"\x03\xe8\xff", 1007)],
    )
    def test_invalid_close_frame(self, conn: Connection, payload: bytes, code: int) -> None:
        conn.receive_data(frame_to(conn, Opcode.CLOSE, payload))
        assert conn.close_rcvd is None
        assert conn.events_received() == []
        assert_failing(conn, code)

    def test_invalid_close_frame_while_closing(self, server: Connection) -> None:
        server.send_close()
        server.data_to_send()
        server.receive_data(client_frame(Opcode.CLOSE, b"\x03"))
        assert server.failure is not None
        assert server.close_rcvd is None
        # A close frame was already sent: only the end of TCP is asked for.
        assert server.data_to_send() == [SEND_EOF]
        assert server.state is State.LOCAL_CLOSING


class TestSection7_1_3NothingAfterClose:
    """Nothing can be sent once a close frame was sent or received, or TCP ended."""

    @staticmethod
    def _close(conn: Connection, how: str) -> None:
        if how == "sent":
            conn.send_close()
        elif how == "received":
            conn.receive_data(frame_to(conn, Opcode.CLOSE, b""))
        elif how == "failed":
            conn.fail(1011)
        else:
            conn.receive_eof()
        conn.data_to_send()

    @pytest.mark.parametrize("how", ["sent", "received", "failed", "eof"])
    @pytest.mark.parametrize(
        "call",
        [
            lambda c: c.send_text("x"),
            lambda c: c.send_text(b"x", fin=False),
            lambda c: c.send_binary(b"x"),
            lambda c: c.send_continuation(b"x", fin=True),
            lambda c: c.send_ping(),
            lambda c: c.send_pong(),
            lambda c: c.send_close(),
            lambda c: c.send_close(None),
        ],
        ids=[
            "text",
            "text-fragment",
            "binary",
            "continuation",
            "ping",
            "pong",
            "close",
            "close-none",
        ],
    )
    def test_invalid_state(self, conn: Connection, how: str, call: object) -> None:
        self._close(conn, how)
        state = conn.state
        with pytest.raises(InvalidState):
            call(conn)  # type: ignore[operator]
        assert conn.data_to_send() == []
        assert conn.state is state

    def test_continuation_of_open_message_after_close(self, conn: Connection) -> None:
        conn.send_binary(b"a", fin=False)
        conn.send_close()
        with pytest.raises(InvalidState):
            conn.send_continuation(b"b", fin=True)


class TestSendCloseArguments:
    """send_close() refuses what may not be sent, without changing anything."""

    @pytest.mark.parametrize("code", INVALID_CLOSE_CODES)
    def test_invalid_code(self, conn: Connection, code: int) -> None:
        with pytest.raises(ValueError):
            conn.send_close(code)
        assert conn.state is State.OPEN
        assert conn.close_sent is None
        assert conn.data_to_send() == []

    @pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, *range(1007, 1015), 3000, 4999])
    def test_valid_code(self, conn: Connection, code: int) -> None:
        conn.send_close(code, "why")
        assert conn.close_sent == Close(code, "why")
        frames, _ = frames_sent(conn)
        assert frames == [Frame(Opcode.CLOSE, close_payload(code, "why"))]

    @pytest.mark.parametrize(("code", "reason"), [(1000, "r" * 124), (1000, "é" * 62), (None, "x")])
    def test_invalid_reason(self, conn: Connection, code: int | None, reason: str) -> None:
        with pytest.raises(ValueError):
            conn.send_close(code, reason)
        assert conn.state is State.OPEN
        assert conn.close_sent is None
        assert conn.data_to_send() == []

    def test_reason_123_bytes(self, conn: Connection) -> None:
        conn.send_close(1000, "r" * 123)
        assert conn.state is State.LOCAL_CLOSING


class TestSection7_1_7FailTheConnection:
    """fail(): send a close frame if none was sent, drop all input; a server ends TCP."""

    def test_server(self, server: Connection) -> None:
        server.fail(1011, "internal")
        assert server.state is State.LOCAL_CLOSING
        assert server.close_sent == Close(1011, "internal")
        assert server.failure is None  # a local decision, not a protocol error
        assert_frame_sent(server, Opcode.CLOSE, close_payload(1011, "internal"), eof=True)
        server.receive_data(client_frame(Opcode.CLOSE, close_payload(1000)))
        assert server.close_rcvd is None
        assert server.events_received() == []
        assert_nothing_sent(server)

    def test_client(self, client: Connection) -> None:
        client.fail(1008)
        assert client.state is State.LOCAL_CLOSING
        assert client.close_expected()
        # A client waits for the server to end TCP (with a timeout).
        assert_frame_sent(client, Opcode.CLOSE, close_payload(1008))
        client.receive_data(server_frame(Opcode.TEXT, b"dropped"))
        assert client.events_received() == []
        client.receive_eof()
        assert state_of(client) is State.CLOSED
        assert client.data_to_send() == [SEND_EOF]

    def test_after_send_close(self, conn: Connection) -> None:
        conn.send_close(1000)
        conn.data_to_send()
        conn.fail(1011)
        assert conn.close_sent == Close(1000, "")
        expected = [SEND_EOF] if conn.role is Role.SERVER else []
        assert conn.data_to_send() == expected

    def test_after_close_received(self, conn: Connection) -> None:
        conn.receive_data(frame_to(conn, Opcode.CLOSE, close_payload(1000)))
        conn.data_to_send()
        conn.fail(1011)
        assert conn.state is State.REMOTE_CLOSING
        assert conn.data_to_send() == []  # the server's EOF was requested once already

    def test_after_eof(self, conn: Connection) -> None:
        conn.receive_eof()
        conn.data_to_send()
        conn.fail(1011)
        assert conn.state is State.CLOSED
        assert conn.close_sent is None
        assert conn.data_to_send() == []

    def test_twice(self, server: Connection) -> None:
        server.fail(1011)
        server.fail(1002)
        assert server.close_sent == Close(1011, "")
        frames, eof = frames_sent(server)
        assert len(frames) == 1
        assert eof

    def test_invalid_code(self, conn: Connection) -> None:
        code = 1006
        # Like send_close(), a code that may not be sent is the caller's mistake: ValueError,
        # and nothing changes (close_sent must not claim a close frame that was never sent).
        with pytest.raises(ValueError):
            conn.fail(code)
        assert conn.state is State.OPEN
        assert conn.close_sent is None
        assert conn.data_to_send() == []

    def test_protocol_error_sends_fixed_reason(self, server: Connection) -> None:
        server.receive_data(client_frame(Opcode.TEXT, b"\xff"))
        assert server.close_sent == Close(1007, "invalid data")
        assert server.failure is not None
        assert "UTF-8" in str(server.failure)

    def test_frames_before_violation_delivered(self, conn: Connection) -> None:
        conn.receive_data(
            frame_to(conn, Opcode.TEXT, b"one")
            + frame_to(conn, Opcode.PING, b"p")
            + bytes([0x83, 0x80 if conn.role is Role.SERVER else 0])
        )
        assert conn.events_received() == ["one", Ping(b"p")]
        frames, eof = frames_sent(conn)
        assert frames[0] == Frame(Opcode.PONG, b"p")
        assert frames[1].opcode == Opcode.CLOSE
        assert frames[1].payload[:2] == b"\x03\xea"
        assert eof is (conn.role is Role.SERVER)
        assert conn.close_sent == Close(1002, "protocol error")

    def test_masked_frame_at_client(self, client: Connection) -> None:
        client.receive_data(client_frame(Opcode.TEXT, b"masked"))
        assert client.events_received() == []
        assert_failing(client, 1002)

    def test_unmasked_frame_at_server(self, server: Connection) -> None:
        server.receive_data(server_frame(Opcode.TEXT, b"unmasked"))
        assert server.events_received() == []
        assert_failing(server, 1002)

    @pytest.mark.parametrize("b0", [0x83, 0x8B, 0xA1, 0x91, 0xC1, 0x09, 0x08])
    def test_bad_header(self, conn: Connection, b0: int) -> None:
        conn.receive_data(bytes([b0, 0x80 if conn.role is Role.SERVER else 0]) + MASK)
        assert_failing(conn, 1002)

    def test_control_frame_too_long(self, server: Connection) -> None:
        server.receive_data(bytes([0x89, 0x80 | 126, 0, 126]))
        assert_failing(server, 1002)


class TestReceiveEof:
    """receive_eof(): TCP is gone; the state is CLOSED, whatever it was."""

    def test_mid_message(self, server: Connection) -> None:
        server.receive_data(client_frame(Opcode.TEXT, b"partial", fin=False))
        server.receive_data(client_frame(Opcode.CONTINUATION, b"more", fin=False)[:5])
        server.receive_eof()
        assert server.state is State.CLOSED
        assert server.events_received() == []
        assert server.close_code == 1006
        assert server.data_to_send() == [SEND_EOF]
        assert isinstance(server.close_exc(), ConnectionClosedError)

    def test_twice(self, conn: Connection) -> None:
        conn.receive_eof()
        conn.receive_eof()
        assert conn.data_to_send() == [SEND_EOF]
        assert conn.state is State.CLOSED

    def test_data_after_eof_ignored(self, conn: Connection) -> None:
        conn.receive_eof()
        conn.receive_data(frame_to(conn, Opcode.PING, b"x"))
        assert conn.events_received() == []
        assert conn.data_to_send() == [SEND_EOF]

    def test_in_remote_closing(self, server: Connection) -> None:
        server.receive_data(client_frame(Opcode.CLOSE, close_payload(1000)))
        server.data_to_send()
        server.receive_eof()
        assert server.state is State.CLOSED
        assert server.data_to_send() == []
        assert isinstance(server.close_exc(), ConnectionClosedOK)


class TestLogging:
    def test_state_changes_and_failures_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        logger = logging.getLogger("tests.fullduplex.connection")
        logger.setLevel(logging.DEBUG)
        with caplog.at_level(logging.DEBUG, logger="tests.fullduplex.connection"):
            server = Connection(Role.SERVER, logger=logger)
            server.receive_data(client_frame(Opcode.TEXT, b"\xff"))
            server.receive_eof()
        messages = [r.getMessage() for r in caplog.records if r.name == logger.name]
        assert any("failing" in m and "UTF-8" in m for m in messages)
        assert any("OPEN -> LOCAL_CLOSING" in m for m in messages)
        assert any("LOCAL_CLOSING -> CLOSED" in m for m in messages)


def _compress(data: bytes) -> bytes:
    """Compress ``data`` as one frame with a fresh peer codec (RFC 7692 section 7.2.1)."""
    return PerMessageDeflate().compress(data, fin=True)


class TestRFC7692Compression:
    """Connection with the negotiated permessage-deflate codec (RFC 7692 sections 6 and 7.2)."""

    @staticmethod
    def _server(max_message_size: int | None = 2**20) -> tuple[Connection, SpyDeflate]:
        deflate = SpyDeflate()
        return Connection(Role.SERVER, deflate=deflate, max_message_size=max_message_size), deflate

    @staticmethod
    def _pair(**options: bool | int) -> Pair:
        remote = {
            "local_no_context_takeover": "remote_no_context_takeover",
            "remote_no_context_takeover": "local_no_context_takeover",
            "local_max_window_bits": "remote_max_window_bits",
            "remote_max_window_bits": "local_max_window_bits",
        }
        mirrored = {remote[name]: value for name, value in options.items()}
        return Pair(
            Connection(Role.CLIENT, deflate=PerMessageDeflate(**options)),  # type: ignore[arg-type]
            Connection(Role.SERVER, deflate=PerMessageDeflate(**mirrored)),  # type: ignore[arg-type]
        )

    def test_compressed_message(self, fixed_mask: bytes) -> None:
        client = Connection(Role.CLIENT, deflate=PerMessageDeflate())
        client.send_text("Hello" * 20)
        frames, _ = frames_sent(client)
        assert len(frames) == 1
        assert frames[0].opcode == Opcode.TEXT
        assert frames[0].rsv1
        assert len(frames[0].payload) < 100
        server, _ = self._server()
        server.receive_data(serialize_frame(Opcode.TEXT, frames[0].payload, rsv1=True, mask=MASK))
        assert server.events_received() == ["Hello" * 20]

    def test_rfc7692_section_7_2_3_1_example(self) -> None:
        # "Hello" compressed in one frame, as printed in RFC 7692 section 7.2.3.1.
        server, _ = self._server()
        payload = bytes([0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])
        server.receive_data(client_frame(Opcode.TEXT, payload, rsv1=True))
        assert server.events_received() == ["Hello"]

    def test_rfc7692_section_7_2_3_1_fragmented_example(self) -> None:
        # The same compressed "Hello" split in two frames; RSV1 on the first only.
        server, _ = self._server()
        server.receive_data(
            client_frame(Opcode.TEXT, bytes([0xF2, 0x48, 0xCD]), fin=False, rsv1=True)
            + client_frame(Opcode.CONTINUATION, bytes([0xC9, 0xC9, 0x07, 0x00]))
        )
        assert server.events_received() == ["Hello"]

    def test_fragmented_compressed_message(self, counting_masks: None) -> None:
        pair = self._pair()
        pair.client.send_binary(b"abc" * 50, fin=False)
        pair.client.send_ping(b"between")
        pair.client.send_continuation(b"def" * 50, fin=False)
        pair.client.send_continuation(b"", fin=True)
        raw = b"".join(pair.client.data_to_send())
        parsed = FrameParser(mask_required=True, allow_rsv1=True).feed(raw)
        # RSV1 is set on the first frame of the message only (RFC 7692 section 6.1).
        assert [(f.opcode, f.fin, f.rsv1) for f in parsed] == [
            (Opcode.BINARY, False, True),
            (Opcode.PING, True, False),
            (Opcode.CONTINUATION, False, False),
            (Opcode.CONTINUATION, True, False),
        ]
        pair.server.receive_data(raw)
        assert pair.server.events_received() == [Ping(b"between"), b"abc" * 50 + b"def" * 50]

    def test_control_frames_not_compressed(self) -> None:
        server, _ = self._server()
        server.send_ping(b"ping")
        server.send_close(1000, "bye")
        frames, _ = frames_sent(server)
        assert frames == [
            Frame(Opcode.PING, b"ping"),
            Frame(Opcode.CLOSE, close_payload(1000, "bye")),
        ]

    @pytest.mark.parametrize(
        "options",
        [
            {},
            {"local_no_context_takeover": True, "remote_no_context_takeover": True},
            {"local_max_window_bits": 8, "remote_max_window_bits": 9},
            {"local_no_context_takeover": True, "local_max_window_bits": 10},
        ],
        ids=["default", "no-context-takeover", "small-windows", "mixed"],
    )
    def test_many_messages_both_ways(self, counting_masks: None, options: dict[str, int]) -> None:
        pair = self._pair(**options)
        for i in range(5):
            pair.client.send_text(f"message {i} " * 10)
            pair.server.send_binary(bytes([i]) * 100)
            pair.server.send_text("", fin=False)
            pair.server.send_continuation("é" * i, fin=True)
        pair.pump()
        assert pair.server.events_received() == [f"message {i} " * 10 for i in range(5)]
        assert pair.client.events_received() == [
            event for i in range(5) for event in (bytes([i]) * 100, "é" * i)
        ]
        assert pair.client.failure is None
        assert pair.server.failure is None

    def test_uncompressed_messages_accepted(self) -> None:
        server, deflate = self._server()
        server.receive_data(
            client_frame(Opcode.TEXT, b"plain")
            + client_frame(Opcode.BINARY, b"a", fin=False)
            + client_frame(Opcode.CONTINUATION, b"b")
        )
        assert server.events_received() == ["plain", b"ab"]
        assert deflate.decompress_calls == []

    def test_rsv1_on_continuation(self) -> None:
        server, _ = self._server()
        server.receive_data(client_frame(Opcode.BINARY, b"a", fin=False))
        server.receive_data(client_frame(Opcode.CONTINUATION, b"b", rsv1=True))
        assert server.events_received() == []
        assert_failing(server, 1002)

    def test_rsv1_on_continuation_of_compressed_message(self) -> None:
        server, _ = self._server()
        server.receive_data(client_frame(Opcode.TEXT, bytes([0xF2, 0x48]), fin=False, rsv1=True))
        server.receive_data(client_frame(Opcode.CONTINUATION, b"\x00", rsv1=True))
        assert_failing(server, 1002)

    def test_rsv1_on_control_frame(self) -> None:
        server, _ = self._server()
        server.receive_data(client_frame(Opcode.PING, b"", rsv1=True))
        assert_failing(server, 1002)

    def test_rsv1_without_deflate(self, server: Connection) -> None:
        server.receive_data(client_frame(Opcode.TEXT, b"x", rsv1=True))
        assert_failing(server, 1002)

    def test_budget_passed_to_decompress(self) -> None:
        server, deflate = self._server(max_message_size=1000)
        compressor = PerMessageDeflate()
        first = compressor.compress(b"x" * 300, fin=False)
        second = compressor.compress(b"y" * 200, fin=True)
        server.receive_data(
            client_frame(Opcode.BINARY, first, fin=False, rsv1=True)
            + client_frame(Opcode.CONTINUATION, second)
        )
        assert server.events_received() == [b"x" * 300 + b"y" * 200]
        # Each frame may inflate to what is left of the message budget.
        assert deflate.decompress_calls == [(False, 1000), (True, 700)]

    def test_no_budget_without_limit(self) -> None:
        server, deflate = self._server(max_message_size=None)
        server.receive_data(client_frame(Opcode.BINARY, _compress(b"z" * 5000), rsv1=True))
        assert server.events_received() == [b"z" * 5000]
        assert deflate.decompress_calls == [(True, None)]

    def test_decompressed_size_over_limit(self) -> None:
        server, _ = self._server(max_message_size=1000)
        payload = _compress(b"\x00" * 1001)
        assert len(payload) < 50  # a small frame: only the inflated size is too big
        server.receive_data(client_frame(Opcode.BINARY, payload, rsv1=True))
        assert server.events_received() == []
        assert_failing(server, 1009)

    def test_compression_bomb(self) -> None:
        server, _ = self._server(max_message_size=2**16)
        payload = _compress(b"\x00" * 2**24)
        assert len(payload) < 20_000
        server.receive_data(client_frame(Opcode.BINARY, payload, rsv1=True))
        assert_failing(server, 1009)

    def test_decompressed_size_at_limit(self) -> None:
        server, _ = self._server(max_message_size=1000)
        server.receive_data(client_frame(Opcode.TEXT, _compress(b"\x00" * 1000), rsv1=True))
        assert server.events_received() == ["\x00" * 1000]

    def test_decompressed_fragments_over_limit(self) -> None:
        server, _ = self._server(max_message_size=1000)
        compressor = PerMessageDeflate()
        first = compressor.compress(b"\x00" * 600, fin=False)
        second = compressor.compress(b"\x00" * 401, fin=True)
        server.receive_data(client_frame(Opcode.BINARY, first, fin=False, rsv1=True))
        assert server.failure is None
        server.receive_data(client_frame(Opcode.CONTINUATION, second))
        assert_failing(server, 1009)

    def test_incompressible_frame_slightly_over_limit_accepted(self) -> None:
        # Compressed data may be longer than the message; the default frame limit allows it.
        server, _ = self._server(max_message_size=1000)
        message = os.urandom(1000)
        payload = _compress(message)
        assert len(payload) > 1000
        server.receive_data(client_frame(Opcode.BINARY, payload, rsv1=True))
        assert server.events_received() == [message]

    def test_frame_limit_with_deflate(self) -> None:
        # The slack is (max_message_size >> 8) + 256 bytes, no more.
        server, _ = self._server(max_message_size=1024)
        server.receive_data(bytes([0xC2, 0x80 | 126]) + (1024 + 4 + 256).to_bytes(2, "big"))
        assert server.failure is None  # at the limit: waits for the payload
        server, _ = self._server(max_message_size=1024)
        server.receive_data(bytes([0xC2, 0x80 | 126]) + (1024 + 4 + 256 + 1).to_bytes(2, "big"))
        assert_failing(server, 1009)

    def test_corrupt_data(self) -> None:
        server, _ = self._server()
        server.receive_data(client_frame(Opcode.BINARY, b"\xff\xff\xff\xff", rsv1=True))
        assert_failing(server, 1007)

    def test_invalid_utf8_after_decompression(self) -> None:
        server, _ = self._server()
        server.receive_data(client_frame(Opcode.TEXT, _compress(b"ok\xff"), rsv1=True))
        assert_failing(server, 1007)

    def test_invalid_utf8_in_first_compressed_fragment(self) -> None:
        server, _ = self._server()
        first = PerMessageDeflate().compress(b"\xff" * 10, fin=False)
        server.receive_data(client_frame(Opcode.TEXT, first, fin=False, rsv1=True))
        assert_failing(server, 1007)


# ---- property tests ---------------------------------------------------------------------------

_text = st.text(
    alphabet=st.characters(codec="utf-8"),  # lone surrogates cannot be UTF-8
    max_size=40,
)
_message = st.one_of(
    st.tuples(st.just("text"), _text), st.tuples(st.just("binary"), st.binary(max_size=300))
)
_messages = st.lists(
    st.tuples(
        _message, st.lists(st.integers(min_value=0, max_value=300), max_size=4), st.booleans()
    ),
    max_size=6,
)


def _send(conn: Connection, kind: str, data: str | bytes, cuts: list[int], ping: bool) -> None:
    """Send one message, fragmented at byte offsets ``cuts`` (possibly inside a character)."""
    raw = data.encode() if isinstance(data, str) else data
    points = sorted({min(c, len(raw)) for c in cuts})
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    first, *rest = pieces
    fin = not rest
    if kind == "text":
        conn.send_text(first, fin=fin)
    else:
        conn.send_binary(first, fin=fin)
    for i, piece in enumerate(rest):
        if ping:
            conn.send_ping(b"p")
        conn.send_continuation(piece, fin=i == len(rest) - 1)


def _rechunk(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


class TestProperties:
    """Any messages, any fragmentation, any chunking of the bytes: delivered intact."""

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        messages=_messages,
        read_cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
        from_client=st.booleans(),
        compression=st.booleans(),
    )
    def test_messages_arrive_identical(
        self,
        messages: list[tuple[tuple[str, str | bytes], list[int], bool]],
        read_cuts: list[int],
        from_client: bool,
        compression: bool,
    ) -> None:
        sender = Connection(
            Role.CLIENT if from_client else Role.SERVER,
            deflate=PerMessageDeflate() if compression else None,
        )
        receiver = Connection(
            Role.SERVER if from_client else Role.CLIENT,
            deflate=PerMessageDeflate() if compression else None,
        )
        expected: list[Event] = []
        for (kind, data), cuts, ping in messages:
            _send(sender, kind, data, cuts, ping)
            expected.append(data)
        sender.send_close(1000)
        stream = b"".join(sender.data_to_send())
        for read in _rechunk(stream, read_cuts):
            receiver.receive_data(read)
        events = receiver.events_received()
        assert [e for e in events if not isinstance(e, Ping)] == [*expected, Close(1000, "")]
        assert receiver.failure is None
        assert receiver.state is State.REMOTE_CLOSING

    @settings(max_examples=200, deadline=None)
    @given(chunks=st.lists(st.binary(max_size=80), max_size=8))
    def test_random_bytes_never_raise(self, chunks: list[bytes]) -> None:
        server = Connection(Role.SERVER, max_message_size=100)
        for chunk in chunks:
            server.receive_data(chunk)
        _check_outcome(server)

    @settings(max_examples=200, deadline=None)
    @given(
        frames_=st.lists(
            st.tuples(
                st.integers(min_value=0, max_value=15),
                st.binary(max_size=40),
                st.booleans(),
                st.booleans(),
            ),
            max_size=8,
        ),
        read_cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=6),
        compression=st.booleans(),
    )
    def test_random_frames_never_raise(
        self,
        frames_: list[tuple[int, bytes, bool, bool]],
        read_cuts: list[int],
        compression: bool,
    ) -> None:
        # Well-formed masked frames with random opcodes, flags and payloads reach the state
        # machine itself, where purely random bytes rarely get past the frame header.
        server = Connection(
            Role.SERVER,
            max_message_size=64,
            deflate=PerMessageDeflate() if compression else None,
        )
        stream = b"".join(
            serialize_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=MASK)
            for opcode, payload, fin, rsv1 in frames_
        )
        for read in _rechunk(stream, read_cuts):
            server.receive_data(read)
        _check_outcome(server)


def _check_outcome(server: Connection) -> None:
    for event in server.events_received():
        assert isinstance(event, str | bytes | Ping | Pong | Close)
    if server.failure is not None:
        assert server.failure.code in {1002, 1007, 1009}
        assert server.close_sent is not None
        assert server.close_sent.code == server.failure.code
        assert isinstance(server.failure, ProtocolError)
    frames_sent(server)  # whatever was queued parses as valid frames


class TestSendPrepared:
    """Connection.send_prepared and .compressed: the broadcast path (a frame serialized once,
    sent on many connections as the same bytes object)."""

    def test_the_same_object_goes_out(self, server: Connection) -> None:
        frame = serialize_frame(Opcode.TEXT, b"shared")
        server.send_prepared(frame)
        out = server.data_to_send()
        assert len(out) == 1 and out[0] is frame
        peer = Connection(Role.CLIENT)
        peer.receive_data(out[0])
        assert peer.events_received() == ["shared"]

    def test_keeps_its_place_among_other_sends(self, server: Connection) -> None:
        frame = serialize_frame(Opcode.BINARY, b"2")
        server.send_text("1")
        server.send_prepared(frame)
        server.send_binary(b"3")
        assert [f.payload for f in frames_sent(server)[0]] == [b"1", b"2", b"3"]

    def test_refused_during_a_fragmented_message(self, server: Connection) -> None:
        server.send_text("a", fin=False)
        with pytest.raises(InvalidState):
            server.send_prepared(serialize_frame(Opcode.TEXT, b"x"))
        server.send_continuation("b", fin=True)
        server.send_prepared(serialize_frame(Opcode.TEXT, b"x"))
        assert [f.payload for f in frames_sent(server)[0]] == [b"a", b"b", b"x"]

    def test_refused_unless_open(self, server: Connection) -> None:
        server.send_close()
        with pytest.raises(InvalidState):
            server.send_prepared(serialize_frame(Opcode.TEXT, b"x"))
        closed = Connection(Role.SERVER)
        closed.receive_eof()
        with pytest.raises(InvalidState):
            closed.send_prepared(serialize_frame(Opcode.TEXT, b"x"))

    def test_compressed(self) -> None:
        assert not Connection(Role.SERVER).compressed
        assert Connection(Role.SERVER, deflate=PerMessageDeflate()).compressed
