"""The GreetingService client of the seed documents, in Python: greet the echo server, print the
reply, exit.

::

    python examples/greeting_client.py                          # ws://127.0.0.1:8000/echo
    python examples/greeting_client.py ws://127.0.0.1:9001/echo --name Ada

Start the server first (``make demo`` or ``python -m fullduplex demo``). The reply is printed as
one line on standard output and the exit status is 0; if the server cannot be reached or does
not answer within ``--timeout`` seconds, the reason goes to standard error and the status is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import fullduplex

__all__ = ["DEFAULT_URL", "GreetingService", "SimpleGreetingService", "greet", "main"]

DEFAULT_URL = "ws://127.0.0.1:8000/echo"
"""The echo endpoint of the demo on its default port."""


class GreetingService:
    """Makes the greeting to send (the seed's ``GreetingService`` interface)."""

    def get_greeting(self) -> str:
        """Return the greeting."""
        raise NotImplementedError


class SimpleGreetingService(GreetingService):
    """Greets someone by name, ``Hello world!`` by default (the seed's implementation)."""

    def __init__(self, name: str = "world") -> None:
        self.name = name

    def get_greeting(self) -> str:
        """Return ``Hello {name}!``."""
        return f"Hello {self.name}!"


async def greet(url: str, service: GreetingService, timeout: float) -> str:
    """Send the service's greeting to ``url`` and return the first reply.

    Args:
        url: A ws:// or wss:// URL, e.g. the demo's ``/echo`` endpoint.
        service: Where the greeting comes from.
        timeout: Seconds for the whole exchange, connection included.

    Returns:
        The reply, decoded as UTF-8 if the server answered with a binary message.

    Raises:
        TimeoutError: If the exchange took longer than ``timeout``.
        OSError: If the server cannot be reached.
        fullduplex.WebSocketError: If the handshake fails or the connection breaks.
    """
    async with asyncio.timeout(timeout), fullduplex.connect(url) as ws:
        await ws.send(service.get_greeting())
        reply = await ws.recv()
    return reply if isinstance(reply, str) else reply.decode("utf-8", errors="replace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the client; return the exit status (0 after printing the reply, 1 on failure)."""
    parser = argparse.ArgumentParser(description="Send a greeting over WebSocket, print the reply.")
    parser.add_argument("url", nargs="?", default=DEFAULT_URL, help=f"default {DEFAULT_URL}")
    parser.add_argument("--name", default="world", help="who to greet (default: world)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    args = parser.parse_args(argv)
    try:
        reply = asyncio.run(greet(args.url, SimpleGreetingService(args.name), args.timeout))
    except (OSError, TimeoutError, fullduplex.WebSocketError) as exc:
        print(f"greeting_client: {args.url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(reply, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
