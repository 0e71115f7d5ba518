"""What every store does the same way on top of its tables.

A backend supplies two things: :meth:`BaseStore._submit`, which runs a job in
a write transaction and completes its future after the commit, and
:meth:`BaseStore._reading`, a consistent read snapshot of its tables. Reads
are taken in chunks, each in its own snapshot, so that a long iteration never
pins old pages of the log.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from eventstore._codec import (
    EventRegistry,
    decode_envelope,
    decode_record,
    default_registry,
)
from eventstore._core import (
    AppendJob,
    InlineProjector,
    ViewJob,
    decode_result,
    decode_stream_info,
    read_stream_info,
)
from eventstore._errors import DamagedRecordError
from eventstore._notify import CommitNotifier
from eventstore._subscription import Subscription
from eventstore._tables import (
    COMMANDS,
    EVENTS,
    KEPT_PREFIX,
    STREAM_INDEX,
    STREAMS,
    Tables,
    ViewReader,
    ViewTxn,
    bounded_key,
    pack_position,
    unpack_position,
)
from eventstore._types import AppendResult, Expected, NewEvent, StoredEvent, StreamInfo

__all__ = ["BaseStore"]

T = TypeVar("T")
_CHUNK = 512


class BaseStore(abc.ABC):
    """The store API, written once over a backend's tables."""

    def __init__(self, registry: EventRegistry | None) -> None:
        self.registry = registry or default_registry
        self.notifier = CommitNotifier()
        self._projectors: tuple[InlineProjector, ...] = ()

    # -- what a backend supplies ------------------------------------------

    @abc.abstractmethod
    def _submit(self, job: AppendJob | ViewJob) -> None:
        """Queue a job for a write transaction; its future completes on commit."""

    @abc.abstractmethod
    def _reading(self) -> contextlib.AbstractContextManager[Tables]:
        """A consistent read snapshot of the tables."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store; every later call raises ``StoreClosedError``."""

    # -- writing ----------------------------------------------------------

    def append_future(
        self,
        events: Sequence[NewEvent],
        *,
        expected_versions: Mapping[str, Expected] | None = None,
        command_id: str | None = None,
    ) -> Future[AppendResult]:
        """Queue an append and return at once; the future completes on commit.

        See :meth:`append` for the arguments and errors.
        """
        job = AppendJob(tuple(events), expected_versions, command_id)
        self._submit(job)
        return job.future

    def append(
        self,
        events: Sequence[NewEvent],
        *,
        expected_versions: Mapping[str, Expected] | None = None,
        command_id: str | None = None,
    ) -> AppendResult:
        """Append events to one or more streams atomically.

        Args:
            events: The events, in order; they may belong to several streams.
            expected_versions: Per stream, the version it must be at: a
                number, ``NO_STREAM`` or ``ANY``.
            command_id: An idempotency key: appending it again returns the
                first result and writes nothing.

        Returns:
            Where each event landed. It returns once the events are
            committed (and durable, in ``durable`` mode).

        Raises:
            ConcurrencyError: If a stream is not at its expected version;
                nothing is written.
            msgspec.ValidationError: If an event's data does not fit its
                registered type; nothing is written.

        """
        return self.append_future(
            events, expected_versions=expected_versions, command_id=command_id
        ).result()

    async def append_async(
        self,
        events: Sequence[NewEvent],
        *,
        expected_versions: Mapping[str, Expected] | None = None,
        command_id: str | None = None,
    ) -> AppendResult:
        """:meth:`append` for coroutines: awaits the commit without blocking."""
        future = self.append_future(
            events, expected_versions=expected_versions, command_id=command_id
        )
        return await asyncio.wrap_future(future)

    def write_views(self, fn: Callable[[ViewTxn], T]) -> T:
        """Run ``fn`` in a write transaction and return what it returns.

        Everything ``fn`` writes commits together, or nothing does if it
        raises.
        """
        job = ViewJob(fn)
        self._submit(job)
        result: T = job.future.result()
        return result

    def add_inline_projector(self, projector: InlineProjector) -> None:
        """Fold every later append into ``projector`` in the append's commit."""
        self._projectors = (*self._projectors, projector)

    def remove_inline_projector(self, projector: InlineProjector) -> None:
        """Stop folding appends into ``projector``."""
        self._projectors = tuple(p for p in self._projectors if p is not projector)

    # -- reading ----------------------------------------------------------

    def head_position(self) -> int:
        """The position of the last committed event; 0 for an empty log."""
        with self._reading() as tables:
            last = tables.last_key(EVENTS)
        return 0 if last is None else unpack_position(last)

    def stream_version(self, stream: str) -> int:
        """The version of ``stream``: its number of events, 0 if it has none."""
        info = self.stream_info(stream)
        return 0 if info is None else info.version

    def stream_info(self, stream: str) -> StreamInfo | None:
        """The version and positions of ``stream``, or None if it has no events."""
        with self._reading() as tables:
            return read_stream_info(tables, bounded_key(stream))

    def command_result(self, command_id: str) -> AppendResult | None:
        """The result of the append that carried ``command_id``, if any."""
        with self._reading() as tables:
            raw = tables.get(COMMANDS, bounded_key(command_id))
        return None if raw is None else decode_result(raw)

    def streams(self, *, prefix: str = "") -> Iterator[StreamInfo]:
        """Every stream whose name starts with ``prefix``, in name order."""
        # Long names keep only their first bytes in the key: scan by those,
        # then filter on the full name kept in the value.
        start = prefix.encode()[:KEPT_PREFIX]
        while True:
            with self._reading() as tables:
                chunk = list(_take(tables.scan(STREAMS, start), _CHUNK + 1))
            for key, raw in chunk[:_CHUNK]:
                if not key.startswith(start):
                    return
                info = decode_stream_info(raw)
                if info.stream.startswith(prefix):
                    yield info
            if len(chunk) <= _CHUNK:
                return
            start = chunk[_CHUNK][0]

    def read_stream(
        self, stream: str, *, from_version: int = 1, to_version: int | None = None
    ) -> Iterator[StoredEvent]:
        """The events of ``stream`` from ``from_version`` to ``to_version``.

        Raises:
            DamagedRecordError: If a record is damaged (naming its position).

        """
        key = bounded_key(stream)
        version = max(1, from_version)
        while to_version is None or version <= to_version:
            stop = None if to_version is None else key + pack_position(to_version + 1)
            with self._reading() as tables:
                index = list(
                    _take(
                        tables.scan(
                            STREAM_INDEX,
                            key + pack_position(version),
                            stop or key + b"\xff" * 9,
                        ),
                        _CHUNK,
                    )
                )
                records = [
                    (unpack_position(p), tables.get(EVENTS, p)) for _, p in index
                ]
            for position, record in records:
                if record is None:
                    raise DamagedRecordError(position, "indexed but missing")
                event = decode_record(record, position, self.registry)
                if event.stream == stream:
                    yield event
            if len(index) < _CHUNK:
                return
            version = unpack_position(index[-1][0][len(key) :]) + 1

    def read_all(
        self,
        *,
        from_position: int = 1,
        to_position: int | None = None,
        types: Collection[str] | None = None,
    ) -> Iterator[StoredEvent]:
        """Every event from ``from_position`` to ``to_position``, in order.

        Args:
            from_position: The first position to read.
            to_position: The last position to read; the head by default.
            types: Only events of these types, if given.

        Raises:
            DamagedRecordError: If a record is damaged (naming its position).

        """
        wanted = None if types is None else frozenset(types)
        position = max(1, from_position)
        registry = self.registry
        while to_position is None or position <= to_position:
            stop = None if to_position is None else pack_position(to_position + 1)
            with self._reading() as tables:
                chunk = list(
                    _take(tables.scan(EVENTS, pack_position(position), stop), _CHUNK)
                )
            for key, record in chunk:
                at = unpack_position(key)
                if wanted is None or _peek_type(record, at) in wanted:
                    yield decode_record(record, at, registry)
            if len(chunk) < _CHUNK:
                return
            position = unpack_position(chunk[-1][0]) + 1

    def read_record(self, position: int) -> bytes | None:
        """The raw stored record at ``position`` (for tools), or None."""
        with self._reading() as tables:
            return tables.get(EVENTS, pack_position(position))

    def subscribe(
        self,
        from_position: int | None = None,
        *,
        timeout_s: float | None = None,
        types: Collection[str] | None = None,
    ) -> Subscription:
        """Follow the log: the backlog from ``from_position``, then new commits.

        Args:
            from_position: The first position wanted; after the head (only
                new events) by default.
            timeout_s: Iteration ends after this long with nothing new;
                ``None`` waits forever.
            types: Only events of these types, if given.

        """
        start = self.head_position() + 1 if from_position is None else from_position
        return Subscription(self, start, timeout_s=timeout_s, types=types)

    @contextlib.contextmanager
    def read_views(self) -> Iterator[ViewReader]:
        """A consistent snapshot of every view table, for several reads."""
        with self._reading() as tables:
            yield tables

    def view_get(self, table: str, key: bytes) -> bytes | None:
        """One value of a view table, or None."""
        with self._reading() as tables:
            return tables.get(table, key)


def _take(items: Iterator[Any], count: int) -> Iterator[Any]:
    for index, item in enumerate(items):
        if index >= count:
            return
        yield item


def _peek_type(record: bytes, position: int) -> str:
    return decode_envelope(record, position).type
