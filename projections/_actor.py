"""The asynchronous projection: a pykka actor that follows the log.

Design note. The actor keeps no state of its own that matters: the
checkpoint lives in the store, and every fold re-reads it inside its
transaction (see ``_fold``). So a restarted actor (or a second one by
mistake) folds each event exactly once. The actor sends itself a ``step``
message after each batch rather than looping, so that ``stop`` is handled
within one poll interval. A failing handler is retried with exponential
backoff; after ``max_attempts`` its event is parked and the fold goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import pykka

from eventstore import EventStore, StoredEvent, Subscription
from projections._fold import Projection
from projections._runner import fold_batch
from projections._state import read_state

if TYPE_CHECKING:
    from eventstore._base import BaseStore

__all__ = ["ProjectionActor"]

logger = logging.getLogger(__name__)

_STEP = "step"


class ProjectionActor(pykka.ThreadingActor):
    """Folds new events into a projection's view, in batches, as they commit.

    Start it with ``ProjectionActor.start(store, projection)`` and stop it
    with ``ref.stop()``; it resumes from the stored checkpoint.

    Args:
        store: The store (open for writing).
        projection: The projection.
        poll_s: The longest wait for new events before checking messages.
        batch_size: The most events folded in one transaction.
        max_attempts: Tries of a failing event before it is parked.
        backoff_s: The first retry delay; it doubles per attempt.
        max_backoff_s: The longest retry delay.
        sleep: Waits between retries (injected by tests).

    """

    def __init__(
        self,
        store: EventStore,
        projection: Projection,
        *,
        poll_s: float = 0.2,
        batch_size: int = 512,
        max_attempts: int = 5,
        backoff_s: float = 0.05,
        max_backoff_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, not {max_attempts}")
        self.store = store
        self.projection = projection
        self.poll_s = poll_s
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep
        self._subscription: Subscription | None = None
        self.retries = 0

    def on_start(self) -> None:
        """Follow the log from the stored checkpoint."""
        with self.store.read_views() as reader:
            checkpoint = read_state(reader, self.projection.name).checkpoint
        self._subscription = Subscription(
            cast("BaseStore", self.store),
            checkpoint + 1,
            timeout_s=None,
            types=self.projection.types,
            batch_size=self.batch_size,
        )
        logger.info(
            "projection %s follows the log from %d", self.projection.name, checkpoint
        )
        self.actor_ref.tell(_STEP)

    def on_stop(self) -> None:
        """Stop following the log."""
        if self._subscription is not None:
            self._subscription.close()
        logger.info("projection %s stopped", self.projection.name)

    def on_receive(self, message: Any) -> Any:
        """Fold the next batch, then ask for the next step."""
        if message != _STEP:
            raise ValueError(f"projection actor: unknown message {message!r}")
        self.step()
        self.actor_ref.tell(_STEP)
        return None

    def step(self) -> int:
        """Fold what committed since the last step; return how many events."""
        subscription = self._subscription
        assert subscription is not None  # noqa: S101 - set in on_start
        seen_after = subscription.position
        events = subscription.next_batch(self.poll_s)
        # The subscription skips other types' events without decoding their
        # data; the checkpoint still moves past them.
        if events or subscription.position > seen_after:
            self._fold(events, seen_after, subscription.position)
        return len(events)

    def _fold(
        self, events: Sequence[StoredEvent], seen_after: int, through: int
    ) -> None:
        park: dict[int, tuple[str, int]] = {}
        attempts: dict[int, int] = {}
        name = self.projection.name
        while True:
            outcome = fold_batch(
                self.store,
                self.projection,
                events,
                on_failure="stop",
                park=park,
                seen_after=seen_after,
                through=through,
            )
            if outcome.failed_at is None:
                return
            position, error = outcome.failed_at, outcome.error or ""
            tried = attempts[position] = attempts.get(position, 0) + 1
            self.retries += 1
            if tried >= self.max_attempts:
                logger.error(
                    "projection %s parks position %d after %d attempts: %s",
                    name,
                    position,
                    tried,
                    error,
                )
                park[position] = (error, tried)
                continue
            delay_s = min(self.max_backoff_s, self.backoff_s * 2 ** (tried - 1))
            logger.warning(
                "projection %s failed at position %d (attempt %d), retrying in "
                "%.3f s: %s",
                name,
                position,
                tried,
                delay_s,
                error,
            )
            self._sleep(delay_s)
