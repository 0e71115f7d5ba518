"""Wake-ups for readers waiting on new commits.

The writer calls :meth:`CommitNotifier.committed` after each commit; waiting
threads sleep on a condition and waiting coroutines on a future resolved
through ``call_soon_threadsafe``. Commits by another process send no
wake-up, so a waiter also re-reads the head after at most ``poll_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

__all__ = ["CommitNotifier"]


class CommitNotifier:
    """Tells waiting readers that the head moved."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0
        self._async_waiters: list[
            tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]
        ] = []

    def committed(self) -> None:
        """Wake every waiter; called by the writer after a commit."""
        with self._condition:
            self._generation += 1
            self._condition.notify_all()
            waiters, self._async_waiters = self._async_waiters, []
        for loop, future in waiters:
            # The loop may close at any moment: the writer must not fail.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)

    @property
    def generation(self) -> int:
        """How many commits have been announced."""
        return self._generation

    def wait(self, generation: int, timeout_s: float) -> bool:
        """Block until a commit after ``generation``, or ``timeout_s``.

        Returns:
            True if a commit was announced.

        """
        with self._condition:
            return self._condition.wait_for(
                lambda: self._generation != generation, timeout_s
            )

    async def wait_async(self, generation: int, timeout_s: float) -> bool:
        """Wait without blocking the event loop; see :meth:`wait`."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._condition:
            if self._generation != generation:
                return True
            self._async_waiters.append((loop, future))
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            with self._condition:
                if (loop, future) in self._async_waiters:
                    self._async_waiters.remove((loop, future))
            return self._generation != generation
        return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
