"""The App the abuse tests attack, run in its own process: ``python -m tests.abuse.server``.

``fullduplex echo`` cannot shorten its timeouts, and the slowloris and keepalive cases would
take the defaults' 10 to 40 seconds each; this runs the same kind of server (an App on the
asyncio server, permessage-deflate accepted) with the timeouts and limits given on the command
line. Endpoints:

* ``/`` echoes every message (the canary's endpoint, and the offenders' where they need one);
* ``/flood`` sends 16 KiB messages without waiting (``send_nowait``, as a broadcast does) for
  as long as the overflow policy lets it: a client that never reads is closed with 1013 once
  its buffer holds ``--max-buffered`` bytes.

The first line of standard output is ``listening on ws://127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from fullduplex.app import App, Endpoint, Session
from fullduplex.asyncio.server import Server
from fullduplex.cli_connect import byte_count

FLOOD_MESSAGE = 16 * 1024


def _timeout(value: str) -> float | None:
    return None if value == "none" else float(value)


def build_app(max_message_size: int | None, max_buffered: int) -> App:
    """The App: ``/`` echoes, ``/flood`` floods under the "close" overflow policy."""
    app = App()

    @app.on_message("/", max_message_size=max_message_size)
    async def echo(session: Session, message: Any) -> Any:
        return message

    @app.endpoint("/flood", max_buffered=max_buffered, overflow="close")
    class Flood(Endpoint):
        async def on_open(self, session: Session) -> None:
            payload = b"f" * FLOOD_MESSAGE
            # Bounded: the overflow policy ends it once max_buffered is reached; the count
            # only guards against a policy that would never trigger.
            for _ in range(100_000):
                if not session.send_nowait(payload):
                    return
                await asyncio.sleep(0)

    return app


def main() -> None:
    """Parse the options, serve until killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--open-timeout", type=_timeout, default="10")
    parser.add_argument("--ping-interval", type=_timeout, default="20")
    parser.add_argument("--ping-timeout", type=_timeout, default="20")
    parser.add_argument("--max-message-size", type=byte_count, default=2**20)
    parser.add_argument("--max-buffered", type=int, default=256 * 1024)
    args = parser.parse_args()
    app = build_app(args.max_message_size, args.max_buffered)

    def announce(server: Server) -> None:
        print(f"listening on ws://127.0.0.1:{server.port}", flush=True)

    app.run(
        "127.0.0.1",
        0,
        on_listening=announce,
        compression="deflate",
        open_timeout=args.open_timeout,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        max_message_size=args.max_message_size,
    )


if __name__ == "__main__":
    main()
