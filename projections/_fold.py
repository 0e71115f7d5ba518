"""Folding events into a projection's view, exactly once.

Design note. A fold runs inside one write transaction and reads the
projection's checkpoint from that same transaction: events at or below it
are skipped, a gap between it and the first event given is filled from the
log's own table, and the new checkpoint is written before the commit. So a
crash either loses the whole transaction (the events are folded again on
restart) or keeps it with its checkpoint (they are skipped): an event is
never skipped nor folded twice, whatever the caller delivered.

A handler that raises must not leave half of its writes behind. The fast
path folds a batch straight into the transaction and, if any handler
raises, aborts it; the careful path then folds each event into an
:class:`Overlay` that is copied into the transaction only if the handler
returned.
"""

from __future__ import annotations

import abc
import bisect
import datetime as dt
import functools
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from eventstore import EventRegistry, StoredEvent, ViewReader, ViewTxn
from eventstore._codec import decode_records
from eventstore._tables import EVENTS, pack_position
from projections._errors import HandlerError
from projections._state import (
    ParkedEvent,
    ProjectionState,
    other_slot,
    put_parked,
    read_state,
    slot_table,
    write_state,
)

__all__ = [
    "Apply",
    "FoldOutcome",
    "Folder",
    "HandlerFailedError",
    "OnFailure",
    "Overlay",
    "Projection",
    "describe_error",
    "fold",
    "read_log",
]

Apply = Callable[[ViewTxn, StoredEvent], None]
_CHUNK = 512
OnFailure = Literal["raise", "stop", "park"]


class Projection(abc.ABC):
    """A named fold of the log into a view.

    Subclasses set :attr:`name` and :attr:`types` (the event types they
    fold; ``None`` for all) and return, from :meth:`folder`, the function
    that folds one event. :meth:`finish` writes what the folder kept in
    memory for the batch.
    """

    name: str
    types: frozenset[str] | None = None

    @abc.abstractmethod
    def folder(self, reader: ViewReader, table: str) -> Folder:
        """A folder for one batch into ``table``; ``reader`` sees the store."""


class Folder(abc.ABC):
    """Folds the events of one batch into one view table.

    Attributes:
        raises_before_writing: True if :meth:`apply` only ever raises
            before its first write, so a refused event leaves nothing to
            undo: the careful path then folds it without an overlay.

    """

    raises_before_writing: bool = False

    @abc.abstractmethod
    def apply(self, txn: ViewTxn, event: StoredEvent) -> None:
        """Fold one event; raise to refuse it (nothing it wrote is kept)."""

    def finish(self, txn: ViewTxn) -> None:
        """Write what the batch kept in memory (the default keeps nothing)."""
        del txn


class HandlerFailedError(HandlerError):
    """Raised (inside a fold) when a handler raised on the fast path."""

    def __init__(self, position: int, error: str) -> None:
        self.position = position
        self.error = error
        super().__init__(f"the handler failed at position {position}: {error}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.position, self.error))


@dataclass(slots=True)
class FoldOutcome:
    """What one fold did.

    Attributes:
        checkpoint: The checkpoint after the fold.
        folded: How many events were folded (or parked).
        failed_at: The position whose handler raised, on the careful path.
        error: That handler's error.
        parked: Positions parked in this fold.

    """

    checkpoint: int
    folded: int = 0
    failed_at: int | None = None
    error: str | None = None
    parked: list[int] = field(default_factory=list)


def describe_error(exc: BaseException) -> str:
    """``Type: message``, as parked events and statuses show an error."""
    return f"{type(exc).__name__}: {exc}"


def fold(
    txn: ViewTxn,
    projection: Projection,
    events: Iterable[StoredEvent],
    *,
    registry: EventRegistry,
    on_failure: OnFailure = "raise",
    building: bool = False,
    park: Mapping[int, tuple[str, int]] | None = None,
    to_position: int | None = None,
    contiguous: bool = False,
    seen_after: int | None = None,
    through: int | None = None,
) -> FoldOutcome:
    """Fold ``events`` after the stored checkpoint, and move the checkpoint.

    Args:
        txn: The write transaction (the store's, or a temporary view's).
        projection: The projection.
        events: Events in position order; those at or below the checkpoint
            are skipped and a gap before them is read from the log.
        registry: Decodes events read to fill a gap.
        on_failure: ``"raise"``: fold straight into ``txn`` and raise
            :class:`HandlerFailedError` if a handler raises. ``"stop"``: fold
            each event in an overlay and stop before the first failing one.
            ``"park"``: the same, but park the failing event and go on.
        building: Fold into the slot a rebuild fills, not the live one.
        park: Positions to park instead of folding, with their error and
            attempts (events that kept failing).
        to_position: Stop after this position.
        contiguous: The events start right after the checkpoint and have no
            gap (they were read from the log in this transaction).
        seen_after: With ``through``: ``events`` holds every event of the
            projection's types in ``seen_after + 1 .. through`` (a follower
            filtered by type read them). Only a gap before ``seen_after``
            is read from the log, and the checkpoint moves to ``through``
            unless a handler stopped the fold.
        through: See ``seen_after``.

    Raises:
        HandlerFailedError: On the fast path, when a handler raises; the
            caller must abort the transaction.

    """
    started = time.perf_counter()
    name = projection.name
    state = read_state(txn, name)
    slot = other_slot(state.slot) if building else state.slot
    checkpoint = state.building_checkpoint if building else state.checkpoint
    table = slot_table(name, slot)
    folder = projection.folder(txn, table)
    wanted = projection.types
    outcome = FoldOutcome(checkpoint)
    last_error = state.last_error
    gaps = functools.partial(
        _fill_gaps,
        txn,
        checkpoint=checkpoint,
        registry=registry,
        wanted=wanted,
        seen_after=None if through is None else seen_after,
    )
    if on_failure == "raise" and not park:
        outcome.checkpoint, outcome.folded = _fold_fast(
            txn,
            folder,
            events if contiguous else gaps(events),
            wanted=wanted,
            to_position=to_position,
            checkpoint=checkpoint,
        )
        events = ()
    for event in gaps(events):
        if to_position is not None and event.position > to_position:
            break
        if park and event.position in park:
            error, attempts = park[event.position]
            _park(txn, name, event, error=error, attempts=attempts, slot=slot)
            outcome.parked.append(event.position)
            last_error = error
        elif wanted is None or event.type in wanted:
            failure = _apply(txn, folder, event, careful=on_failure != "raise")
            if failure is not None and on_failure == "park":
                _park(txn, name, event, error=failure, attempts=1, slot=slot)
                outcome.parked.append(event.position)
                last_error = failure
            elif failure is not None:
                outcome.failed_at = event.position
                outcome.error = last_error = failure
                break
        outcome.checkpoint = event.position
        outcome.folded += 1
    if through is not None and seen_after is not None and outcome.failed_at is None:
        outcome.checkpoint = max(outcome.checkpoint, through)
    folder.finish(txn)
    elapsed_s = time.perf_counter() - started
    rate = outcome.folded / elapsed_s if elapsed_s > 0 and outcome.folded else 0.0
    if building:
        new_state = _replace(
            state,
            building=True,
            building_checkpoint=outcome.checkpoint,
        )
    else:
        new_state = _replace(
            state,
            checkpoint=outcome.checkpoint,
            last_error=last_error,
            updated_at=dt.datetime.now(dt.UTC),
            events_per_s=rate if outcome.folded else state.events_per_s,
        )
    write_state(txn, name, new_state)
    return outcome


def _fold_fast(
    txn: ViewTxn,
    folder: Folder,
    events: Iterable[StoredEvent],
    *,
    wanted: frozenset[str] | None,
    to_position: int | None,
    checkpoint: int,
) -> tuple[int, int]:
    """Fold straight into ``txn``; return the checkpoint and the count."""
    apply = folder.apply
    position = checkpoint
    folded = 0
    for event in events:
        if to_position is not None and event.position > to_position:
            break
        if wanted is None or event.type in wanted:
            try:
                apply(txn, event)
            except Exception as exc:
                raise HandlerFailedError(event.position, describe_error(exc)) from exc
        position = event.position
        folded += 1
    return position, folded


def _apply(
    txn: ViewTxn, folder: Folder, event: StoredEvent, *, careful: bool
) -> str | None:
    if not careful:
        try:
            folder.apply(txn, event)
        except Exception as exc:
            raise HandlerFailedError(event.position, describe_error(exc)) from exc
        return None
    if folder.raises_before_writing:
        try:
            folder.apply(txn, event)
        except Exception as exc:  # noqa: BLE001 - the caller retries or parks it
            return describe_error(exc)
        return None
    overlay = Overlay(txn)
    try:
        folder.apply(overlay, event)
    except Exception as exc:  # noqa: BLE001 - the caller retries or parks it
        return describe_error(exc)
    overlay.flush()
    return None


def _park(
    txn: ViewTxn, name: str, event: StoredEvent, *, error: str, attempts: int, slot: int
) -> None:
    put_parked(
        txn,
        ParkedEvent(
            name,
            event.position,
            event.stream,
            event.type,
            error,
            attempts,
            dt.datetime.now(dt.UTC),
            slot,
        ),
    )


def _replace(state: ProjectionState, **changes: Any) -> ProjectionState:
    return msgspec.structs.replace(state, **changes)


def _fill_gaps(
    txn: ViewReader,
    events: Iterable[StoredEvent],
    *,
    checkpoint: int,
    registry: EventRegistry,
    wanted: frozenset[str] | None = None,
    seen_after: int | None = None,
) -> Iterator[StoredEvent]:
    """The events after ``checkpoint``, reading any missing ones from the log.

    With ``seen_after``, ``events`` are complete past it: only a gap up to
    it is read (its events of the ``wanted`` types).
    """
    position = checkpoint
    if seen_after is not None and seen_after > position:
        yield from read_log(txn, position + 1, seen_after, registry, types=wanted)
        position = seen_after
    for event in events:
        if event.position <= position:
            continue
        if seen_after is None and event.position > position + 1:
            yield from read_log(txn, position + 1, event.position - 1, registry)
        position = event.position
        yield event


def read_log(
    txn: ViewReader,
    first: int,
    last: int | None,
    registry: EventRegistry,
    *,
    types: frozenset[str] | None = None,
) -> Iterator[StoredEvent]:
    """Events ``first..last`` read from the log table of the transaction.

    With ``types``, only events of those types (the others' data is not
    decoded).
    """
    stop = None if last is None else pack_position(last + 1)
    scan = txn.scan(EVENTS, pack_position(first), stop)
    while chunk := list(itertools.islice(scan, _CHUNK)):
        yield from decode_records(chunk, registry, types)


class Overlay:
    """Writes kept aside from a transaction until :meth:`flush`.

    Reads see the overlay's writes over the transaction's data.
    """

    def __init__(self, txn: ViewTxn) -> None:
        self._txn = txn
        self._writes: dict[tuple[str, bytes], bytes | None] = {}

    def get(self, table: str, key: bytes) -> bytes | None:
        """The value at ``key``, the overlay's first."""
        if (table, key) in self._writes:
            return self._writes[table, key]
        return self._txn.get(table, key)

    def put(self, table: str, key: bytes, value: bytes) -> None:
        """Set ``key`` to ``value`` in the overlay."""
        self._writes[table, key] = value

    def delete(self, table: str, key: bytes) -> bool:
        """Remove ``key`` in the overlay; True if it was there."""
        present = self.get(table, key) is not None
        self._writes[table, key] = None
        return present

    def drop(self, table: str) -> None:
        """Not supported: a handler folds one event, it never drops a table."""
        raise HandlerError(
            f"dropping table {table!r} inside a handler is not supported"
        )

    def scan(
        self, table: str, start: bytes = b"", stop: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Items with ``start <= key < stop``, the overlay's over the data."""
        merged = dict(self._txn.scan(table, start, stop))
        for (name, key), value in self._writes.items():
            if name != table or key < start or (stop is not None and key >= stop):
                continue
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        keys = sorted(merged)
        index = bisect.bisect_left(keys, start)
        for key in keys[index:]:
            yield key, merged[key]

    def flush(self) -> None:
        """Copy the overlay's writes into the transaction."""
        for (table, key), value in self._writes.items():
            if value is None:
                self._txn.delete(table, key)
            else:
                self._txn.put(table, key, value)
        self._writes.clear()
