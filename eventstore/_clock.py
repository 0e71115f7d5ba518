"""Hybrid logical clock timestamps and version vectors.

Only the shapes live here for now; the laws (partial order, merge, a clock
that never goes backwards) are added with their property tests.
"""

from __future__ import annotations

import msgspec

__all__ = ["HLCTimestamp", "VersionVector"]


class HLCTimestamp(msgspec.Struct, frozen=True, array_like=True, order=True):
    """A hybrid-logical-clock reading: wall milliseconds, then a logical counter."""

    physical_ms: int
    logical: int = 0


class VersionVector(msgspec.Struct, frozen=True, array_like=True):
    """How many events of each origin replica a version has seen."""

    counters: dict[str, int] = msgspec.field(default_factory=dict)
