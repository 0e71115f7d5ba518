"""Following the log: the backlog first, then each new commit."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Collection, Iterator
from typing import TYPE_CHECKING

from eventstore._types import StoredEvent

if TYPE_CHECKING:
    from eventstore._base import BaseStore

__all__ = ["Subscription"]

# Another process's commits send no wake-up: re-read the head this often.
_POLL_S = 0.2


class Subscription:
    """Events from a position on, waiting for new commits when caught up.

    Iterating blocks while caught up; if nothing new commits for
    ``timeout_s`` the iteration ends (``None`` waits forever). ``async for``
    waits the same way without blocking the event loop. :attr:`position` is
    the position of the last event handed out.
    """

    def __init__(
        self,
        store: BaseStore,
        from_position: int,
        *,
        timeout_s: float | None,
        types: Collection[str] | None = None,
        batch_size: int = 512,
    ) -> None:
        if from_position < 1:
            raise ValueError(f"from_position must be >= 1, not {from_position}")
        self._store = store
        self.position = from_position - 1
        self._timeout_s = timeout_s
        self._types = None if types is None else frozenset(types)
        self._batch_size = batch_size
        self._buffer: deque[StoredEvent] = deque()
        self._closed = False

    def close(self) -> None:
        """Stop: iteration ends at the next wait."""
        self._closed = True

    def _fill(self) -> bool:
        """Read the next batch after :attr:`position`; True if anything came."""
        head = self._store.head_position()
        while self.position < head and not self._buffer:
            stop = min(head, self.position + self._batch_size)
            # Events of other types are skipped before their data decodes.
            self._buffer.extend(
                self._store.read_all(
                    from_position=self.position + 1,
                    to_position=stop,
                    types=self._types,
                )
            )
            self.position = stop
        return bool(self._buffer)

    def next_batch(self, timeout_s: float | None = None) -> list[StoredEvent]:
        """The events committed after the last batch; empty after a timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        notifier = self._store.notifier
        while not self._closed:
            generation = notifier.generation
            if self._fill():
                batch = list(self._buffer)
                self._buffer.clear()
                return batch
            wait_s = _POLL_S
            if deadline is not None:
                wait_s = min(wait_s, deadline - time.monotonic())
                if wait_s <= 0:
                    return []
            notifier.wait(generation, wait_s)
        return []

    def __iter__(self) -> Iterator[StoredEvent]:
        while True:
            batch = self.next_batch(self._timeout_s)
            if not batch:
                return
            yield from batch

    async def next_batch_async(
        self, timeout_s: float | None = None
    ) -> list[StoredEvent]:
        """Like :meth:`next_batch`, awaiting instead of blocking."""
        loop_time = time.monotonic
        deadline = None if timeout_s is None else loop_time() + timeout_s
        notifier = self._store.notifier
        while not self._closed:
            generation = notifier.generation
            if self._fill():
                batch = list(self._buffer)
                self._buffer.clear()
                return batch
            wait_s = _POLL_S
            if deadline is not None:
                wait_s = min(wait_s, deadline - loop_time())
                if wait_s <= 0:
                    return []
            await notifier.wait_async(generation, wait_s)
        return []

    async def __aiter__(self) -> AsyncIterator[StoredEvent]:
        while True:
            batch = await self.next_batch_async(self._timeout_s)
            if not batch:
                return
            for event in batch:
                yield event
