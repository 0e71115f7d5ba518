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
import struct
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Generic, Protocol, TypeVar

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
    "Waiter",
    "check_expected",
    "decode_result",
    "decode_stream_info",
    "read_stream_info",
    "run_jobs",
]

T = TypeVar("T")

_pack_position = struct.Struct(">Q").pack
_result_encoder = msgspec.msgpack.Encoder()
_result_decoder = msgspec.msgpack.Decoder(AppendResult)
_info_decoder = msgspec.msgpack.Decoder(StreamInfo)


class InlineProjector(Protocol):
    """A fold run inside the transaction of every append."""

    name: str

    def apply(self, txn: ViewTxn, events: Sequence[StoredEvent]) -> None:
        """Fold ``events`` into the projector's view tables."""


class Waiter(Generic[T]):
    """A one-shot result for a caller that blocks on it.

    Lighter than a ``concurrent.futures.Future`` (one lock, no condition),
    which matters when hundreds of threads each wait for their commit.
    """

    __slots__ = ("_error", "_lock", "_value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._value: T | None = None
        self._error: BaseException | None = None

    def set_running_or_notify_cancel(self) -> bool:
        """A waiter cannot be cancelled: always True."""
        return True

    def set_result(self, value: T) -> None:
        """Complete with ``value``."""
        self._value = value
        self._lock.release()

    def set_exception(self, error: BaseException) -> None:
        """Complete with ``error``."""
        self._error = error
        self._lock.release()

    def result(self) -> T:
        """Block until completed; return the value or raise the error."""
        self._lock.acquire()
        self._lock.release()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


Completion = Future[T] | Waiter[T]


class AppendJob:
    """One append waiting for the writer."""

    __slots__ = ("command_id", "events", "expected", "future")

    def __init__(
        self,
        events: Sequence[NewEvent],
        expected: Mapping[str, Expected] | None,
        command_id: str | None,
        *,
        blocking: bool = False,
    ) -> None:
        self.events = events
        self.expected = expected
        self.command_id = command_id
        self.future: Completion[AppendResult] = Waiter() if blocking else Future()


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
    encoder = RecordEncoder(registry, dt.datetime.now(dt.UTC))
    last = tables.last_key(EVENTS)
    head = 0 if last is None else unpack_position(last)
    # Stream keys and infos as this transaction left them, so that jobs on
    # the same stream read its info once per batch. A view job may write
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


def _load_streams(
    tables: Tables,
    names: Collection[str],
    known: dict[str, tuple[bytes, StreamInfo | None]],
) -> None:
    """Put the key and stored info of each of ``names`` into ``known``."""
    missing = [name for name in names if name not in known]
    if not missing:
        return
    keys = [bounded_key(name) for name in missing]
    found = tables.get_many(STREAMS, keys)
    for name, key, raw in zip(missing, keys, found, strict=True):
        known[name] = (key, None if raw is None else _info_decoder.decode(raw))


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

    events = job.events
    names = {event.stream for event in events}
    if job.expected:
        _load_streams(tables, names | job.expected.keys(), known)
        for stream, expected in job.expected.items():
            info = known[stream][1]
            check_expected(stream, expected, 0 if info is None else info.version)
    else:
        _load_streams(tables, names, known)

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
    for event in events:
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
    encoded, data = encoder.encode_many(events, versions)
    records = list(zip(packed, encoded, strict=True))

    infos = {
        name: (
            keys[name],
            StreamInfo(name, current[name], firsts[name], lasts[name]),
        )
        for name in names
    }
    return _Prepared(
        job,
        command_key,
        records,
        index,
        appended,
        infos,
        data,
        position,
        encoder.at,
    )


def _write(
    tables: Tables,
    prepared: _Prepared,
    projectors: Sequence[InlineProjector],
    known: dict[str, tuple[bytes, StreamInfo | None]],
) -> AppendResult:
    """Write a prepared job's events, stream index, stream infos, command id."""
    if prepared.records:
        tables.append_many(EVENTS, prepared.records)
        tables.put_many(STREAM_INDEX, prepared.index)
        encode = _result_encoder.encode
        tables.put_many(
            STREAMS, [(key, encode(info)) for key, info in prepared.infos.values()]
        )
        known.update(prepared.infos)

    job = prepared.job
    result = AppendResult(tuple(prepared.appended), job.command_id)
    if prepared.command_key is not None:
        tables.put(COMMANDS, prepared.command_key, _result_encoder.encode(result))
    if projectors and prepared.records:
        at = prepared.recorded_at
        stored = [
            StoredEvent(
                where.position, where.stream, where.version, e.type, d, e.metadata, at
            )
            for e, where, d in zip(
                job.events, prepared.appended, prepared.data, strict=True
            )
        ]
        for projector in projectors:
            projector.apply(tables, stored)
    return result
