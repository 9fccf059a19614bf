"""An ordered, batched command queue to Redis: one round trip for what piled up meanwhile.

Publishes, presence updates and presence reads of one process go through one queue, so they
reach Redis in the order the process issued them (a presence read sees the joins queued
before it; per-sender order of messages holds) and cost one round trip per batch rather than
per command. Scripts run by ``EVALSHA``; after a Redis restart emptied the script cache, the
batch is loaded and sent again (``NOSCRIPT`` means nothing of it ran).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Callable
from typing import Any

from redis.exceptions import NoScriptError

from ..exceptions import BrokerError

__all__ = ["CommandQueue"]

_BATCH = 512


class CommandQueue:
    """Runs commands on a redis.asyncio client in order, batched into pipelines.

    Args:
        client: A ``redis.asyncio.Redis``.
        scripts: The Lua scripts used, by name.
        on_failure: Called with the error of each command that had no one waiting for it.
    """

    def __init__(
        self, client: Any, scripts: dict[str, str], on_failure: Callable[[Exception], None]
    ) -> None:
        self._client = client
        self._scripts = scripts
        self._sha = {
            name: hashlib.sha1(body.encode()).hexdigest() for name, body in scripts.items()
        }
        self._on_failure = on_failure
        self._queue: deque[tuple[tuple[Any, ...], asyncio.Future[Any] | None]] = deque()
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def script(self, name: str, keys: tuple[str, ...], *args: Any) -> tuple[Any, ...]:
        """The command that runs script ``name`` on ``keys`` with ``args``."""
        return ("EVALSHA", self._sha[name], len(keys), *keys, *args)

    def submit(self, command: tuple[Any, ...]) -> None:
        """Queue ``command``; its failure goes to ``on_failure``."""
        self._queue.append((command, None))
        self._wake()

    def call(self, command: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Queue ``command``; the future gets its reply or a :class:`BrokerError`."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append((command, future))
        self._wake()
        return future

    async def drain(self) -> None:
        """Wait until every queued command was sent and answered."""
        while self._task is not None:
            await asyncio.shield(self._task)

    def _wake(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(_BATCH, len(self._queue)))]
                results = await self._execute([command for command, _ in batch])
                for (_, future), result in zip(batch, results, strict=True):
                    self._settle(future, result)
        finally:
            self._task = None

    async def _execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        try:
            results = await self._pipeline(commands)
            again = [index for index, result in enumerate(results) if _is_noscript(result)]
            if again:
                # Redis lost its script cache (a restart): those commands did not run.
                for name, body in self._scripts.items():
                    self._sha[name] = await self._client.script_load(body)
                retried = await self._pipeline([commands[index] for index in again])
                for index, result in zip(again, retried, strict=True):
                    results[index] = result
        except Exception as exc:  # the connection failed: every command of the batch did
            error = BrokerError(f"Redis did not answer: {exc}")
            error.__cause__ = exc
            return [error] * len(commands)
        return [
            BrokerError(f"Redis refused a command: {result}")
            if isinstance(result, Exception)
            else result
            for result in results
        ]

    async def _pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        return results

    def _settle(self, future: asyncio.Future[Any] | None, result: Any) -> None:
        failed = isinstance(result, Exception)
        if future is None:
            if failed:
                self._on_failure(result)
        elif not future.done():
            if failed:
                future.set_exception(result)
            else:
                future.set_result(result)


def _is_noscript(result: object) -> bool:
    return isinstance(result, NoScriptError)
