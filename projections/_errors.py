"""The errors of projections: one root, a few precise subclasses."""

from __future__ import annotations

__all__ = [
    "HandlerError",
    "ProjectionError",
    "QueryError",
    "UnknownPositionError",
    "UnknownProjectionError",
]


class ProjectionError(Exception):
    """The root of every error raised by projections."""


class QueryError(ProjectionError, ValueError):
    """Raised when a ``where`` or ``order_by`` clause is malformed."""


class UnknownProjectionError(ProjectionError, KeyError):
    """Raised when a projection name is not one the store knows."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownPositionError(ProjectionError, ValueError):
    """Raised when a position is beyond the head of the log, or below 1."""


class HandlerError(ProjectionError):
    """Raised when a projection's handler cannot fold an event."""
