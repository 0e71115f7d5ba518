r"""The ``records`` view: the current state of every record, and its indexes.

A slot of the view holds three kinds of keys: ``r<collection>\0<id>`` the
record, ``c<collection>`` the collection's count, and
``i<collection>\0<field>\0<value><id>`` one entry of a secondary index.
Index values are encoded so that byte order is value order (numbers and
booleans as order-preserving doubles, strings escaped and cut at 120
bytes), so an equality, ``in`` or range test reads one key range. The
encoding may merge values (a cut string, a huge int): the index only
narrows the candidates and every candidate is checked against the whole
``where`` clause. Declared indexes live in the control table, so they
survive a rebuild and a read-only reader sees them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import msgspec

from eventstore import (
    RecordCreated,
    RecordDeleted,
    RecordUpdated,
    StoredEvent,
    ViewReader,
    ViewTxn,
    merge_patch,
)
from projections._errors import HandlerError, ProjectionError, QueryError
from projections._fold import Folder, Projection
from projections._query import compile_where, query_rows
from projections._state import (
    CONTROL,
    SETTINGS_PREFIX,
    other_slot,
    read_state,
    slot_table,
)

__all__ = ["Record", "RecordsProjection", "RecordsView", "ViewSource"]

logger = logging.getLogger(__name__)

NAME = "records"
_INDEX_PREFIX = SETTINGS_PREFIX + b"index:records:"
_MAX_INDEXED_BYTES = 120
_MAX_ID_BYTES = 200
_COUNT = struct.Struct(">q")
_DOUBLE = struct.Struct(">d")
_SIGN = 1 << 63
_NONE, _NUMBER, _STRING = b"\x01", b"\x02", b"\x03"


class ViewSource(Protocol):
    """Anything that hands out read snapshots of view tables (a store)."""

    def read_views(self) -> contextlib.AbstractContextManager[ViewReader]:
        """A consistent snapshot."""


class Record(msgspec.Struct, frozen=True):
    """A record as the view holds it.

    Attributes:
        collection: Its collection.
        id: Its id.
        version: Its stream version (the number of its events).
        data: Its current data.
        created_at: When it was created (UTC): its first event's clock
            stamp, or when that event was recorded if it has none.
        updated_at: When it last changed (UTC), likewise.

    """

    collection: str
    id: str
    version: int
    data: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


class _Stored(msgspec.Struct, frozen=True, array_like=True):
    version: int
    data: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


_encode = msgspec.msgpack.Encoder().encode
_decode_stored = msgspec.msgpack.Decoder(_Stored).decode


def _record_key(collection: str, record_id: str) -> bytes:
    return f"r{collection}\x00{record_id}".encode()


def _count_key(collection: str) -> bytes:
    return b"c" + collection.encode()


def _index_prefix(collection: str, field: str) -> bytes:
    return b"i" + collection.encode() + b"\x00" + field.encode() + b"\x00"


def _id_suffix(record_id: str) -> bytes:
    raw = record_id.encode()
    if len(raw) <= _MAX_ID_BYTES:
        return raw
    return raw[:64] + b"#" + hashlib.blake2b(raw, digest_size=16).digest()


def _escape(text: str) -> bytes:
    raw = text.encode()[:_MAX_INDEXED_BYTES]
    return raw.replace(b"\x00", b"\x00\xff")


def _number(value: float) -> bytes:
    bits = int.from_bytes(_DOUBLE.pack(float(value)), "big")
    bits = bits ^ 0xFFFFFFFFFFFFFFFF if bits & _SIGN else bits | _SIGN
    return bits.to_bytes(8, "big")


def encode_index_value(value: Any) -> bytes | None:
    """The order-preserving bytes of a scalar; None if it is not indexable."""
    if value is None:
        return _NONE
    if isinstance(value, bool | int | float):
        try:
            return _NUMBER + _number(value)
        except OverflowError:
            return None
    if isinstance(value, str):
        return _STRING + _escape(value) + b"\x00\x00"
    return None


def _after(prefix: bytes) -> bytes:
    """The least key greater than every key starting with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\xff" * (len(prefix) + 1)
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _get_path(data: Mapping[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _ABSENT
        value = value[part]
    return value


_ABSENT = object()


def _index_entries(
    collection: str, fields: Sequence[str], record_id: str, data: Mapping[str, Any]
) -> dict[bytes, bytes]:
    entries: dict[bytes, bytes] = {}
    suffix = _id_suffix(record_id)
    for field in fields:
        value = _get_path(data, field)
        if value is _ABSENT:
            continue
        encoded = encode_index_value(value)
        if encoded is not None:
            entries[_index_prefix(collection, field) + encoded + suffix] = (
                record_id.encode()
            )
    return entries


def declared_indexes(reader: ViewReader) -> dict[str, tuple[str, ...]]:
    """The declared index fields, per collection."""
    found: dict[str, list[str]] = {}
    for key, _ in reader.scan(CONTROL, _INDEX_PREFIX, _after(_INDEX_PREFIX)):
        collection, _, field = key[len(_INDEX_PREFIX) :].decode().partition("\x00")
        found.setdefault(collection, []).append(field)
    return {collection: tuple(fields) for collection, fields in found.items()}


class RecordsProjection(Projection):
    """Folds ``Record*`` events into the current state of every record."""

    name = NAME
    types = frozenset({"RecordCreated", "RecordUpdated", "RecordDeleted"})

    def folder(self, reader: ViewReader, table: str) -> Folder:
        """A folder for one batch into ``table``."""
        return _RecordsFolder(table, declared_indexes(reader))


class _RecordsFolder(Folder):
    # Each handler checks (the event's type, the record it updates) before
    # it writes, and what it then writes cannot fail: data decoded from the
    # log encodes again. Inline folds rely on it to skip the overlay.
    raises_before_writing = True

    def __init__(self, table: str, indexes: dict[str, tuple[str, ...]]) -> None:
        self._table = table
        self._indexes = indexes
        self._counts: dict[str, int] = {}
        self._handlers: dict[type, Callable[[ViewTxn, StoredEvent, Any], None]] = {
            RecordUpdated: self._update,
            RecordCreated: self._create,
            RecordDeleted: self._delete,
        }

    def _load(self, txn: ViewTxn, key: bytes) -> _Stored | None:
        raw = txn.get(self._table, key)
        return None if raw is None else _decode_stored(raw)

    def apply(self, txn: ViewTxn, event: StoredEvent) -> None:
        data = event.data
        handler = self._handlers.get(type(data))
        if handler is None:
            raise HandlerError(
                f"position {event.position}: {event.type} data is not the "
                f"registered struct ({type(data).__name__})"
            )
        handler(txn, event, data)

    def _create(self, txn: ViewTxn, event: StoredEvent, data: RecordCreated) -> None:
        # A stream's first event: no earlier state of the record can exist.
        created = event.version != 1
        self._put(txn, event, data.collection, data.id, data.data, created=created)

    def _update(self, txn: ViewTxn, event: StoredEvent, data: RecordUpdated) -> None:
        key = _record_key(data.collection, data.id)
        stored = self._load(txn, key)
        if stored is None:
            raise HandlerError(
                f"position {event.position}: RecordUpdated of "
                f"{data.collection}/{data.id}, which does not exist"
            )
        new_data = data.changes if data.replace else _merge(stored.data, data.changes)
        self._put(
            txn, event, data.collection, data.id, new_data, previous=stored, key=key
        )

    def _delete(self, txn: ViewTxn, event: StoredEvent, data: RecordDeleted) -> None:
        del event
        key = _record_key(data.collection, data.id)
        old = self._load(txn, key)
        if old is None:
            return
        fields = self._indexes.get(data.collection)
        if fields:
            stale = _index_entries(data.collection, fields, data.id, old.data)
            for index_key in stale:
                txn.delete(self._table, index_key)
        txn.delete(self._table, key)
        self._counts[data.collection] = self._counts.get(data.collection, 0) - 1

    def _put(
        self,
        txn: ViewTxn,
        event: StoredEvent,
        collection: str,
        record_id: str,
        data: dict[str, Any],
        *,
        created: bool = False,
        previous: _Stored | None = None,
        key: bytes | None = None,
    ) -> None:
        if key is None:
            key = _record_key(collection, record_id)
        if created:
            previous = self._load(txn, key)
        at = _event_time(event)
        created_at = at if previous is None else previous.created_at
        fields = self._indexes.get(collection) if self._indexes else None
        if fields:
            fresh = _index_entries(collection, fields, record_id, data)
            if previous is not None:
                stale = _index_entries(collection, fields, record_id, previous.data)
                for index_key in stale.keys() - fresh.keys():
                    txn.delete(self._table, index_key)
            for index_key, value in fresh.items():
                txn.put(self._table, index_key, value)
        stored = _Stored(event.version, data, created_at, at)
        txn.put(self._table, key, _encode(stored))
        if previous is None:
            self._counts[collection] = self._counts.get(collection, 0) + 1

    def finish(self, txn: ViewTxn) -> None:
        for collection, delta in self._counts.items():
            if delta:
                key = _count_key(collection)
                raw = txn.get(self._table, key)
                count = (0 if raw is None else _COUNT.unpack(raw)[0]) + delta
                txn.put(self._table, key, _COUNT.pack(count))
        self._counts.clear()


def _event_time(event: StoredEvent) -> dt.datetime:
    """When the event was made: its clock stamp, else when it was recorded.

    The collection actor answers a write with this same time, so a record
    read from the view equals the one its write returned.
    """
    hlc = event.metadata.hlc
    if hlc is None:
        return event.recorded_at
    return dt.datetime.fromtimestamp(hlc.physical_ms / 1000, dt.UTC)


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7396 ``merge_patch``, with a fast path for flat patches."""
    for value in patch.values():
        if value is None or type(value) is dict:
            merged: dict[str, Any] = merge_patch(target, patch)
            return merged
    return {**target, **patch}


def _record(collection: str, record_id: str, raw: bytes) -> Record:
    stored = _decode_stored(raw)
    return Record(
        collection,
        record_id,
        stored.version,
        stored.data,
        stored.created_at,
        stored.updated_at,
    )


class RecordsView:
    """Reads of the ``records`` view: get, query, count; index declarations.

    Each read takes one consistent snapshot: it sees every append committed
    before it began (with an inline runner, every acknowledged write) and
    nothing uncommitted.

    Args:
        source: A store (or a temporary view from :func:`replay`).

    """

    def __init__(self, source: ViewSource) -> None:
        self._source = source

    def get(self, collection: str, record_id: str) -> Record | None:
        """The record, or None if it does not exist (or was deleted)."""
        with self._source.read_views() as reader:
            table = _live_table(reader)
            raw = reader.get(table, _record_key(collection, record_id))
        return None if raw is None else _record(collection, record_id, raw)

    def get_many(
        self, collection: str, record_ids: Sequence[str]
    ) -> list[Record | None]:
        """Records by id from one snapshot, None where absent, in that order."""
        with self._source.read_views() as reader:
            table = _live_table(reader)
            found = [
                (record_id, reader.get(table, _record_key(collection, record_id)))
                for record_id in record_ids
            ]
        return [
            None if raw is None else _record(collection, record_id, raw)
            for record_id, raw in found
        ]

    def count(self, collection: str) -> int:
        """How many records ``collection`` holds."""
        with self._source.read_views() as reader:
            raw = reader.get(_live_table(reader), _count_key(collection))
        return 0 if raw is None else int(_COUNT.unpack(raw)[0])

    def collections(self) -> dict[str, int]:
        """Every collection with records, and its count."""
        with self._source.read_views() as reader:
            table = _live_table(reader)
            found = {
                key[1:].decode(): int(_COUNT.unpack(raw)[0])
                for key, raw in reader.scan(table, b"c", b"d")
            }
        return {name: count for name, count in found.items() if count}

    def indexes(self, collection: str) -> tuple[str, ...]:
        """The fields of ``collection`` that have a secondary index."""
        with self._source.read_views() as reader:
            return declared_indexes(reader).get(collection, ())

    def query(
        self,
        collection: str,
        *,
        where: Mapping[str, Any] | None = None,
        order_by: str | Sequence[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Record]:
        """The records of ``collection`` that match ``where``, ordered and paged.

        Without ``order_by`` records come in id order. A secondary index is
        used when one fits the clause (equality, ``in`` or a range on an
        indexed field); otherwise the collection is scanned.

        Raises:
            QueryError: If a clause is malformed.

        """
        predicate = compile_where(where)
        if limit is not None and limit < 0:
            raise QueryError(f"limit must be >= 0, not {limit}")
        if offset < 0:
            raise QueryError(f"offset must be >= 0, not {offset}")
        with self._source.read_views() as reader:
            table = _live_table(reader)
            fields = declared_indexes(reader).get(collection, ())
            ranges = plan(collection, where or {}, fields)
            if ranges is None:
                rows = self._scan(reader, table, collection)
                if not order_by and limit is not None:
                    return _first(rows, predicate, offset, limit)
                matched = list(rows)
            else:
                matched = self._lookup(reader, table, collection, ranges)
        return query_rows(
            matched,
            where=where,
            order_by=order_by,
            limit=limit,
            offset=offset,
            data=_data,
        )

    @staticmethod
    def _scan(reader: ViewReader, table: str, collection: str) -> Iterator[Record]:
        prefix = b"r" + collection.encode() + b"\x00"
        cut = len(prefix)
        for key, raw in reader.scan(table, prefix, _after(prefix)):
            yield _record(collection, key[cut:].decode(), raw)

    @staticmethod
    def _lookup(
        reader: ViewReader,
        table: str,
        collection: str,
        ranges: list[tuple[bytes, bytes]],
    ) -> list[Record]:
        ids: set[str] = set()
        for start, stop in ranges:
            ids.update(value.decode() for _, value in reader.scan(table, start, stop))
        records = []
        for record_id in sorted(ids):
            raw = reader.get(table, _record_key(collection, record_id))
            if raw is not None:
                records.append(_record(collection, record_id, raw))
        return records

    def declare_index(self, collection: str, field: str) -> None:
        """Declare a secondary index and build it; see :func:`declare_index`.

        Raises:
            ProjectionError: If the view was opened over something that
                cannot write (a read-only store keeps its own error).

        """
        write_views = getattr(self._source, "write_views", None)
        if write_views is None:
            raise ProjectionError(
                f"cannot declare an index on {collection}.{field}: this view "
                "reads a source that cannot write"
            )
        declare_index(self._source, collection, field)

    def uses_index(self, collection: str, where: Mapping[str, Any]) -> bool:
        """True if :meth:`query` would read an index for ``where``."""
        return plan(collection, where, self.indexes(collection)) is not None


def declare_index(store: Any, collection: str, field: str) -> None:
    """Declare a secondary index on ``field`` of ``collection`` and build it.

    The declaration is kept in the store; the index is built for existing
    records in the same transaction.

    Raises:
        QueryError: If ``collection`` or ``field`` is empty.

    """
    if not collection or not field or "\x00" in collection + field:
        raise QueryError(
            f"declare_index: bad collection {collection!r} or field {field!r}"
        )

    def build(txn: ViewTxn) -> None:
        key = _INDEX_PREFIX + collection.encode() + b"\x00" + field.encode()
        if txn.get(CONTROL, key) is not None:
            return
        txn.put(CONTROL, key, b"")
        state = read_state(txn, NAME)
        slots = [state.slot, other_slot(state.slot)] if state.building else [state.slot]
        prefix = b"r" + collection.encode() + b"\x00"
        for slot in slots:
            table = slot_table(NAME, slot)
            entries: dict[bytes, bytes] = {}
            for record_key, raw in txn.scan(table, prefix, _after(prefix)):
                record_id = record_key[len(prefix) :].decode()
                entries.update(
                    _index_entries(
                        collection, (field,), record_id, _decode_stored(raw).data
                    )
                )
            for index_key, value in entries.items():
                txn.put(table, index_key, value)

    store.write_views(build)
    logger.info("declared an index on %s.%s", collection, field)


def _data(record: Record) -> Mapping[str, Any]:
    return record.data


def _first(
    rows: Iterator[Record], predicate: Any, offset: int, limit: int
) -> list[Record]:
    found: list[Record] = []
    skipped = 0
    for row in rows:
        if len(found) >= limit:
            break
        if predicate(row.data):
            if skipped < offset:
                skipped += 1
            else:
                found.append(row)
    return found


def _live_table(reader: ViewReader) -> str:
    return slot_table(NAME, read_state(reader, NAME).slot)


_RANGE_OPS = ("gt", "gte", "lt", "lte")


def plan(
    collection: str, where: Mapping[str, Any], fields: Sequence[str]
) -> list[tuple[bytes, bytes]] | None:
    """The index key ranges that hold every match of ``where``, or None to scan.

    Equality is preferred, then ``in``, then a range.
    """
    best: tuple[int, list[tuple[bytes, bytes]]] | None = None
    for field, condition in where.items():
        if field not in fields:
            continue
        prefix = _index_prefix(collection, field)
        found = _field_plan(prefix, condition)
        if found is not None and (best is None or found[0] < best[0]):
            best = found
    return None if best is None else best[1]


def _eq_range(prefix: bytes, value: Any) -> tuple[bytes, bytes] | None:
    encoded = encode_index_value(value)
    if encoded is None:
        return None
    if encoded[:1] == _STRING:
        start = prefix + encoded
        return start, start[:-1] + b"\x01"
    return prefix + encoded, _after(prefix + encoded)


def _field_plan(
    prefix: bytes, condition: Any
) -> tuple[int, list[tuple[bytes, bytes]]] | None:
    if not isinstance(condition, Mapping):
        found = _eq_range(prefix, condition)
        return None if found is None else (0, [found])
    if "eq" in condition:
        found = _eq_range(prefix, condition["eq"])
        if found is not None:
            return 0, [found]
    if "in" in condition and isinstance(
        condition["in"], list | tuple | set | frozenset
    ):
        ranges = [_eq_range(prefix, value) for value in condition["in"]]
        if all(found is not None for found in ranges):
            return 1, [found for found in ranges if found is not None]
    bounds = {op: condition[op] for op in _RANGE_OPS if op in condition}
    if bounds:
        found = _range(prefix, bounds)
        if found is not None:
            return 2, [found]
    return None


def _range(prefix: bytes, bounds: Mapping[str, Any]) -> tuple[bytes, bytes] | None:
    lows = [bounds[op] for op in ("gt", "gte") if op in bounds]
    highs = [bounds[op] for op in ("lt", "lte") if op in bounds]
    values = lows + highs
    if all(isinstance(v, bool | int | float) for v in values):
        tag = _NUMBER
    elif all(isinstance(v, str) for v in values):
        tag = _STRING
    else:
        return None
    encoded_lows = [encode_index_value(v) for v in lows]
    encoded_highs = [encode_index_value(v) for v in highs]
    if None in encoded_lows or None in encoded_highs:
        return None
    base = prefix + tag
    start = base
    for low in encoded_lows:
        assert low is not None  # noqa: S101 - checked just above
        bound = prefix + (low[:-2] if tag == _STRING else low)
        start = max(start, bound)
    stop = _after(base)
    for high in encoded_highs:
        assert high is not None  # noqa: S101 - checked just above
        bound = (
            prefix + high[:-1] + b"\x01" if tag == _STRING else _after(prefix + high)
        )
        stop = min(stop, bound)
    return start, stop
