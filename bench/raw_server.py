"""The raw asyncio TCP echo: the ceiling of any asyncio server on this machine.

``python -m bench.raw_server [--host H] [--port 0] [--loop asyncio|aiofastnet|uvloop]`` prints
``raw-tcp echo server listening on tcp://HOST:PORT`` first and stops on SIGINT or SIGTERM. No
WebSocket at all: an ``asyncio.Protocol`` whose ``data_received`` writes the bytes back, so it
has neither broadcast nor compression (both are refused), and no keepalive. The load generator
sends the frames it would send to a WebSocket server and waits for as many bytes back.
"""

from __future__ import annotations

import asyncio
from typing import cast

from bench.server_cli import Options, announce, parse_options, run

__all__ = ["Echo", "main", "serve_until"]


class Echo(asyncio.Protocol):
    """Write every byte received back, at once."""

    __slots__ = ("transport",)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        # A cast, not an isinstance check: uvloop's and aiofastnet's transports do not derive
        # from asyncio's.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        """Echo."""
        self.transport.write(data)


async def serve_until(options: Options, stop: asyncio.Future[None]) -> None:
    """Serve until ``stop`` is done."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, options.host, options.port)
    async with server:
        announce("raw-tcp", options, server.sockets[0].getsockname()[1], scheme="tcp")
        # Open connections are left to the process's exit, which closes their sockets.
        await stop


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve; return the exit status."""
    options = parse_options("python -m bench.raw_server", argv, compression=False, broadcast=False)
    return run(serve_until, options)


if __name__ == "__main__":
    raise SystemExit(main())
