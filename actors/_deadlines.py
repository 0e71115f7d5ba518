"""Command timeouts on one event loop, without a timer per command.

Commands with the default timeout expire in the order they were sent, so
their deadlines wait in a queue ordered by time and one timer, set for the
earliest, serves them all; answered commands are dropped from the front as
new ones arrive. Other timeouts use ``loop.call_later``.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from actors._errors import CommandTimeoutError

__all__ = ["Deadlines"]

_Entry = tuple[float, asyncio.Future[Any], str, str]


class Deadlines:
    """Fails a command's future with :class:`CommandTimeoutError` when late."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self.loop = loop
        self.timeout_s = timeout_s
        self._queue: collections.deque[_Entry] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def watch(self, future: asyncio.Future[Any], actor: str, command: str) -> None:
        """Fail ``future`` if it is not done ``timeout_s`` from now."""
        queue = self._queue
        while queue and queue[0][1].done():
            queue.popleft()
        at = self.loop.time() + self.timeout_s
        queue.append((at, future, actor, command))
        if self._timer is None:
            self._timer = self.loop.call_at(at, self._check)

    def _check(self) -> None:
        self._timer = None
        now = self.loop.time()
        queue = self._queue
        while queue:
            at, future, actor, command = queue[0]
            if not future.done():
                if at > now:
                    break
                future.set_exception(
                    CommandTimeoutError(actor, command, self.timeout_s)
                )
            queue.popleft()
        if queue:
            self._timer = self.loop.call_at(queue[0][0], self._check)

    def cancel(self) -> None:
        """Stop the timer (the loop is going away)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
