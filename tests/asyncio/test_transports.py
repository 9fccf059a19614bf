"""Which transports connections get: aiofastnet's on asyncio's own loop, the loop's otherwise."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from fullduplex.asyncio import transports
from fullduplex.asyncio.client import connect
from fullduplex.asyncio.connection import WebSocket
from fullduplex.asyncio.server import serve


def _module_of(ws: WebSocket) -> str:
    return type(ws._transport).__module__


async def test_both_ends_use_aiofastnet_on_the_stock_loop_only() -> None:
    loop = asyncio.get_running_loop()
    stock = isinstance(loop, asyncio.SelectorEventLoop)
    # The suite runs on both loops, and once more with FULLDUPLEX_NO_EXTENSIONS, which turns it off.
    expected = stock and not os.environ.get("FULLDUPLEX_NO_EXTENSIONS")
    assert transports.fast_transports(loop) is expected
    opened: list[WebSocket] = []

    def keep(ws: WebSocket) -> None:
        opened.append(ws)
        ws.on_message = ws.send_nowait

    async with (
        serve(keep, "127.0.0.1", 0) as server,
        connect(f"ws://127.0.0.1:{server.port}") as client,
    ):
        await client.send("round trip")
        assert await client.recv() == "round trip"
        (server_side,) = opened
        for ws in (client, server_side):
            assert _module_of(ws).startswith("aiofastnet") is expected, _module_of(ws)


def test_the_environment_variable_turns_it_off() -> None:
    code = (
        "import asyncio\n"
        "from fullduplex.asyncio import transports\n"
        "print(transports.fast_transports(asyncio.new_event_loop()))\n"
    )
    for env, expected in (({}, "True"), ({"FULLDUPLEX_NO_AIOFASTNET": "1"}, "False")):
        clean = {k: v for k, v in os.environ.items() if not k.startswith("FULLDUPLEX_NO_")}
        result = subprocess.run(
            [sys.executable, "-c", code],
            env={**clean, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert result.stdout.strip() == expected, (env, result.stderr)
