"""The multiplayer snake server: one game, one game loop task, one broadcast per tick.

The server is authoritative: clients only send ``{"dir": "up"}`` (``down``, ``left``,
``right``) and draw what they are told. Every tick (100 ms) the loop advances the
:class:`~examples.snake.game.Game` and broadcasts its whole state as one JSON message to every
player. The broadcast encodes and frames that message once and writes the same bytes to every
connection, which is why the endpoint turns per-message compression off: with it, each player
would cost one compression per tick. A player that cannot keep up loses ticks (the default
"drop" overflow policy), which for a game is right: the next state replaces the last.

The loop task starts with the first player and stops when the last one leaves. What the server
sends::

    {"type": "welcome", "id": "...", "name": "...", "color": "#..."}   # once, on joining
    {"type": "state", "tick": 12, "width": 40, "height": 30, "food": [[x, y], ...],
     "snakes": [{"id", "name", "color", "body": [[x, y], ...], "direction", "score",
                 "deaths"}, ...]}

Run it alone with ``fullduplex serve examples.snake:app`` (page at ``/snake.html``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from pathlib import Path
from typing import Any

from fullduplex.app import App, CloseReason, Endpoint, JSONCodec, Session

from .._pages import mount_pages
from .game import Game

__all__ = ["PATH", "STATIC", "TICK", "SnakeServer", "app"]

PATH = "/snake"
"""Where the endpoint is served."""

TICK = 0.1
"""Seconds between two steps of the game."""

STATIC = Path(__file__).parent / "static"
"""The directory of the page, ``snake.html``."""

_MAX_NAME = 20
_logger = logging.getLogger("examples.snake")


class SnakeServer:
    """The game of one :class:`~fullduplex.app.App`: its endpoint, its players, its loop.

    Args:
        target: The app to register the endpoint on.
        path: Where the endpoint is served.
        tick: Seconds between two steps.
        game: The game to run (default: a 40x30 board with fresh randomness).
    """

    def __init__(
        self, target: App, path: str = PATH, *, tick: float = TICK, game: Game | None = None
    ) -> None:
        self.app = target
        self.path = path
        self.tick = tick
        self.game = game if game is not None else Game(rng=random.Random())
        self._task: asyncio.Task[None] | None = None
        self._register()

    @property
    def running(self) -> bool:
        """Whether the game loop task is running (it is while anybody plays)."""
        return self._task is not None and not self._task.done()

    def _register(self) -> None:
        server = self

        @self.app.endpoint(self.path, codec=JSONCodec(), compression=None)
        class Player(Endpoint):
            """One player: joins the game on open, steers on message, leaves on close."""

            async def on_open(self, session: Session) -> None:
                await server.join(session)

            async def on_message(self, session: Session, message: Any) -> None:
                if isinstance(message, dict):
                    server.game.steer(_player_id(session), str(message.get("dir", "")))

            async def on_close(self, session: Session, reason: CloseReason) -> None:
                await server.leave(session)

    async def join(self, session: Session) -> None:
        """Add the session's player to the game, greet it, and start the loop if needed."""
        names = session.query.get("name") or [""]
        snake = self.game.add_player(_player_id(session), names[0].strip()[:_MAX_NAME])
        await session.send(
            {"type": "welcome", "id": snake.id, "name": snake.name, "color": snake.color}
        )
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="snake-loop")

    async def leave(self, session: Session) -> None:
        """Take the session's player out; stop the loop when nobody is left."""
        self.game.remove_player(_player_id(session))
        if not self.game.snakes:
            await self.stop()

    async def stop(self) -> None:
        """Stop the game loop (it restarts with the next player)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            try:
                self.game.tick()
                # Looked up each tick: the App drops a group once it is empty.
                self.app.sessions(self.path).broadcast_nowait(self.game.state())
            except Exception:
                # One bad step must not end the game for everybody: log it, go on ticking.
                _logger.exception("snake game step failed")
            # Ticks are scheduled against the clock, not after each other, so a slow step
            # does not slow the game down; after a long stall it skips ahead instead of
            # racing to catch up.
            deadline = max(deadline + self.tick, loop.time())
            await asyncio.sleep(deadline - loop.time())


def _player_id(session: Session) -> str:
    return str(session.id)


app = App()
"""The snake endpoint and its page, on their own."""
game_server = SnakeServer(app)
mount_pages(app, STATIC)
