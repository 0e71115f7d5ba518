"""The errors of the actor runtime and the DataManager: one root, a few kinds."""

from __future__ import annotations

__all__ = [
    "ActorError",
    "CommandTimeoutError",
    "ConcurrencyError",
    "NotFoundError",
    "UnknownDataSourceError",
    "ValidationError",
]


class ActorError(Exception):
    """The root of every error raised by the actor runtime and the DataManager."""


class ValidationError(ActorError, ValueError):
    """Raised when data does not fit a collection's schema or a transformer fails.

    Attributes:
        collection: The collection written to, or None outside one.
        record_id: The record's id, or None outside one.
        field: The path of the field at fault (``$.age``), if known.

    """

    def __init__(
        self,
        message: str,
        *,
        collection: str | None = None,
        record_id: str | None = None,
        field: str | None = None,
    ) -> None:
        self.collection = collection
        self.record_id = record_id
        self.field = field
        where = ""
        if collection is not None:
            where = f"{collection}/{record_id}: " if record_id else f"{collection}: "
        super().__init__(f"{where}{message}")


class ConcurrencyError(ActorError):
    """Raised when a record is not at the version a command expected."""

    def __init__(
        self, collection: str, record_id: str, expected: object, actual: int
    ) -> None:
        self.collection = collection
        self.record_id = record_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"record {collection}/{record_id} is at version {actual}, "
            f"the command expected {expected}"
        )


class NotFoundError(ActorError, KeyError):
    """Raised when an update or a delete names a record that does not exist."""

    def __init__(self, collection: str, record_id: str) -> None:
        self.collection = collection
        self.record_id = record_id
        super().__init__(f"no record {record_id!r} in collection {collection!r}")

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownDataSourceError(ActorError, KeyError):
    """Raised when a command names a data source that was never added."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        super().__init__(
            f"no data source {name!r} (known: {', '.join(known) or 'none'}; "
            "add it with add_data_source)"
        )

    def __str__(self) -> str:
        return str(self.args[0])


class CommandTimeoutError(ActorError, TimeoutError):
    """Raised when an actor did not answer a command within its timeout."""

    def __init__(self, actor: str, command: str, timeout_s: float) -> None:
        self.actor = actor
        self.command = command
        self.timeout_s = timeout_s
        super().__init__(
            f"actor {actor!r} did not answer {command} within {timeout_s:g} s"
        )
