"""Publish/subscribe over the log: committed events by stream and type.

Delivery is at least once: a subscriber's position moves past an event
only after its handler returned, and a subscriber resumed ``from_position``
may see an event again. Each event carries its position, so a handler
that must not act twice keeps the last position it acted on.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection
from typing import Self

from eventstore import EventStore, StoredEvent

__all__ = ["Subscriber", "stream_matches", "subscribe", "subscribe_async"]

logger = logging.getLogger(__name__)

_GLOB = frozenset("*?[")


def stream_matches(pattern: str, stream: str) -> bool:
    """True if ``stream`` matches ``pattern``: a prefix, or a glob with ``*?[``."""
    if _GLOB.intersection(pattern):
        return fnmatch.fnmatchcase(stream, pattern)
    return stream.startswith(pattern)


class Subscriber:
    """A thread delivering matching events to a handler; see :func:`subscribe`.

    Attributes:
        position: The position of the last event handled (or skipped).
        failures: How many handler calls raised.

    """

    def __init__(
        self,
        store: EventStore,
        pattern: str,
        handler: Callable[[StoredEvent], object],
        *,
        types: Collection[str] | None,
        from_position: int | None,
        max_attempts: int,
        backoff_s: float,
        sleep: Callable[[float], None],
        poll_s: float = 0.1,
    ) -> None:
        self._subscription = store.subscribe(from_position, types=types)
        self.position = self._subscription.position
        self.failures = 0
        self._pattern = pattern
        self._handler = handler
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._poll_s = poll_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"actorlog-subscriber:{pattern}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            for event in self._subscription.next_batch(self._poll_s):
                if self._stopping.is_set():
                    return
                if stream_matches(self._pattern, event.stream):
                    self._deliver(event)
                self.position = event.position

    def _deliver(self, event: StoredEvent) -> None:
        for attempt in range(1, self._max_attempts + 1):
            try:
                self._handler(event)
            except Exception:
                self.failures += 1
                if attempt == self._max_attempts:
                    logger.exception(
                        "subscriber %r gives up on position %d after %d attempts",
                        self._pattern,
                        event.position,
                        attempt,
                    )
                    return
                logger.warning(
                    "subscriber %r failed on position %d (attempt %d); retrying",
                    self._pattern,
                    event.position,
                    attempt,
                    exc_info=True,
                )
                self._sleep(self._backoff_s * 2 ** (attempt - 1))
            else:
                return

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop delivering and wait for the thread (the current call ends first)."""
        self._stopping.set()
        self._subscription.close()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.warning(
                "subscriber %r did not stop in %s s", self._pattern, timeout_s
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def subscribe(
    store: EventStore,
    pattern: str,
    handler: Callable[[StoredEvent], object],
    *,
    types: Collection[str] | None = None,
    from_position: int | None = None,
    max_attempts: int = 3,
    backoff_s: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
) -> Subscriber:
    """Call ``handler`` with each committed event whose stream matches ``pattern``.

    Args:
        store: The store.
        pattern: A stream prefix (``"records/users/"``) or a glob
            (``"workflows/*"``).
        handler: Called on a thread of its own, in position order.
        types: Only events of these types, if given.
        from_position: The first position wanted; new events only if omitted.
        max_attempts: Calls per event before a failure is logged and skipped.
        backoff_s: The first delay between attempts; it doubles.
        sleep: Waits between attempts (injected by tests).

    Returns:
        The running subscriber; ``close()`` it (or use it in ``with``).

    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, not {max_attempts}")
    return Subscriber(
        store,
        pattern,
        handler,
        types=types,
        from_position=from_position,
        max_attempts=max_attempts,
        backoff_s=backoff_s,
        sleep=sleep,
    )


async def subscribe_async(
    store: EventStore,
    pattern: str,
    *,
    types: Collection[str] | None = None,
    from_position: int | None = None,
    timeout_s: float | None = None,
) -> AsyncIterator[StoredEvent]:
    """Committed events whose stream matches ``pattern``, as an async iterator.

    Iteration ends after ``timeout_s`` with nothing new (``None``: never).
    """
    subscription = store.subscribe(from_position, timeout_s=timeout_s, types=types)
    try:
        async for event in subscription:
            if stream_matches(pattern, event.stream):
                yield event
    finally:
        subscription.close()
