"""RFC 6455 section 4: the opening handshake, sans-I/O.

The server reads the request head and writes its response with :mod:`.http11` (a request head
is all a WebSocket server reads, and h11's generality cost most of a handshake); the client
reads the response with h11, which also handles interim responses and the bodies of error
responses. This module adds the WebSocket rules: building the client's request, validating it
on the server (section 4.2.1), answering with 101 or with an error response, and validating
the 101 on the client (section 4.1). Subprotocols are chosen here; extensions are parsed by
:mod:`~fullduplex.protocol.extensions` and negotiated by :mod:`~fullduplex.protocol.deflate`.

Server::

    handshake = ServerHandshake(subprotocols=["chat"])
    request = handshake.receive_data(data)         # None until the request head is complete
    try:
        response = handshake.accept(request)
    except InvalidHandshake as exc:
        response = handshake.reject_for(exc)       # 400 / 405 / 426 with a one-line reason
    transport.write(handshake.serialize(response))
    # on 101: Connection(Role.SERVER, deflate=handshake.deflate_extension)
    #         .receive_data(handshake.trailing_data)

Client::

    handshake = ClientHandshake("example.com", "/chat")
    transport.write(handshake.request_bytes())
    response = handshake.receive_data(data)        # None until the response head is complete
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, replace
from http import HTTPStatus

import h11

from .. import __version__
from ..exceptions import (
    InvalidHandshake,
    InvalidMessage,
    InvalidRequest,
    InvalidResponse,
    InvalidState,
    InvalidStatus,
    InvalidVersion,
    NegotiationError,
    SecurityError,
)
from .deflate import (
    EXTENSION_NAME,
    DeflateOptions,
    PerMessageDeflate,
    client_accept,
    client_offer_header,
    server_negotiate,
)
from .extensions import is_token, parse_extensions
from .http11 import check_incomplete_head, parse_request_head, serialize_response

# Strings of requests shared between connections (see _shared): at most this many, each at
# most this long. Not sys.intern, whose strings are never freed on Python 3.12: a client
# could grow the table without bound.
_SHARED_MAX = 4096
_SHARED_LENGTH_MAX = 64
_shared_strings: dict[str, str] = {}
_KEY = "sec-websocket-key"


def _shared(text: str) -> str:
    """Return the one stored copy of ``text`` if there is one, else store it while there is room.

    Requests live as long as their connections and most of their strings (field names,
    Upgrade, Host, User-Agent, the path) are the same on every connection: stored once, they
    cost memory once per process instead of once per connection.
    """
    if len(text) > _SHARED_LENGTH_MAX:
        return text
    stored = _shared_strings.get(text)
    if stored is not None:
        return stored
    if len(_shared_strings) < _SHARED_MAX:
        _shared_strings[text] = text
    return text


__all__ = [
    "GUID",
    "USER_AGENT",
    "ClientHandshake",
    "Headers",
    "Request",
    "Response",
    "ServerHandshake",
    "accept_key",
    "generate_key",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
"""RFC 6455 section 1.3: the string appended to the key to compute Sec-WebSocket-Accept."""

USER_AGENT = f"Python/{sys.version_info.major}.{sys.version_info.minor} fullduplex/{__version__}"
"""The default User-Agent of a client."""

_VERSION = "13"
_KEY_BYTES = 16


def generate_key() -> str:
    """Return a new Sec-WebSocket-Key: base64 of 16 random bytes (RFC 6455 section 4.1)."""
    return base64.b64encode(os.urandom(_KEY_BYTES)).decode("ascii")


def accept_key(key: str) -> str:
    """Return the Sec-WebSocket-Accept value answering ``key`` (RFC 6455 section 4.2.2).

    Args:
        key: The client's Sec-WebSocket-Key, as sent.

    Returns:
        base64(SHA-1(key + GUID)).
    """
    digest = hashlib.sha1((key + GUID).encode("ascii"), usedforsecurity=False).digest()
    return binascii.b2a_base64(digest, newline=False).decode("ascii")


class Headers(MutableMapping[str, str]):
    """HTTP header fields: a case-insensitive multi-map of ``str`` to ``str``.

    Names compare case-insensitively; the order and case of fields as received or added are
    kept by :meth:`raw_items`, which is what goes on the wire.

    * ``headers[name]`` is the value of a field present once. A field present several times
      yields its values joined with ", ", which RFC 9110 section 5.3 defines as equivalent
      for list-based fields; use :meth:`get_all` to see each line. A missing field raises
      KeyError.
    * ``headers[name] = value`` replaces every line of that field; :meth:`add` appends one.
    * Iteration yields each distinct name once, in lower case.

    Args:
        items: Initial fields: ``(name, value)`` pairs, a mapping, or another Headers.
    """

    # Only the fields as received, no index: a server keeps every connection's request for
    # its whole life, and an index (a dict, a list per name, lower-cased copies of names)
    # doubled its memory. Lookups scan the fields, which max_header_count bounds.
    __slots__ = ("_items",)

    def __init__(
        self, items: Iterable[tuple[str, str]] | Mapping[str, str] | Headers = (), /
    ) -> None:
        if isinstance(items, Headers):
            items = items.raw_items()
        elif isinstance(items, Mapping):
            items = items.items()
        self._items: list[tuple[str, str]] = [(name, value) for name, value in items]

    def __getitem__(self, name: str) -> str:
        values = self._values(name.lower())
        if not values:
            raise KeyError(name)
        return values[0] if len(values) == 1 else ", ".join(values)

    def __setitem__(self, name: str, value: str) -> None:
        if name in self:
            del self[name]
        self.add(name, value)

    def __delitem__(self, name: str) -> None:
        key = name.lower()
        items = [item for item in self._items if item[0].lower() != key]
        if len(items) == len(self._items):
            raise KeyError(name)
        self._items = items

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower()
        return any(item_name.lower() == key for item_name, _ in self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self._grouped())

    def __len__(self) -> int:
        return len(self._grouped())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._grouped() == other._grouped()
        if isinstance(other, Mapping):
            return dict(self.items()) == {k.lower(): v for k, v in other.items()}
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def _grouped(self) -> dict[str, list[str]]:
        """Every value by lower-case name, names in order of first appearance."""
        grouped: dict[str, list[str]] = {}
        for name, value in self._items:
            grouped.setdefault(name.lower(), []).append(value)
        return grouped

    @classmethod
    def _adopt(cls, items: list[tuple[str, str]]) -> Headers:
        """Wrap ``items`` without copying them (the parser's fresh list)."""
        headers = cls.__new__(cls)
        headers._items = items
        return headers

    def add(self, name: str, value: str) -> None:
        """Append one field, keeping any other lines of the same name."""
        self._items.append((name, value))

    def _values(self, key: str) -> Sequence[str]:
        # key is lower case already (callers inside this module pass literals).
        return [value for name, value in self._items if name.lower() == key]

    def get_all(self, name: str) -> list[str]:
        """Return the value of every line of field ``name``, in order ([] if absent)."""
        return list(self._values(name.lower()))

    def raw_items(self) -> list[tuple[str, str]]:
        """Return every field as ``(name, value)``, in order, with names as given."""
        return list(self._items)

    def copy(self) -> Headers:
        """Return an independent copy."""
        return Headers(self._items)


@dataclass(frozen=True, slots=True)
class Request:
    """An HTTP request: the client's opening handshake.

    Attributes:
        method: The method, e.g. "GET".
        path: The request target, e.g. "/chat?room=1".
        headers: The header fields.
        http_version: "1.1" or "1.0".
        body: The body of a plain HTTP request (e.g. a fallback transport's POST), read only
            when the server allows bodies (``max_body_size``, ``body_allowed``); empty
            otherwise.
        discarded: The length of a body over ``max_body_size``: read and dropped, so that
            the client gets an answer (413 unless ``process_request`` gives another); else 0.
    """

    method: str
    path: str
    headers: Headers
    http_version: str = "1.1"
    body: bytes = b""
    discarded: int = 0

    @property
    def is_upgrade(self) -> bool:
        """Whether the request asks for a WebSocket (``Upgrade: websocket``), as opposed to a
        plain HTTP request that a server may answer with a route (only the token is checked:
        the handshake validates the rest)."""
        return any(
            token.strip().lower() == "websocket"
            for value in self.headers.get_all("Upgrade")
            for token in value.split(",")
        )


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP response: the server's answer to the opening handshake.

    Attributes:
        status: The status code: 101 to accept, anything else rejects.
        reason: The reason phrase.
        headers: The header fields.
        body: The body (empty for 101).
    """

    status: int
    reason: str
    headers: Headers
    body: bytes = b""


def _tokens(values: Iterable[str]) -> list[str]:
    """Split comma-separated list values (across header lines) into stripped, non-empty items."""
    return [
        item for value in values for item in (part.strip() for part in value.split(",")) if item
    ]


def _has_token(values: Sequence[str], token: str) -> bool:
    """Return True if the comma-separated lists ``values`` include ``token`` (lower case)."""
    for value in values:
        if value.lower() == token:  # the usual single-item header, without splitting
            return True
    return any(item.lower() == token for item in _tokens(values))


def _shown(value: str) -> str:
    # Values are quoted in messages that may be sent to the peer: repr() keeps them on one
    # line and the cut keeps the response small.
    return repr(value if len(value) <= 80 else value[:80] + "...")


def _headers_from_h11(raw: Iterable[tuple[bytes, bytes]]) -> Headers:
    # Names are tokens (ASCII, h11 checked); values may hold obs-text, which latin-1 decodes
    # without failing, as RFC 9110 section 5.5 suggests.
    return Headers._adopt([(name.decode("ascii"), value.decode("latin-1")) for name, value in raw])


def _h11_headers(headers: Headers) -> list[tuple[bytes, bytes]]:
    return [(name.encode("ascii"), value.encode("latin-1")) for name, value in headers.raw_items()]


def _subprotocols_of(values: Sequence[str]) -> list[str]:
    """Parse Sec-WebSocket-Protocol (RFC 6455 section 11.3.4: 1#token) across its lines."""
    protocols = _tokens(values)
    for protocol in protocols:
        if not is_token(protocol):
            raise NegotiationError(f"invalid Sec-WebSocket-Protocol header: {_shown(protocol)}")
    return protocols


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class ServerHandshake:
    """The server side of the opening handshake, sans-I/O.

    Feed the bytes read from the socket to :meth:`receive_data` until it returns the
    :class:`Request`; answer it with :meth:`accept` (or :meth:`reject`, or :meth:`reject_for`
    the exception any step raised), then write :meth:`serialize` of the response. After a
    101, :attr:`trailing_data` holds the bytes that followed the request head: feed them to
    the connection first.

    Args:
        subprotocols: The subprotocols this server supports, in its order of preference.
        select_subprotocol: Called as ``select_subprotocol(request, offered)`` to choose a
            subprotocol among those the client offered, instead of the preference order. It
            returns one of ``offered`` or None, and may raise NegotiationError to refuse.
        deflate: permessage-deflate limits, or None to never accept compression.
        max_header_size: The most bytes the request head may take (431 beyond).
        max_header_count: The most header fields the request may have (431 beyond).
        max_body_size: The largest body a plain HTTP request (not an upgrade) may carry,
            with a Content-Length (411 for a chunked one); 0, the default, refuses every
            body, as an opening handshake has none. A longer body is read and dropped, and
            the request comes with :attr:`Request.discarded` set (the server answers 413).
        body_allowed: ``body_allowed(method, target)``: whether a plain request with this
            method and target may carry a body at all (None: every one, within
            ``max_body_size``). Any other request with a body is refused (400) as soon as
            its head is read, before its body is.

    Attributes:
        request: The request, once complete (with its body, when it has one).
        trailing_data: The bytes received after the request head.
        subprotocol: The negotiated subprotocol, after :meth:`accept`.
        deflate_extension: The negotiated compression, after :meth:`accept`, or None.
    """

    __slots__ = (
        "_body",
        "_body_allowed",
        "_body_buffer",
        "_buffer",
        "_deflate",
        "_received",
        "_select_subprotocol",
        "_sent_status",
        "_subprotocols",
        "deflate_extension",
        "max_body_size",
        "max_header_count",
        "max_header_size",
        "request",
        "subprotocol",
        "trailing_data",
    )

    def __init__(
        self,
        *,
        subprotocols: Sequence[str] | None = None,
        select_subprotocol: Callable[[Request, Sequence[str]], str | None] | None = None,
        deflate: DeflateOptions | None = DeflateOptions(),  # noqa: B008 - frozen, immutable
        max_header_size: int = 16384,
        max_header_count: int = 128,
        max_body_size: int = 0,
        body_allowed: Callable[[str, str], bool] | None = None,
    ) -> None:
        self._subprotocols = list(subprotocols or ())
        self._select_subprotocol = select_subprotocol
        self._deflate = deflate
        self.max_header_size = max_header_size
        self.max_header_count = max_header_count
        self.max_body_size = max_body_size
        self._body_allowed = body_allowed
        # A request whose head is read and whose body is still coming: (request, length),
        # the length negative for a body too large, which is counted and dropped.
        self._body: tuple[Request, int] | None = None
        # The body received so far: one buffer that grows, so that a body trickling in
        # small pieces costs a copy of each piece, not of all that came before it.
        self._body_buffer = bytearray()
        # The start of a head that arrived in pieces; None while empty (the usual case: a
        # whole head in one read is parsed from the bytes read, without a copy).
        self._buffer: bytearray | None = None
        self._received = 0
        self._sent_status: int | None = None
        self.request: Request | None = None
        self.trailing_data = b""
        self.subprotocol: str | None = None
        self.deflate_extension: PerMessageDeflate | None = None

    def receive_data(self, data: bytes) -> Request | None:
        """Receive bytes from the network.

        After calling this method, if it returned a request, answer it: call :meth:`accept`
        and :meth:`serialize`, and write the bytes. Data received after the request head
        (now or in later calls) accumulates in :attr:`trailing_data`.

        Args:
            data: The bytes read.

        Returns:
            The request, once its head is complete (exactly once); None before and after.

        Raises:
            InvalidMessage: If the bytes are not a valid HTTP/1.1 request head, or the
                request has a body.
            SecurityError: If the head exceeds ``max_header_size`` bytes or
                ``max_header_count`` fields.
        """
        if self.request is not None:
            self.trailing_data += data
            return None
        if not data:
            return None
        if self._body is not None:
            self._body_buffer += data
            return self._body_received()
        self._received += len(data)
        buffer = self._buffer
        received: bytes | bytearray
        if buffer is None:
            received, start = data, 0
        else:
            buffer += data
            # The end of the head may straddle the previous read.
            received, start = buffer, max(len(buffer) - len(data) - 3, 0)
        end = received.find(b"\r\n\r\n", start)
        if end < 0:
            check_incomplete_head(received, start, self.max_header_size)
            if buffer is None:
                self._buffer = bytearray(data)
            return None
        head_size = end + 4
        if head_size > self.max_header_size:
            raise SecurityError(f"request head is too large ({head_size} bytes)")
        head = parse_request_head(received[: end + 2])
        if len(head.fields) > self.max_header_count:
            raise SecurityError(f"too many header fields ({len(head.fields)})")
        # An opening handshake has no body; refusing one keeps trailing_data exactly the
        # bytes after the head (some clients send "Content-Length: 0", which is harmless).
        length = 0
        if head.has_body:
            length = self._body_length(head.method, head.target, head.fields)
        # The request lives as long as its connection, and most of its fields are the same on
        # every connection (names, Upgrade, Host, User-Agent...): interned, each is stored once
        # per process instead of once per connection. Long values are rarely shared.
        # The key is unique to each connection: sharing it would only fill the table.
        fields = [
            (_shared(name), value if len(value) == 24 and name.lower() == _KEY else _shared(value))
            for name, value in head.fields
        ]
        request = Request(
            _shared(head.method), _shared(head.target), Headers._adopt(fields), head.http_version
        )
        self._buffer = None
        if length:
            self._body = (request, length)
            self._body_buffer = bytearray(received[head_size:])
            return self._body_received()
        self.trailing_data = bytes(received[head_size:])
        self.request = request
        return request

    def _body_length(self, method: str, target: str, fields: list[tuple[str, str]]) -> int:
        """The announced body length of a plain request that may have one (negative when it
        is too large: it is dropped as it comes); raise otherwise."""
        names = [name.lower() for name, _ in fields]
        upgrade = any(
            name.lower() == "upgrade" and "websocket" in value.lower() for name, value in fields
        )
        allowed = self._body_allowed
        if (
            self.max_body_size <= 0
            or upgrade
            or (allowed is not None and not allowed(method, target))
        ):
            raise InvalidMessage("a request body is not allowed in an opening handshake")
        if "transfer-encoding" in names:
            raise InvalidRequest("send the request body with a Content-Length", 411)
        lengths = {value for name, value in fields if name.lower() == "content-length"}
        if len(lengths) != 1 or not (value := next(iter(lengths))).isascii() or not value.isdigit():
            raise InvalidMessage("invalid Content-Length")
        length = int(value)
        return -length if length > self.max_body_size else length

    def _body_received(self) -> Request | None:
        """The request once its whole body is in, else None."""
        assert self._body is not None
        request, length = self._body
        buffer = self._body_buffer
        if length < 0:
            # Too large: counted, not kept.
            left = -length - len(buffer)
            if left > 0:
                self._body = (request, -left)
                buffer.clear()
                return None
            request = replace(request, discarded=int(request.headers["Content-Length"]))
            rest = bytes(buffer[len(buffer) + left :])
        else:
            if len(buffer) < length:
                return None
            request = replace(request, body=bytes(buffer[:length]))
            rest = bytes(buffer[length:])
        self._body = None
        self._body_buffer = bytearray()
        self.trailing_data = rest
        self.request = request
        return request

    def receive_eof(self) -> None:
        """Receive the end of the stream from the network.

        After calling this method, close the connection: there is no one to answer.

        Raises:
            InvalidMessage: If the request was not complete yet.
        """
        if self.request is not None:
            return
        if self._received == 0:
            raise InvalidMessage("connection closed before a request was sent")
        raise InvalidMessage("connection closed before the request was complete")

    def accept(
        self, request: Request, *, extra_headers: Iterable[tuple[str, str]] = ()
    ) -> Response:
        """Validate the opening handshake request and build the 101 response.

        The checks follow RFC 6455 section 4.2.1, in order; the first failure raises. Then
        the subprotocol and the extensions are negotiated, and :attr:`subprotocol` and
        :attr:`deflate_extension` are set.

        Args:
            request: The request returned by :meth:`receive_data` (or built by the caller).
            extra_headers: Header fields to add to the response.

        Returns:
            The 101 Switching Protocols response. Write :meth:`serialize` of it.

        Raises:
            InvalidRequest: Method not GET (405), HTTP version before 1.1, missing Host, bad
                Sec-WebSocket-Key (400), Upgrade or Connection without the websocket upgrade
                (426).
            InvalidVersion: Sec-WebSocket-Version is not 13 (426).
            NegotiationError: Malformed Sec-WebSocket-Protocol or Sec-WebSocket-Extensions,
                or select_subprotocol refused (400).
        """
        # Every field grouped by name in one pass: the lookups below are then dict hits, and
        # the dict goes on return (Headers itself keeps no index, to stay small).
        fields = request.headers._grouped()
        none: list[str] = []
        if request.method != "GET":
            raise InvalidRequest(f"method must be GET, got {_shown(request.method)}", 405)
        major, _, minor = request.http_version.partition(".")
        if request.http_version != "1.1" and not (
            major.isdigit() and minor.isdigit() and (int(major), int(minor)) >= (1, 1)
        ):
            raise InvalidRequest(
                f"HTTP/1.1 or later is required, got {_shown('HTTP/' + request.http_version)}"
            )
        hosts = fields.get("host", none)
        if not hosts:
            raise InvalidRequest("missing Host header")
        if len(hosts) > 1:
            raise InvalidRequest("more than one Host header")

        upgrade = fields.get("upgrade", none)
        if not upgrade:
            raise InvalidRequest("missing Upgrade header", 426)
        if not _has_token(upgrade, "websocket"):
            raise InvalidRequest(
                f"Upgrade header must include websocket, got {_shown(', '.join(upgrade))}", 426
            )
        connection = fields.get("connection", none)
        if not connection:
            raise InvalidRequest("missing Connection header", 426)
        if not _has_token(connection, "upgrade"):
            raise InvalidRequest(
                f"Connection header must include upgrade, got {_shown(', '.join(connection))}",
                426,
            )

        keys = fields.get("sec-websocket-key", none)
        if not keys:
            raise InvalidRequest("missing Sec-WebSocket-Key header")
        if len(keys) > 1:
            raise InvalidRequest("more than one Sec-WebSocket-Key header")
        key = keys[0]
        try:
            # Strict mode accepts exactly the keys b64decode(validate=True) did, faster; a
            # key outside ASCII raises ValueError.
            raw_key = binascii.a2b_base64(key, strict_mode=True)
        except ValueError:
            raw_key = b""
        if len(raw_key) != _KEY_BYTES:
            raise InvalidRequest(f"Sec-WebSocket-Key must be base64 of 16 bytes, got {_shown(key)}")

        versions = fields.get("sec-websocket-version", none)
        if not versions:
            raise InvalidVersion("missing Sec-WebSocket-Version header")
        if len(versions) != 1 or versions[0] != _VERSION:
            raise InvalidVersion(
                f"Sec-WebSocket-Version must be 13, got {_shown(', '.join(versions))}"
            )

        offered = _subprotocols_of(fields.get("sec-websocket-protocol", none))
        subprotocol = self._choose_subprotocol(request, offered)
        extension = None
        deflate_extension = None
        if self._deflate is not None:
            accepted = server_negotiate(fields.get("sec-websocket-extensions", none), self._deflate)
            if accepted is not None:
                extension, deflate_extension = accepted

        response_headers = Headers._adopt(
            [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", accept_key(key)),
            ]
        )
        if subprotocol is not None:
            response_headers.add("Sec-WebSocket-Protocol", subprotocol)
        if extension is not None:
            response_headers.add("Sec-WebSocket-Extensions", extension)
        for name, value in extra_headers:
            response_headers.add(name, value)
        self.subprotocol = subprotocol
        self.deflate_extension = deflate_extension
        return Response(101, "Switching Protocols", response_headers)

    def _choose_subprotocol(self, request: Request, offered: list[str]) -> str | None:
        if self._select_subprotocol is not None:
            chosen = self._select_subprotocol(request, offered)
            if chosen is not None and chosen not in offered:
                raise NegotiationError(f"subprotocol {_shown(chosen)} was not offered")
            return chosen
        # RFC 6455 section 4.2.2: with no common subprotocol the server answers without one,
        # and the client decides whether to go on.
        for subprotocol in self._subprotocols:
            if subprotocol in offered:
                return subprotocol
        return None

    def reject(
        self,
        status: int,
        body: str | bytes,
        *,
        headers: Iterable[tuple[str, str]] = (),
    ) -> Response:
        """Build an HTTP response that refuses the upgrade.

        Args:
            status: The status code (not 101).
            body: The body; a str is encoded as UTF-8 and, unless ``headers`` set one, sent
                with ``Content-Type: text/plain; charset=utf-8``.
            headers: More header fields.

        Returns:
            The response, with ``Connection: close``. Write :meth:`serialize` of it, then
            close the connection.
        """
        response_headers = Headers(headers)
        if isinstance(body, str):
            body = body.encode("utf-8")
            if "Content-Type" not in response_headers:
                response_headers.add("Content-Type", "text/plain; charset=utf-8")
        if not _has_token(response_headers.get_all("Connection"), "close"):
            response_headers.add("Connection", "close")
        return Response(status, _reason(status), response_headers, body)

    def reject_for(self, exc: InvalidHandshake) -> Response:
        """Build the error response for a failed handshake.

        Args:
            exc: What :meth:`receive_data` or :meth:`accept` raised.

        Returns:
            A response with ``exc.status`` and a one-line plain-text body naming the problem.
            426 carries ``Upgrade: websocket`` (RFC 9110 section 15.5.22) and, for a version
            mismatch, ``Sec-WebSocket-Version: 13`` (RFC 6455 section 4.4); 405 carries
            ``Allow: GET``.
        """
        status = exc.status
        headers: list[tuple[str, str]] = []
        if status == HTTPStatus.UPGRADE_REQUIRED:
            headers.append(("Upgrade", "websocket"))
            # RFC 9110 section 7.8: whoever sends Upgrade also lists it in Connection.
            headers.append(("Connection", "Upgrade, close"))
            if isinstance(exc, InvalidVersion):
                headers.append(("Sec-WebSocket-Version", _VERSION))
        elif status == HTTPStatus.METHOD_NOT_ALLOWED:
            headers.append(("Allow", "GET"))
        return self.reject(
            status, f"Failed to open a WebSocket connection: {exc}.\n", headers=headers
        )

    def serialize(self, response: Response, *, held: bool = False) -> bytes:
        """Return the bytes of ``response``.

        Args:
            response: From :meth:`accept`, :meth:`reject` or :meth:`reject_for`. A 101 is
                written as an informational response; any other status with its body and
                a Content-Length (the caller's is kept when the body is empty, for HEAD). The
                answer to a HEAD request leaves the body out and announces its length.
            held: Write only the head, without a Content-Length: the body follows over time
                and ends with the connection (``Connection: close``).

        Returns:
            The bytes to write. After a 101 the connection speaks WebSocket; after anything
            else, close it once written.

        Raises:
            InvalidState: If the response cannot be sent: a second response, a 101 to a
                request that did not ask for an upgrade, a status outside 101 and 200 to 999,
                a body with 204 or 304, a Transfer-Encoding, or a name, value or reason that
                HTTP does not allow (which could inject a field). Nothing is sent then.
        """
        sent = self._sent_status
        if sent is not None:
            if sent == HTTPStatus.SWITCHING_PROTOCOLS:
                raise InvalidState(
                    "cannot send this response: the connection switched to WebSocket"
                )
            raise InvalidState("cannot send this response: a response was already sent")
        status = response.status
        request = self.request
        body = response.body
        if status == HTTPStatus.SWITCHING_PROTOCOLS:
            # RFC 9110 section 15.2.2: a 101 answers a request that asked for an upgrade.
            # (As h11: an Upgrade field with any item; " \t," alone is an empty list.)
            if request is None or not any(
                name.lower() == "upgrade" and value.strip(" \t,")
                for name, value in request.headers._items
            ):
                raise InvalidState(
                    "cannot send this response: a 101 answers only a request with an Upgrade"
                )
            fields = response.headers._items
            body = b""
        else:
            if status < 200:
                raise InvalidState(f"cannot send this response: status {status} is not final")
            headers = response.headers.copy()
            if "Transfer-Encoding" in headers:
                raise InvalidState(
                    "cannot send this response: Transfer-Encoding is not supported"
                    " (the body is sent with a Content-Length)"
                )
            if body and status in (HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED):
                raise InvalidState(f"cannot send this response: a {status} has no body")
            # An empty body keeps a Content-Length the caller set: the answer to a HEAD
            # announces the length of the GET body it leaves out (RFC 9110 section 8.6).
            if held:
                body = b""
            elif body or "Content-Length" not in headers:
                headers["Content-Length"] = str(len(body))
            if request is not None and request.method == "HEAD":
                body = b""  # RFC 9110 section 9.3.2: the same fields as GET, no content
            fields = headers._items
        try:
            data = serialize_response(status, response.reason, fields, body)
        except ValueError as exc:
            raise InvalidState(f"cannot send this response: {exc}") from exc
        self._sent_status = status
        return data


class ClientHandshake:
    """The client side of the opening handshake, sans-I/O.

    Write :meth:`request_bytes`, then feed the bytes read from the socket to
    :meth:`receive_data` until it returns the 101 :class:`Response` (or raises). Then
    :attr:`trailing_data` holds the bytes that followed the response head: feed them to the
    connection first.

    Args:
        host: The Host header: the server's host name, with ":port" unless the port is the
            scheme's default.
        resource: The request target: path and query, e.g. "/chat?room=1".
        origin: The Origin header, or None to omit it.
        subprotocols: The subprotocols to offer, in order of preference.
        deflate: permessage-deflate options to offer, or None to offer no compression.
        extra_headers: More header fields for the request.
        user_agent: The User-Agent header, or None to omit it.
        max_header_size: The most bytes the response head may take.
        max_header_count: The most header fields the response may have.
        max_body_size: The most bytes of an error response's body kept for
            :class:`~fullduplex.exceptions.InvalidStatus` (the rest is dropped).

    Attributes:
        key: The Sec-WebSocket-Key sent.
        request: The request sent.
        response: The 101 response, once received and valid.
        trailing_data: The bytes received after the response head.
        subprotocol: The subprotocol the server chose, or None.
        deflate_extension: The negotiated compression, or None.
    """

    __slots__ = (
        "_body",
        "_body_until_eof",
        "_deflate",
        "_h11",
        "_received",
        "_rejection",
        "_request_bytes",
        "_subprotocols",
        "deflate_extension",
        "key",
        "max_body_size",
        "max_body_size",
        "max_header_count",
        "max_header_size",
        "request",
        "response",
        "subprotocol",
        "trailing_data",
    )

    def __init__(
        self,
        host: str,
        resource: str,
        *,
        origin: str | None = None,
        subprotocols: Sequence[str] | None = None,
        deflate: DeflateOptions | None = DeflateOptions(),  # noqa: B008 - frozen, immutable
        extra_headers: Iterable[tuple[str, str]] = (),
        user_agent: str | None = USER_AGENT,
        max_header_size: int = 16384,
        max_header_count: int = 128,
        max_body_size: int = 65536,
    ) -> None:
        self._subprotocols = list(subprotocols or ())
        for subprotocol in self._subprotocols:
            if not is_token(subprotocol):
                raise ValueError(f"subprotocol is not a token: {subprotocol!r}")
        self._deflate = deflate
        self.max_header_size = max_header_size
        self.max_header_count = max_header_count
        self.max_body_size = max_body_size
        self.key = generate_key()
        headers = Headers()
        headers.add("Host", host)
        headers.add("Upgrade", "websocket")
        headers.add("Connection", "Upgrade")
        headers.add("Sec-WebSocket-Key", self.key)
        headers.add("Sec-WebSocket-Version", _VERSION)
        if origin is not None:
            headers.add("Origin", origin)
        if deflate is not None:
            headers.add("Sec-WebSocket-Extensions", client_offer_header(deflate))
        if self._subprotocols:
            headers.add("Sec-WebSocket-Protocol", ", ".join(self._subprotocols))
        if user_agent is not None:
            headers.add("User-Agent", user_agent)
        for name, value in extra_headers:
            headers.add(name, value)
        self.request = Request("GET", resource, headers)
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_header_size)
        self._request_bytes: bytes | None = None
        self._received = 0
        self._rejection: Response | None = None
        self._body = bytearray()
        self._body_until_eof = False
        self.response: Response | None = None
        self.trailing_data = b""
        self.subprotocol: str | None = None
        self.deflate_extension: PerMessageDeflate | None = None

    def request_bytes(self) -> bytes:
        """Return the bytes of the opening handshake request (the same bytes every call).

        After calling this method, write the bytes, then feed the response to
        :meth:`receive_data`.

        Raises:
            ValueError: If a header or the resource holds characters HTTP does not allow
                (h11 checks them), e.g. a line break in an extra header's value.
        """
        if self._request_bytes is None:
            conn = self._h11
            try:
                event = h11.Request(
                    method=b"GET",
                    target=self.request.path.encode("latin-1"),
                    headers=_h11_headers(self.request.headers),
                )
            except h11.LocalProtocolError as exc:
                raise ValueError(f"invalid opening handshake request: {exc}") from exc
            self._request_bytes = conn.send(event) + conn.send(h11.EndOfMessage())
        return self._request_bytes

    def receive_data(self, data: bytes) -> Response | None:
        """Receive bytes from the network.

        After calling this method, if it returned the response, the handshake succeeded:
        start the connection with :attr:`deflate_extension` and feed it
        :attr:`trailing_data`. Data received after the response head (now or in later
        calls) accumulates in :attr:`trailing_data`.

        Args:
            data: The bytes read.

        Returns:
            The 101 response, once its head is complete and valid (exactly once); None
            before and after.

        Raises:
            InvalidStatus: The server answered with another status; raised once the body is
                complete (or ``max_body_size`` is reached), with the status, headers and body.
                A body without Content-Length or chunked coding ends with the connection:
                then it is raised at once, with the part of the body received so far.
            InvalidResponse: The 101 lacks the websocket Upgrade, the upgrade Connection
                option, or the right Sec-WebSocket-Accept.
            NegotiationError: The 101 selects a subprotocol or extension that was not
                offered, or more than one subprotocol.
            InvalidMessage: The bytes are not a valid HTTP/1.1 response.
            SecurityError: The head exceeds ``max_header_size`` or ``max_header_count``.
            InvalidState: :meth:`request_bytes` was not called first.
        """
        if self.response is not None:
            self.trailing_data += data
            return None
        if self._request_bytes is None:
            raise InvalidState("call request_bytes() before receive_data()")
        if not data:  # h11 would take b"" for the end of the stream
            return None
        self._h11.receive_data(data)
        self._received += len(data)
        return self._process()

    def receive_eof(self) -> None:
        """Receive the end of the stream from the network.

        After calling this method, close the connection.

        Raises:
            InvalidStatus: An error response's body was cut short by the end of the stream.
            InvalidMessage: The response head was not complete.
        """
        if self.response is not None:
            return
        if self._request_bytes is None:
            raise InvalidState("call request_bytes() before receive_eof()")
        self._h11.receive_data(b"")
        self._process()

    def _process(self) -> Response | None:
        conn = self._h11
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if exc.error_status_hint == HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE:
                    raise SecurityError(
                        f"response head is larger than {self.max_header_size} bytes"
                    ) from exc
                if self._rejection is not None:  # the error response's body was cut short
                    raise self._invalid_status() from exc
                raise InvalidMessage(f"invalid HTTP response: {exc}") from exc
            if event is h11.NEED_DATA:
                if self._rejection is not None and self._body_until_eof:
                    # A body delimited by the end of the connection: a server that keeps
                    # the connection open would make the client wait for its open timeout,
                    # so report the status now, with the part of the body already here.
                    raise self._invalid_status()
                return None
            if isinstance(event, h11.InformationalResponse):
                if event.status_code != HTTPStatus.SWITCHING_PROTOCOLS:
                    continue  # an interim response such as 100 Continue: the real one follows
                trailing = conn.trailing_data[0]
                response = self._response_from(event, len(trailing))
                self._validate(response)
                self.response = response
                self.trailing_data = trailing
                return response
            if isinstance(event, h11.Response):
                self._rejection = rejection = self._response_from(event, len(conn.trailing_data[0]))
                self._body_until_eof = (
                    "content-length" not in rejection.headers
                    and "transfer-encoding" not in rejection.headers
                )
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) >= self.max_body_size:
                    raise self._invalid_status()
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                raise self._invalid_status()
            else:  # pragma: no cover - h11 pauses only after a 101 or the end of a message
                raise InvalidMessage(f"unexpected HTTP event: {event!r}")

    def _response_from(
        self, event: h11.InformationalResponse | h11.Response, trailing_size: int
    ) -> Response:
        head_size = self._received - trailing_size
        if head_size > self.max_header_size:
            raise SecurityError(f"response head is too large ({head_size} bytes)")
        if len(event.headers) > self.max_header_count:
            raise SecurityError(f"too many header fields ({len(event.headers)})")
        return Response(
            event.status_code,
            event.reason.decode("latin-1"),
            _headers_from_h11(event.headers.raw_items()),
        )

    def _invalid_status(self) -> InvalidStatus:
        rejection = self._rejection
        assert rejection is not None
        body = bytes(self._body[: self.max_body_size])
        return InvalidStatus(rejection.status, rejection.headers.raw_items(), body)

    def _validate(self, response: Response) -> None:
        """Apply RFC 6455 section 4.1's checks to a 101 response, in the RFC's order."""
        headers = response.headers
        upgrade = headers._values("upgrade")
        if not upgrade:
            raise InvalidResponse("missing Upgrade header")
        if [item.lower() for item in _tokens(upgrade)] != ["websocket"]:
            raise InvalidResponse(
                f"Upgrade header must be websocket, got {_shown(', '.join(upgrade))}"
            )
        connection = headers._values("connection")
        if not connection:
            raise InvalidResponse("missing Connection header")
        if not _has_token(connection, "upgrade"):
            raise InvalidResponse(
                f"Connection header must include upgrade, got {_shown(', '.join(connection))}"
            )
        accepts = headers._values("sec-websocket-accept")
        if not accepts:
            raise InvalidResponse("missing Sec-WebSocket-Accept header")
        if len(accepts) > 1:
            raise InvalidResponse("more than one Sec-WebSocket-Accept header")
        if accepts[0] != accept_key(self.key):
            raise InvalidResponse(
                f"Sec-WebSocket-Accept does not match the key: {_shown(accepts[0])}"
            )

        deflate_extension = None
        for name, params in parse_extensions(headers._values("sec-websocket-extensions")):
            if name != EXTENSION_NAME or self._deflate is None:
                raise NegotiationError(f"server accepted extension {name}, which was not offered")
            if deflate_extension is not None:
                raise NegotiationError("server accepted permessage-deflate more than once")
            deflate_extension = client_accept(params, self._deflate)

        subprotocols = _subprotocols_of(headers._values("sec-websocket-protocol"))
        if len(subprotocols) > 1:
            raise NegotiationError(
                f"server chose more than one subprotocol: {_shown(', '.join(subprotocols))}"
            )
        if subprotocols and subprotocols[0] not in self._subprotocols:
            raise NegotiationError(
                f"server chose subprotocol {_shown(subprotocols[0])}, which was not offered"
            )
        # Set only once every check passed, so a refused response leaves no half-state.
        self.subprotocol = subprotocols[0] if subprotocols else None
        self.deflate_extension = deflate_extension
