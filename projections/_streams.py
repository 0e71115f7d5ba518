"""The ``streams`` view: per stream, its version, positions and event counts."""

from __future__ import annotations

import datetime as dt

import msgspec

from eventstore import StoredEvent, ViewReader, ViewTxn
from eventstore._tables import bounded_key
from projections._fold import Folder, Projection
from projections._records import ViewSource, _after
from projections._state import read_state, slot_table

__all__ = ["StreamStats", "StreamsProjection", "StreamsView"]

NAME = "streams"


class StreamStats(msgspec.Struct):
    """What the log holds of one stream.

    Attributes:
        stream: Its name.
        version: Its version (the number of its events).
        first_position: The position of its first event.
        last_position: The position of its last event.
        counts: How many events of each type it holds.
        last_recorded_at: When its last event was recorded (UTC).

    """

    stream: str
    version: int
    first_position: int
    last_position: int
    counts: dict[str, int]
    last_recorded_at: dt.datetime


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(StreamStats).decode


class StreamsProjection(Projection):
    """Folds every event into its stream's :class:`StreamStats`."""

    name = NAME
    types = None

    def folder(self, reader: ViewReader, table: str) -> Folder:
        """A folder for one batch into ``table``."""
        del reader
        return _StreamsFolder(table)


class _StreamsFolder(Folder):
    def __init__(self, table: str) -> None:
        self._table = table

    def apply(self, txn: ViewTxn, event: StoredEvent) -> None:
        key = bounded_key(event.stream)
        raw = txn.get(self._table, key)
        if raw is None:
            stats = StreamStats(
                event.stream,
                event.version,
                event.position,
                event.position,
                {event.type: 1},
                event.recorded_at,
            )
        else:
            stats = _decode(raw)
            stats.version = event.version
            stats.last_position = event.position
            stats.counts[event.type] = stats.counts.get(event.type, 0) + 1
            stats.last_recorded_at = event.recorded_at
        txn.put(self._table, key, _encode(stats))


class StreamsView:
    """Reads of the ``streams`` view.

    Args:
        source: A store (or a temporary view from :func:`replay`).

    """

    def __init__(self, source: ViewSource) -> None:
        self._source = source

    def get(self, stream: str) -> StreamStats | None:
        """The stream's statistics, or None if it has no events."""
        with self._source.read_views() as reader:
            table = slot_table(NAME, read_state(reader, NAME).slot)
            raw = reader.get(table, bounded_key(stream))
        return None if raw is None else _decode(raw)

    def list(self, *, prefix: str = "") -> list[StreamStats]:
        """Every stream whose name starts with ``prefix``, by name."""
        start = prefix.encode()[:380]
        with self._source.read_views() as reader:
            table = slot_table(NAME, read_state(reader, NAME).slot)
            found = [
                _decode(raw)
                for _, raw in reader.scan(
                    table, start, _after(start) if start else None
                )
            ]
        return [s for s in found if s.stream.startswith(prefix)]
