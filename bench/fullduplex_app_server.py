"""The fullduplex server on its endpoint API: ``fullduplex.App`` and one endpoint.

``python -m bench.fullduplex_app_server [--host H] [--port 0] [--loop asyncio|aiofastnet|uvloop]
[--mode echo|broadcast] [--compression]`` prints ``fullduplex-app MODE server listening on
ws://HOST:PORT`` first and stops on SIGINT or SIGTERM (closing every session with 1001).

One function endpoint at ``/{rest:path}`` (every path) with the default PassthroughCodec, so
text stays text and binary stays binary. Echo: the function returns the message, which the
framework sends back. Broadcast: ``app.sessions(path).broadcast_nowait(message)``, the app's
frame-once broadcast to every open session of the endpoint.

Settings: the endpoint's ``max_message_size`` 64 MiB; ``compression`` "deflate" with
``--compression``, None without (server and endpoint). Everything else is the default: no
idle timeout; ``max_buffered`` 1 MiB with the "drop" overflow policy for broadcasts; the
server's keepalive ping every 20 s, closing after 20 s without a pong; receive queue of 16
messages; write limit 32 KiB; open and close timeouts 10 s.
"""

from __future__ import annotations

import asyncio

from bench.server_cli import MAX_MESSAGE_SIZE, Options, announce, parse_options, run
from fullduplex.app import App, Session

__all__ = ["PATH", "main", "make_app", "serve_until"]

PATH = "/{rest:path}"


def make_app(mode: str, compression: bool) -> App:
    """Return the app with its one endpoint for ``mode`` ("echo" or "broadcast")."""
    app = App()
    config = {
        "max_message_size": MAX_MESSAGE_SIZE,
        "compression": "deflate" if compression else None,
    }
    if mode == "echo":

        @app.on_message(PATH, **config)
        def echo(session: Session, message: str | bytes) -> str | bytes:
            return message

    else:

        def broadcast(session: Session, message: str | bytes) -> None:
            everyone.broadcast_nowait(message)

        app.on_message(PATH, **config)(broadcast)
        # The group of every open session of the endpoint; it exists once the endpoint does.
        everyone = app.sessions(PATH)
    return app


async def serve_until(options: Options, stop: asyncio.Future[None]) -> None:
    """Serve until ``stop`` is done."""
    app = make_app(options.mode, options.compression)
    compression = "deflate" if options.compression else None
    async with app.serve(options.host, options.port, compression=compression) as server:
        announce("fullduplex-app", options, server.port)
        await stop


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve; return the exit status."""
    return run(serve_until, parse_options("python -m bench.fullduplex_app_server", argv))


if __name__ == "__main__":
    raise SystemExit(main())
