"""RFC 7692: the permessage-deflate extension, its negotiation and its codec.

Negotiation is three pure functions over parsed Sec-WebSocket-Extensions values (see
:mod:`fullduplex.protocol.extensions`):

* :func:`client_offers` builds what a client offers, from :class:`DeflateOptions`;
* :func:`server_accept` is the server's choice among the client's offers (section 7.1): the
  first acceptable offer wins, and the response lists the parameters the server applies;
* :func:`client_accept` is the client's validation of the server's response.

Each returns or builds a :class:`PerMessageDeflate`, the per-connection codec that the sans-I/O
connection calls for every frame of a compressed message.

zlib cannot compress raw DEFLATE with an 8-bit window (``wbits=-8`` is refused since zlib
1.2.9). Like Node's zlib binding, fullduplex uses 9 bits wherever 8 was negotiated: zlib never
emits a distance beyond ``2**wbits - 262`` (its MIN_LOOKAHEAD), so a 9-bit compressor stays
within an 8-bit window, and a 9-bit decompressor reads all that an 8-bit one can.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from ..exceptions import NegotiationError, PayloadTooBig, ProtocolError
from .extensions import Extension, ExtensionParam, parse_extensions, serialize_extensions

__all__ = [
    "EXTENSION_NAME",
    "DeflateOptions",
    "PerMessageDeflate",
    "client_accept",
    "client_offer_header",
    "client_offers",
    "deflate_options",
    "server_accept",
    "server_negotiate",
]

EXTENSION_NAME = "permessage-deflate"
"""The extension token registered by RFC 7692."""

# Section 7.2.1: a sync flush ends with this empty stored block; the sender removes it and the
# receiver appends it back before inflating.
_TAIL = b"\x00\x00\xff\xff"
_INVALID_DATA = 1007
_MAX_WBITS = 15
_ZLIB_MIN_WBITS = 9  # see the module docstring
# Section 7.1.2: a window-bits value is a decimal integer 8..15 without leading zeros.
_WINDOW_BITS_VALUES = {str(bits): bits for bits in range(8, 16)}

_SERVER_NO_CONTEXT_TAKEOVER = "server_no_context_takeover"
_CLIENT_NO_CONTEXT_TAKEOVER = "client_no_context_takeover"
_SERVER_MAX_WINDOW_BITS = "server_max_window_bits"
_CLIENT_MAX_WINDOW_BITS = "client_max_window_bits"
_PARAMS = frozenset(
    {
        _SERVER_NO_CONTEXT_TAKEOVER,
        _CLIENT_NO_CONTEXT_TAKEOVER,
        _SERVER_MAX_WINDOW_BITS,
        _CLIENT_MAX_WINDOW_BITS,
    }
)


@dataclass(frozen=True, slots=True)
class DeflateOptions:
    """What this endpoint offers (client) or accepts (server) for permessage-deflate.

    The same options serve both roles; each field reads as the RFC 7692 parameter of the
    same name:

    * ``server_no_context_takeover``: a client asks the server to reset its compression
      context after every message; a server always does so.
    * ``client_no_context_takeover``: a client declares that it resets its own context; a
      server requires the client to.
    * ``server_max_window_bits``: a client asks the server to compress with at most this
      window; a server never uses more (and says so in its response). None: no limit asked.
    * ``client_max_window_bits``: a client declares it will use at most this window and lets
      the server lower it; a server lowers the client's window to this when the client
      allows it (a client that does not allow it is still accepted, with a 15-bit window).
      None: a client does not offer the parameter; a server does not limit the client.
    * ``compress_level`` and ``mem_level``: zlib's settings for this side's compressor.

    Defaults are chosen for servers holding many connections. A zlib deflate stream costs
    ``2**(wbits + 2) + 2**(mem_level + 9)`` bytes and an inflate stream about ``2**wbits``
    plus 7 KiB. With zlib's own defaults (15, 8) that is 256 KiB + 39 KiB per connection;
    with 12-bit windows and ``mem_level=5`` it is 16 + 16 + 11 = 43 KiB, for a compression
    ratio within a few percent on typical JSON and text messages (websockets' server uses the
    same values for the same reason). Context takeover stays on, because it is what makes
    small, repetitive messages compress well; when it is off, the codec drops its zlib objects
    between messages, so an idle connection holds no compression memory at all.
    ``compress_level=6`` is zlib's default: the level trades CPU for ratio, not memory.

    Raises:
        ValueError: If a window size is outside 8..15, ``compress_level`` outside -1..9 or
            ``mem_level`` outside 1..9.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = 12
    client_max_window_bits: int | None = 12
    compress_level: int = 6
    mem_level: int = 5

    def __post_init__(self) -> None:
        for name in (_SERVER_MAX_WINDOW_BITS, _CLIENT_MAX_WINDOW_BITS):
            bits = getattr(self, name)
            if bits is not None and not 8 <= bits <= _MAX_WBITS:
                raise ValueError(f"{name} must be between 8 and 15, got {bits}")
        if not -1 <= self.compress_level <= 9:
            raise ValueError(f"compress_level must be between -1 and 9, got {self.compress_level}")
        if not 1 <= self.mem_level <= 9:
            raise ValueError(f"mem_level must be between 1 and 9, got {self.mem_level}")


class PerMessageDeflate:
    """The negotiated permessage-deflate codec of one connection.

    "Local" is this endpoint's compressor, "remote" the peer's, which this endpoint's
    decompressor follows. zlib objects are created on first use, and dropped after each
    message when the matching ``no_context_takeover`` applies, so connections that never
    send (or never receive) a compressed message pay nothing for it.

    Attributes:
        local_no_context_takeover: This side resets its compressor after each message.
        remote_no_context_takeover: The peer resets its compressor after each message.
        local_max_window_bits: The LZ77 window this side compresses with (8..15).
        remote_max_window_bits: The LZ77 window the peer compresses with (8..15).
        compress_level: zlib level of this side's compressor.
        mem_level: zlib memory level of this side's compressor.
    """

    __slots__ = (
        "_decoder",
        "_encoder",
        "compress_level",
        "local_max_window_bits",
        "local_no_context_takeover",
        "mem_level",
        "remote_max_window_bits",
        "remote_no_context_takeover",
    )

    def __init__(
        self,
        *,
        local_no_context_takeover: bool = False,
        remote_no_context_takeover: bool = False,
        local_max_window_bits: int = _MAX_WBITS,
        remote_max_window_bits: int = _MAX_WBITS,
        compress_level: int = 6,
        mem_level: int = 5,
    ) -> None:
        self.local_no_context_takeover = local_no_context_takeover
        self.remote_no_context_takeover = remote_no_context_takeover
        self.local_max_window_bits = local_max_window_bits
        self.remote_max_window_bits = remote_max_window_bits
        self.compress_level = compress_level
        self.mem_level = mem_level
        self._encoder: zlib._Compress | None = None
        self._decoder: zlib._Decompress | None = None

    def __repr__(self) -> str:
        return (
            f"PerMessageDeflate(local_no_context_takeover={self.local_no_context_takeover}, "
            f"remote_no_context_takeover={self.remote_no_context_takeover}, "
            f"local_max_window_bits={self.local_max_window_bits}, "
            f"remote_max_window_bits={self.remote_max_window_bits})"
        )

    def compress(self, data: bytes | bytearray | memoryview, fin: bool) -> bytes:
        """Compress the payload of one frame of an outgoing message (RFC 7692 section 7.2.1).

        Args:
            data: The uncompressed payload of this frame.
            fin: True for the last frame of the message.

        Returns:
            The frame payload to send with RSV1 set on the message's first frame. Every frame
            is flushed (Z_SYNC_FLUSH) so the peer can inflate it at once; the last one has
            its trailing ``00 00 ff ff`` removed, which leaves ``00`` for an empty message.
        """
        encoder = self._encoder
        if encoder is None:
            encoder = self._encoder = zlib.compressobj(
                self.compress_level,
                zlib.DEFLATED,
                -max(self.local_max_window_bits, _ZLIB_MIN_WBITS),
                self.mem_level,
            )
        out = encoder.compress(data) + encoder.flush(zlib.Z_SYNC_FLUSH)
        if fin:
            # A sync flush always ends with the empty stored block, so the cut is exact.
            out = out[:-4]
            if self.local_no_context_takeover:
                self._encoder = None
        return out

    def decompress(
        self, data: bytes | bytearray | memoryview, fin: bool, max_length: int | None
    ) -> bytes:
        """Decompress the payload of one frame of an incoming message (section 7.2.2).

        Args:
            data: The payload of this frame as received.
            fin: True for the last frame of the message: ``00 00 ff ff`` is appended first.
            max_length: The most bytes this frame may inflate to (what is left of the
                message size budget), or None for no limit. zlib never produces more than
                ``max_length + 1`` bytes here, so a compression bomb costs at most that.

        Returns:
            The uncompressed bytes of this frame.

        Raises:
            PayloadTooBig: If the output would exceed ``max_length``.
            ProtocolError: If the data is not valid DEFLATE (close code 1007).

        After either exception the codec's state is undefined: fail the connection.
        """
        if fin:
            data = bytes(data) + _TAIL
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = self._new_decoder()
        try:
            if max_length is None:
                out = decoder.decompress(data)
            else:
                # Asking for one byte more than allowed tells "exactly the limit" (fine) from
                # "more than the limit" (refused) without inflating anything beyond it.
                out = decoder.decompress(data, max(max_length, 0) + 1)
                if len(out) > max_length:
                    raise PayloadTooBig(
                        f"decompressed message exceeds its size limit "
                        f"({max_length} bytes were left)"
                    )
            if decoder.eof:
                out = self._after_final_block(decoder, out, max_length)
        except zlib.error as exc:
            self._decoder = None
            raise ProtocolError(f"invalid compressed data: {exc}", _INVALID_DATA) from exc
        except PayloadTooBig:
            self._decoder = None
            raise
        if fin and self.remote_no_context_takeover:
            self._decoder = None
        return out

    def _new_decoder(self) -> zlib._Decompress:
        return zlib.decompressobj(-max(self.remote_max_window_bits, _ZLIB_MIN_WBITS))

    def _after_final_block(
        self, decoder: zlib._Decompress, out: bytes, max_length: int | None
    ) -> bytes:
        # A peer may end a message with a BFINAL block (section 7.2.3.4). That ends the
        # DEFLATE stream: zlib stops and keeps what follows in unused_data. What follows is
        # a new stream (usually just an empty stored block and our appended tail), so inflate
        # it with a fresh decoder, and keep that decoder for the next message.
        while decoder.eof:
            rest = decoder.unused_data
            decoder = self._decoder = self._new_decoder()
            if not rest:
                break
            if max_length is None:
                out += decoder.decompress(rest)
            else:
                left = max_length - len(out)
                out += decoder.decompress(rest, left + 1)
                if len(out) > max_length:
                    raise PayloadTooBig(
                        f"decompressed message exceeds its size limit "
                        f"({max_length} bytes were left)"
                    )
        return out


def _window_bits(name: str, value: str | None) -> int:
    bits = _WINDOW_BITS_VALUES.get(value) if value is not None else None
    if bits is None:
        raise NegotiationError(f"invalid value for {name}: {value!r}")
    return bits


def _params_dict(params: Sequence[ExtensionParam]) -> dict[str, str | None]:
    """Index the parameters by name; reject unknown names, duplicates and misplaced values."""
    found: dict[str, str | None] = {}
    for name, value in params:
        if name not in _PARAMS:
            raise NegotiationError(f"unknown permessage-deflate parameter: {name}")
        if name in found:
            raise NegotiationError(f"duplicate permessage-deflate parameter: {name}")
        if value is not None and name in (_SERVER_NO_CONTEXT_TAKEOVER, _CLIENT_NO_CONTEXT_TAKEOVER):
            raise NegotiationError(f"{name} takes no value, got {value!r}")
        found[name] = value
    return found


def client_offers(options: DeflateOptions) -> list[Extension]:
    """Build the client's permessage-deflate offers (RFC 7692 section 7.1).

    The first offer carries every parameter the options set. Servers may decline an offer
    whose window or server_no_context_takeover parameters they do not support, so when the
    first offer has any, a second, plain offer follows (keeping only client_no_context_takeover,
    which costs the server nothing): compression then still happens, with the server's
    defaults, instead of not at all.

    Args:
        options: What to offer.

    Returns:
        One or two ``(name, params)`` offers, in order of preference.
    """
    params: list[ExtensionParam] = []
    if options.server_no_context_takeover:
        params.append((_SERVER_NO_CONTEXT_TAKEOVER, None))
    if options.client_no_context_takeover:
        params.append((_CLIENT_NO_CONTEXT_TAKEOVER, None))
    if options.server_max_window_bits is not None:
        params.append((_SERVER_MAX_WINDOW_BITS, str(options.server_max_window_bits)))
    if options.client_max_window_bits is not None:
        params.append((_CLIENT_MAX_WINDOW_BITS, str(options.client_max_window_bits)))
    offers: list[Extension] = [(EXTENSION_NAME, params)]
    fallback: list[ExtensionParam] = (
        [(_CLIENT_NO_CONTEXT_TAKEOVER, None)] if options.client_no_context_takeover else []
    )
    if fallback != params:
        offers.append((EXTENSION_NAME, fallback))
    return offers


@functools.lru_cache(maxsize=16)  # options are frozen; a client reuses the same few
def client_offer_header(options: DeflateOptions) -> str:
    """Return the Sec-WebSocket-Extensions value of :func:`client_offers`."""
    return serialize_extensions(client_offers(options))


def client_accept(params: Sequence[ExtensionParam], options: DeflateOptions) -> PerMessageDeflate:
    """Validate the server's permessage-deflate response and build the client's codec.

    RFC 7692 section 7.1: the client fails the connection if the response has an unknown,
    duplicate or invalid parameter, or a configuration the client did not allow:
    ``client_max_window_bits`` when the client did not offer it (section 7.1.2.2), or a
    ``server_max_window_bits`` larger than the client asked for (section 7.1.2.1). A response
    without a parameter the first offer asked for accepts the plain offer (see
    :func:`client_offers`); the client then follows the server's defaults.

    Args:
        params: The parameters of the server's permessage-deflate response.
        options: The options the client's offers were built from.

    Returns:
        The codec, with local meaning the client's compressor.

    Raises:
        NegotiationError: If the response must be refused.
    """
    found = _params_dict(params)
    server_bits = _MAX_WBITS
    if _SERVER_MAX_WINDOW_BITS in found:
        server_bits = _window_bits(_SERVER_MAX_WINDOW_BITS, found[_SERVER_MAX_WINDOW_BITS])
        asked = options.server_max_window_bits
        if asked is not None and server_bits > asked:
            raise NegotiationError(
                f"server_max_window_bits={server_bits} exceeds the {asked} the client asked for"
            )
    client_bits = (
        _MAX_WBITS if options.client_max_window_bits is None else (options.client_max_window_bits)
    )
    if _CLIENT_MAX_WINDOW_BITS in found:
        if options.client_max_window_bits is None:
            raise NegotiationError("client_max_window_bits in response but not in offer")
        # The server may ignore the client's hint (section 7.1.2.2); the client never uses
        # more than it declared nor more than the server allows.
        client_bits = min(
            client_bits, _window_bits(_CLIENT_MAX_WINDOW_BITS, found[_CLIENT_MAX_WINDOW_BITS])
        )
    return PerMessageDeflate(
        local_no_context_takeover=(
            options.client_no_context_takeover or _CLIENT_NO_CONTEXT_TAKEOVER in found
        ),
        remote_no_context_takeover=_SERVER_NO_CONTEXT_TAKEOVER in found,
        local_max_window_bits=client_bits,
        remote_max_window_bits=server_bits,
        compress_level=options.compress_level,
        mem_level=options.mem_level,
    )


def _server_accept_offer(
    params: Sequence[ExtensionParam], options: DeflateOptions
) -> tuple[Extension, PerMessageDeflate]:
    found = _params_dict(params)
    response: list[ExtensionParam] = []

    # Section 7.1.1: the server may always add either no_context_takeover; a client that
    # asks for one, or declares one, gets it confirmed.
    server_nct = options.server_no_context_takeover or _SERVER_NO_CONTEXT_TAKEOVER in found
    client_nct = options.client_no_context_takeover or _CLIENT_NO_CONTEXT_TAKEOVER in found
    if server_nct:
        response.append((_SERVER_NO_CONTEXT_TAKEOVER, None))
    if client_nct:
        response.append((_CLIENT_NO_CONTEXT_TAKEOVER, None))

    # Section 7.1.2.1: the server answers a request with the same or a smaller value, and
    # may limit itself unasked.
    server_bits = options.server_max_window_bits
    if _SERVER_MAX_WINDOW_BITS in found:
        asked = _window_bits(_SERVER_MAX_WINDOW_BITS, found[_SERVER_MAX_WINDOW_BITS])
        server_bits = asked if server_bits is None else min(server_bits, asked)
    if server_bits is not None:
        response.append((_SERVER_MAX_WINDOW_BITS, str(server_bits)))

    # Section 7.1.2.2: the server may limit the client only if the client offered the
    # parameter; a value in the offer is the client's own limit, which the server may echo.
    client_bits = _MAX_WBITS
    if _CLIENT_MAX_WINDOW_BITS in found:
        hint = found[_CLIENT_MAX_WINDOW_BITS]
        limit = options.client_max_window_bits
        if hint is not None:
            hinted = _window_bits(_CLIENT_MAX_WINDOW_BITS, hint)
            limit = hinted if limit is None else min(limit, hinted)
        if limit is not None:
            client_bits = limit
            response.append((_CLIENT_MAX_WINDOW_BITS, str(limit)))

    codec = PerMessageDeflate(
        local_no_context_takeover=server_nct,
        remote_no_context_takeover=client_nct,
        local_max_window_bits=_MAX_WBITS if server_bits is None else server_bits,
        remote_max_window_bits=client_bits,
        compress_level=options.compress_level,
        mem_level=options.mem_level,
    )
    return (EXTENSION_NAME, response), codec


def server_accept(
    offers: Sequence[Extension], options: DeflateOptions
) -> tuple[Extension, PerMessageDeflate] | None:
    """Choose among the client's extension offers, as a server (RFC 7692 section 7.1).

    Offers for other extensions are skipped. The first permessage-deflate offer that is
    valid wins; an offer with an unknown, duplicate or invalid parameter is declined and
    the next one is tried. Every valid offer is acceptable: the server supports every
    parameter and applies its own limits on top of the client's.

    Args:
        offers: All extensions the client offered, in its order of preference.
        options: The server's limits.

    Returns:
        ``(response, codec)``: the extension to list in Sec-WebSocket-Extensions, with the
        parameters the server applies, and the codec (local meaning the server's
        compressor); or None if no offer is acceptable, and the connection goes on
        without compression.
    """
    for name, params in offers:
        if name != EXTENSION_NAME:
            continue
        try:
            return _server_accept_offer(params, options)
        except NegotiationError:
            continue
    return None


# Most clients of a server send the same few Sec-WebSocket-Extensions values (one per browser
# family), so the server remembers its answer to each: parsing and choosing cost more than
# the rest of the handshake's checks together. Only short values are cached, which bounds the
# cache's memory whatever clients send.
_CACHED_VALUE_LENGTH = 256


@functools.lru_cache(maxsize=64)
def _server_negotiate_cached(
    values: tuple[str, ...], options: DeflateOptions
) -> tuple[str, tuple[bool, bool, int, int]] | None:
    accepted = server_accept(parse_extensions(values), options)
    if accepted is None:
        return None
    extension, codec = accepted
    return serialize_extensions([extension]), (
        codec.local_no_context_takeover,
        codec.remote_no_context_takeover,
        codec.local_max_window_bits,
        codec.remote_max_window_bits,
    )


def server_negotiate(
    values: Sequence[str], options: DeflateOptions
) -> tuple[str, PerMessageDeflate] | None:
    """Answer a client's Sec-WebSocket-Extensions header lines, as a server.

    This is :func:`~fullduplex.protocol.extensions.parse_extensions`, then
    :func:`server_accept`, then serializing the accepted extension, with the answers to
    recent short header values remembered.

    Args:
        values: Every Sec-WebSocket-Extensions line of the request.
        options: The server's limits.

    Returns:
        ``(header value, codec)`` for the response, or None to go on without compression.
        The codec is new on every call.

    Raises:
        NegotiationError: If a value does not follow the header's grammar (HTTP 400).
    """
    if not values:
        return None
    key = tuple(values)
    if sum(map(len, key)) <= _CACHED_VALUE_LENGTH:
        cached = _server_negotiate_cached(key, options)
    else:
        cached = _server_negotiate_cached.__wrapped__(key, options)
    if cached is None:
        return None
    header, (local_nct, remote_nct, local_bits, remote_bits) = cached
    return header, PerMessageDeflate(
        local_no_context_takeover=local_nct,
        remote_no_context_takeover=remote_nct,
        local_max_window_bits=local_bits,
        remote_max_window_bits=remote_bits,
        compress_level=options.compress_level,
        mem_level=options.mem_level,
    )


def deflate_options(compression: object) -> DeflateOptions | None:
    """Turn a client's or server's ``compression`` option into the handshake's ``deflate``.

    Args:
        compression: "deflate" for the default :class:`DeflateOptions`, a DeflateOptions to
            use as it is, or None to disable compression.

    Raises:
        ValueError: Any other value.
    """
    if compression is None or isinstance(compression, DeflateOptions):
        return compression
    if compression == "deflate":
        return DeflateOptions()
    raise ValueError(f"unsupported compression {compression!r}: use 'deflate' or None")
