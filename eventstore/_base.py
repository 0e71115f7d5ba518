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
import itertools
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from eventstore._codec import (
    EventRegistry,
    decode_record,
    decode_records,
    default_registry,
)
from eventstore._completion import LoopWaiter, Waiter
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
from eventstore._types import (
    AppendResult,
    Expected,
    ExpectedVersion,
    NewEvent,
    StoredEvent,
    StreamInfo,
)

__all__ = ["BaseStore"]

T = TypeVar("T")
_CHUNK = 512
_POSITION_BYTES = 8


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
        future: Future[AppendResult] = Future()
        self._submit(
            AppendJob(
                _checked_events(events),
                _checked_expected(expected_versions),
                _checked_command_id(command_id),
                future,
            )
        )
        return future

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
            TypeError: If an event is not a :class:`NewEvent`, its data
                cannot be encoded, or an expected version is neither an
                ``int`` nor ``NO_STREAM``/``ANY``; nothing is written.
            ValueError: If a stream name, type name or command id is empty,
                or an expected version is negative; nothing is written.
            StoreClosedError: If the store is closed.

        """
        waiter: Waiter[AppendResult] = Waiter()
        self._submit(
            AppendJob(
                _checked_events(events),
                _checked_expected(expected_versions),
                _checked_command_id(command_id),
                waiter,
            )
        )
        return waiter.result()

    async def append_async(
        self,
        events: Sequence[NewEvent],
        *,
        expected_versions: Mapping[str, Expected] | None = None,
        command_id: str | None = None,
    ) -> AppendResult:
        """:meth:`append` for coroutines: awaits the commit without blocking.

        The commit is delivered to the event loop once per commit, not once
        per append, so many concurrent coroutines cost one wake-up.
        """
        waiter: LoopWaiter[AppendResult] = LoopWaiter(asyncio.get_running_loop())
        self._submit(
            AppendJob(
                _checked_events(events),
                _checked_expected(expected_versions),
                _checked_command_id(command_id),
                waiter,
            )
        )
        return await waiter.future

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
        """Every stream whose name starts with ``prefix``.

        Streams come in name order, except that names over 400 bytes sort
        by their first 380 bytes only.
        """
        # Long names keep only their first bytes in the key: scan by those,
        # then filter on the full name kept in the value.
        kept = prefix.encode()[:KEPT_PREFIX]
        start = kept
        while True:
            with self._reading() as tables:
                chunk = list(_take(tables.scan(STREAMS, start), _CHUNK + 1))
            for key, raw in chunk[:_CHUNK]:
                if not key.startswith(kept):
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
        width = len(key) + _POSITION_BYTES
        start = key + pack_position(max(1, from_version))
        # Index keys are the stream key and 8 version bytes whose first is
        # 0 below 2**56 versions; longer keys in range belong to others.
        stop = key + (b"\x01" if to_version is None else pack_position(to_version + 1))
        registry = self.registry
        while start < stop:
            with self._reading() as tables:
                chunk = list(_take(tables.scan(STREAM_INDEX, start, stop), _CHUNK))
                records = [
                    (unpack_position(p), tables.get(EVENTS, p))
                    for k, p in chunk
                    if len(k) == width
                ]
            for position, record in records:
                if record is None:
                    raise DamagedRecordError(position, "indexed but missing")
                event = decode_record(record, position, registry)
                if event.stream != stream:
                    raise DamagedRecordError(
                        position,
                        f"indexed in stream {stream!r} but of {event.stream!r}",
                    )
                yield event
            if len(chunk) < _CHUNK:
                return
            start = chunk[-1][0] + b"\x00"

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
            UnknownSchemaVersionError: If a record's schema version cannot
                be lifted to the registered one.

        """
        wanted = None if types is None else frozenset(types)
        position = max(1, from_position)
        registry = self.registry
        while to_position is None or position <= to_position:
            stop = None if to_position is None else pack_position(to_position + 1)
            if wanted is None:
                # Decoded inside the snapshot: no list of raw records.
                with self._reading() as tables:
                    items = _take(
                        tables.scan(EVENTS, pack_position(position), stop), _CHUNK
                    )
                    events = decode_records(items, registry)
                yield from events
                if len(events) < _CHUNK:
                    return
                position = events[-1].position + 1
                continue
            with self._reading() as tables:
                chunk = list(
                    _take(tables.scan(EVENTS, pack_position(position), stop), _CHUNK)
                )
            yield from decode_records(chunk, registry, wanted)
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


def _checked_events(events: Sequence[NewEvent]) -> tuple[NewEvent, ...]:
    checked = tuple(events)
    if len(checked) == 1:
        event = checked[0]
        if (
            event.__class__ is NewEvent
            and event.stream
            and event.stream.__class__ is str
            and event.type
            and event.type.__class__ is str
        ):
            return checked
    # Check each distinct name once; look for the culprit only on failure.
    elif all(event.__class__ is NewEvent for event in checked) and all(
        name and name.__class__ is str
        for name in {event.stream for event in checked}
        | {event.type for event in checked}
    ):
        return checked
    for index, event in enumerate(checked):
        if event.__class__ is not NewEvent and not isinstance(event, NewEvent):
            raise TypeError(
                f"events[{index}] is a {type(event).__qualname__}, not a NewEvent"
            )
        if not event.stream or not isinstance(event.stream, str):
            raise ValueError(
                f"events[{index}]: the stream must be a non-empty str, "
                f"not {event.stream!r}"
            )
        if not event.type or not isinstance(event.type, str):
            raise ValueError(
                f"events[{index}]: the type must be a non-empty str, not {event.type!r}"
            )
    return checked


def _checked_expected(
    expected: Mapping[str, Expected] | None,
) -> dict[str, Expected] | None:
    if not expected:
        return None
    checked = dict(expected)
    for stream, version in checked.items():
        if not stream or not isinstance(stream, str):
            raise ValueError(
                f"expected_versions: a stream must be a non-empty str, not {stream!r}"
            )
        if isinstance(version, ExpectedVersion):
            continue
        if isinstance(version, bool) or not isinstance(version, int):
            raise TypeError(
                f"expected_versions[{stream!r}] must be an int, NO_STREAM or "
                f"ANY, not {version!r}"
            )
        if version < 0:
            raise ValueError(
                f"expected_versions[{stream!r}] must be >= 0, not {version}"
            )
    return checked


def _checked_command_id(command_id: str | None) -> str | None:
    if command_id is not None and (not command_id or not isinstance(command_id, str)):
        raise ValueError(f"command_id must be a non-empty str, not {command_id!r}")
    return command_id


def _take(items: Iterator[Any], count: int) -> Iterator[Any]:
    return itertools.islice(items, count)
