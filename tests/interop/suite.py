"""The interop test suite, written once and run for several (client, server) pairs.

A test module subclasses :class:`InteropSuite` in a ``Test...`` class and defines a ``pair``
fixture parametrized with :class:`Pair` values; every test then runs for each pair. Control
pairs (two third-party peers, no fullduplex) run the same tests to prove that the peers and the
tests are right, so a failure on a fullduplex pair points at fullduplex.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

import pytest

from tests.helpers import echo_server_process
from tests.interop.peers import (
    ClientResult,
    Deflate,
    RunningServer,
    extension_params,
    node_server,
    run_client,
    start_server,
)

__all__ = ["SIZES", "Exchange", "InteropSuite", "Pair", "SubprocessServers"]

# Frame-length boundaries of RFC 6455 section 5.2 (7-bit, 16-bit, 64-bit lengths), and big.
SIZES = [0, 1, 125, 126, 65535, 65536, 1024 * 1024, 16 * 1024 * 1024]
NON_ASCII = "héllo wörld ✓ — 中文 — 🚀𝄞 — Ω≈ç√∫"
DEFLATE = "permessage-deflate"
ALL_PARAMS = {
    "server_no_context_takeover": True,
    "client_no_context_takeover": True,
    "server_max_window_bits": 9,
    "client_max_window_bits": 9,
}
# Compressible and repetitive, like the JSON most applications send.
JSON_TEXT = "".join(
    f'{{"id": {i}, "name": "user-{i % 37}", "tags": ["a", "b", "ç"], "ok": true}}\n'
    for i in range(600)
)


def _other(side: str) -> str:
    return "server" if side == "client" else "client"


@dataclass(frozen=True)
class Pair:
    """A client implementation and a server implementation to run together."""

    client: str
    server: str

    @property
    def subject(self) -> str:
        """The side under test, "client" or "server": fullduplex's, or in a control pair, the
        side websockets takes in fullduplex's place."""
        for stand_in in ("fullduplex", "websockets"):
            if self.server == stand_in:
                return "server"
            if self.client == stand_in:
                return "client"
        raise ValueError(f"no side under test in {self}")

    @property
    def echo_server(self) -> str:
        """The server for plain echo tests: fullduplex's CLI echo server stands for fullduplex."""
        return "fullduplex-cli" if self.server == "fullduplex" else self.server

    def param(self, *, control: bool = False) -> Any:
        """This pair as a pytest param with a readable id."""
        prefix = "control-" if control else ""
        return pytest.param(self, id=f"{prefix}{self.client}-client-{self.server}-server")


class SubprocessServers:
    """Subprocess servers (node, fullduplex-cli), started on first use and shared by a module:
    each test uses its own request path, and the events are logged per path."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._servers: dict[tuple[str, str, tuple[str, ...]], RunningServer] = {}

    def get(self, name: str, deflate: Deflate, protocols: Sequence[str]) -> RunningServer:
        """Return the running server for these options, starting it if needed."""
        key = (name, json.dumps(deflate, sort_keys=True), tuple(protocols))
        if key not in self._servers:
            if name == "node":
                server = self._stack.enter_context(node_server(deflate, protocols))
            else:
                args = [] if deflate else ["--no-compression"]
                url = self._stack.enter_context(echo_server_process(*args))
                server = RunningServer(name, url, commands=False)
            self._servers[key] = server
        return self._servers[key]

    def close(self) -> None:
        """Stop every server started."""
        self._stack.close()

    @contextlib.asynccontextmanager
    async def start(
        self, name: str, *, deflate: Deflate = True, protocols: Sequence[str] = ()
    ) -> AsyncIterator[RunningServer]:
        """Yield server ``name``: a shared subprocess one, or a fresh in-process one."""
        if name in ("node", "fullduplex-cli"):
            yield self.get(name, deflate, protocols)
        else:
            async with start_server(name, deflate=deflate, protocols=protocols) as server:
                yield server


@dataclass
class Exchange:
    """What happened in one run: the client's result and the server's view (None for the CLI
    echo server, which logs no events)."""

    result: ClientResult
    opened: dict[str, Any] | None
    closed: dict[str, Any] | None
    events: list[dict[str, Any]]

    @property
    def results(self) -> list[dict[str, Any]]:
        """The client's per-step results."""
        steps: list[dict[str, Any]] = self.result["results"]
        return steps


async def exchange(
    pair: Pair,
    servers: SubprocessServers,
    scenario: list[dict[str, Any]],
    *,
    server: str | None = None,
    server_deflate: Deflate = True,
    client_deflate: Deflate = True,
    server_protocols: Sequence[str] = (),
    client_protocols: Sequence[str] = (),
) -> Exchange:
    """Run ``scenario`` with ``pair.client`` against a server (``pair.server`` by default).

    Asserts that the client finished without error and, for servers that log events, that both
    sides agree on the negotiated subprotocol and extensions.
    """
    async with servers.start(
        server or pair.server, deflate=server_deflate, protocols=server_protocols
    ) as running:
        path = f"/interop-{uuid.uuid4().hex[:12]}"
        result = await run_client(
            pair.client,
            running.url + path,
            scenario,
            deflate=client_deflate,
            protocols=client_protocols,
        )
        assert result.get("error") is None, f"{pair.client} client failed:\n{result['error']}"
        if not running.commands:
            return Exchange(result, None, None, [])
        opened = await running.events.wait(path, "open")
        closed = await running.events.wait(path, "close")
        events = running.events.for_path(path)
    assert (opened["protocol"], opened["extensions"]) == (
        result["protocol"],
        result["extensions"],
    ), "client and server disagree on the negotiated subprotocol or extensions"
    return Exchange(result, opened, closed, events)


class InteropSuite:
    """The tests. Subclass as ``Test...`` in a module that defines a ``pair`` fixture."""

    # ---- RFC 6455 section 5.2: payload lengths, text and binary; RFC 7692 compression ----

    @pytest.mark.parametrize("deflate", [True, False], ids=["deflate", "no-deflate"])
    @pytest.mark.parametrize("size", SIZES)
    @pytest.mark.parametrize("kind", ["text", "binary"])
    async def test_echo_sizes(
        self, pair: Pair, servers: SubprocessServers, kind: str, size: int, deflate: bool
    ) -> None:
        """A message of each frame-length class comes back intact, compressed or not."""
        ex = await exchange(
            pair,
            servers,
            [{"op": "echo", "type": kind, "size": size}],
            server=pair.echo_server,
            server_deflate=deflate,
            client_deflate=deflate,
        )
        assert ex.results == [{"ok": True, "type": kind, "length": size, "sent_length": size}]
        assert ex.result["extensions"] == (DEFLATE if deflate else "")

    @pytest.mark.parametrize(
        ("client_deflate", "server_deflate"),
        [(True, True), (True, False), (False, True), (False, False)],
        ids=["both", "client-only", "server-only", "neither"],
    )
    async def test_rfc7692_negotiation(
        self, pair: Pair, servers: SubprocessServers, client_deflate: bool, server_deflate: bool
    ) -> None:
        """permessage-deflate is used exactly when both sides want it, and messages pass."""
        text = "compressible " * 5000
        ex = await exchange(
            pair,
            servers,
            [{"op": "send", "text": text}, {"op": "recv"}],
            client_deflate=client_deflate,
            server_deflate=server_deflate,
        )
        expected = DEFLATE if client_deflate and server_deflate else ""
        assert ex.result["extensions"] == expected
        header = ex.result["response_extensions"] or ""
        assert header.split(";")[0].strip() == expected
        assert ex.results[1]["type"] == "text"
        assert ex.results[1]["length"] == len(text)

    @pytest.mark.parametrize(
        ("side", "params"),
        [
            ("peer", {"server_no_context_takeover": True}),
            ("peer", {"client_no_context_takeover": True}),
            ("peer", {"server_max_window_bits": 10}),
            ("peer", {"client_max_window_bits": 10}),
            ("peer", ALL_PARAMS),
            ("subject", ALL_PARAMS),
        ],
        ids=[
            "peer-server_no_context_takeover",
            "peer-client_no_context_takeover",
            "peer-server_max_window_bits",
            "peer-client_max_window_bits",
            "peer-all",
            "subject-all",
        ],
    )
    async def test_rfc7692_parameters(
        self, pair: Pair, servers: SubprocessServers, side: str, params: dict[str, Any]
    ) -> None:
        """Section 7.1: the parameters one side asks for (client) or imposes (server) are in
        the response and obeyed: repeated messages whose back-references cross message
        boundaries (context takeover) or reach 4 KiB back (window bits) still decompress.

        ``side`` says which side gets ``params``: the third-party peer, or the subject
        (fullduplex, or websockets in a control pair); the other side uses its defaults.
        """
        configured = pair.subject if side == "subject" else _other(pair.subject)
        block = os.urandom(4096) * 25
        steps: list[dict[str, Any]] = []
        for _ in range(3):
            steps += [{"op": "send", "text": JSON_TEXT}, {"op": "recv"}]
        for _ in range(2):
            steps += [{"op": "send", "hex": block.hex()}, {"op": "recv"}]
        ex = await exchange(
            pair,
            servers,
            steps,
            client_deflate=params if configured == "client" else True,
            server_deflate=params if configured == "server" else True,
        )
        assert ex.result["extensions"] == DEFLATE
        for reply in ex.results[1:6:2]:
            assert (reply["type"], reply["sha256"]) == (
                "text",
                sha256(JSON_TEXT.encode()).hexdigest(),
            )
        for reply in ex.results[7::2]:
            assert (reply["type"], reply["sha256"]) == ("binary", sha256(block).hexdigest())
        # What the response must say (RFC 7692 7.1.1 and 7.1.2): a server states what it
        # imposes; a server accepting a client's server_* request must grant it.
        response = extension_params(ex.result["response_extensions"])
        required = (
            params
            if configured == "server"
            else {k: v for k, v in params.items() if k.startswith("server_")}
        )
        for name, value in required.items():
            assert name in response, f"{name} missing from {ex.result['response_extensions']}"
            if value is not True:
                assert int(response[name]) <= value

    async def test_non_ascii_text(self, pair: Pair, servers: SubprocessServers) -> None:
        """Multi-byte UTF-8 (2, 3 and 4 bytes per character) survives both directions."""
        ex = await exchange(pair, servers, [{"op": "send", "text": NON_ASCII}, {"op": "recv"}])
        assert ex.results[1]["type"] == "text"
        assert ex.results[1]["text"] == NON_ASCII
        assert ex.results[1]["length"] == len(NON_ASCII.encode())

    # ---- RFC 6455 section 5.4: fragmentation ----

    @pytest.mark.parametrize("deflate", [True, False], ids=["deflate", "no-deflate"])
    async def test_fragmented_text_to_server(
        self, pair: Pair, servers: SubprocessServers, deflate: bool
    ) -> None:
        """A text message sent in fragments (one splitting nothing special) is one message."""
        fragments = ["fräg", "mented ", "✓ message", "🚀"]
        ex = await exchange(
            pair,
            servers,
            [{"op": "send", "type": "text", "fragments": fragments}, {"op": "recv"}],
            client_deflate=deflate,
            server_deflate=deflate,
        )
        assert ex.results[1]["type"] == "text"
        assert ex.results[1]["text"] == "".join(fragments)

    @pytest.mark.parametrize("deflate", [True, False], ids=["deflate", "no-deflate"])
    async def test_fragmented_binary_to_server(
        self, pair: Pair, servers: SubprocessServers, deflate: bool
    ) -> None:
        """A binary message in fragments, the last one empty, is one message."""
        fragments = ["00010203", "ff" * 300, ""]
        ex = await exchange(
            pair,
            servers,
            [{"op": "send", "type": "binary", "fragments": fragments}, {"op": "recv"}],
            client_deflate=deflate,
            server_deflate=deflate,
        )
        assert ex.results[1]["type"] == "binary"
        assert ex.results[1]["hex"] == "".join(fragments)

    @pytest.mark.parametrize("deflate", [True, False], ids=["deflate", "no-deflate"])
    async def test_fragmented_text_from_server(
        self, pair: Pair, servers: SubprocessServers, deflate: bool
    ) -> None:
        """The client reassembles a text message the server sends in three fragments."""
        text = "héllo wörld, in three fragments 🚀!"
        ex = await exchange(
            pair,
            servers,
            [{"op": "send", "text": f"fragment:3:{text}"}, {"op": "recv"}],
            client_deflate=deflate,
            server_deflate=deflate,
        )
        assert ex.results[1]["type"] == "text"
        assert ex.results[1]["text"] == text

    # ---- RFC 6455 section 5.5.1 and 7.4: closing, codes and reasons ----

    async def test_normal_close(self, pair: Pair, servers: SubprocessServers) -> None:
        """A client that closes normally (1000) completes the handshake on both sides."""
        ex = await exchange(pair, servers, [{"op": "send", "text": "x"}, {"op": "recv"}])
        assert ex.result["close"] is not None
        assert ex.result["close"]["code"] == 1000
        assert ex.closed is not None
        assert ex.closed["code"] == 1000

    async def test_close_code_from_client(self, pair: Pair, servers: SubprocessServers) -> None:
        """The server sees the client's close code and reason; the client sees the echoed code."""
        ex = await exchange(pair, servers, [{"op": "close", "code": 4001, "reason": "bye"}])
        assert ex.closed is not None
        assert (ex.closed["code"], ex.closed["reason"]) == (4001, "bye")
        # RFC 6455 5.5.1: the reply "typically echos the status code it received".
        assert ex.results[0]["code"] == 4001

    async def test_close_code_from_server(self, pair: Pair, servers: SubprocessServers) -> None:
        """The client sees the server's close code and reason; the server sees the echoed code."""
        ex = await exchange(
            pair, servers, [{"op": "send", "text": "close:4002:later"}, {"op": "wait_close"}]
        )
        closed = ex.results[1]
        if "exception" in closed:  # the Python clients raise on recv()
            assert closed["exception"] == "ConnectionClosedError"
            assert (closed["exception_code"], closed["exception_reason"]) == (4002, "later")
        # For the Python clients: ws.close_code / close_reason once recv() has raised.
        assert (closed["code"], closed["reason"]) == (4002, "later"), closed
        assert ex.closed is not None
        assert ex.closed["code"] == 4002

    # ---- RFC 6455 section 5.5.2 and 5.5.3: ping and pong ----

    async def test_ping_from_client(self, pair: Pair, servers: SubprocessServers) -> None:
        """The server answers the client's ping with a pong carrying the same data."""
        ex = await exchange(pair, servers, [{"op": "ping", "data": "abc"}])
        assert ex.results == [{"pong": "abc"}]
        if pair.server == "node":  # only Node's server reports pings
            assert [e["data"] for e in ex.events if e["event"] == "ping"] == ["abc"]

    async def test_ping_from_server(self, pair: Pair, servers: SubprocessServers) -> None:
        """The client answers the server's ping with a pong carrying the same data."""
        ex = await exchange(pair, servers, [{"op": "send", "text": "ping:xyz"}, {"op": "recv"}])
        assert ex.results[1]["text"] == "pong:xyz"
        if ex.result["pings_received"] is not None:  # only Node's client reports pings
            assert ex.result["pings_received"] == ["xyz"]

    # ---- RFC 6455 section 1.9 and 4.2.2: subprotocols ----

    async def test_subprotocol(self, pair: Pair, servers: SubprocessServers) -> None:
        """The one subprotocol both sides support is selected, on both sides."""
        ex = await exchange(
            pair,
            servers,
            [{"op": "send", "text": "hi"}, {"op": "recv"}],
            server_protocols=["chat", "superchat.v2"],
            client_protocols=["unknown.example", "chat"],
        )
        assert ex.result["protocol"] == "chat"
        assert ex.opened is not None
        assert ex.opened["protocol"] == "chat"
        assert ex.results[1]["text"] == "hi"

    async def test_no_subprotocol(self, pair: Pair, servers: SubprocessServers) -> None:
        """Neither side asks for a subprotocol: none is selected."""
        ex = await exchange(pair, servers, [{"op": "send", "text": "hi"}, {"op": "recv"}])
        assert ex.result["protocol"] == ""
        assert ex.results[1]["text"] == "hi"
