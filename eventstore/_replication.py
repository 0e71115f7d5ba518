"""Log-level replication: origins, high-water marks, export and apply of batches.

Design note. Every replicated event has an **origin** (the replica where it
was first appended) and an **origin sequence number**, gapless from 1 per
origin, so that a replica's high-water mark for an origin means "I hold every
event of that origin up to here". Local events do not carry their number in
the log: an inline projector (:class:`ReplicationIndex`) numbers them in the
transaction of their append, and keeps the index ``(origin, seq) ->
position`` and the per-origin counters in view tables. Remote events keep
their origin, number, clock and vector in their metadata; the same projector
refuses one whose number is not the next of its origin, inside the append's
transaction, so two appliers racing on one store cannot leave a gap or a
duplicate: the loser's append writes nothing and it re-checks.

A store applies an origin's events in their order, so its positions are a
linear extension of causality; :func:`events_since` ships missing events in
position order, which keeps that property on the receiving side.

Streams under ``local/`` (leases, for one) belong to one replica: they get no
number and are never shipped.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid
import weakref
from collections.abc import (
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any

import msgspec

from eventstore._clock import (
    DEFAULT_MAX_DRIFT_MS,
    HLCTimestamp,
    HybridLogicalClock,
    VersionVector,
    system_time_ms,
)
from eventstore._codec import EventRegistry, decode_envelope
from eventstore._dots import Dot, DottedVersionVector
from eventstore._errors import (
    ClockDriftError,
    EventStoreError,
    UnknownSchemaVersionError,
)
from eventstore._protocol import EventStore
from eventstore._record_clocks import (
    CLOCKS_TABLE,
    CONFLICTS_TABLE,
    RECORD_EVENT_TYPES,
    SIBLINGS_TABLE,
    VERSIONS_TABLE,
    RecordVersion,
    conflict_key,
    fold_record_event,
    read_siblings,
    record_clock,
)
from eventstore._tables import (
    EVENTS,
    META,
    ViewReader,
    ViewTxn,
    bounded_key,
    pack_position,
    unpack_position,
    view_table,
)
from eventstore._types import EventMetadata, NewEvent, StoredEvent
from eventstore._vocabulary import (
    RECORD_STREAM_PREFIX,
    parse_record_stream,
    record_stream,
)

__all__ = [
    "LOCAL_STREAM_PREFIX",
    "ApplyResult",
    "OriginSequenceError",
    "RemoteEventError",
    "RemoteValidation",
    "ReplicatedEvent",
    "ReplicationError",
    "ReplicationIndex",
    "apply_remote",
    "conflicted_records",
    "events_since",
    "high_water_marks",
    "in_conflict",
    "latest_hlc",
    "record_siblings",
    "replica_id",
    "replicating",
    "replication_index",
    "set_replica_id",
]

logger = logging.getLogger(__name__)

LOCAL_STREAM_PREFIX = "local/"
SEQ_TABLE = view_table("replication.seq")
MARKS_TABLE = view_table("replication.marks")
DOTS_TABLE = view_table("replication.dots")
STATE_TABLE = view_table("replication.state")
_CHECKPOINT = b"checkpoint"
_HLC = b"hlc"
_SEP = b"\x00"
_MAX_ORIGIN_BYTES = 256
_APPLY_ATTEMPTS = 5

_hlc_encoder = msgspec.msgpack.Encoder()
_hlc_decoder = msgspec.msgpack.Decoder(HLCTimestamp)


class ReplicationError(EventStoreError):
    """The root of the errors of replication."""


class OriginSequenceError(ReplicationError):
    """Raised when an event's origin sequence number is not the next one.

    Attributes:
        origin: The origin replica.
        expected: The number the store expected next.
        actual: The number the event carried.

    """

    def __init__(self, origin: str, expected: int, actual: int) -> None:
        self.origin = origin
        self.expected = expected
        self.actual = actual
        kind = "a gap" if actual > expected else "a repeat"
        super().__init__(
            f"event {actual} of origin {origin!r} would leave {kind}: the "
            f"store holds that origin's events up to {expected - 1}"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.origin, self.expected, self.actual))


class RemoteEventError(ReplicationError):
    """Raised when a remote event is refused; nothing of its batch is applied.

    Attributes:
        origin: The event's origin replica, if it named one.
        origin_seq: Its origin sequence number, if it had one.
        reason: What was wrong.

    """

    def __init__(self, origin: str | None, origin_seq: int | None, reason: str) -> None:
        self.origin = origin
        self.origin_seq = origin_seq
        self.reason = reason
        super().__init__(
            f"refused remote event {origin_seq} of origin {origin!r}: {reason}"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.origin, self.origin_seq, self.reason))


class ReplicatedEvent(msgspec.Struct, frozen=True, array_like=True):
    """An event as shipped between replicas.

    Attributes:
        stream: Its stream.
        type: Its event type's name.
        schema_version: The schema version of ``data`` (0: unregistered).
        data: Its data as MessagePack, as the origin stored it.
        metadata: Its metadata, with ``origin``, ``origin_seq`` and ``hlc``
            always set.

    """

    stream: str
    type: str
    schema_version: int
    data: msgspec.Raw
    metadata: EventMetadata


class ApplyResult(msgspec.Struct, frozen=True):
    """What :func:`apply_remote` did with a batch.

    Attributes:
        applied: Events appended.
        skipped: Events the store held already (by origin and number).
        first_position: The position of the first appended event, or 0.
        last_position: The position of the last appended event, or 0.

    """

    applied: int
    skipped: int
    first_position: int = 0
    last_position: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class RemoteValidation:
    """What a store accepts from a peer, besides well-formed events.

    Attributes:
        clock: The local clock: each batch's latest timestamp goes through
            ``clock.update``, which refuses one too far ahead. Without it a
            fresh clock with ``max_drift_ms`` and ``wall_clock_ms`` checks.
        max_drift_ms: The allowed drift when ``clock`` is not given.
        wall_clock_ms: The wall clock when ``clock`` is not given.
        collections: The collections whose records may be received: names,
            or a predicate on the name; ``None`` accepts any.

    """

    clock: HybridLogicalClock | None = None
    max_drift_ms: int = DEFAULT_MAX_DRIFT_MS
    wall_clock_ms: Callable[[], int] = system_time_ms
    collections: Collection[str] | Callable[[str], bool] | None = None

    def accepts_collection(self, collection: str) -> bool:
        """Whether records of ``collection`` may be received."""
        allowed = self.collections
        if allowed is None:
            return True
        if callable(allowed):
            return bool(allowed(collection))
        return collection in allowed


class ReplicationIndex:
    """The inline projector that numbers events per origin.

    Create it with :func:`replication_index`, which attaches it to a store
    once and brings it up to date with the log.
    """

    name = "replication"

    def __init__(self, replica_id: str) -> None:
        self.replica_id = replica_id

    def apply(self, txn: ViewTxn, events: Sequence[StoredEvent]) -> None:
        """Number ``events`` in the append's transaction.

        Raises:
            OriginSequenceError: If a remote event is not its origin's next.

        """
        checkpoint = _get_int(txn, STATE_TABLE, _CHECKPOINT)
        if events and events[0].position > checkpoint + 1:
            self.catch_up(txn, events[0].position - 1)
        fold = _Fold(txn, self.replica_id)
        for event in events:
            if event.position > checkpoint:
                fold.add(
                    event.position,
                    event.stream,
                    event.metadata,
                    event.recorded_at,
                    type_=event.type,
                    data=event.data,
                )
        fold.finish(events[-1].position if events else checkpoint)

    def catch_up(self, txn: ViewTxn, to_position: int) -> int:
        """Number the events up to ``to_position`` not yet numbered.

        Returns:
            How many events were read.

        """
        checkpoint = _get_int(txn, STATE_TABLE, _CHECKPOINT)
        if to_position <= checkpoint:
            return 0
        fold = _Fold(txn, self.replica_id)
        count = 0
        stop = pack_position(to_position + 1)
        for key, record in txn.scan(EVENTS, pack_position(checkpoint + 1), stop):
            position = unpack_position(key)
            envelope = decode_envelope(record, position)
            data: Any = None
            if envelope.type in RECORD_EVENT_TYPES:
                data = msgspec.msgpack.decode(envelope.data)
            fold.add(
                position,
                envelope.stream,
                envelope.metadata,
                envelope.recorded_at,
                type_=envelope.type,
                data=data,
            )
            count += 1
        fold.finish(to_position)
        return count


class _Fold:
    """The counters of one transaction, written back once at its end."""

    def __init__(self, txn: ViewTxn, local: str) -> None:
        self.txn = txn
        self.local = local
        self.marks: dict[str, int] = {}
        self.latest: HLCTimestamp | None = None

    def _mark(self, origin: str) -> int:
        mark = self.marks.get(origin)
        if mark is None:
            mark = _get_int(self.txn, MARKS_TABLE, _origin_key(origin))
            self.marks[origin] = mark
        return mark

    def add(
        self,
        position: int,
        stream: str,
        metadata: EventMetadata,
        recorded_at: Any,
        *,
        type_: str,
        data: Any,
    ) -> None:
        if stream.startswith(LOCAL_STREAM_PREFIX):
            return
        seq = metadata.origin_seq
        origin = metadata.origin
        local = seq is None or not origin
        if seq is None or not origin:
            origin = self.local
            seq = self._mark(origin) + 1
        else:
            expected = self._mark(origin) + 1
            if seq != expected:
                raise OriginSequenceError(origin, expected, seq)
        self.marks[origin] = seq
        key = _origin_key(origin)
        self.txn.put(
            SEQ_TABLE, key + _SEP + pack_position(seq), pack_position(position)
        )
        stamp = metadata.hlc or _stamp_of(recorded_at)
        counter = fold_record_event(
            self.txn,
            stream=stream,
            type_=type_,
            data=data,
            metadata=metadata,
            origin=origin,
            hlc=stamp,
            position=position,
            local=local,
        )
        vector = metadata.vector
        if counter is None and vector is not None:
            counter = vector.get(origin) or None
        if counter is not None:
            self.txn.put(
                DOTS_TABLE, key + _SEP + bounded_key(stream), pack_position(counter)
            )
        if self.latest is None or stamp > self.latest:
            self.latest = stamp

    def finish(self, checkpoint: int) -> None:
        txn = self.txn
        for origin, mark in self.marks.items():
            txn.put(MARKS_TABLE, _origin_key(origin), pack_position(mark))
        if self.latest is not None:
            stored = txn.get(STATE_TABLE, _HLC)
            if stored is None or _hlc_decoder.decode(stored) < self.latest:
                txn.put(STATE_TABLE, _HLC, _hlc_encoder.encode(self.latest))
        txn.put(STATE_TABLE, _CHECKPOINT, pack_position(checkpoint))


_indexes: weakref.WeakKeyDictionary[Any, ReplicationIndex] = weakref.WeakKeyDictionary()
_indexes_lock = threading.Lock()


def replica_id(store: EventStore) -> str:
    """The store's stable replica id (made at creation; on first use in memory).

    Raises:
        ReplicationError: If a read-only store has none.

    """
    with store.read_views() as reader:
        raw = reader.get(META, b"replica_id")
    if raw is not None:
        return bytes(raw).decode()
    if store.readonly:
        raise ReplicationError("this read-only store has no replica id")

    def make(txn: ViewTxn) -> bytes:
        found = txn.get(META, b"replica_id")
        if found is None:
            found = uuid.uuid4().hex.encode()
            txn.put(META, b"replica_id", found)
        return found

    made: bytes = store.write_views(make)
    return made.decode()


def replication_index(store: EventStore) -> ReplicationIndex:
    """The store's replication index, attached and brought up to date.

    Calling it again is cheap: it checks that the index covers the head and
    numbers any events appended before it was attached.

    Raises:
        ReplicationError: If a read-only store's index is behind its log.

    """
    with _indexes_lock:
        index = _indexes.get(store)
        if index is None:
            index = ReplicationIndex(replica_id(store))
            if not store.readonly:
                # Open the tables in a write transaction, so that the store
                # keeps their handles for the readers that follow.
                store.write_views(_touch_tables)
                store.add_inline_projector(index)
            _indexes[store] = index
    head = store.head_position()
    with store.read_views() as reader:
        checkpoint = _get_int(reader, STATE_TABLE, _CHECKPOINT)
    if checkpoint < head:
        if store.readonly:
            raise ReplicationError(
                f"the replication index of this read-only store covers positions "
                f"up to {checkpoint}, the log up to {head}; open it writable once"
            )
        read = store.write_views(lambda txn: index.catch_up(txn, head))
        logger.info("numbered %d events by origin up to position %d", read, head)
    return index


def _touch_tables(txn: ViewTxn) -> None:
    tables = (SEQ_TABLE, MARKS_TABLE, DOTS_TABLE, STATE_TABLE, CLOCKS_TABLE)
    for table in (*tables, CONFLICTS_TABLE, SIBLINGS_TABLE, VERSIONS_TABLE):
        txn.get(table, _SEP)


def high_water_marks(store: EventStore) -> dict[str, int]:
    """Per origin, the number of its events the store holds (all of 1..n)."""
    replication_index(store)
    with store.read_views() as reader:
        return {
            bytes(key).decode(): unpack_position(value)
            for key, value in reader.scan(MARKS_TABLE)
        }


def latest_hlc(store: EventStore) -> HLCTimestamp | None:
    """The latest hybrid-logical-clock timestamp of any event in the store.

    A replica's clock starts from it (``HybridLogicalClock(initial=...)``).
    Events without a timestamp count with their commit time.
    """
    replication_index(store)
    with store.read_views() as reader:
        raw = reader.get(STATE_TABLE, _HLC)
    return None if raw is None else _hlc_decoder.decode(raw)


def events_since(
    store: EventStore, marks: Mapping[str, int], *, limit: int = 1000
) -> list[ReplicatedEvent]:
    """The events a replica with high-water ``marks`` lacks, oldest first.

    Args:
        store: The store to read.
        marks: The other replica's high-water marks.
        limit: At most this many events (a bounded batch).

    Returns:
        Up to ``limit`` events, each of its origin in number order, all in
        this store's position order (which respects causality), with
        ``origin``, ``origin_seq`` and ``hlc`` set in their metadata.
        Empty when the other replica lacks nothing.

    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    replication_index(store)
    wanted: list[tuple[int, str, int]] = []
    with store.read_views() as reader:
        for key, value in reader.scan(MARKS_TABLE):
            origin = bytes(key).decode()
            ours = unpack_position(value)
            theirs = max(0, marks.get(origin, 0))
            if ours <= theirs:
                continue
            prefix = bytes(key) + _SEP
            found = reader.scan(
                SEQ_TABLE,
                prefix + pack_position(theirs + 1),
                prefix + pack_position(ours + 1),
            )
            for seq_key, position in _take(found, limit):
                seq = unpack_position(seq_key[len(prefix) :])
                wanted.append((unpack_position(position), origin, seq))
        wanted.sort()
        del wanted[limit:]
        return [_export(reader, *item) for item in wanted]


def _export(
    reader: ViewReader, position: int, origin: str, seq: int
) -> ReplicatedEvent:
    record = reader.get(EVENTS, pack_position(position))
    if record is None:
        raise ReplicationError(
            f"event {seq} of origin {origin!r} is indexed at position {position}, "
            "which holds no event"
        )
    env = decode_envelope(record, position)
    meta = env.metadata
    changes: dict[str, Any] = {}
    if meta.origin != origin or meta.origin_seq != seq:
        changes.update(origin=origin, origin_seq=seq)
    if meta.hlc is None:
        changes["hlc"] = _stamp_of(env.recorded_at)
    if meta.vector is None and env.type in RECORD_EVENT_TYPES:
        clock = record_clock(reader, position)
        if clock is not None:
            counter, context = clock
            changes["context"] = context
            changes["vector"] = DottedVersionVector(
                Dot(origin, counter), context
            ).vector
    if changes:
        meta = msgspec.structs.replace(meta, **changes)
    return ReplicatedEvent(env.stream, env.type, env.schema_version, env.data, meta)


def apply_remote(
    store: EventStore,
    events: Sequence[ReplicatedEvent],
    *,
    validation: RemoteValidation | None = None,
) -> ApplyResult:
    """Append the events of ``events`` that the store lacks, in one append.

    Events the store holds already (by origin and number) are skipped, so
    applying a batch twice changes nothing. The rest is appended atomically,
    or nothing is.

    Raises:
        OriginSequenceError: If an origin's events would leave a gap.
        RemoteEventError: If an event is malformed, belongs to a collection
            that ``validation`` refuses or to a replica-local stream, carries
            a version vector that goes backwards for its record, or a
            timestamp further ahead than the allowed clock drift. Nothing of
            the batch is applied.

    """
    check = validation or RemoteValidation()
    index = replication_index(store)
    for attempt in range(1, _APPLY_ATTEMPTS + 1):
        fresh, skipped, latest = _prepare(store, events, check)
        if not fresh:
            return ApplyResult(0, skipped)
        _check_clock(index, check, latest, fresh)
        try:
            result = store.append([event for event, _ in fresh])
        except OriginSequenceError:
            # Another applier got some of these in first: check again.
            if attempt == _APPLY_ATTEMPTS:
                raise
            logger.debug("apply raced another applier; retrying (%d)", attempt)
            continue
        return ApplyResult(
            len(fresh), skipped, result.first_position, result.last_position
        )
    raise AssertionError("unreachable")  # pragma: no cover


def _prepare(
    store: EventStore,
    events: Sequence[ReplicatedEvent],
    check: RemoteValidation,
) -> tuple[list[tuple[NewEvent, ReplicatedEvent]], int, HLCTimestamp | None]:
    expected: dict[str, int] = {}
    origins: set[str] = set()
    dots: dict[bytes, int] = {}
    fresh: list[tuple[NewEvent, ReplicatedEvent]] = []
    skipped = 0
    latest: HLCTimestamp | None = None
    with store.read_views() as reader:
        for event in events:
            origin, seq = _check_shape(event, origins)
            if origin not in expected:
                expected[origin] = (
                    _get_int(reader, MARKS_TABLE, _origin_key(origin)) + 1
                )
            if seq < expected[origin]:
                skipped += 1
                continue
            if seq > expected[origin]:
                raise OriginSequenceError(origin, expected[origin], seq)
            expected[origin] = seq + 1
            _check_collection(event, origin, seq, check)
            _check_vector(reader, dots, event, origin, seq)
            data = _decode_data(store.registry, event, origin, seq)
            fresh.append(
                (NewEvent(event.stream, event.type, data, event.metadata), event)
            )
            hlc = event.metadata.hlc
            if hlc is not None and (latest is None or hlc > latest):
                latest = hlc
    return fresh, skipped, latest


def _check_shape(event: ReplicatedEvent, origins: set[str]) -> tuple[str, int]:
    """The event's origin and number, if its shape is right.

    ``origins`` holds the origin ids already checked in this batch.
    """
    meta = event.metadata
    origin, seq = meta.origin, meta.origin_seq
    if origin is None or origin not in origins:
        if not origin or len(origin.encode()) > _MAX_ORIGIN_BYTES or "\x00" in origin:
            raise RemoteEventError(
                origin, seq, "its origin must be a replica id of 1 to 256 bytes"
            )
        origins.add(origin)
    if seq is None or type(seq) is not int or seq < 1:
        raise RemoteEventError(
            origin, seq, "its origin sequence number must be an int >= 1"
        )
    reason = None
    if meta.hlc is None:
        reason = "it carries no hybrid-logical-clock timestamp"
    elif not event.stream or not event.type:
        reason = "its stream and type must not be empty"
    elif event.stream.startswith(LOCAL_STREAM_PREFIX):
        reason = f"stream {event.stream!r} belongs to its replica alone"
    if reason is not None:
        raise RemoteEventError(origin, seq, reason)
    return origin, seq


def _check_collection(
    event: ReplicatedEvent, origin: str, seq: int, check: RemoteValidation
) -> None:
    if not event.stream.startswith(RECORD_STREAM_PREFIX):
        return
    try:
        collection, _ = parse_record_stream(event.stream)
    except ValueError as exc:
        raise RemoteEventError(origin, seq, str(exc)) from exc
    if not check.accepts_collection(collection):
        raise RemoteEventError(
            origin, seq, f"collection {collection!r} is not accepted from peers"
        )


def _check_vector(
    reader: ViewReader,
    dots: dict[bytes, int],
    event: ReplicatedEvent,
    origin: str,
    seq: int,
) -> None:
    vector = event.metadata.vector
    if vector is None:
        return
    counter = vector.get(origin)
    if counter < 1:
        raise RemoteEventError(
            origin, seq, f"its version vector {vector.counters!r} omits its origin"
        )
    context = event.metadata.context
    if context is not None and context.get(origin) >= counter:
        raise RemoteEventError(
            origin,
            seq,
            f"its context {context.counters!r} already covers its own write "
            f"({origin!r}, {counter})",
        )
    key = _origin_key(origin) + _SEP + bounded_key(event.stream)
    before = dots.get(key)
    if before is None:
        before = _get_int(reader, DOTS_TABLE, key)
    if counter <= before:
        raise RemoteEventError(
            origin,
            seq,
            f"its version vector goes backwards on stream {event.stream!r}: "
            f"{origin!r} counts {counter}, after {before} before",
        )
    dots[key] = counter
    if context is not None and event.type in RECORD_EVENT_TYPES:
        _check_causal_order(reader, dots, event, origin, seq)


def _check_causal_order(
    reader: ViewReader,
    dots: dict[bytes, int],
    event: ReplicatedEvent,
    origin: str,
    seq: int,
) -> None:
    context = event.metadata.context or VersionVector()
    for replica, needed in context.counters.items():
        if replica == origin:
            continue
        other = _origin_key(replica) + _SEP + bounded_key(event.stream)
        seen = dots.get(other)
        if seen is None:
            seen = dots[other] = _get_int(reader, DOTS_TABLE, other)
        if seen < needed:
            raise RemoteEventError(
                origin,
                seq,
                f"it follows write ({replica!r}, {needed}) of stream "
                f"{event.stream!r}, which this replica has not received (it has "
                f"{seen}): events must arrive in causal order",
            )


def _decode_data(
    registry: EventRegistry, event: ReplicatedEvent, origin: str, seq: int
) -> Any:
    try:
        return registry.decode_data(
            event.type, event.schema_version, bytes(event.data), 0
        )
    except (msgspec.MsgspecError, UnknownSchemaVersionError, TypeError) as exc:
        raise RemoteEventError(
            origin, seq, f"its {event.type!r} data is malformed: {exc}"
        ) from exc


def _check_clock(
    index: ReplicationIndex,
    check: RemoteValidation,
    latest: HLCTimestamp | None,
    fresh: list[tuple[NewEvent, ReplicatedEvent]],
) -> None:
    if latest is None:  # pragma: no cover - _check_shape requires timestamps
        return
    clock = check.clock or HybridLogicalClock(
        index.replica_id,
        wall_clock_ms=check.wall_clock_ms,
        max_drift_ms=check.max_drift_ms,
    )
    try:
        clock.update(latest)
    except ClockDriftError as exc:
        culprit = next(e for _, e in fresh if e.metadata.hlc == latest)
        raise RemoteEventError(
            culprit.metadata.origin, culprit.metadata.origin_seq, str(exc)
        ) from exc


def _origin_key(origin: str) -> bytes:
    return origin.encode()


def _get_int(reader: ViewReader, table: str, key: bytes) -> int:
    raw = reader.get(table, key)
    return 0 if raw is None else unpack_position(raw)


def _stamp_of(recorded_at: Any) -> HLCTimestamp:
    return HLCTimestamp(int(recorded_at.timestamp() * 1000))


def _take(items: Iterator[Any], count: int) -> Iterator[Any]:
    for number, item in enumerate(items):
        if number >= count:
            return
        yield item


def record_siblings(
    store: EventStore, collection: str, record_id: str
) -> tuple[RecordVersion, ...]:
    """The versions of a record that no other supersedes (one unless in conflict)."""
    replication_index(store)
    with store.read_views() as reader:
        return read_siblings(reader, record_stream(collection, record_id))


def conflicted_records(
    store: EventStore, collection: str | None = None
) -> list[tuple[str, str]]:
    """The (collection, id) of every record with concurrent versions, sorted."""
    replication_index(store)
    start = b"" if collection is None else bounded_key(collection) + _SEP
    stop = None if collection is None else bounded_key(collection) + b"\x01"
    found: list[tuple[str, str]] = []
    with store.read_views() as reader:
        for _, stream_key in reader.scan(CONFLICTS_TABLE, start, stop):
            found.append(parse_record_stream(bytes(stream_key).decode()))
    return found


def set_replica_id(store: EventStore, new_id: str) -> str:
    """Give an empty store the replica id ``new_id`` (a store keeps its id after).

    Returns:
        The store's replica id (``new_id``).

    Raises:
        ReplicationError: If the store holds events under another replica id,
            or ``new_id`` is not a valid replica id.

    """
    if not new_id or len(new_id.encode()) > _MAX_ORIGIN_BYTES or "\x00" in new_id:
        raise ReplicationError(
            f"a replica id is 1 to 256 bytes without NUL, not {new_id!r}"
        )
    current = replica_id(store)
    if current == new_id:
        return current

    def assign(txn: ViewTxn) -> bool:
        if txn.get(STATE_TABLE, _CHECKPOINT) not in (None, pack_position(0)):
            return False
        if any(True for _ in txn.scan(EVENTS)):
            return False
        txn.put(META, b"replica_id", new_id.encode())
        return True

    if not store.write_views(assign):
        raise ReplicationError(
            f"the store holds events as replica {current!r}; a replica id cannot "
            f"change to {new_id!r} once it has written"
        )
    with _indexes_lock:
        index = _indexes.get(store)
        if index is not None:
            index.replica_id = new_id
    return new_id


def in_conflict(
    store: EventStore, records: Iterable[tuple[str, str]]
) -> list[tuple[str, str, tuple[RecordVersion, ...]]]:
    """Those of ``records`` (collection, id) with concurrent versions, with them.

    One read snapshot for all of them: cheap enough to run after every
    applied batch.
    """
    replication_index(store)
    found = []
    with store.read_views() as reader:
        for collection, record_id in records:
            if reader.get(CONFLICTS_TABLE, conflict_key(collection, record_id)):
                stream = record_stream(collection, record_id)
                found.append((collection, record_id, read_siblings(reader, stream)))
    return found


def replicating(store: EventStore) -> bool:
    """Whether the store numbers its events for replication.

    True once :func:`replication_index` was called on it in this process, or
    if it ever was (its index tables exist): a store that replicated before
    keeps its index current from the start.
    """
    with _indexes_lock:
        if store in _indexes:
            return True
    with store.read_views() as reader:
        return reader.get(STATE_TABLE, _CHECKPOINT) is not None
