"""Committed events for the application: ``dm.subscribe`` and ``subscribe_events``.

Both are built on ``projections.subscribe``: events come in position order,
filtered by a stream pattern (a prefix, or a glob) and by type, from now or
from a given position, at least once (a handler that fails is retried, and
a subscription resumed from a position may see an event again; each event
carries its position so a handler can skip what it has done).

An ``async def`` handler runs on the event loop it was subscribed from; the
subscriber's thread waits for it, so events are still handled one at a time
and in order.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any

from eventstore import EventStore, StoredEvent
from projections import Subscriber, subscribe, subscribe_async

__all__ = ["EventHandler", "Subscriptions", "events"]

logger = logging.getLogger(__name__)

EventHandler = Callable[[StoredEvent], Any] | Callable[[StoredEvent], Awaitable[Any]]

_HANDLER_TIMEOUT_S = 60.0


class Subscriptions:
    """The subscribers a DataManager started, closed with it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Subscriber] = []

    def subscribe(
        self,
        store: EventStore,
        pattern: str,
        handler: EventHandler,
        *,
        types: Collection[str] | None,
        from_position: int | None,
        max_attempts: int,
        handler_timeout_s: float = _HANDLER_TIMEOUT_S,
    ) -> Subscriber:
        """Start a subscriber calling ``handler``; see ``DataManager.subscribe``."""
        call: Callable[[StoredEvent], object]
        if inspect.iscoroutinefunction(handler):
            loop = asyncio.get_running_loop()

            def call(event: StoredEvent) -> object:
                done = asyncio.run_coroutine_threadsafe(handler(event), loop)
                return done.result(handler_timeout_s)

        else:
            call = handler
        subscriber = subscribe(
            store,
            pattern,
            call,
            types=types,
            from_position=from_position,
            max_attempts=max_attempts,
        )
        with self._lock:
            self._subscribers.append(subscriber)
        logger.debug("subscribed %r from %s", pattern, from_position or "now")
        return subscriber

    async def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop ``subscriber`` (its current handler call ends first)."""
        with self._lock:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)
        await asyncio.to_thread(subscriber.close)

    async def close(self) -> None:
        """Stop every subscriber."""
        with self._lock:
            subscribers, self._subscribers = self._subscribers, []
        for subscriber in subscribers:
            await asyncio.to_thread(subscriber.close)


def events(
    store: EventStore,
    pattern: str,
    *,
    types: Collection[str] | None,
    from_position: int | None,
    timeout_s: float | None,
) -> AsyncIterator[StoredEvent]:
    """Committed events matching ``pattern``; see ``DataManager.subscribe_events``."""
    return subscribe_async(
        store, pattern, types=types, from_position=from_position, timeout_s=timeout_s
    )
