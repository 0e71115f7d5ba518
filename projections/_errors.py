"""The errors of projections: one root, a few precise subclasses."""

from __future__ import annotations

__all__ = ["ProjectionError", "QueryError"]


class ProjectionError(Exception):
    """The root of every error raised by projections."""


class QueryError(ProjectionError, ValueError):
    """Raised when a ``where`` or ``order_by`` clause is malformed."""
