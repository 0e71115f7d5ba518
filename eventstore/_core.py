"""The append path shared by every backend.

An append job is checked completely before anything of it is written:
its command id against the ``commands`` table, its expected versions against
the ``streams`` table, and its events against their registered types. A job
that fails a check gets its error and writes nothing, so many jobs can share
one transaction: each either writes all its events or none. Errors that
escape the checks (a failing inline projector, a full map) abort the whole
transaction, and the caller decides how to retry.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Protocol

import msgspec

from eventstore._codec import EventRegistry, RecordEncoder
from eventstore._errors import ConcurrencyError
from eventstore._tables import (
    COMMANDS,
    EVENTS,
    STREAM_INDEX,
    STREAMS,
    Tables,
    ViewTxn,
    bounded_key,
    pack_position,
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
    ) -> None:
        self.events = events
        self.expected = expected
        self.command_id = command_id
        self.future: Future[AppendResult] = Future()


class ViewJob:
    """A function to run against the view tables in a write transaction."""

    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[ViewTxn], Any]) -> None:
        self.fn = fn
        self.future: Future[Any] = Future()


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
    encoder = RecordEncoder(registry, dt.datetime.now(dt.UTC))
    last = tables.last_key(EVENTS)
    head = 0 if last is None else unpack_position(last)
    # Stream infos as this transaction left them, so that jobs on the same
    # stream read and decode its info once per batch. A view job may write
    # anything, so it empties the cache.
    known: dict[str, tuple[bytes, StreamInfo | None]] = {}
    outcomes: list[tuple[Job, object]] = []
    for job in jobs:
        if isinstance(job, ViewJob):
            outcomes.append((job, job.fn(tables)))
            known.clear()
            continue
        try:
            prepared = _prepare(tables, job, head, encoder, known)
        except (ConcurrencyError, TypeError, ValueError, msgspec.MsgspecError) as exc:
            outcomes.append((job, exc))
            continue
        if isinstance(prepared, AppendResult):
            outcomes.append((job, prepared))
            continue
        outcomes.append((job, _write(tables, prepared, projectors, known)))
        head = prepared.head
    return outcomes


@dataclasses.dataclass(slots=True)
class _Prepared:
    job: AppendJob
    command_key: bytes | None
    streams: dict[str, tuple[bytes, StreamInfo | None]]
    records: list[tuple[bytes, bytes]]
    versions: list[int]
    data: list[Any]
    head: int
    recorded_at: dt.datetime


def _stream_entry(
    tables: Tables,
    stream: str,
    known: dict[str, tuple[bytes, StreamInfo | None]],
) -> tuple[bytes, StreamInfo | None]:
    entry = known.get(stream)
    if entry is None:
        key = bounded_key(stream)
        entry = known[stream] = (key, read_stream_info(tables, key))
    return entry


def _prepare(
    tables: Tables,
    job: AppendJob,
    head: int,
    encoder: RecordEncoder,
    known: dict[str, tuple[bytes, StreamInfo | None]],
) -> _Prepared | AppendResult:
    """Check a job and encode its events, writing nothing."""
    command_key = None
    if job.command_id is not None:
        command_key = bounded_key(job.command_id)
        seen = tables.get(COMMANDS, command_key)
        if seen is not None:
            first = decode_result(seen)
            return AppendResult(first.events, first.command_id, duplicate=True)

    streams: dict[str, tuple[bytes, StreamInfo | None]] = {}
    for event in job.events:
        if event.stream not in streams:
            streams[event.stream] = _stream_entry(tables, event.stream, known)
    if job.expected:
        for stream, expected in job.expected.items():
            if stream not in streams:
                streams[stream] = _stream_entry(tables, stream, known)
            info = streams[stream][1]
            check_expected(stream, expected, 0 if info is None else info.version)

    current = {s: 0 if i is None else i.version for s, (_, i) in streams.items()}
    records: list[tuple[bytes, bytes]] = []
    versions: list[int] = []
    values: list[Any] = []
    position = head
    encode = encoder.encode
    for event in job.events:
        position += 1
        version = current[event.stream] + 1
        current[event.stream] = version
        record, data = encode(event, version)
        records.append((pack_position(position), record))
        versions.append(version)
        values.append(data)
    return _Prepared(
        job, command_key, streams, records, versions, values, position, encoder.at
    )


def _write(
    tables: Tables,
    prepared: _Prepared,
    projectors: Sequence[InlineProjector],
    known: dict[str, tuple[bytes, StreamInfo | None]],
) -> AppendResult:
    """Write a prepared job's events, stream infos and command id."""
    events = prepared.job.events
    streams = prepared.streams
    tables.append_many(EVENTS, prepared.records)

    index: list[tuple[bytes, bytes]] = []
    appended: list[AppendedEvent] = []
    touched: dict[str, list[int]] = {}
    for event, version, (packed, _) in zip(
        events, prepared.versions, prepared.records, strict=True
    ):
        stream = event.stream
        index.append((streams[stream][0] + pack_position(version), packed))
        position = unpack_position(packed)
        appended.append(AppendedEvent(stream, version, position))
        span = touched.get(stream)
        if span is None:
            touched[stream] = [position, position, version]
        else:
            span[1] = position
            span[2] = version
    tables.put_many(STREAM_INDEX, index)
    for stream, (first, last, version) in touched.items():
        key, info = streams[stream]
        new = StreamInfo(
            stream, version, first if info is None else info.first_position, last
        )
        tables.put(STREAMS, key, _result_encoder.encode(new))
        known[stream] = (key, new)

    result = AppendResult(tuple(appended), prepared.job.command_id)
    if prepared.command_key is not None:
        tables.put(COMMANDS, prepared.command_key, _result_encoder.encode(result))
    if projectors and events:
        stored = [
            StoredEvent(
                appended_event.position,
                event.stream,
                appended_event.version,
                event.type,
                data,
                event.metadata,
                prepared.recorded_at,
            )
            for event, appended_event, data in zip(
                events, appended, prepared.data, strict=True
            )
        ]
        for projector in projectors:
            projector.apply(tables, stored)
    return result
