"""The collection actor: one event-sourced collection of records.

Design note. The actor is the only writer of its collection's streams, so
its in-memory state decides every command: it validates, computes the
events, updates its state at once and hands the append to the store with
``append_future`` (pipelining: the next command is decided while the last
one commits, and the group commit batches them). The caller is answered
from the writer's thread when the commit returns, so nothing unacknowledged
is reported as done. If a commit fails, the affected records are marked
dirty and reloaded from the log before the next command, so the state
never keeps what the log lacks. Reads and queries are answered after the
latest append commits, so they never show a write that could still fail;
if one fails in between, the read is asked again.

Transactions lock the records they touch between ``Prepare`` and
``Finish``; writes to a locked record wait in the actor until then.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import queue
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

import msgspec

from actors._data import Transformer, run_transformers, validate
from actors._errors import ActorError, ConcurrencyError, NotFoundError, ValidationError
from actors._instrument import finish_append_span, start_append_span
from actors._records import (
    RECORD_EVENT_TYPES,
    Record,
    apply_event,
    event_time,
    fold,
)
from actors._supervisor import ChildHandle, FailureHook, SupervisedActor
from actors._tracing import current_traceparent, receive_span, suppress_tracing
from eventstore import (
    NO_STREAM,
    AppendResult,
    EventMetadata,
    EventStore,
    Expected,
    HLCTimestamp,
    HybridLogicalClock,
    NewEvent,
    RecordCreated,
    RecordDeleted,
    RecordUpdated,
    merge_patch,
    record_siblings,
    record_stream,
    replicating,
    view_table,
)
from eventstore import ConcurrencyError as StoreConcurrencyError
from eventstore._tables import bounded_key
from projections import QueryError, query_rows

__all__ = [
    "SNAPSHOTS",
    "CollectionActor",
    "CollectionConfig",
    "CollectionShared",
    "Finish",
    "History",
    "Op",
    "Prepare",
    "Query",
    "Read",
    "Write",
]

logger = logging.getLogger(__name__)

SNAPSHOTS = view_table("snapshots")
_RECOVERY_WAIT_S = 30.0
_MAX_BATCH = 2_000
_encoder = msgspec.msgpack.Encoder()


class CollectionConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What a collection actor needs to know about its collection."""

    name: str
    schema: type[msgspec.Struct] | None = None
    transformers: tuple[Transformer, ...] = ()
    snapshot_every: int = 10_000


class CollectionShared:
    """State that outlives one incarnation of a collection actor."""

    def __init__(self) -> None:
        self.inflight: set[Future[AppendResult]] = set()
        self.dirty: set[str] = set()
        self.failures = 0
        self.committed_position = 0
        # Called on the writer's thread with (events, seconds to commit).
        self.on_commit: Callable[[int, float], None] | None = None
        self.clock: HybridLogicalClock | None = None
        self.origin: str | None = None


class Op(msgspec.Struct, frozen=True):
    """One write: ``create``, ``update`` or ``delete`` of one record."""

    kind: str
    id: str | None
    data: Any = None
    expected: int | None = None
    replace: bool = False


class _Message(msgspec.Struct, frozen=True):
    reply: Any

    def fail(self, error: BaseException) -> None:
        self.reply.fail(error)


class Write(_Message, frozen=True):
    """Apply ``ops`` in one atomic append; answer records (or one)."""

    ops: tuple[Op, ...]
    command_id: str | None = None
    single: bool = True
    trace: dict[str, str] | None = None
    attempt: int = 0


class Read(_Message, frozen=True):
    """Answer records by id (None where missing), or one."""

    ids: tuple[str, ...]
    as_of_version: int | None = None
    single: bool = True


class Query(_Message, frozen=True):
    """Answer the records matching a where clause."""

    where: Mapping[str, Any] | None = None
    order_by: str | tuple[str, ...] | None = None
    limit: int | None = None
    offset: int = 0


class History(_Message, frozen=True):
    """Answer every version of one record."""

    id: str


class Prepare(_Message, frozen=True):
    """Lock records for a transaction; answer its events and expectations."""

    tx_id: str
    ops: tuple[Op, ...]


class Finish(_Message, frozen=True):
    """Apply (if ``result``) and unlock a prepared transaction."""

    tx_id: str
    ids: tuple[str, ...]
    result: AppendResult | None


class _Staged(msgspec.Struct):
    events: list[NewEvent]
    expected: dict[str, Expected]
    records: dict[str, Record | None]
    versions: dict[str, int]
    order: list[str]


class CollectionActor(SupervisedActor):
    """Holds the current records of one collection and writes its events."""

    def __init__(
        self,
        handle: ChildHandle,
        on_failure: FailureHook,
        *,
        store: EventStore,
        config: CollectionConfig,
        shared: CollectionShared,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        super().__init__(handle, on_failure)
        self.store = store
        self.config = config
        self.shared = shared
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self.records: dict[str, Record] = {}
        self.tombstones: dict[str, int] = {}
        self._locks: dict[str, str] = {}
        self._prepared: dict[str, _Staged] = {}
        self._deferred: list[Write] = []
        self._last: Future[AppendResult] | None = None
        self._commands: dict[str, Future[AppendResult]] = {}
        self._since_snapshot = 0
        self._batch: _Batch | None = None
        self._last_stamp: tuple[int, EventMetadata, dt.datetime] | None = None
        self._traceparent: str | None = None

    # -- recovery and snapshots -------------------------------------------

    def recover(self) -> None:
        """Load the latest snapshot, then fold the events after it."""
        with suppress_tracing():
            self._recover()

    def _recover(self) -> None:
        pending = set(self.shared.inflight)
        if pending:
            concurrent.futures.wait(pending, timeout=_RECOVERY_WAIT_S)
        self.shared.dirty.clear()
        position = 0
        raw = self.store.view_get(SNAPSHOTS, bounded_key(self.config.name))
        if raw is not None:
            snapshot = msgspec.msgpack.decode(raw, type=_Snapshot)
            position = snapshot.position
            self.records = {record.id: record for record in snapshot.records}
            self.tombstones = dict(snapshot.tombstones)
        name = self.config.name
        remote: set[str] = set()
        for event in self.store.read_all(
            from_position=position + 1, types=RECORD_EVENT_TYPES
        ):
            data = event.data
            if data.collection != name:
                continue
            if event.metadata.origin_seq is not None:
                remote.add(data.id)
            position = event.position
            at = event_time(event.metadata.hlc, event.recorded_at)
            self._put(
                data.id,
                apply_event(self.records.get(data.id), data, event.version, at),
                event.version,
            )
        for record_id in remote:
            current = self.records.get(record_id)
            version = current.version if current else self.tombstones.get(record_id, 0)
            self._put(record_id, self._settled(record_id, current), version)
        self.shared.committed_position = max(self.shared.committed_position, position)
        logger.info(
            "collection %r recovered %d records up to position %d",
            name,
            len(self.records),
            position,
        )

    def snapshot(self) -> None:
        """Store the state as of the last commit (only when nothing is in flight)."""
        snapshot = _Snapshot(
            self.shared.committed_position,
            list(self.records.values()),
            self.tombstones,
        )
        raw = msgspec.msgpack.encode(snapshot)
        key = bounded_key(self.config.name)
        self.store.write_views(lambda txn: txn.put(SNAPSHOTS, key, raw))
        self._since_snapshot = 0
        logger.debug(
            "collection %r: snapshot at %d", self.config.name, snapshot.position
        )

    def _maybe_snapshot(self) -> None:
        if (
            # At least as many events as records: a snapshot costs one pass
            # over the records, so its cost per event stays constant.
            self._since_snapshot >= max(self.config.snapshot_every, len(self.records))
            and not self._prepared
            and not self.shared.inflight
            and not self.shared.dirty
        ):
            self.snapshot()

    def on_stop(self) -> None:
        """Snapshot the state if anything changed since the last one."""
        deadline = time.monotonic() + _RECOVERY_WAIT_S
        while self.shared.inflight and time.monotonic() < deadline:
            concurrent.futures.wait(set(self.shared.inflight), timeout=0.01)
        if (
            self._since_snapshot
            and not self._prepared
            and not self.shared.dirty
            and not self.shared.inflight
        ):
            try:
                self.snapshot()
            except Exception:
                logger.exception(
                    "collection %r: final snapshot failed", self.config.name
                )

    # -- messages ---------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        """Handle a command and every write queued right behind it.

        Consecutive writes are staged one by one (each sees the state the
        previous left) and appended together: one hand-off to the writer,
        one commit, and the callers answered together.
        """
        self._maybe_snapshot()
        self._handle(message)
        inbox = self.actor_inbox
        if not isinstance(inbox, queue.Queue):  # pragma: no cover - pykka threads
            self._flush()
            return
        while self._batch is not None and len(self._batch.events) < _MAX_BATCH:
            with inbox.mutex:
                waiting = inbox.queue
                if not waiting or waiting[0].reply_to is not None:
                    break
                if not isinstance(waiting[0].message, Write):
                    break
                message = waiting.popleft().message
            self._handle(message)
        self._flush()
        self._maybe_snapshot()

    def _handle(self, message: Any) -> None:
        if self.shared.dirty:
            self._flush()
            self._reload_dirty()
        try:
            if type(message) is Write and message.trace:
                self._traced(message)
            else:
                self._dispatch(message)
        except (ActorError, QueryError) as error:
            message.fail(error)
        except Exception as error:
            message.fail(error)
            raise

    def _traced(self, message: Write) -> None:
        with receive_span(self.config.name, message.trace, message_type="Write"):
            self._traceparent = current_traceparent()
            try:
                self._dispatch(message)
            finally:
                self._traceparent = None

    def _dispatch(self, message: Any) -> None:
        if isinstance(message, Write):
            self._write(message)
            return
        self._flush()
        if isinstance(message, Read):
            self._read(message)
        elif isinstance(message, Query):
            self._query(message)
        elif isinstance(message, History):
            self._history(message)
        elif isinstance(message, Prepare):
            self._prepare(message)
        elif isinstance(message, Finish):
            self._finish(message)
        else:
            raise ActorError(
                f"collection {self.config.name!r}: unknown message {message!r}"
            )

    def _write(self, message: Write) -> None:
        if any(op.id in self._locks for op in message.ops if op.id is not None):
            self._deferred.append(message)
            return
        command_id = message.command_id
        if command_id is not None:
            self._flush()
            if self._duplicate(message, command_id):
                return
        staged = self._stage(message.ops)
        records = staged.records
        answer: Any = (
            records[staged.order[0]]
            if message.single
            else [records[record_id] for record_id in staged.order]
        )
        batch = self._batch
        if batch is None:
            batch = self._batch = _Batch()
        batch.add(staged, message.reply, answer)
        if batch.traceparent is None:
            batch.traceparent = self._traceparent
        batch.messages.append(message)
        self._apply(staged)
        if command_id is not None:
            self._flush(command_id)

    def _flush(self, command_id: str | None = None) -> None:
        batch, self._batch = self._batch, None
        if batch is None:
            return
        name = self.config.name
        span = start_append_span(name, len(batch.events), batch.traceparent)
        started = time.perf_counter()
        future = self.store.append_future(
            batch.events, expected_versions=batch.expected, command_id=command_id
        )
        replies = batch.replies
        messages = batch.messages
        commands = self._commands
        handle = self.handle
        if command_id is not None:
            commands[command_id] = future
        on_commit = self.shared.on_commit
        count = len(batch.events)

        def done(error: BaseException | None) -> None:
            if command_id is not None:
                commands.pop(command_id, None)
            if on_commit is not None and error is None:
                on_commit(count, time.perf_counter() - started)
            if span is not None:
                finish_append_span(
                    span, error, None if error else future.result().last_position
                )
            if error is not None:
                _fail_or_retry(error, name, replies, messages, handle)
            else:
                for reply, answer in replies:
                    reply.ok(answer)

        self._track(future, tuple(batch.ids), done)

    def _duplicate(self, message: Write, command_id: str) -> bool:
        inflight = self._commands.get(command_id)
        if inflight is not None:
            # Answer once the first copy commits, from the state then.
            inflight.add_done_callback(lambda _f: self.handle.send(message))
            return True
        result = self.store.command_result(command_id)
        if result is None:
            return False
        prefix = f"records/{self.config.name}/"
        ids = [
            e.stream[len(prefix) :]
            for e in result.events
            if e.stream.startswith(prefix)
        ]
        answer = [self.records.get(record_id) for record_id in dict.fromkeys(ids)]
        message.reply.ok(answer[0] if message.single and answer else answer)
        return True

    def _stage(self, ops: tuple[Op, ...]) -> _Staged:
        name = self.config.name
        staged: dict[str, Record | None] = {}
        versions: dict[str, int] = {}
        events: list[NewEvent] = []
        expected: dict[str, Expected] = {}
        order: list[str] = []
        metadata, at = self._stamp()
        for op in ops:
            record_id = op.id if op.id is not None else new_id()
            if not record_id or not isinstance(record_id, str):
                raise ValidationError(
                    f"record ids must be non-empty strings, not {record_id!r}",
                    collection=name,
                )
            current = (
                staged[record_id]
                if record_id in staged
                else self.records.get(record_id)
            )
            version = versions.get(record_id)
            if version is None:
                version = (
                    current.version if current else self.tombstones.get(record_id, 0)
                )
                stream = record_stream(name, record_id)
                expected[stream] = version or NO_STREAM
            data = self._event_data(op, record_id, current, version)
            version += 1
            record = apply_event(current, data, version, at)
            staged[record_id] = record
            versions[record_id] = version
            order.append(record_id)
            stream = record_stream(name, record_id)
            events.append(NewEvent(stream, type(data).__name__, data, metadata))
        return _Staged(events, expected, staged, versions, order)

    def _stamp(self) -> tuple[EventMetadata, dt.datetime]:
        clock = self.shared.clock
        if clock is not None:
            # A replica stamps each write with its hybrid logical clock.
            stamp = clock.now()
            metadata = EventMetadata(
                hlc=stamp, origin=self.shared.origin, traceparent=self._traceparent
            )
            return metadata, dt.datetime.fromtimestamp(stamp.physical_ms / 1000, dt.UTC)
        # Commands in the same millisecond share one stamp (immutable).
        now_ms = self._clock_ms()
        if self._last_stamp is None or self._last_stamp[0] != now_ms:
            metadata = EventMetadata(hlc=HLCTimestamp(now_ms, 0))
            at = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
            self._last_stamp = (now_ms, metadata, at)
        if self._traceparent is not None:
            traced = msgspec.structs.replace(
                self._last_stamp[1], traceparent=self._traceparent
            )
            return traced, self._last_stamp[2]
        return self._last_stamp[1], self._last_stamp[2]

    def _event_data(
        self, op: Op, record_id: str, current: Record | None, version: int
    ) -> RecordCreated | RecordUpdated | RecordDeleted:
        name = self.config.name
        if op.kind == "create":
            if current is not None:
                raise ConcurrencyError(name, record_id, "no record", current.version)
            data = self._checked(op.data, record_id)
            return RecordCreated(name, record_id, data)
        if current is None:
            raise NotFoundError(name, record_id)
        if op.expected is not None and op.expected != version:
            raise ConcurrencyError(name, record_id, f"version {op.expected}", version)
        if op.kind == "delete":
            return RecordDeleted(name, record_id)
        if op.kind != "update":
            raise ActorError(f"unknown write {op.kind!r} on {name}/{record_id}")
        if not isinstance(op.data, dict):
            raise ValidationError(
                f"a patch must be a dict, not {type(op.data).__name__}",
                collection=name,
                record_id=record_id,
            )
        merged = op.data if op.replace else _merge(current.data, op.data)
        final = self._checked(merged, record_id)
        if final == merged and not op.replace:
            return RecordUpdated(name, record_id, op.data)
        return RecordUpdated(name, record_id, final, replace=True)

    def _checked(self, raw: Any, record_id: str) -> dict[str, Any]:
        config = self.config
        data = validate(raw, None, collection=config.name, record_id=record_id)
        if config.transformers:
            data = run_transformers(dict(data), config.transformers)
        if config.schema is not None:
            return validate(
                data, config.schema, collection=config.name, record_id=record_id
            )
        # Writes share appends: data the log cannot hold must fail here,
        # alone, rather than fail the append of every write batched with it.
        try:
            _encoder.encode(data)
        except (TypeError, msgspec.EncodeError) as error:
            raise ValidationError(
                f"cannot be stored: {error}",
                collection=config.name,
                record_id=record_id,
            ) from error
        return data

    def _apply(self, staged: _Staged) -> None:
        for record_id, record in staged.records.items():
            self._put(record_id, record, staged.versions[record_id])
        self._since_snapshot += len(staged.events)

    def _put(self, record_id: str, record: Record | None, version: int) -> None:
        if record is None:
            self.records.pop(record_id, None)
            self.tombstones[record_id] = version
        else:
            self.records[record_id] = record
            self.tombstones.pop(record_id, None)

    def _track(
        self,
        future: Future[AppendResult],
        ids: tuple[str, ...],
        then: Callable[[BaseException | None], None],
    ) -> None:
        shared = self.shared
        shared.inflight.add(future)
        self._last = future

        def settle(future: Future[AppendResult]) -> None:
            # ``inflight`` goes last: empty, it means every outcome is in.
            error = future.exception()
            if error is not None:
                shared.dirty.update(ids)
                shared.failures += 1
                logger.warning(
                    "append failed, reloading %d records: %r", len(ids), error
                )
            else:
                position = future.result().last_position
                shared.committed_position = max(shared.committed_position, position)
            shared.inflight.discard(future)
            then(error)

        future.add_done_callback(settle)

    def _reload_dirty(self) -> None:
        ids = list(self.shared.dirty)
        self.shared.dirty.difference_update(ids)
        for record_id in ids:
            versions = fold(
                self.store.read_stream(record_stream(self.config.name, record_id))
            )
            folded = versions[-1] if versions else None
            self._put(record_id, self._settled(record_id, folded), len(versions))
        logger.info(
            "collection %r reloaded %d records from the log", self.config.name, len(ids)
        )

    def _settled(self, record_id: str, folded: Record | None) -> Record | None:
        """The record as every replica sees it once it has the same writes.

        Writes from other replicas may be concurrent with local ones, so
        folding the stream in this log's order is not what other replicas
        get. The record is the data of the latest (hlc, origin, counter) of
        its siblings; their conflict stays listed until resolved.
        """
        if not replicating(self.store):
            return folded
        siblings = record_siblings(self.store, self.config.name, record_id)
        if not siblings:
            return folded
        latest = max(siblings, key=lambda v: (v.hlc, v.dot.replica, v.dot.counter))
        if latest.data is None:
            return None
        at = event_time(latest.hlc, dt.datetime.now(dt.UTC))
        if folded is None:
            stream = record_stream(self.config.name, record_id)
            version = self.store.stream_version(stream)
            return Record(record_id, version, latest.data, at, at)
        return msgspec.structs.replace(folded, data=latest.data)

    def _after_commit(self, message: Any, answer: Callable[[], Any]) -> None:
        """Answer once the latest append has committed, or ask again."""
        last = self._last
        if last is None or last.done():
            message.reply.ok(answer())
            return
        value = answer()
        failures = self.shared.failures
        handle = self.handle

        def done(_future: Future[AppendResult]) -> None:
            if self.shared.failures != failures:
                handle.send(message)
            else:
                message.reply.ok(value)

        last.add_done_callback(done)

    def _read(self, message: Read) -> None:
        if message.as_of_version is not None:
            if self._last is not None and not self._last.done():
                self._last.add_done_callback(lambda _f: self.handle.send(message))
                return
            found = [
                self._as_of(record_id, message.as_of_version)
                for record_id in message.ids
            ]
            message.reply.ok(found[0] if message.single else found)
            return
        records = self.records
        if message.single:
            record = records.get(message.ids[0])
            self._after_commit(message, lambda: record)
        else:
            found = [records.get(record_id) for record_id in message.ids]
            self._after_commit(message, lambda: found)

    def _as_of(self, record_id: str, version: int) -> Record | None:
        stream = record_stream(self.config.name, record_id)
        versions = fold(self.store.read_stream(stream, to_version=version))
        return versions[-1] if len(versions) == version else None

    def _query(self, message: Query) -> None:
        rows = query_rows(
            self.records.values(),
            where=message.where,
            order_by=message.order_by,
            limit=message.limit,
            offset=message.offset,
            data=_data,
        )
        self._after_commit(message, lambda: rows)

    def _history(self, message: History) -> None:
        if self._last is not None and not self._last.done():
            self._last.add_done_callback(lambda _f: self.handle.send(message))
            return
        stream = record_stream(self.config.name, message.id)
        versions = fold(self.store.read_stream(stream))
        message.reply.ok([record for record in versions if record is not None])

    def _prepare(self, message: Prepare) -> None:
        for op in message.ops:
            if op.id is not None and op.id in self._locks:
                record = self.records.get(op.id)
                raise ConcurrencyError(
                    self.config.name,
                    op.id,
                    "no other transaction on it",
                    record.version if record else self.tombstones.get(op.id, 0),
                )
        staged = self._stage(message.ops)
        for record_id in staged.records:
            self._locks[record_id] = message.tx_id
        self._prepared[message.tx_id] = staged
        answer = [staged.records[record_id] for record_id in staged.order]
        message.reply.ok((staged.events, staged.expected, answer))

    def _finish(self, message: Finish) -> None:
        staged = self._prepared.pop(message.tx_id, None)
        if staged is None:
            if message.result is not None:
                self.shared.dirty.update(message.ids)
                self._reload_dirty()
        else:
            for record_id in staged.records:
                self._locks.pop(record_id, None)
            if message.result is not None:
                self._apply(staged)
        if message.result is not None:
            self.shared.committed_position = max(
                self.shared.committed_position, message.result.last_position
            )
        message.reply.ok(None)
        deferred, self._deferred = self._deferred, []
        for write in deferred:
            self.on_receive(write)


def new_id() -> str:
    """A new record id: 32 hex digits, epoch milliseconds then 80 random bits.

    Ids sort by creation time, so new records' keys land at the end of the
    store's B-trees: a commit of many creates dirties a few pages instead
    of one page per record, which keeps durable commits small.
    """
    return f"{time.time_ns() // 1_000_000:012x}{random.getrandbits(80):020x}"


def _fail_or_retry(
    error: BaseException,
    name: str,
    replies: list[tuple[Any, Any]],
    messages: list[Write],
    handle: ChildHandle,
) -> None:
    """Fail each write of a batch whose append failed, or send it again."""
    mapped = _store_error(name, error)
    for (reply, _answer), message in zip(replies, messages, strict=True):
        if _retryable(error, message):
            # Another replica's write moved the record under us: the records
            # reload, and the write is decided again.
            handle.send(msgspec.structs.replace(message, attempt=message.attempt + 1))
        else:
            reply.fail(mapped)


class _Batch:
    """Writes staged since the last append, appended together."""

    __slots__ = ("events", "expected", "ids", "messages", "replies", "traceparent")

    def __init__(self) -> None:
        self.traceparent: str | None = None
        self.messages: list[Write] = []
        self.events: list[NewEvent] = []
        self.expected: dict[str, Expected] = {}
        self.ids: set[str] = set()
        self.replies: list[tuple[Any, Any]] = []

    def add(self, staged: _Staged, reply: Any, answer: Any) -> None:
        self.events.extend(staged.events)
        for stream, version in staged.expected.items():
            self.expected.setdefault(stream, version)
        self.ids.update(staged.records)
        self.replies.append((reply, answer))


class _Snapshot(msgspec.Struct, array_like=True):
    position: int
    records: list[Record]
    tombstones: dict[str, int]


def _merge(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = merge_patch(current, patch)
    return merged


def _data(record: Record) -> Mapping[str, Any]:
    return record.data


_MAX_ATTEMPTS = 3


def _retryable(error: BaseException, message: Write) -> bool:
    """Whether a write failed only because its records moved under the actor.

    That happens when remote events were applied to the store: a write that
    named no expected version is then decided again on the reloaded state.
    """
    if not isinstance(error, StoreConcurrencyError) or message.command_id:
        return False
    if message.attempt >= _MAX_ATTEMPTS:
        return False
    return all(op.expected is None for op in message.ops)


def _store_error(collection: str, error: BaseException) -> BaseException:
    if isinstance(error, StoreConcurrencyError):
        _, record_id = error.stream.rsplit("/", 1)
        mapped = ConcurrencyError(collection, record_id, error.expected, error.actual)
        mapped.__cause__ = error
        return mapped
    if isinstance(error, (msgspec.EncodeError, msgspec.ValidationError, TypeError)):
        mapped_v = ValidationError(f"cannot be stored: {error}", collection=collection)
        mapped_v.__cause__ = error
        return mapped_v
    return error
