"""How a caller waits for the writer: a blocking wait, a future, a coroutine.

The writer completes each job after its commit through the job's
completion, whichever kind the caller chose: a :class:`Waiter` for a
blocking ``append``, a ``concurrent.futures.Future`` for
``append_future``, a :class:`LoopWaiter` for ``append_async``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

__all__ = ["Completion", "LoopWaiter", "Waiter"]

T = TypeVar("T")
logger = logging.getLogger(__name__)


class Waiter(Generic[T]):
    """A one-shot result for a caller that blocks on it.

    Lighter than a ``concurrent.futures.Future`` (one lock, no condition),
    which matters when hundreds of threads each wait for their commit.
    """

    __slots__ = ("_error", "_lock", "_value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._value: T | None = None
        self._error: BaseException | None = None

    def set_running_or_notify_cancel(self) -> bool:
        """A waiter cannot be cancelled: always True."""
        return True

    def set_result(self, value: T) -> None:
        """Complete with ``value``."""
        self._value = value
        self._lock.release()

    def set_exception(self, error: BaseException) -> None:
        """Complete with ``error``."""
        self._error = error
        self._lock.release()

    def result(self) -> T:
        """Block until completed; return the value or raise the error."""
        self._lock.acquire()
        self._lock.release()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class _Inbox:
    """Completions for one event loop: one wake-up delivers a whole burst.

    The writer completes a commit's jobs one after another; waking the loop
    once per job would cost a system call each, so only the first of a
    burst schedules the delivery.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._items: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []

    def put(
        self, future: asyncio.Future[Any], value: Any, error: BaseException | None
    ) -> None:
        with self._lock:
            first = not self._items
            self._items.append((future, value, error))
        if first:
            try:
                self._loop.call_soon_threadsafe(self._deliver)
            except RuntimeError:
                logger.debug("an append completed after its event loop closed")

    def _deliver(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        for future, value, error in items:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)


_inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Inbox] = (
    weakref.WeakKeyDictionary()
)
_inboxes_lock = threading.Lock()


class LoopWaiter(Generic[T]):
    """A result delivered to an asyncio future on its event loop."""

    __slots__ = ("_inbox", "future")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future[T] = loop.create_future()
        with _inboxes_lock:
            inbox = _inboxes.get(loop)
            if inbox is None:
                inbox = _inboxes[loop] = _Inbox(loop)
        self._inbox = inbox

    def set_running_or_notify_cancel(self) -> bool:
        """False if the awaiting coroutine gave up before the writer began."""
        return not self.future.cancelled()

    def set_result(self, value: T) -> None:
        """Complete with ``value`` (from any thread)."""
        self._inbox.put(self.future, value, None)

    def set_exception(self, error: BaseException) -> None:
        """Complete with ``error`` (from any thread)."""
        self._inbox.put(self.future, None, error)


Completion = Future[T] | Waiter[T] | LoopWaiter[T]
