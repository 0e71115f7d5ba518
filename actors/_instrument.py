"""How a DataManager instruments itself: metrics, spans, the read cache.

Design note. The hot path (a command on the event loop, a commit on the
writer thread) only appends a tuple to a deque: ``CommandMeter`` hands the
samples to the monitoring system in bulk, when 512 have gathered or when
anyone reads the metrics (a collector). Gauges that are cheaper to sample
than to keep up to date (mailbox depth, restarts, projection lag) are
sampled by the same collector. Spans cost nothing when no tracer provider
is configured: every helper in ``_tracing`` returns a shared no-op first.

Trace context crosses into an actor inside the message (``Write.trace``, a
W3C carrier); the actor handles the message inside a ``process`` span, so
the events it stages carry that span's ``traceparent``; the append span
and each inline projection's fold are children of the first event's
``traceparent``. One command is one trace, from the caller's span down to
the fold inside the commit.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind

from actors._monitoring import MonitoringSystem
from actors._trace_context import attach_traceparent
from actors._tracing import (
    MESSAGING_SYSTEM,
    fold_span,
    open_span,
    record_error,
)
from eventstore import EventStore, StoredEvent
from projections import set_fold_hook
from projections._state import CONTROL, ProjectionState

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from actors._supervisor import ChildHandle, Supervisor

__all__ = [
    "CommandMeter",
    "collect_gauges",
    "finish_append_span",
    "projection_checkpoints",
    "start_append_span",
    "trace_inline_folds",
]

logger = logging.getLogger(__name__)

FLUSH_EVERY = 512
_STATE_PREFIX = b"state:"
_STATE_STOP = b"state;"


class CommandMeter:
    """Buffers command and append samples; hands them over in bulk.

    ``command`` runs on the event loop, ``append`` on the store's writer
    thread; ``flush`` on either, or on whichever thread reads the metrics.
    Deques make the hand-over safe without a lock on the hot path.
    """

    def __init__(
        self, monitoring: MonitoringSystem, *, flush_every: int = FLUSH_EVERY
    ) -> None:
        self._monitoring = monitoring
        self._flush_every = flush_every
        self._commands: collections.deque[tuple[str, str, float]] = collections.deque()
        self._appends: collections.deque[tuple[int, float]] = collections.deque()
        self._lock = threading.Lock()

    def command(self, command: str, collection: str, duration_s: float) -> None:
        """One command that succeeded."""
        commands = self._commands
        commands.append((command, collection, duration_s))
        if len(commands) >= self._flush_every:
            self.flush()

    def failed(
        self, command: str, collection: str, duration_s: float, error: BaseException
    ) -> None:
        """One command that failed (rare: recorded at once, with the error)."""
        self.flush()
        self._monitoring.record_command(command, collection, duration_s, error=error)

    def append(self, event_count: int, duration_s: float) -> None:
        """One append: its size and its latency from hand-off to commit."""
        appends = self._appends
        appends.append((event_count, duration_s))
        if len(appends) >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        """Hand every buffered sample to the monitoring system."""
        with self._lock:
            commands = _drain(self._commands)
            appends = _drain(self._appends)
        monitoring = self._monitoring
        by_command: dict[tuple[str, str], list[float]] = {}
        for command, collection, duration_s in commands:
            by_command.setdefault((command, collection), []).append(duration_s)
        for (command, collection), durations in by_command.items():
            tags = {"command": command, "collection": collection}
            monitoring.record_many("command.latency", "timer", durations, tags)
            monitoring.record_counter("command.count", len(durations), tags)
        if appends:
            sizes = [float(size) for size, _ in appends]
            monitoring.record_many(
                "append.latency", "timer", [duration for _, duration in appends]
            )
            monitoring.record_many("append.batch_size", "metric", sizes)
            monitoring.record_counter("append.events", sum(sizes))


def _drain(queue: collections.deque[Any]) -> list[Any]:
    return [queue.popleft() for _ in range(len(queue))]


def collect_gauges(
    monitoring: MonitoringSystem,
    store: EventStore | None,
    supervisors: Sequence[Supervisor],
    handles: Mapping[str, ChildHandle],
) -> None:
    """Sample mailbox depths, restarts and projection lag into gauges."""
    for supervisor in supervisors:
        monitoring.record_gauge(
            "actor.restarts", supervisor.restarts, {"supervisor": supervisor.name}
        )
    for name, handle in list(handles.items()):
        monitoring.record_gauge(
            "actor.mailbox_depth", handle.mailbox_depth, {"actor": name}
        )
    if store is None:
        return
    head = store.head_position()
    for name, checkpoint in projection_checkpoints(store).items():
        monitoring.record_projection_lag(name, max(0, head - checkpoint))


def projection_checkpoints(store: EventStore) -> dict[str, int]:
    """Each projection's checkpoint, by name, as its control table has it."""
    import msgspec  # noqa: PLC0415 - only on the dashboard's path

    found: dict[str, int] = {}
    with store.read_views() as view:
        for key, raw in view.scan(CONTROL, start=_STATE_PREFIX, stop=_STATE_STOP):
            state = msgspec.msgpack.decode(raw, type=ProjectionState)
            found[key[len(_STATE_PREFIX) :].decode()] = state.checkpoint
    return found


# -- spans across threads ----------------------------------------------------


def start_append_span(
    destination: str, event_count: int, traceparent: str | None
) -> tuple[Span, float] | None:
    """Open the span of an append that ends at its commit; None if untraced."""
    if traceparent is None:
        return None
    span = open_span(
        f"append {destination}",
        SpanKind.PRODUCER,
        {
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.operation.name": "append",
            "messaging.operation.type": "send",
            "messaging.destination.name": destination,
            "messaging.batch.message_count": event_count,
        },
        parent_traceparent=traceparent,
    )
    return None if span is None else (span, time.perf_counter())


def finish_append_span(
    opened: tuple[Span, float] | None,
    error: BaseException | None,
    last_position: int | None = None,
) -> None:
    """End a span from :func:`start_append_span` (on the writer's thread)."""
    if opened is None:
        return
    span = opened[0]
    if error is not None:
        record_error(span, error)
    elif last_position is not None:
        span.set_attribute("actorlog.position", last_position)
    span.end()


@contextlib.contextmanager
def _traced_fold(name: str, events: Sequence[StoredEvent]) -> Iterator[None]:
    first = events[0].metadata.traceparent if events else None
    if first is None:
        yield
        return
    with (
        attach_traceparent(first),
        fold_span(
            name,
            position=events[-1].position,
            traceparents=(event.metadata.traceparent for event in events[1:]),
        ),
    ):
        yield


def trace_inline_folds() -> None:
    """Make every inline projection's fold a span in its events' trace.

    The fold is a child of the first event's ``traceparent`` and links to
    the others (an append may carry several commands' events). Events
    without a ``traceparent`` (tracing off) are folded without a span.
    """
    set_fold_hook(_traced_fold)
