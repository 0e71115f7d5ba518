"""Record clocks: each record event's dot and context, and each record's siblings.

Design note. The replication index folds every record event (``RecordCreated``,
``RecordUpdated``, ``RecordDeleted``) into three view tables, in the append's
transaction:

* ``versions``: per record and dot, the version the event wrote (its context,
  timestamp, the whole record after it, and the fields it changed);
* ``siblings``: per record, the dots of the versions no other supersedes;
* ``conflicts``: the records with more than one sibling, by collection.

A local event without a vector is a write by this replica that saw the
record's current siblings: its dot is this replica's next counter for the
record and its context is the siblings' merged vector (or the context the
writer put in its metadata). A remote event brings its dot (its origin's
counter in its vector) and context. An update is a merge patch, applied to
the version its writer read: the greatest (hlc, origin, counter) of the
latest version of each origin its context covers. That choice depends only
on the causal history, so every replica computes the same record for the
same dot, whatever order concurrent events reached it in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from eventstore._clock import HLCTimestamp, VersionVector
from eventstore._dots import Dot, DottedVersionVector
from eventstore._tables import ViewReader, ViewTxn, bounded_key, view_table
from eventstore._types import EventMetadata
from eventstore._vocabulary import (
    RECORD_STREAM_PREFIX,
    merge_patch,
    parse_record_stream,
)

__all__ = [
    "CONFLICTS_TABLE",
    "RECORD_EVENT_TYPES",
    "SIBLINGS_TABLE",
    "VERSIONS_TABLE",
    "RecordVersion",
    "conflict_key",
    "fold_record_event",
    "read_siblings",
    "record_clock",
]

VERSIONS_TABLE = view_table("replication.versions")
SIBLINGS_TABLE = view_table("replication.siblings")
CONFLICTS_TABLE = view_table("replication.conflicts")
CLOCKS_TABLE = view_table("replication.clocks")
RECORD_EVENT_TYPES = frozenset({"RecordCreated", "RecordUpdated", "RecordDeleted"})
_SEP = b"\x00"
_EMPTY = VersionVector()


class RecordVersion(msgspec.Struct, frozen=True, array_like=True):
    """One version of a record, as an event wrote it.

    Attributes:
        dot: The write's origin replica and counter for the record.
        context: The vector of what the writer had seen.
        hlc: The write's timestamp at its origin.
        data: The whole record after the write; ``None`` for a tombstone.
        changed: The top-level fields a merge patch set or removed; ``None``
            when the write gave the whole record.
        position: Where the event is in this store's log.

    """

    dot: Dot
    context: VersionVector
    hlc: HLCTimestamp
    data: dict[str, Any] | None
    changed: tuple[str, ...] | None
    position: int

    @property
    def clock(self) -> DottedVersionVector:
        """The write's dotted version vector."""
        return DottedVersionVector(self.dot, self.context)


class _Clock(msgspec.Struct, frozen=True, array_like=True):
    counter: int
    context: VersionVector


_version_encoder = msgspec.msgpack.Encoder()
_version_decoder = msgspec.msgpack.Decoder(RecordVersion)
_dots_decoder = msgspec.msgpack.Decoder(tuple[Dot, ...])
_clock_decoder = msgspec.msgpack.Decoder(_Clock)


def conflict_key(collection: str, record_id: str) -> bytes:
    """The key of a record in the conflicts table."""
    return bounded_key(collection) + _SEP + bounded_key(record_id)


def _version_key(stream_key: bytes, dot: Dot) -> bytes:
    return stream_key + _SEP + dot.replica.encode() + _SEP + dot.counter.to_bytes(8)


def _get_version(
    reader: ViewReader, stream_key: bytes, dot: Dot
) -> RecordVersion | None:
    raw = reader.get(VERSIONS_TABLE, _version_key(stream_key, dot))
    return None if raw is None else _version_decoder.decode(raw)


def read_siblings(reader: ViewReader, stream: str) -> tuple[RecordVersion, ...]:
    """The versions of a record that no other supersedes, in dot order."""
    key = bounded_key(stream)
    raw = reader.get(SIBLINGS_TABLE, key)
    if raw is None:
        return ()
    found = (_get_version(reader, key, dot) for dot in _dots_decoder.decode(raw))
    return tuple(version for version in found if version is not None)


def record_clock(reader: ViewReader, position: int) -> tuple[int, VersionVector] | None:
    """The counter and context given to the local record event at ``position``."""
    raw = reader.get(CLOCKS_TABLE, position.to_bytes(8))
    if raw is None:
        return None
    clock = _clock_decoder.decode(raw)
    return clock.counter, clock.context


def _merged(versions: Iterable[RecordVersion]) -> VersionVector:
    merged = _EMPTY
    for version in versions:
        merged = merged.merge(version.clock.vector)
    return merged


def _base(
    txn: ViewTxn, stream_key: bytes, context: VersionVector
) -> dict[str, Any] | None:
    """The record the writer of a patch read: see the design note."""
    candidates = [
        found
        for replica, counter in context.counters.items()
        if (found := _get_version(txn, stream_key, Dot(replica, counter))) is not None
    ]
    frontier = [
        v
        for v in candidates
        if not any(o.clock.supersedes(v.clock) for o in candidates)
    ]
    if not frontier:
        return None
    latest = max(frontier, key=lambda v: (v.hlc, v.dot.replica, v.dot.counter))
    return latest.data


def fold_record_event(
    txn: ViewTxn,
    *,
    stream: str,
    type_: str,
    data: Any,
    metadata: EventMetadata,
    origin: str,
    hlc: HLCTimestamp,
    position: int,
    local: bool,
) -> int | None:
    """Fold one record event into the record's versions and siblings.

    Args:
        txn: The append's transaction.
        stream: The event's stream (``records/<collection>/<id>``).
        type_: Its type; other than the three record types, nothing happens.
        data: Its data (a record event struct, or its plain form).
        metadata: Its metadata.
        origin: Its origin replica.
        hlc: Its timestamp.
        position: Its position.
        local: Whether it was written here (its clock is then made here).

    Returns:
        The event's dot counter, or None if it is not a record event.

    """
    if type_ not in RECORD_EVENT_TYPES or not stream.startswith(RECORD_STREAM_PREFIX):
        return None
    collection, record_id = parse_record_stream(stream)
    key = bounded_key(stream)
    siblings = read_siblings(txn, stream)
    current = _merged(siblings)

    vector = metadata.vector
    if vector is not None and vector.get(origin):
        counter = vector.get(origin)
        context = metadata.context or _without(vector, origin, counter)
    else:
        context = (
            metadata.context
            if metadata.context is not None
            else (current if local else _EMPTY)
        )
        counter = max(current.get(origin), context.get(origin)) + 1
        txn.put(
            CLOCKS_TABLE,
            position.to_bytes(8),
            _version_encoder.encode(_Clock(counter, context)),
        )
    dot = Dot(origin, counter)
    # A local write without a vector has a fresh dot; others may repeat one.
    if not (local and vector is None) and _get_version(txn, key, dot) is not None:
        return counter

    value, changed = _value_of(txn, key, type_, data, context)
    version = RecordVersion(dot, context, hlc, value, changed, position)
    txn.put(VERSIONS_TABLE, _version_key(key, dot), _version_encoder.encode(version))

    clock = version.clock
    if any(s.clock.supersedes(clock) for s in siblings):
        kept = list(siblings)
    else:
        kept = [s for s in siblings if not clock.supersedes(s.clock)]
        kept.append(version)
    kept.sort(key=lambda v: v.dot)
    txn.put(SIBLINGS_TABLE, key, _version_encoder.encode(tuple(v.dot for v in kept)))
    if len(kept) > 1:
        txn.put(CONFLICTS_TABLE, conflict_key(collection, record_id), key)
    elif len(siblings) > 1:
        txn.delete(CONFLICTS_TABLE, conflict_key(collection, record_id))
    return counter


def _without(vector: VersionVector, origin: str, counter: int) -> VersionVector:
    counters = dict(vector.counters)
    if counter > 1:
        counters[origin] = counter - 1
    else:
        del counters[origin]
    return VersionVector(counters)


def _value_of(
    txn: ViewTxn, key: bytes, type_: str, data: Any, context: VersionVector
) -> tuple[dict[str, Any] | None, tuple[str, ...] | None]:
    plain = msgspec.to_builtins(data) if isinstance(data, msgspec.Struct) else data
    if type_ == "RecordDeleted":
        return None, None
    if type_ == "RecordCreated":
        return dict(plain["data"]), None
    changes = dict(plain["changes"])
    if plain.get("replace", False):
        return changes, None
    base = _base(txn, key, context) or {}
    return merge_patch(base, changes), tuple(sorted(changes))
