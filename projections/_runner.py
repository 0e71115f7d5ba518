"""Running projections: inline, caught up in batches, rebuilt, replayed.

Every operation here goes through :func:`projections._fold.fold` inside one
write transaction, so the view and its checkpoint always move together.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from collections.abc import Callable, Iterable, Sequence

import msgspec

from eventstore import EventStore, MemoryEventStore, StoredEvent, ViewTxn
from projections._errors import UnknownPositionError, UnknownProjectionError
from projections._fold import (
    FoldOutcome,
    HandlerFailedError,
    OnFailure,
    Projection,
    _apply,
    fold,
    read_log,
)
from projections._records import RecordsProjection, _after
from projections._state import (
    CONTROL,
    PARKED,
    SETTINGS_PREFIX,
    ParkedEvent,
    delete_parked,
    other_slot,
    parked_events,
    put_parked,
    read_state,
    slot_table,
    write_state,
)
from projections._streams import StreamsProjection
from projections._workflows import WorkflowsProjection

__all__ = [
    "InlineRunner",
    "ProjectionStatus",
    "builtin_projections",
    "catch_up",
    "fold_batch",
    "fold_log",
    "projection_named",
    "rebuild",
    "replay",
    "reset",
    "retry_parked",
    "status",
    "wait_for_checkpoint",
]

logger = logging.getLogger(__name__)

_BATCH = 5000


def builtin_projections() -> dict[str, Projection]:
    """A fresh instance of each built-in projection, by name."""
    found: list[Projection] = [
        RecordsProjection(),
        StreamsProjection(),
        WorkflowsProjection(),
    ]
    return {projection.name: projection for projection in found}


def projection_named(name: str) -> Projection:
    """The built-in projection called ``name``.

    Raises:
        UnknownProjectionError: If there is none.

    """
    known = builtin_projections()
    if name not in known:
        raise UnknownProjectionError(
            f"unknown projection {name!r} (known: {', '.join(sorted(known))})"
        )
    return known[name]


def fold_batch(
    store: EventStore,
    projection: Projection,
    events: Sequence[StoredEvent],
    *,
    building: bool = False,
    on_failure: OnFailure = "park",
    park: dict[int, tuple[str, int]] | None = None,
    seen_after: int | None = None,
    through: int | None = None,
) -> FoldOutcome:
    """Fold ``events`` in one transaction: fast, then carefully if a handler fails.

    Args:
        store: The store.
        projection: The projection.
        events: The events, in position order.
        building: Fold into the slot a rebuild fills.
        on_failure: What the careful pass does with a failing event:
            ``"park"`` it or ``"stop"`` before it.
        park: Positions to park without trying them.
        seen_after: With ``through``: ``events`` are every event of the
            projection's types in ``seen_after + 1 .. through``; the
            checkpoint moves to ``through`` (see :func:`fold`).
        through: See ``seen_after``.

    """
    registry = store.registry
    try:
        return store.write_views(
            functools.partial(
                _fold_txn,
                projection=projection,
                events=events,
                registry=registry,
                building=building,
                park=park,
                on_failure="raise",
                seen_after=seen_after,
                through=through,
            )
        )
    except HandlerFailedError as exc:
        logger.debug("%s: %s; folding the batch carefully", projection.name, exc)
    return store.write_views(
        functools.partial(
            _fold_txn,
            projection=projection,
            events=events,
            registry=registry,
            building=building,
            park=park,
            on_failure=on_failure,
            seen_after=seen_after,
            through=through,
        )
    )


def _fold_txn(txn: ViewTxn, **kwargs: object) -> FoldOutcome:
    return fold(txn, **kwargs)  # type: ignore[arg-type]


def fold_log(
    store: EventStore,
    projection: Projection,
    *,
    to_position: int,
    building: bool = False,
    batch_size: int = _BATCH,
) -> int:
    """Fold the log after the checkpoint up to ``to_position``, in batches.

    Each batch reads its events inside its own write transaction, so
    decoded events live only while they are folded. Events whose handler
    fails are parked. Returns the new checkpoint.
    """
    registry = store.registry
    name = projection.name

    def run(txn: ViewTxn, on_failure: OnFailure) -> FoldOutcome:
        state = read_state(txn, name)
        checkpoint = state.building_checkpoint if building else state.checkpoint
        last = min(to_position, checkpoint + batch_size)
        events = read_log(txn, checkpoint + 1, last, registry)
        return fold(
            txn,
            projection,
            events,
            registry=registry,
            building=building,
            on_failure=on_failure,
            contiguous=True,
        )

    while True:
        try:
            outcome = store.write_views(functools.partial(run, on_failure="raise"))
        except HandlerFailedError as exc:
            logger.debug("%s: %s; folding the batch carefully", name, exc)
            outcome = store.write_views(functools.partial(run, on_failure="park"))
        if outcome.checkpoint >= to_position or not outcome.folded:
            return outcome.checkpoint


def catch_up(
    store: EventStore,
    projection: Projection,
    *,
    to_position: int | None = None,
    batch_size: int = _BATCH,
) -> int:
    """Fold the log into the live view up to ``to_position`` (the head).

    Events whose handler fails are parked. Returns the new checkpoint.
    """
    target = store.head_position() if to_position is None else to_position
    return fold_log(store, projection, to_position=target, batch_size=batch_size)


class InlineRunner:
    """Folds a projection in the commit of every append (an inline projection).

    A read right after an append sees its events. A failing handler cannot
    be retried inside the append's transaction: its event is parked at once.

    Args:
        store: The store; the runner catches up with it, then registers.
        projection: The projection.

    """

    def __init__(self, store: EventStore, projection: Projection) -> None:
        self.store = store
        self.projection = projection
        self.name = projection.name

    def apply(self, txn: ViewTxn, events: Sequence[StoredEvent]) -> None:
        """Fold appended events (and any gap before them) into the view."""
        fold(
            txn,
            self.projection,
            events,
            registry=self.store.registry,
            on_failure="park",
        )

    def attach(self) -> InlineRunner:
        """Catch up with the log, then fold every later append inline."""
        catch_up(self.store, self.projection)
        self.store.add_inline_projector(self)
        # Appends between the catch-up and the registration: fold them now
        # (the checkpoint keeps an inline fold from folding them again).
        catch_up(self.store, self.projection)
        return self

    def detach(self) -> None:
        """Stop folding appends."""
        self.store.remove_inline_projector(self)


def rebuild(
    store: EventStore,
    projection: Projection,
    *,
    batch_size: int = _BATCH,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Replay the log into a fresh view and swap it in once it has caught up.

    Readers see the old view until the swap, which happens in one
    transaction with the last events. Events whose handler fails are parked.

    Args:
        store: A store open for writing.
        projection: The projection.
        batch_size: Events per transaction.
        progress: Called with (folded position, head) after each batch.

    Returns:
        The checkpoint of the new view.

    """
    name = projection.name
    registry = store.registry

    def begin(txn: ViewTxn) -> None:
        state = read_state(txn, name)
        txn.drop(slot_table(name, other_slot(state.slot)))
        write_state(
            txn,
            name,
            msgspec.structs.replace(state, building=True, building_checkpoint=0),
        )

    store.write_views(begin)
    checkpoint = _fill_building(store, projection, batch_size, progress)
    logger.debug("%s: caught up to %d; swapping", name, checkpoint)

    def swap(txn: ViewTxn) -> int:
        state = read_state(txn, name)
        rest = read_log(txn, state.building_checkpoint + 1, None, registry)
        fold(txn, projection, rest, registry=registry, building=True, on_failure="park")
        state = read_state(txn, name)
        old = state.slot
        txn.drop(slot_table(name, old))
        for parked in parked_events(txn, name):
            if parked.slot == old:
                delete_parked(txn, name, parked.position)
        write_state(
            txn,
            name,
            msgspec.structs.replace(
                state,
                slot=other_slot(old),
                checkpoint=state.building_checkpoint,
                building=False,
                building_checkpoint=0,
                last_error=None,
                updated_at=dt.datetime.now(dt.UTC),
            ),
        )
        return state.building_checkpoint

    done: int = store.write_views(swap)
    logger.info("rebuilt projection %s up to position %d", name, done)
    return done


def _fill_building(
    store: EventStore,
    projection: Projection,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
) -> int:
    """Fold into the slot a rebuild fills until it is a batch behind the head."""
    checkpoint = 0
    while True:
        head = store.head_position()
        if head - checkpoint <= batch_size:
            return checkpoint
        checkpoint = fold_log(
            store,
            projection,
            to_position=checkpoint + batch_size,
            building=True,
            batch_size=batch_size,
        )
        if progress is not None:
            progress(checkpoint, head)


def reset(store: EventStore, name: str) -> None:
    """Empty the view of ``name`` and its checkpoint; it folds again from 1."""

    def clear(txn: ViewTxn) -> None:
        for slot in (0, 1):
            txn.drop(slot_table(name, slot))
        for parked in parked_events(txn, name):
            delete_parked(txn, name, parked.position)
        write_state(txn, name, read_state(txn, name).__class__())

    store.write_views(clear)
    logger.info("reset projection %s", name)


def replay(
    store: EventStore,
    projections: Iterable[Projection],
    *,
    to_position: int,
    batch_size: int = _BATCH,
) -> MemoryEventStore:
    """Fold the log up to ``to_position`` into a temporary view in memory.

    The live views are not touched; the settings kept in the store (the
    declared indexes) are. Read the result with the views' readers
    (``RecordsView(temporary)``, ...).

    Raises:
        UnknownPositionError: If ``to_position`` is below 0 or past the head.

    """
    head = store.head_position()
    if to_position < 0 or to_position > head:
        raise UnknownPositionError(
            f"position {to_position} is not in the log (its head is {head})"
        )
    temporary = MemoryEventStore(registry=store.registry)
    with store.read_views() as reader:
        settings = list(reader.scan(CONTROL, SETTINGS_PREFIX, _after(SETTINGS_PREFIX)))

    def copy(txn: ViewTxn) -> None:
        for key, value in settings:
            txn.put(CONTROL, key, value)

    temporary.write_views(copy)
    chosen = list(projections)
    position = 0
    while position < to_position:
        last = min(to_position, position + batch_size)
        events = list(store.read_all(from_position=position + 1, to_position=last))
        for projection in chosen:
            fold_batch(temporary, projection, events)
        position = last
    return temporary


class ProjectionStatus(msgspec.Struct, frozen=True):
    """How far a projection has folded the log.

    Attributes:
        name: The projection.
        checkpoint: The last position folded into the live view.
        head: The log's head position.
        lag_events: ``head - checkpoint``.
        lag_s: How long the oldest unfolded event has waited (0 if none).
        events_per_s: The fold rate of the last batch.
        last_error: The last handler error.
        parked: How many events are parked.
        building: True while a rebuild runs.
        updated_at: When the view last moved.

    """

    name: str
    checkpoint: int
    head: int
    lag_events: int
    lag_s: float
    events_per_s: float
    last_error: str | None
    parked: int
    building: bool
    updated_at: dt.datetime | None


def status(
    store: EventStore, name: str, *, now: dt.datetime | None = None
) -> ProjectionStatus:
    """The status of projection ``name``."""
    head = store.head_position()
    with store.read_views() as reader:
        state = read_state(reader, name)
        parked = sum(
            1
            for _ in reader.scan(
                PARKED, name.encode() + b"\x00", name.encode() + b"\x01"
            )
        )
    lag_s = 0.0
    if state.checkpoint < head:
        oldest = next(
            iter(
                store.read_all(
                    from_position=state.checkpoint + 1,
                    to_position=state.checkpoint + 1,
                )
            )
        )
        moment = now or dt.datetime.now(dt.UTC)
        lag_s = max(0.0, (moment - oldest.recorded_at).total_seconds())
    return ProjectionStatus(
        name,
        state.checkpoint,
        head,
        max(0, head - state.checkpoint),
        lag_s,
        state.events_per_s,
        state.last_error,
        parked,
        state.building,
        state.updated_at,
    )


def retry_parked(store: EventStore, projection: Projection) -> list[ParkedEvent]:
    """Fold every parked event of ``projection`` again, out of order.

    An event that folds is unparked; one that fails again stays parked with
    its new error and one more attempt.

    Returns:
        The events still parked.

    """
    name = projection.name
    registry = store.registry

    def retry(txn: ViewTxn) -> list[ParkedEvent]:
        state = read_state(txn, name)
        table = slot_table(name, state.slot)
        folder = projection.folder(txn, table)
        still: list[ParkedEvent] = []
        for parked in parked_events(txn, name):
            if parked.slot != state.slot:
                continue
            event = next(
                iter(read_log(txn, parked.position, parked.position, registry))
            )
            failure = _apply(txn, folder, event, careful=True)
            if failure is None:
                delete_parked(txn, name, parked.position)
                continue
            again = msgspec.structs.replace(
                parked, error=failure, attempts=parked.attempts + 1
            )
            put_parked(txn, again)
            still.append(again)
        folder.finish(txn)
        if not still:
            write_state(txn, name, msgspec.structs.replace(state, last_error=None))
        return still

    remaining: list[ParkedEvent] = store.write_views(retry)
    logger.info("retried parked events of %s: %d remain", name, len(remaining))
    return remaining


def wait_for_checkpoint(
    store: EventStore,
    name: str,
    position: int,
    *,
    timeout_s: float,
) -> int:
    """Block until the live view of ``name`` has folded ``position``.

    Raises:
        TimeoutError: If it has not after ``timeout_s``.

    """
    deadline = time.monotonic() + timeout_s
    while True:
        generation = store.notifier.generation
        with store.read_views() as reader:
            checkpoint = read_state(reader, name).checkpoint
        if checkpoint >= position:
            return checkpoint
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            raise TimeoutError(
                f"projection {name!r} is at {checkpoint}, not {position}, "
                f"after {timeout_s} s"
            )
        store.notifier.wait(generation, min(left_s, 0.2))
