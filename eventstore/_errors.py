"""The errors of the event store: one root, a few precise subclasses."""

from __future__ import annotations

__all__ = [
    "ClockDriftError",
    "ConcurrencyError",
    "DamagedRecordError",
    "EventStoreError",
    "ForkedProcessError",
    "NotAStoreError",
    "ReadOnlyStoreError",
    "StoreClosedError",
    "StoreNotFoundError",
    "UnknownSchemaVersionError",
    "WriterBusyError",
]


class EventStoreError(Exception):
    """The root of every error raised by the event store."""


class ConcurrencyError(EventStoreError):
    """Raised when a stream's version is not the one an append expected."""

    def __init__(self, stream: str, expected: object, actual: int) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"stream {stream!r} is at version {actual}, "
            f"the append expected {_describe_expected(expected)}"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.stream, self.expected, self.actual))


def _describe_expected(expected: object) -> str:
    if isinstance(expected, int):
        return f"version {expected}"
    return str(expected)


class DamagedRecordError(EventStoreError):
    """Raised when a stored record fails its checksum or does not decode."""

    def __init__(self, position: int, reason: str) -> None:
        self.position = position
        self.reason = reason
        super().__init__(f"the record at position {position} is damaged: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.position, self.reason))


class UnknownSchemaVersionError(EventStoreError):
    """Raised when a registered event type is stored in a version with no upcaster."""


class StoreNotFoundError(EventStoreError):
    """Raised when a read-only open names a path that holds no store."""


class NotAStoreError(EventStoreError):
    """Raised when a path holds an LMDB environment that is not an actorlog store."""


class ReadOnlyStoreError(EventStoreError):
    """Raised when a store opened read-only is asked to write."""


class StoreClosedError(EventStoreError):
    """Raised when a closed store is used."""


class ForkedProcessError(EventStoreError):
    """Raised when a store opened before ``fork()`` is used in the child."""


class WriterBusyError(EventStoreError):
    """Raised when another process holds the store's writer for an exclusive job."""


class ClockDriftError(EventStoreError):
    """Raised when a remote timestamp is further ahead than the allowed drift."""
