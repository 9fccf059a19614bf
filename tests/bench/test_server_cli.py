"""bench/server_cli.py: the servers' shared command line (``--loop``) and the loop ``run`` makes."""

from __future__ import annotations

import asyncio

import pytest
from bench.server_cli import LOOPS, Options, parse_options, run

__all__: list[str] = []


def test_loop_defaults_to_asyncio() -> None:
    assert parse_options("test", []).loop == "asyncio"


@pytest.mark.parametrize("loop", LOOPS)
def test_loop_option(loop: str) -> None:
    assert parse_options("test", ["--loop", loop]).loop == loop


@pytest.mark.parametrize("argv", [["--loop", "trio"], ["--loop"], ["--loop", "uvloop,asyncio"]])
def test_bad_loop_is_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_options("test", argv)
    assert exc.value.code == 2
    assert "--loop" in capsys.readouterr().err


def _options(loop: str) -> Options:
    return Options("127.0.0.1", 0, loop, "echo", False)


@pytest.mark.parametrize("loop", LOOPS)
def test_run_patches_the_loop_for_aiofastnet_only(loop: str) -> None:
    """Under ``run``, ``loop.create_server`` gives aiofastnet's transports with "aiofastnet"
    (on asyncio's own loop), asyncio's with "asyncio" and uvloop's with "uvloop"."""
    seen: dict[str, object] = {}

    async def serve(options: Options, stop: asyncio.Future[None]) -> None:
        running = asyncio.get_running_loop()
        seen["loop"] = type(running).__module__.split(".")[0]
        seen["patched"] = bool(getattr(running, "_aiofastnet_patched_methods", None))
        accepted: asyncio.Future[asyncio.BaseTransport] = running.create_future()

        class Accept(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                accepted.set_result(transport)

        server = await running.create_server(Accept, options.host, options.port)
        async with server:
            port = server.sockets[0].getsockname()[1]
            client, _ = await running.create_connection(asyncio.Protocol, options.host, port)
            transport = await asyncio.wait_for(accepted, 10)
            seen["server transport"] = type(transport).__module__.split(".")[0]
            seen["client transport"] = type(client).__module__.split(".")[0]
            client.close()
            transport.close()

    assert run(serve, _options(loop)) == 0
    package = "uvloop" if loop == "uvloop" else "asyncio"
    transports = "aiofastnet" if loop == "aiofastnet" else package
    assert seen == {
        "loop": package,
        "patched": loop == "aiofastnet",
        "server transport": transports,
        "client transport": transports,
    }


def test_run_refuses_an_unknown_loop() -> None:
    async def serve(options: Options, stop: asyncio.Future[None]) -> None:
        raise AssertionError("not reached")

    with pytest.raises(ValueError, match="trio"):
        run(serve, _options("trio"))
