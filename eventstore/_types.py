"""The values the log is made of: new events, stored events, append results."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, TypeAlias

import msgspec

from eventstore._clock import HLCTimestamp, VersionVector

__all__ = [
    "ANY",
    "NO_STREAM",
    "AppendResult",
    "AppendedEvent",
    "EventMetadata",
    "Expected",
    "ExpectedVersion",
    "NewEvent",
    "StoredEvent",
    "StreamInfo",
]


class ExpectedVersion(enum.Enum):
    """Expectations on a stream's version other than an exact number."""

    NO_STREAM = "no stream"
    ANY = "any version"

    def __str__(self) -> str:
        return self.value


NO_STREAM = ExpectedVersion.NO_STREAM
ANY = ExpectedVersion.ANY

Expected: TypeAlias = int | ExpectedVersion


class EventMetadata(msgspec.Struct, frozen=True, omit_defaults=True):
    """What is known about an event besides its data.

    Attributes:
        hlc: The hybrid-logical-clock timestamp given at its origin.
        origin: The replica id where the event was first appended.
        origin_seq: Its sequence number among the origin's events.
        vector: The record's version vector after this event, where it applies.
        context: The causal context the writer had seen (the vector it read),
            which with the event's dot tells concurrent writes apart.
        causation_id: The id of the command or event that caused it.
        correlation_id: The id shared by everything one request caused.
        traceparent: The W3C trace context of the command that caused it.
        extra: Application metadata.

    """

    hlc: HLCTimestamp | None = None
    origin: str | None = None
    origin_seq: int | None = None
    vector: VersionVector | None = None
    context: VersionVector | None = None
    causation_id: str | None = None
    correlation_id: str | None = None
    traceparent: str | None = None
    extra: dict[str, Any] = msgspec.field(default_factory=dict)


EMPTY_METADATA = EventMetadata()


class NewEvent(msgspec.Struct, frozen=True):
    """An event to append to a stream.

    Attributes:
        stream: The stream it belongs to (one record, one execution, ...).
        type: The event type's name.
        data: A registered ``msgspec.Struct`` or plain msgpack-able data.
        metadata: Its metadata.

    """

    stream: str
    type: str
    data: Any
    metadata: EventMetadata = EMPTY_METADATA


class StoredEvent(msgspec.Struct, frozen=True, gc=False):
    """An event as read back from the log.

    Attributes:
        position: Its place in the whole log; gapless, from 1.
        stream: The stream it belongs to.
        version: Its place in its stream; gapless, from 1.
        type: The event type's name.
        data: A registered struct (upcast to its current version) or plain data.
        metadata: Its metadata.
        recorded_at: When the store committed it (UTC).

    """

    position: int
    stream: str
    version: int
    type: str
    data: Any
    metadata: EventMetadata
    recorded_at: dt.datetime


class AppendedEvent(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Where one appended event landed."""

    stream: str
    version: int
    position: int


class AppendResult(msgspec.Struct, frozen=True, array_like=True):
    """What an append wrote, in the order of its events.

    Attributes:
        events: Each event's stream, version and position.
        command_id: The command id the append carried, if any.
        duplicate: True when the command id had been appended before and this
            result is the first append's, with nothing written now.

    """

    events: tuple[AppendedEvent, ...]
    command_id: str | None = None
    duplicate: bool = False

    @property
    def first_position(self) -> int:
        """The position of the first event, or 0 for an empty append."""
        return self.events[0].position if self.events else 0

    @property
    def last_position(self) -> int:
        """The position of the last event, or 0 for an empty append."""
        return self.events[-1].position if self.events else 0


class StreamInfo(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A stream's version and the positions of its first and last events."""

    stream: str
    version: int
    first_position: int
    last_position: int
