"""Records as the DataManager returns them, and their fold from events."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import msgspec

from eventstore import (
    HLCTimestamp,
    RecordCreated,
    RecordDeleted,
    RecordUpdated,
    StoredEvent,
    merge_patch,
)

__all__ = ["RECORD_EVENT_TYPES", "Record", "apply_event", "event_time", "fold"]

RECORD_EVENT_TYPES = ("RecordCreated", "RecordUpdated", "RecordDeleted")


class Record(msgspec.Struct, frozen=True):
    """One record of a collection at one version.

    Attributes:
        id: Its id, unique in its collection.
        version: Its stream's version: the number of events it has had.
        data: Its fields.
        created_at: When it was created (UTC).
        updated_at: When it last changed (UTC).

    """

    id: str
    version: int
    data: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


def event_time(hlc: HLCTimestamp | None, fallback: dt.datetime) -> dt.datetime:
    """The wall time an event was made at: its clock stamp, else ``fallback``."""
    if hlc is None:
        return fallback
    return dt.datetime.fromtimestamp(hlc.physical_ms / 1000, dt.UTC)


def apply_event(
    record: Record | None, data: Any, version: int, at: dt.datetime
) -> Record | None:
    """The record after one of its events; None once deleted.

    Raises:
        TypeError: If ``data`` is not a record event.

    """
    if isinstance(data, RecordCreated):
        return Record(data.id, version, data.data, at, at)
    if isinstance(data, RecordUpdated):
        if record is None:
            return None
        changes = (
            data.changes if data.replace else merge_patch(record.data, data.changes)
        )
        return Record(record.id, version, changes, record.created_at, at)
    if isinstance(data, RecordDeleted):
        return None
    raise TypeError(f"not a record event: {data!r}")


def fold(events: Iterable[StoredEvent]) -> list[Record | None]:
    """Every version of one record, from its stream's events in order."""
    versions: list[Record | None] = []
    record: Record | None = None
    for event in events:
        at = event_time(event.metadata.hlc, event.recorded_at)
        record = apply_event(record, event.data, event.version, at)
        versions.append(record)
    return versions
