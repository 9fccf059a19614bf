"""How each library's server process is started, and the URL its receivers connect to."""

from __future__ import annotations

import sys
from dataclasses import dataclass

__all__ = ["FLOORS", "LIBRARIES", "Library"]


@dataclass(frozen=True)
class Library:
    """One contestant: its server command (``{port}`` and ``{redis}`` filled in), the
    receivers' kind and URL path, extra environment."""

    name: str
    command: tuple[str, ...]
    path: str
    kind: str = "ws"
    env: tuple[tuple[str, str], ...] = ()
    describe: str = ""

    def server_command(self, port: int, redis_url: str) -> list[str]:
        """The command line of one server process on ``port``."""
        return [part.format(port=port, redis=redis_url) for part in self.command]

    def server_env(self, redis_url: str) -> dict[str, str]:
        """The extra environment of a server process."""
        return {key: value.format(redis=redis_url) for key, value in self.env}

    def url(self, port: int) -> str:
        """The URL a receiver connects to."""
        return f"ws://127.0.0.1:{port}{self.path}"


_PY = sys.executable
_UVICORN = (
    _PY,
    "-m",
    "uvicorn",
    "bench.broadcast.channels_app:application",
    "--host",
    "127.0.0.1",
    "--port",
    "{port}",
    "--loop",
    "asyncio",
    "--lifespan",
    "off",
    "--log-level",
    "warning",
    "--no-access-log",
)

#: Every library, in table order; the first is what ratios compare with.
LIBRARIES: dict[str, Library] = {
    lib.name: lib
    for lib in (
        Library(
            "fullduplex",
            (
                _PY,
                "-m",
                "fullduplex",
                "serve",
                "bench.broadcast.fd_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                "{port}",
                "--broker",
                "{redis}",
            ),
            "/room",
            describe="fullduplex App, RedisBroker; stock asyncio loop",
        ),
        Library(
            "socketio",
            (_PY, "-m", "bench.broadcast.sio_server", "--port", "{port}", "--redis", "{redis}"),
            "/socket.io/?EIO=4&transport=websocket",
            kind="sio",
            describe="python-socketio AsyncServer + AsyncRedisManager on aiohttp; stock loop",
        ),
        Library(
            "channels-core",
            _UVICORN,
            "/room",
            env=(("BENCH_REDIS_URL", "{redis}"), ("BENCH_CHANNELS_LAYER", "core")),
            describe="Channels consumer, channels_redis RedisChannelLayer, uvicorn (asyncio)",
        ),
        Library(
            "channels-pubsub",
            _UVICORN,
            "/room",
            env=(("BENCH_REDIS_URL", "{redis}"), ("BENCH_CHANNELS_LAYER", "pubsub")),
            describe="Channels consumer, RedisPubSubChannelLayer, uvicorn (asyncio)",
        ),
        Library(
            "raw",
            (_PY, "-m", "bench.broadcast.raw_server", "--port", "{port}", "--redis", "{redis}"),
            "/",
            describe="the floor: PUBLISH, redis-py pub/sub, one transport.write per member",
        ),
        Library(
            "raw-batched",
            (
                *(_PY, "-m", "bench.broadcast.raw_server"),
                *("--port", "{port}", "--redis", "{redis}", "--batch"),
            ),
            "/",
            describe="raw, the messages of one read in one transport.write per member",
        ),
    )
}

#: Rows that are no contestant (left out of the default run's ratios' "best competitor").
FLOORS = ("raw", "raw-batched")
