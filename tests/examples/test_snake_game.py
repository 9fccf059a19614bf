"""Tests for examples/snake/game.py: the snake rules, with no sockets and seeded randomness."""

from __future__ import annotations

import json
import random
from collections import deque

import pytest
from examples.snake.game import COLORS, Direction, Game, Point, Snake


def make_game(seed: int = 1, width: int = 20, height: int = 15) -> Game:
    """A game with no automatic food, so each test decides where food lies."""
    return Game(width=width, height=height, rng=random.Random(seed), base_food=0, food_per_player=0)


def place(game: Game, player_id: str, body: list[Point], direction: Direction) -> Snake:
    """Add a player and put its snake exactly at ``body`` (head first), heading ``direction``."""
    snake = game.add_player(player_id) if player_id not in game.snakes else game.snakes[player_id]
    snake.body = deque(body)
    snake.direction = snake.next_direction = direction
    return snake


class TestMovement:
    def test_moves_one_cell_per_tick_in_its_direction(self) -> None:
        game = make_game()
        snake = place(game, "a", [(5, 5), (4, 5), (3, 5)], Direction.RIGHT)
        assert game.tick() == []
        assert list(snake.body) == [(6, 5), (5, 5), (4, 5)]
        assert game.tick() == []
        assert list(snake.body) == [(7, 5), (6, 5), (5, 5)]

    @pytest.mark.parametrize(
        ("direction", "head"),
        [
            (Direction.UP, (5, 4)),
            (Direction.DOWN, (5, 6)),
            (Direction.RIGHT, (6, 5)),
        ],
    )
    def test_steer_turns_on_next_tick(self, direction: Direction, head: Point) -> None:
        game = make_game()
        snake = place(game, "a", [(5, 5), (4, 5), (3, 5)], Direction.RIGHT)
        assert game.steer("a", direction.value) is True
        game.tick()
        assert snake.head == head
        assert snake.direction is direction
        assert len(snake.body) == 3

    def test_reversal_is_ignored(self) -> None:
        game = make_game()
        snake = place(game, "a", [(5, 5), (4, 5), (3, 5)], Direction.RIGHT)
        assert game.steer("a", "left") is False
        game.tick()
        assert snake.head == (6, 5)
        assert snake.deaths == 0

    def test_two_quick_turns_cannot_reverse(self) -> None:
        """Up then left within one tick while moving right: left would reverse the direction the
        snake last moved in, so it is refused and the snake goes up."""
        game = make_game()
        snake = place(game, "a", [(5, 5), (4, 5), (3, 5)], Direction.RIGHT)
        assert game.steer("a", Direction.UP) is True
        assert game.steer("a", Direction.LEFT) is False
        game.tick()
        assert snake.head == (5, 4)
        # After moving up, left is a legal turn.
        assert game.steer("a", Direction.LEFT) is True
        game.tick()
        assert snake.head == (4, 4)

    def test_unknown_player_or_direction_is_ignored(self) -> None:
        game = make_game()
        snake = place(game, "a", [(5, 5), (4, 5), (3, 5)], Direction.RIGHT)
        assert game.steer("nobody", "up") is False
        assert game.steer("a", "sideways") is False
        game.tick()
        assert snake.head == (6, 5)


class TestFood:
    def test_eating_grows_by_one_and_scores(self) -> None:
        game = make_game()
        snake = place(game, "a", [(5, 5), (4, 5), (3, 5)], Direction.RIGHT)
        game.food = [(6, 5), (0, 0)]
        game.tick()
        assert list(snake.body) == [(6, 5), (5, 5), (4, 5), (3, 5)]
        assert snake.score == 1
        assert game.food == [(0, 0)]
        # The tail stays only in the step it ate: afterwards the length is kept.
        game.tick()
        assert list(snake.body) == [(7, 5), (6, 5), (5, 5), (4, 5)]
        assert snake.score == 1

    def test_food_is_topped_up_on_free_cells(self) -> None:
        game = Game(width=10, height=8, rng=random.Random(3), base_food=2, food_per_player=1)
        assert len(game.food) == 0  # nothing until someone plays
        game.add_player("a")
        game.add_player("b")
        assert len(game.food) == 4
        place(game, "a", [(5, 5), (4, 5), (3, 5)], Direction.RIGHT)
        game.food = [(6, 5)]  # eaten now; three more are added
        game.tick()
        assert game.snakes["a"].score == 1
        assert len(game.food) == 4
        bodies = {cell for snake in game.snakes.values() for cell in snake.body}
        assert len(set(game.food)) == 4
        assert not bodies & set(game.food)
        assert all(0 <= x < 10 and 0 <= y < 8 for x, y in game.food)


class TestCollisions:
    @pytest.mark.parametrize(
        ("body", "direction"),
        [
            ([(19, 5), (18, 5), (17, 5)], Direction.RIGHT),
            ([(0, 5), (1, 5), (2, 5)], Direction.LEFT),
            ([(5, 0), (5, 1), (5, 2)], Direction.UP),
            ([(5, 14), (5, 13), (5, 12)], Direction.DOWN),
        ],
    )
    def test_wall_kills_and_respawns(self, body: list[Point], direction: Direction) -> None:
        game = make_game()
        snake = place(game, "a", body, direction)
        snake.score = 7
        assert game.tick() == ["a"]
        assert snake.deaths == 1
        assert snake.score == 0
        assert len(snake.body) == game.start_length
        assert all(0 <= x < game.width and 0 <= y < game.height for x, y in snake.body)

    def test_self_collision(self) -> None:
        game = make_game()
        # A hook: moving up from (5, 5) runs into (5, 4), part of its own body.
        snake = place(game, "a", [(5, 5), (6, 5), (6, 4), (5, 4), (4, 4), (3, 4)], Direction.LEFT)
        snake.direction = Direction.LEFT
        assert game.steer("a", "up") is True
        assert game.tick() == ["a"]
        assert snake.deaths == 1
        assert len(snake.body) == game.start_length

    def test_following_own_tail_is_safe(self) -> None:
        """A 2x2 loop: the head enters the cell the tail leaves in the same step."""
        game = make_game()
        snake = place(game, "a", [(5, 5), (6, 5), (6, 6), (5, 6)], Direction.LEFT)
        assert game.steer("a", "down") is True
        assert game.tick() == []
        assert list(snake.body) == [(5, 6), (5, 5), (6, 5), (6, 6)]

    def test_running_into_another_snake_kills_only_the_runner(self) -> None:
        game = make_game()
        runner = place(game, "a", [(5, 5), (4, 5), (3, 5)], Direction.RIGHT)
        wall = place(game, "b", [(6, 3), (6, 4), (6, 5), (6, 6), (6, 7)], Direction.UP)
        assert game.tick() == ["a"]
        assert runner.deaths == 1
        assert wall.deaths == 0
        assert list(wall.body) == [(6, 2), (6, 3), (6, 4), (6, 5), (6, 6)]
        assert not set(runner.body) & set(wall.body)

    def test_head_on_kills_both(self) -> None:
        game = make_game()
        a = place(game, "a", [(5, 5), (4, 5), (3, 5)], Direction.RIGHT)
        b = place(game, "b", [(7, 5), (8, 5), (9, 5)], Direction.LEFT)
        assert sorted(game.tick()) == ["a", "b"]
        assert (a.deaths, b.deaths) == (1, 1)

    def test_swapping_heads_kills_both(self) -> None:
        game = make_game()
        a = place(game, "a", [(5, 5), (4, 5), (3, 5)], Direction.RIGHT)
        b = place(game, "b", [(6, 5), (7, 5), (8, 5)], Direction.LEFT)
        assert sorted(game.tick()) == ["a", "b"]
        assert (a.deaths, b.deaths) == (1, 1)

    def test_entering_the_cell_another_tail_leaves_is_safe(self) -> None:
        game = make_game()
        a = place(game, "a", [(5, 5), (4, 5), (3, 5)], Direction.RIGHT)
        # b's tail is at (6, 5) and moves away this step.
        b = place(game, "b", [(6, 3), (6, 4), (6, 5)], Direction.UP)
        assert game.tick() == []
        assert a.head == (6, 5)
        assert b.head == (6, 2)

    def test_a_growing_tail_stays_and_kills(self) -> None:
        game = make_game()
        a = place(game, "a", [(5, 5), (4, 5), (3, 5)], Direction.RIGHT)
        place(game, "b", [(6, 3), (6, 4), (6, 5)], Direction.UP)
        game.food = [(6, 2)]  # b eats, so its tail at (6, 5) stays
        assert game.tick() == ["a"]
        assert a.deaths == 1
        assert game.snakes["b"].score == 1

    def test_a_dead_snake_does_not_eat(self) -> None:
        game = make_game()
        place(game, "a", [(5, 5), (4, 5), (3, 5)], Direction.RIGHT)
        place(game, "b", [(7, 5), (8, 5), (9, 5)], Direction.LEFT)
        game.food = [(6, 5)]  # both heads reach the food: a head-on crash, nobody eats
        game.tick()
        assert game.food == [(6, 5)]
        assert game.snakes["a"].score == game.snakes["b"].score == 0


class TestPlayers:
    def test_spawns_do_not_overlap(self) -> None:
        game = Game(width=20, height=15, rng=random.Random(5))
        for i in range(10):
            game.add_player(str(i))
        cells = [cell for snake in game.snakes.values() for cell in snake.body]
        assert len(cells) == len(set(cells)) == 10 * game.start_length
        assert not set(cells) & set(game.food)

    def test_add_twice_is_an_error_and_remove_is_idempotent(self) -> None:
        game = make_game()
        game.add_player("a")
        with pytest.raises(ValueError, match="already"):
            game.add_player("a")
        game.remove_player("a")
        game.remove_player("a")
        assert game.snakes == {}
        assert game.steer("a", "up") is False

    def test_colours_differ_until_the_palette_runs_out(self) -> None:
        game = Game(width=40, height=30, rng=random.Random(2))
        colors = [game.add_player(str(i)).color for i in range(len(COLORS))]
        assert sorted(colors) == sorted(COLORS)

    def test_board_too_small(self) -> None:
        with pytest.raises(ValueError, match="too small"):
            Game(width=4, height=4)


class TestDeterminism:
    def play(self, seed: int) -> list[str]:
        game = Game(width=16, height=12, rng=random.Random(seed))
        moves = random.Random(seed + 1000)
        for i in range(3):
            game.add_player(f"p{i}", f"player {i}")
        states = []
        for _ in range(200):
            for player_id in list(game.snakes):
                game.steer(player_id, moves.choice(list(Direction)))
            game.tick()
            states.append(json.dumps(game.state()))
        return states

    def test_same_seed_same_game(self) -> None:
        first = self.play(42)
        assert first == self.play(42)
        assert first != self.play(43)
        last = json.loads(first[-1])
        # 200 random steps on a small board: something must have died somewhere.
        assert sum(snake["deaths"] for snake in last["snakes"]) > 0

    def test_state_is_json(self) -> None:
        game = make_game()
        game.add_player("a", "alice")
        game.food = [(1, 2)]
        state = json.loads(json.dumps(game.state()))
        assert state["type"] == "state"
        assert state["tick"] == 0
        assert (state["width"], state["height"]) == (20, 15)
        assert state["food"] == [[1, 2]]
        [snake] = state["snakes"]
        assert snake["id"] == "a"
        assert snake["name"] == "alice"
        assert snake["color"] in COLORS
        assert len(snake["body"]) == 3
        assert snake["direction"] in {d.value for d in Direction}
