"""The picows server: ``ws_create_server`` and a ``WSListener`` per connection.

``python -m bench.picows_server [--host H] [--port 0] [--loop asyncio|aiofastnet|uvloop]
[--mode echo|broadcast]`` prints ``picows MODE server listening on ws://HOST:PORT`` first and
stops on SIGINT or SIGTERM. picows has no permessage-deflate, so ``--compression`` is refused.

picows hands over frames, not messages: each data frame is echoed (or broadcast) as a frame
of the same type and FIN bit, so a fragmented message goes back fragmented and whole. A close
frame is answered with the same code and the connection dropped, as picows' examples do
(picows leaves the close handshake to the listener).

Settings: ``max_frame_size`` 64 MiB (default 10 MiB). Everything else is picows' default:
no keepalive pings (``enable_auto_ping`` False), pings answered (``enable_auto_pong``),
handshake timeout 5 s, a 16 KiB initial read buffer, and aiofastnet's transports instead of
``loop.create_server`` (picows uses them when aiofastnet is installed, which it is, as a
dependency of picows), on every loop: ``--loop aiofastnet`` patches the loop all the same,
which changes nothing for picows (that row measures what the stock-loop row does).

Every connected transport is in one set, to close them all with 1001 on SIGTERM (picows'
server leaves its connections open when it closes). Broadcast: each frame is sent to each
transport of the set with ``WSTransport.send`` in a loop (picows has no broadcast helper).
"""

from __future__ import annotations

import asyncio

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

from bench.server_cli import MAX_MESSAGE_SIZE, Options, announce, parse_options, run

__all__ = ["BroadcastListener", "EchoListener", "main", "serve_until"]

TRANSPORTS: set[WSTransport] = set()


def _closing(transport: WSTransport, frame: WSFrame) -> bool:
    """Answer a close frame and drop the connection; tell whether ``frame`` was one."""
    if frame.msg_type is not WSMsgType.CLOSE:
        return False
    transport.send_close(frame.get_close_code(), frame.get_close_message())
    transport.disconnect()
    return True


class _Tracked(WSListener):
    """Keep every connected transport in TRANSPORTS, so that stopping can close them all."""

    def on_ws_connected(self, transport: WSTransport) -> None:
        """Join the set."""
        TRANSPORTS.add(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        """Leave the set."""
        TRANSPORTS.discard(transport)


class EchoListener(_Tracked):
    """Send every data frame back with its type and FIN bit."""

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """Echo a data frame; answer a close."""
        if not _closing(transport, frame):
            transport.send(frame.msg_type, frame.get_payload_as_memoryview(), frame.fin)


class BroadcastListener(_Tracked):
    """Send every data frame to every connected transport, this one included."""

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """Broadcast a data frame; answer a close."""
        if _closing(transport, frame):
            TRANSPORTS.discard(transport)
            return
        kind = frame.msg_type
        # A memoryview of picows' read buffer: valid during this callback, which is enough,
        # since send copies it into each transport's write path before returning.
        payload = frame.get_payload_as_memoryview()
        fin = frame.fin
        for other in tuple(TRANSPORTS):
            other.send(kind, payload, fin)


async def serve_until(options: Options, stop: asyncio.Future[None]) -> None:
    """Serve until ``stop`` is done."""
    listener = EchoListener if options.mode == "echo" else BroadcastListener

    def listener_factory(request: WSUpgradeRequest) -> WSListener:
        return listener()

    server = await ws_create_server(
        listener_factory, options.host, options.port, max_frame_size=MAX_MESSAGE_SIZE
    )
    try:
        announce("picows", options, server.sockets[0].getsockname()[1])
        await stop
    finally:
        # picows leaves open connections alone when its server closes: say goodbye (1001)
        # and drop them, as the other libraries do.
        server.close()
        for transport in tuple(TRANSPORTS):
            transport.send_close(WSCloseCode.GOING_AWAY)
            transport.disconnect()
        await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve; return the exit status."""
    options = parse_options("python -m bench.picows_server", argv, compression=False)
    return run(serve_until, options)


if __name__ == "__main__":
    raise SystemExit(main())
