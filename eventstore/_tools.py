"""Tools over a whole store: NDJSON export and import, integrity checks."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import msgspec
import orjson

from eventstore._base import BaseStore
from eventstore._codec import Envelope, decode_envelope, decode_record
from eventstore._errors import DamagedRecordError, EventStoreError
from eventstore._tables import (
    EVENTS,
    STREAM_INDEX,
    STREAMS,
    bounded_key,
    pack_position,
    unpack_position,
)
from eventstore._types import EventMetadata, NewEvent, StreamInfo

__all__ = [
    "ImportReport",
    "NdjsonLineError",
    "VerifyReport",
    "export_ndjson",
    "import_ndjson",
    "verify",
]

_CHUNK = 4096
_IMPORT_BATCH = 1000
_MAX_PROBLEMS = 100
_stream_info_decoder = msgspec.msgpack.Decoder(StreamInfo)
_plain_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder()


class NdjsonLineError(EventStoreError, ValueError):
    """Raised when a line of an NDJSON import is not an exported event."""

    def __init__(self, line: int, reason: str) -> None:
        self.line = line
        self.reason = reason
        super().__init__(f"NDJSON line {line}: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.line, self.reason))


class _Line(msgspec.Struct, frozen=True):
    """One exported event, as a line of NDJSON."""

    position: int
    stream: str
    version: int
    type: str
    schema_version: int
    data: Any
    metadata: EventMetadata
    recorded_at: str


class ImportReport(msgspec.Struct, frozen=True):
    """What :func:`import_ndjson` did.

    Attributes:
        events: Events read from the file.
        appended: Events appended now.
        skipped: Events skipped because an earlier import appended them.

    """

    events: int
    appended: int
    skipped: int


class VerifyReport(msgspec.Struct, frozen=True):
    """What :func:`verify` found.

    Attributes:
        events: Events checked.
        streams: Streams checked.
        first_bad_position: The lowest position with a problem, if any.
        problems: Each problem found, naming its position or stream (at
            most the first 100).

    """

    events: int
    streams: int
    first_bad_position: int | None
    problems: list[str]

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems


@contextlib.contextmanager
def _binary(file: IO[bytes] | str | os.PathLike[str], mode: str) -> Iterator[IO[bytes]]:
    if isinstance(file, str | os.PathLike):
        with Path(file).open(mode + "b") as opened:
            yield opened
    else:
        yield file


def export_ndjson(
    store: BaseStore,
    file: IO[bytes] | str | os.PathLike[str],
    *,
    from_position: int = 1,
    to_position: int | None = None,
) -> int:
    """Write events as NDJSON, one event per line, with every field.

    Each line holds the position, stream, version, type, schema version,
    the data as stored (not upcast) in JSON, the metadata and the commit
    time, so that :func:`import_ndjson` can append them again.

    Args:
        store: The store to read.
        file: A binary file object or a path (created or truncated).
        from_position: The first position to export.
        to_position: The last position to export; the head by default.

    Returns:
        The number of events written.

    Raises:
        DamagedRecordError: If a record is damaged (naming its position).

    """
    count = 0
    with _binary(file, "w") as out:
        for position, envelope in _envelopes(store, from_position, to_position):
            line = _Line(
                position,
                envelope.stream,
                envelope.version,
                envelope.type,
                envelope.schema_version,
                _plain_data(envelope, position),
                envelope.metadata,
                envelope.recorded_at.isoformat(),
            )
            out.write(orjson.dumps(msgspec.to_builtins(line)))
            out.write(b"\n")
            count += 1
    return count


def _plain_data(envelope: Envelope, position: int) -> Any:
    try:
        return _plain_decoder.decode(envelope.data)
    except msgspec.DecodeError as exc:
        raise DamagedRecordError(position, f"data: {exc}") from exc


def _envelopes(
    store: BaseStore, from_position: int, to_position: int | None
) -> Iterator[tuple[int, Envelope]]:
    position = max(1, from_position)
    while to_position is None or position <= to_position:
        stop = None if to_position is None else pack_position(to_position + 1)
        with store._reading() as tables:  # noqa: SLF001 - a tool of the store
            chunk = [
                item
                for _, item in zip(
                    range(_CHUNK),
                    tables.scan(EVENTS, pack_position(position), stop),
                    strict=False,
                )
            ]
        for key, record in chunk:
            at = unpack_position(key)
            yield at, decode_envelope(record, at)
        if len(chunk) < _CHUNK:
            return
        position = unpack_position(chunk[-1][0]) + 1


def import_ndjson(
    store: BaseStore,
    file: IO[bytes] | str | os.PathLike[str],
    *,
    batch_size: int = _IMPORT_BATCH,
) -> ImportReport:
    """Append the events of an NDJSON export, keeping streams, types, metadata.

    Lines are appended in batches, each batch atomically. A batch's command
    id is derived from its source positions and content, so importing the
    same file again appends nothing. Data stored in an older schema version
    is lifted by the registry's upcasters. The target gives the events its
    own positions, versions and commit times.

    Args:
        store: The store to append to.
        file: A binary file object or a path.
        batch_size: Events per append.

    Returns:
        How many events were read, appended and skipped as already imported.

    Raises:
        NdjsonLineError: If a line does not parse (naming the line number);
            the batch holding it is not appended, earlier batches are.

    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    decoder = msgspec.json.Decoder(_Line)
    totals = [0, 0, 0]
    batch: list[tuple[int, _Line, bytes]] = []
    with _binary(file, "r") as source:
        for number, raw in enumerate(source, start=1):
            if not raw.strip():
                continue
            try:
                line = decoder.decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise NdjsonLineError(number, str(exc)) from exc
            batch.append((number, line, raw))
            if len(batch) >= batch_size:
                _import_batch(store, batch, totals)
                batch = []
    if batch:
        _import_batch(store, batch, totals)
    return ImportReport(*totals)


def _import_batch(
    store: BaseStore, batch: list[tuple[int, _Line, bytes]], totals: list[int]
) -> None:
    digest = hashlib.blake2b(digest_size=12)
    events = []
    for number, line, raw in batch:
        digest.update(raw.strip())
        events.append(
            NewEvent(
                line.stream, line.type, _lifted(store, number, line), line.metadata
            )
        )
    first, last = batch[0][1].position, batch[-1][1].position
    command_id = f"ndjson-import:{first}-{last}:{digest.hexdigest()}"
    try:
        result = store.append(events, command_id=command_id)
    except (TypeError, ValueError) as exc:
        raise NdjsonLineError(
            batch[0][0], f"the batch from this line was refused: {exc}"
        ) from exc
    totals[0] += len(batch)
    totals[2 if result.duplicate else 1] += len(batch)


def _lifted(store: BaseStore, number: int, line: _Line) -> Any:
    registry = store.registry
    current = registry.schema_version(line.type)
    if current in (0, line.schema_version):
        return line.data
    try:
        return registry.decode_data(
            line.type,
            line.schema_version,
            msgspec.msgpack.encode(line.data),
            line.position,
        )
    except (EventStoreError, msgspec.ValidationError) as exc:
        raise NdjsonLineError(number, str(exc)) from exc


def verify(store: BaseStore) -> VerifyReport:
    """Check the whole log and its indexes.

    Positions must be gapless from 1, each stream's versions must follow
    1, 2, 3, ... in position order, the stream index and the stream infos
    must agree with the events, and every record must pass its checksum and
    decode (upcasters included).

    Returns:
        A report with the first bad position; it never raises for damage.

    """
    checker = _Checker(store)
    position = 1
    while True:
        with store._reading() as tables:  # noqa: SLF001 - a tool of the store
            chunk = [
                item
                for _, item in zip(
                    range(_CHUNK),
                    tables.scan(EVENTS, pack_position(position)),
                    strict=False,
                )
            ]
            indexed = {
                unpack_position(key): tables.get(STREAM_INDEX, index_key)
                for key, index_key in checker.index_keys(chunk)
            }
        for key, record in chunk:
            checker.check(unpack_position(key), record, indexed)
        if len(chunk) < _CHUNK:
            break
        position = unpack_position(chunk[-1][0]) + 1
    checker.check_streams()
    return checker.report()


class _Checker:
    """The state of one :func:`verify` pass."""

    def __init__(self, store: BaseStore) -> None:
        self.store = store
        self.problems: list[str] = []
        self.first_bad: int | None = None
        # stream -> [first position, version, last position]
        self.seen: dict[str, list[int]] = {}
        self.next_position = 1
        self.events = 0

    def problem(self, position: int | None, text: str) -> None:
        if position is not None and (
            self.first_bad is None or position < self.first_bad
        ):
            self.first_bad = position
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(text)

    def index_keys(
        self, chunk: list[tuple[bytes, bytes]]
    ) -> Iterator[tuple[bytes, bytes]]:
        """Each good record's key and the stream index key that names it."""
        for key, record in chunk:
            try:
                envelope = decode_envelope(record, unpack_position(key))
            except DamagedRecordError:
                continue
            yield key, bounded_key(envelope.stream) + pack_position(envelope.version)

    def check(self, at: int, record: bytes, indexed: dict[int, bytes | None]) -> None:
        self.events += 1
        if at != self.next_position:
            self.problem(
                self.next_position,
                f"positions jump from {self.next_position - 1} to {at}",
            )
        self.next_position = at + 1
        try:
            event = decode_record(record, at, self.store.registry)
        except EventStoreError as exc:
            self.problem(at, str(exc))
            return
        span = self.seen.setdefault(event.stream, [at, 0, 0])
        if event.version != span[1] + 1:
            self.problem(
                at,
                f"position {at}: stream {event.stream!r} has version "
                f"{event.version} after {span[1]}",
            )
        span[1], span[2] = event.version, at
        if indexed.get(at) != pack_position(at):
            self.problem(
                at,
                f"position {at}: the stream index of {event.stream!r} "
                f"version {event.version} does not point here",
            )

    def check_streams(self) -> None:
        with self.store._reading() as tables:  # noqa: SLF001 - a tool of the store
            infos = [
                _stream_info_decoder.decode(raw) for _, raw in tables.scan(STREAMS)
            ]
        listed = set()
        for info in infos:
            listed.add(info.stream)
            span = self.seen.get(info.stream)
            if span is None:
                self.problem(None, f"stream {info.stream!r} is listed but empty")
                continue
            first, version, last = span
            stored = (info.first_position, info.version, info.last_position)
            if stored != (first, version, last):
                self.problem(
                    None,
                    f"stream {info.stream!r}: listed as version {info.version} "
                    f"at positions {info.first_position}..{info.last_position}, "
                    f"the log says version {version} at {first}..{last}",
                )
        for stream in sorted(self.seen.keys() - listed):
            self.problem(
                self.seen[stream][0], f"stream {stream!r} has events but no info"
            )

    def report(self) -> VerifyReport:
        return VerifyReport(self.events, len(self.seen), self.first_bad, self.problems)
