"""The append path shared by every backend.

An append job is checked completely before anything of it is written:
its command id against the ``commands`` table, its expected versions against
the ``streams`` table, and its events against their registered types. A job
that fails a check gets its error and writes nothing, so many jobs can share
one transaction: each either writes all its events or none. Errors that
escape the checks (a failing inline projector, a full map) abort the whole
transaction, and the caller decides how to retry.

Checks read the tables once per batch (one call per table for every job's
streams and command ids) and then what earlier jobs of the batch added,
kept in memory; the batch's writes are gathered and written with one call
per table at the end, or before a view job or an inline projector runs, so
that these see every earlier job's events.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import struct
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Protocol

import msgspec

from eventstore._codec import EventRegistry, RecordEncoder
from eventstore._completion import Completion, Waiter
from eventstore._errors import ConcurrencyError
from eventstore._tables import (
    COMMANDS,
    EVENTS,
    STREAM_INDEX,
    STREAMS,
    Tables,
    ViewTxn,
    bounded_key,
    unpack_position,
)
from eventstore._types import (
    ANY,
    NO_STREAM,
    AppendedEvent,
    AppendResult,
    Expected,
    NewEvent,
    StoredEvent,
    StreamInfo,
)

__all__ = [
    "AppendJob",
    "InlineProjector",
    "ViewJob",
    "check_expected",
    "decode_result",
    "decode_stream_info",
    "read_stream_info",
    "run_jobs",
]


_pack_position = struct.Struct(">Q").pack
_result_encoder = msgspec.msgpack.Encoder()
_result_decoder = msgspec.msgpack.Decoder(AppendResult)
_info_decoder = msgspec.msgpack.Decoder(StreamInfo)


class InlineProjector(Protocol):
    """A fold run inside the transaction of every append."""

    name: str

    def apply(self, txn: ViewTxn, events: Sequence[StoredEvent]) -> None:
        """Fold ``events`` into the projector's view tables."""


class AppendJob:
    """One append waiting for the writer."""

    __slots__ = ("command_id", "events", "expected", "future")

    def __init__(
        self,
        events: Sequence[NewEvent],
        expected: Mapping[str, Expected] | None,
        command_id: str | None,
        completion: Completion[AppendResult] | None = None,
    ) -> None:
        self.events = events
        self.expected = expected
        self.command_id = command_id
        self.future: Completion[AppendResult] = completion or Future()


class ViewJob:
    """A function to run against the view tables in a write transaction."""

    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[ViewTxn], Any]) -> None:
        self.fn = fn
        self.future: Waiter[Any] = Waiter()


Job = AppendJob | ViewJob


def decode_stream_info(raw: bytes) -> StreamInfo:
    """A stream info as stored in the ``streams`` table."""
    return _info_decoder.decode(raw)


def read_stream_info(tables: Tables, key: bytes) -> StreamInfo | None:
    """The stored info of the stream with ``key``, if it has events."""
    raw = tables.get(STREAMS, key)
    return None if raw is None else _info_decoder.decode(raw)


def check_expected(stream: str, expected: Expected, actual: int) -> None:
    """Raise :class:`ConcurrencyError` unless ``actual`` meets ``expected``."""
    if expected is ANY:
        return
    if expected is NO_STREAM:
        if actual != 0:
            raise ConcurrencyError(stream, expected, actual)
        return
    if expected != actual:
        raise ConcurrencyError(stream, expected, actual)


def decode_result(raw: bytes) -> AppendResult:
    """An append result stored under its command id."""
    return _result_decoder.decode(raw)


def run_jobs(
    tables: Tables,
    jobs: Sequence[Job],
    registry: EventRegistry,
    projectors: Sequence[InlineProjector],
) -> list[tuple[Job, object]]:
    """Run jobs in one transaction; return each job's result or error.

    Returns:
        Pairs of a job and its outcome: an ``AppendResult``, a view job's
        return value, or the exception that an append job failed its checks
        with (it wrote nothing). The caller completes the futures once the
        transaction commits. Errors raised while writing propagate: the
        caller must abort the transaction.

    """
    batch = _Batch(tables, RecordEncoder(registry, dt.datetime.now(dt.UTC)))
    batch.prefetch([job for job in jobs if isinstance(job, AppendJob)])
    outcomes: list[tuple[Job, object]] = []
    for job in jobs:
        if isinstance(job, ViewJob):
            batch.flush()
            outcomes.append((job, job.fn(tables)))
            # A view job may write anything: read the core tables afresh.
            batch.forget()
            continue
        try:
            prepared = batch.prepare(job)
        except (ConcurrencyError, TypeError, ValueError, msgspec.MsgspecError) as exc:
            outcomes.append((job, exc))
            continue
        if isinstance(prepared, AppendResult):
            outcomes.append((job, prepared))
            continue
        result = batch.add(prepared)
        if projectors and prepared.records:
            batch.flush()
            _project(tables, prepared, projectors)
        outcomes.append((job, result))
    batch.flush()
    return outcomes


@dataclasses.dataclass(slots=True)
class _Prepared:
    """A checked, encoded job: everything to write, nothing written yet."""

    job: AppendJob
    command_key: bytes | None
    records: list[tuple[bytes, bytes]]
    index: list[tuple[bytes, bytes]]
    appended: list[AppendedEvent]
    infos: dict[str, tuple[bytes, StreamInfo]]
    data: list[Any]
    head: int
    recorded_at: dt.datetime


class _Batch:
    """The state of one write transaction's append jobs.

    Jobs are checked against what the transaction holds plus what earlier
    jobs of the batch added, and their writes are gathered and written with
    one call per table at the end. Each call into LMDB lets other threads
    take the GIL, and with hundreds of appenders waiting, each such switch
    costs more than the write itself.
    """

    def __init__(self, tables: Tables, encoder: RecordEncoder) -> None:
        self.tables = tables
        self.encoder = encoder
        last = tables.last_key(EVENTS)
        self.head = 0 if last is None else unpack_position(last)
        # stream -> (key, info); command key -> stored result (or None)
        self.known: dict[str, tuple[bytes, StreamInfo | None]] = {}
        self.commands: dict[bytes, bytes | None] = {}
        self.records: list[tuple[bytes, bytes]] = []
        self.index: list[tuple[bytes, bytes]] = []
        self.infos: dict[bytes, StreamInfo] = {}
        self.new_commands: list[tuple[bytes, bytes]] = []

    def prefetch(self, jobs: Sequence[AppendJob]) -> None:
        """Read the stream infos and command ids of ``jobs`` in two calls."""
        names: set[str] = set()
        command_keys: list[bytes] = []
        for job in jobs:
            names.update(event.stream for event in job.events)
            if job.expected:
                names.update(job.expected)
            if job.command_id is not None:
                command_keys.append(bounded_key(job.command_id))
        self.load_streams(names)
        if command_keys:
            found = self.tables.get_many(COMMANDS, command_keys)
            self.commands.update(zip(command_keys, found, strict=True))

    def forget(self) -> None:
        """Drop what was read: the tables may have changed behind the batch."""
        self.known.clear()
        self.commands.clear()

    def load_streams(self, names: Collection[str]) -> None:
        """Put the key and stored info of each of ``names`` into :attr:`known`."""
        known = self.known
        missing = [name for name in names if name not in known]
        if not missing:
            return
        keys = [bounded_key(name) for name in missing]
        found = self.tables.get_many(STREAMS, keys)
        for name, key, raw in zip(missing, keys, found, strict=True):
            known[name] = (key, None if raw is None else _info_decoder.decode(raw))

    def prepare(self, job: AppendJob) -> _Prepared | AppendResult:
        """Check a job and encode its events, writing nothing."""
        command_key = None
        if job.command_id is not None:
            command_key = bounded_key(job.command_id)
            if command_key in self.commands:
                seen = self.commands[command_key]
            else:
                seen = self.tables.get(COMMANDS, command_key)
            if seen is not None:
                first = decode_result(seen)
                return AppendResult(first.events, first.command_id, duplicate=True)

        events = job.events
        known = self.known
        if len(events) == 1 and not job.expected:
            # The common case, kept short: it runs once per waiting thread.
            stream = events[0].stream
            if stream not in known:
                self.load_streams((stream,))
            return _encode_one(job, command_key, known[stream], self.head, self.encoder)
        names = {event.stream for event in events}
        if job.expected:
            self.load_streams(names | job.expected.keys())
            for stream, expected in job.expected.items():
                info = known[stream][1]
                check_expected(stream, expected, 0 if info is None else info.version)
        else:
            self.load_streams(names)
        return _encode_job(job, command_key, names, known, self.head, self.encoder)

    def add(self, prepared: _Prepared) -> AppendResult:
        """Queue a prepared job's writes; return its result."""
        self.records.extend(prepared.records)
        self.index.extend(prepared.index)
        for name, (key, info) in prepared.infos.items():
            self.infos[key] = info
            self.known[name] = (key, info)
        self.head = prepared.head
        job = prepared.job
        result = AppendResult(tuple(prepared.appended), job.command_id)
        if prepared.command_key is not None:
            encoded = _result_encoder.encode(result)
            self.commands[prepared.command_key] = encoded
            self.new_commands.append((prepared.command_key, encoded))
        return result

    def flush(self) -> None:
        """Write everything queued, one call per table."""
        tables = self.tables
        if self.records:
            tables.append_many(EVENTS, self.records)
            tables.put_many(STREAM_INDEX, self.index)
            encode = _result_encoder.encode
            tables.put_many(
                STREAMS, [(key, encode(info)) for key, info in self.infos.items()]
            )
            self.records, self.index, self.infos = [], [], {}
        if self.new_commands:
            tables.put_many(COMMANDS, self.new_commands)
            self.new_commands = []


def _encode_one(
    job: AppendJob,
    command_key: bytes | None,
    entry: tuple[bytes, StreamInfo | None],
    head: int,
    encoder: RecordEncoder,
) -> _Prepared:
    """:func:`_encode_job` for a job of one event."""
    event = job.events[0]
    key, info = entry
    position = head + 1
    version = 1 if info is None else info.version + 1
    first = position if info is None else info.first_position
    packed = _pack_position(position)
    record, value = encoder.encode(event, version)
    return _Prepared(
        job,
        command_key,
        [(packed, record)],
        [(key + _pack_position(version), packed)],
        [AppendedEvent(event.stream, version, position)],
        {event.stream: (key, StreamInfo(event.stream, version, first, position))},
        [value],
        position,
        encoder.at,
    )


def _encode_job(  # noqa: PLR0917 - a private step with its state passed in
    job: AppendJob,
    command_key: bytes | None,
    names: set[str],
    known: dict[str, tuple[bytes, StreamInfo | None]],
    head: int,
    encoder: RecordEncoder,
) -> _Prepared:
    """Give a checked job's events their positions and versions; encode them."""
    keys: dict[str, bytes] = {}
    current: dict[str, int] = {}
    firsts: dict[str, int] = {}
    for name in names:
        key, info = known[name]
        keys[name] = key
        current[name] = 0 if info is None else info.version
        if info is not None:
            firsts[name] = info.first_position
    lasts: dict[str, int] = {}
    packed: list[bytes] = []
    versions: list[int] = []
    index: list[tuple[bytes, bytes]] = []
    appended: list[AppendedEvent] = []
    position = head
    for event in job.events:
        position += 1
        stream = event.stream
        version = current[stream] + 1
        current[stream] = version
        if stream not in firsts:
            firsts[stream] = position
        lasts[stream] = position
        key = _pack_position(position)
        packed.append(key)
        versions.append(version)
        index.append((keys[stream] + _pack_position(version), key))
        appended.append(AppendedEvent(stream, version, position))
    encoded, data = encoder.encode_many(job.events, versions)

    infos = {
        name: (keys[name], StreamInfo(name, current[name], firsts[name], lasts[name]))
        for name in names
    }
    return _Prepared(
        job,
        command_key,
        list(zip(packed, encoded, strict=True)),
        index,
        appended,
        infos,
        data,
        position,
        encoder.at,
    )


def _project(
    tables: Tables, prepared: _Prepared, projectors: Sequence[InlineProjector]
) -> None:
    """Fold a written job's events into every inline projector."""
    at = prepared.recorded_at
    stored = [
        StoredEvent(
            where.position, where.stream, where.version, e.type, d, e.metadata, at
        )
        for e, where, d in zip(
            prepared.job.events, prepared.appended, prepared.data, strict=True
        )
    ]
    for projector in projectors:
        projector.apply(tables, stored)
