"""The multiplayer snake game as pure logic: no sockets, no clock, no asyncio.

The server owns one :class:`Game` and calls :meth:`Game.tick` every ~100 ms; players are added
and removed at any time and steer with :meth:`Game.steer`. All randomness (spawn places, food,
colours) comes from the ``random.Random`` given to the game, so a seeded game is deterministic
and the tests can replay it exactly.

Rules, all applied at the same instant for every snake in one tick:

- every snake moves one cell in its direction; a steer that would reverse a snake onto itself
  is ignored (it is compared with the direction the snake last *moved*, so two quick presses
  within one tick cannot reverse it either);
- a snake whose new head is on food grows by one cell (its tail stays) and scores one point;
- a snake whose new head leaves the board, or lands on any snake's body after the move
  (its own or another's, heads included, so a head-on crash kills both) dies and respawns at
  a free place with the starting length and a score of zero; the food it was about to eat
  stays where it is;
- food is topped up to ``base_food + food_per_player * players`` pieces on free cells.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = [
    "COLORS",
    "Direction",
    "Game",
    "Point",
    "Snake",
]

Point = tuple[int, int]
"""A cell of the board as ``(x, y)``; ``(0, 0)`` is the top-left corner, y grows downwards."""

COLORS = (
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#bfef45",
    "#469990",
    "#9a6324",
    "#800000",
    "#000075",
)
"""The palette snakes are coloured from, in order of preference (least used first)."""


class Direction(Enum):
    """A heading on the board; the value is the name clients send (``{"dir": "up"}``)."""

    UP = "up"
    DOWN = "down"
    LEFT = "left"
    RIGHT = "right"

    @property
    def delta(self) -> Point:
        """The ``(dx, dy)`` of one step in this direction."""
        return _DELTAS[self]

    @property
    def opposite(self) -> Direction:
        """The direction that would reverse this one."""
        return _OPPOSITES[self]


_DELTAS: dict[Direction, Point] = {
    Direction.UP: (0, -1),
    Direction.DOWN: (0, 1),
    Direction.LEFT: (-1, 0),
    Direction.RIGHT: (1, 0),
}
_OPPOSITES: dict[Direction, Direction] = {
    Direction.UP: Direction.DOWN,
    Direction.DOWN: Direction.UP,
    Direction.LEFT: Direction.RIGHT,
    Direction.RIGHT: Direction.LEFT,
}


@dataclass(slots=True)
class Snake:
    """One player's snake.

    Attributes:
        id: The player's id (unique in the game).
        name: A display name.
        color: A CSS colour.
        body: The cells, head first; never empty.
        direction: The direction the snake moved last (or will move first).
        next_direction: The direction it will move on the next tick.
        score: Food eaten since the last respawn.
        deaths: How many times it died.
    """

    id: str
    name: str
    color: str
    body: deque[Point]
    direction: Direction
    next_direction: Direction
    score: int = 0
    deaths: int = 0

    @property
    def head(self) -> Point:
        """The cell of the head."""
        return self.body[0]

    def to_json(self) -> dict[str, Any]:
        """Return the snake as a JSON-ready dict (what clients draw)."""
        return {
            "id": self.id,
            "name": self.name,
            "color": self.color,
            "body": [list(cell) for cell in self.body],
            "direction": self.direction.value,
            "score": self.score,
            "deaths": self.deaths,
        }


@dataclass(slots=True)
class Game:
    """The board, the snakes and the food; advanced one step at a time by :meth:`tick`.

    Args:
        width: Board width in cells (at least ``start_length + 2``).
        height: Board height in cells (at least ``start_length + 2``).
        rng: The source of every random choice; seed it for a repeatable game.
        start_length: The length of a new or respawned snake.
        base_food: Food on the board with no players.
        food_per_player: Extra food per player.
    """

    width: int = 40
    height: int = 30
    rng: random.Random = field(default_factory=random.Random)
    start_length: int = 3
    base_food: int = 2
    food_per_player: int = 1
    snakes: dict[str, Snake] = field(default_factory=dict)
    food: list[Point] = field(default_factory=list)
    ticks: int = 0

    def __post_init__(self) -> None:
        if min(self.width, self.height) < self.start_length + 2:
            raise ValueError("the board is too small for a snake")

    # -- players ---------------------------------------------------------------------------

    def add_player(self, player_id: str, name: str = "") -> Snake:
        """Add a snake for a new player at a free place and return it.

        Raises:
            ValueError: If ``player_id`` is already playing.
        """
        if player_id in self.snakes:
            raise ValueError(f"player {player_id!r} is already in the game")
        body, direction = self._spawn_place(self._occupied() | set(self.food))
        snake = Snake(
            id=player_id,
            name=name or f"player {len(self.snakes) + 1}",
            color=self._free_color(),
            body=body,
            direction=direction,
            next_direction=direction,
        )
        self.snakes[player_id] = snake
        self._top_up_food()
        return snake

    def remove_player(self, player_id: str) -> None:
        """Take a player's snake off the board (nothing happens for an unknown id)."""
        self.snakes.pop(player_id, None)

    def steer(self, player_id: str, direction: Direction | str) -> bool:
        """Set the direction a snake takes on the next tick.

        Args:
            player_id: The player.
            direction: A :class:`Direction` or its name (``"up"``...).

        Returns:
            False if the steer was ignored: unknown player or direction, or a reversal of the
            direction the snake last moved in.
        """
        snake = self.snakes.get(player_id)
        if snake is None:
            return False
        if not isinstance(direction, Direction):
            try:
                direction = Direction(direction)
            except ValueError:
                return False
        if direction is snake.direction.opposite:
            return False
        snake.next_direction = direction
        return True

    # -- time ------------------------------------------------------------------------------

    def tick(self) -> list[str]:
        """Advance the game by one step (see the module docstring for the rules).

        Returns:
            The ids of the snakes that died (and respawned) in this step.
        """
        self.ticks += 1
        food = set(self.food)
        heads: dict[str, Point] = {}
        eats: dict[str, bool] = {}
        for snake in self.snakes.values():
            snake.direction = snake.next_direction
            dx, dy = snake.direction.delta
            x, y = snake.head
            heads[snake.id] = (x + dx, y + dy)
            eats[snake.id] = heads[snake.id] in food
        # Every body after the move, before collisions: a tail that moves away frees its cell
        # for whoever enters it in the same step; a growing snake's tail stays.
        bodies: dict[str, list[Point]] = {}
        for snake in self.snakes.values():
            keep = len(snake.body) if eats[snake.id] else len(snake.body) - 1
            bodies[snake.id] = [heads[snake.id], *list(snake.body)[:keep]]
        # How many bodies cover each cell: a head counts its own cell once, so a head on a cell
        # covered twice has hit something (itself, another body or another head).
        cover: dict[Point, int] = {}
        for body in bodies.values():
            for cell in body:
                cover[cell] = cover.get(cell, 0) + 1
        dead = [
            snake_id
            for snake_id, head in heads.items()
            if not self._inside(head) or cover[head] > 1
        ]
        for snake in self.snakes.values():
            if snake.id in dead:
                continue
            snake.body = deque(bodies[snake.id])
            if eats[snake.id]:
                snake.score += 1
                self.food.remove(snake.head)
        for snake_id in dead:
            self._respawn(self.snakes[snake_id])
        self._top_up_food()
        return dead

    # -- views -----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Return the whole game as one JSON-ready dict: what every client receives each tick."""
        return {
            "type": "state",
            "tick": self.ticks,
            "width": self.width,
            "height": self.height,
            "food": [list(cell) for cell in self.food],
            "snakes": [snake.to_json() for snake in self.snakes.values()],
        }

    # -- internals -------------------------------------------------------------------------

    def _inside(self, cell: Point) -> bool:
        x, y = cell
        return 0 <= x < self.width and 0 <= y < self.height

    def _occupied(self, exclude: str | None = None) -> set[Point]:
        return {
            cell for snake in self.snakes.values() if snake.id != exclude for cell in snake.body
        }

    def _free_color(self) -> str:
        used = [snake.color for snake in self.snakes.values()]
        least = min(used.count(color) for color in COLORS)
        return self.rng.choice([color for color in COLORS if used.count(color) == least])

    def _respawn(self, snake: Snake) -> None:
        body, direction = self._spawn_place(self._occupied(exclude=snake.id) | set(self.food))
        snake.body = body
        snake.direction = snake.next_direction = direction
        snake.score = 0
        snake.deaths += 1

    def _spawn_place(self, occupied: set[Point]) -> tuple[deque[Point], Direction]:
        """Find a straight run of ``start_length`` free cells with room ahead of the head."""
        length = self.start_length
        directions = list(Direction)

        def fits(head: Point, direction: Direction) -> deque[Point] | None:
            dx, dy = direction.delta
            # The body trails behind the head; the two cells ahead are free too, so a new
            # snake is not born one step from a wall or a body.
            cells = [(head[0] - i * dx, head[1] - i * dy) for i in range(-2, length)]
            if all(self._inside(c) and c not in occupied for c in cells):
                return deque(cells[2:])
            return None

        for _ in range(200):
            head = (self.rng.randrange(self.width), self.rng.randrange(self.height))
            direction = self.rng.choice(directions)
            body = fits(head, direction)
            if body is not None:
                return body, direction
        # A crowded board: scan every place in order rather than give up.
        for y in range(self.height):
            for x in range(self.width):
                for direction in directions:
                    body = fits((x, y), direction)
                    if body is not None:
                        return body, direction
        # Nowhere free at all: overlap (the next tick sorts it out) rather than fail a join.
        return deque((length - 1 - i, 0) for i in range(length)), Direction.RIGHT

    def _top_up_food(self) -> None:
        wanted = self.base_food + self.food_per_player * len(self.snakes)
        if len(self.food) >= wanted:
            return
        taken = self._occupied() | set(self.food)
        free = [
            (x, y) for y in range(self.height) for x in range(self.width) if (x, y) not in taken
        ]
        count = min(wanted - len(self.food), len(free))
        self.food.extend(self.rng.sample(free, count))
