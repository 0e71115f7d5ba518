"""Conflicts between replicas: find them in a store, resolve them as events.

The replication index keeps each record's siblings (``eventstore``); this
module turns them into ``Version``s, resolves them by a strategy, and writes
each resolution as an ordinary record event whose context is the merge of
the siblings' vectors, so that it supersedes them all and replicates like
any other write. Resolving after a sync is what keeps replicas converged:
two replicas that hold the same siblings write resolutions with the same
data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import msgspec

from actors._conflicts import ConflictStrategy, Resolution, Version, resolve
from eventstore import (
    ApplyResult,
    EventMetadata,
    EventStore,
    NewEvent,
    RecordCreated,
    RecordDeleted,
    RecordVersion,
    ReplicatedEvent,
    conflicted_records,
    in_conflict,
    parse_record_stream,
    record_stream,
)

__all__ = [
    "Conflict",
    "StrategyFor",
    "auto_resolver",
    "conflicts_of",
    "find_conflicts",
    "resolve_conflicts",
    "to_version",
]

StrategyFor = Mapping[str, ConflictStrategy]


class Conflict(msgspec.Struct, frozen=True):
    """A record with concurrent versions (siblings), in canonical dot order."""

    collection: str
    id: str
    versions: tuple[Version, ...]


def to_version(version: RecordVersion) -> Version:
    """A stored record version as the ``Version`` that ``resolve`` takes."""
    changed = None if version.changed is None else frozenset(version.changed)
    return Version(
        data=version.data, clock=version.clock, hlc=version.hlc, changed=changed
    )


def find_conflicts(store: EventStore, collection: str | None = None) -> list[Conflict]:
    """Every record of ``collection`` (or of all) whose siblings differ.

    Siblings that all hold the same data (two replicas resolved the same
    conflict the same way) are not a conflict: the next write supersedes
    them together.
    """
    return conflicts_of(store, conflicted_records(store, collection))


def conflicts_of(
    store: EventStore, records: Iterable[tuple[str, str]]
) -> list[Conflict]:
    """The conflicts among ``records`` (collection, id)."""
    conflicts = []
    for collection, record_id, versions in in_conflict(store, records):
        if len({msgspec.msgpack.encode(v.data, order="sorted") for v in versions}) > 1:
            conflicts.append(
                Conflict(collection, record_id, tuple(to_version(v) for v in versions))
            )
    return conflicts


def resolve_conflicts(
    store: EventStore,
    conflicts: Iterable[Conflict],
    strategy: ConflictStrategy | StrategyFor,
) -> list[Resolution]:
    """Resolve conflicts by a strategy and append the resolutions atomically.

    Args:
        store: The store the conflicts were found in.
        conflicts: From :func:`find_conflicts` (or ``DataManager.conflicts``).
        strategy: ``"lww"``, ``"merge"``, ``"siblings"``, a callable, or a
            mapping from collection name to one of those (collections not in
            it are left alone).

    Returns:
        One resolution per conflict; those with ``resolved`` false (the
        ``"siblings"`` strategy) wrote nothing.

    """
    resolutions: list[Resolution] = []
    events: list[NewEvent] = []
    for conflict in conflicts:
        chosen = _strategy_for(strategy, conflict.collection)
        if chosen is None:
            continue
        resolution = resolve(conflict.versions, chosen)
        resolutions.append(resolution)
        if resolution.resolved:
            events.append(_resolution_event(conflict, resolution))
    if events:
        store.append(events)
    return resolutions


def _strategy_for(
    strategy: ConflictStrategy | StrategyFor, collection: str
) -> ConflictStrategy | None:
    if isinstance(strategy, Mapping):
        return strategy.get(collection)
    return strategy


def _resolution_event(conflict: Conflict, resolution: Resolution) -> NewEvent:
    stream = record_stream(conflict.collection, conflict.id)
    # The latest timestamp among the siblings, not the clock's: a resolution
    # must not win over other replicas' resolutions of the same writes just
    # by being made later, or independent resolvers would never agree.
    latest = max(version.hlc for version in resolution.siblings)
    metadata = EventMetadata(hlc=latest, context=resolution.context)
    if resolution.data is None:
        data: object = RecordDeleted(conflict.collection, conflict.id)
        return NewEvent(stream, "RecordDeleted", data, metadata)
    # A create, not an update: folded in any replica's log order it gives
    # the resolved record, even where a concurrent delete came last.
    data = RecordCreated(conflict.collection, conflict.id, dict(resolution.data))
    return NewEvent(stream, "RecordCreated", data, metadata)


def auto_resolver(
    store: EventStore,
    strategy: ConflictStrategy | StrategyFor,
) -> Callable[[ApplyResult, Sequence[ReplicatedEvent]], tuple[int, int]]:
    """A ``StoreEndpoint(on_applied=...)`` hook that resolves what a batch caused.

    After each applied batch it looks at the records the batch touched,
    counts those now in conflict, and resolves them by ``strategy`` (kept
    as siblings where the strategy says ``"siblings"``).
    """

    def on_applied(
        result: ApplyResult, events: Sequence[ReplicatedEvent]
    ) -> tuple[int, int]:
        del result
        touched = {e.stream for e in events if e.stream.startswith("records/")}
        conflicts = conflicts_of(store, map(parse_record_stream, sorted(touched)))
        resolutions = resolve_conflicts(store, conflicts, strategy)
        return len(conflicts), sum(1 for r in resolutions if r.resolved)

    return on_applied
