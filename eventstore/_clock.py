"""Hybrid logical clocks and version vectors: the two ways replicas order events.

Design note. A hybrid logical clock (HLC) gives every event a timestamp that is
close to wall-clock time yet never goes backwards on one replica, and that is
always later than any timestamp the replica has received. It orders events
totally (ties broken by replica id elsewhere), which is what last-writer-wins
needs, but says nothing about causality. A version vector counts, per origin
replica, the events a version has seen; two vectors are ordered only when one
has seen everything the other has, so concurrent updates show up as
``Ordering.CONCURRENT``. Vectors are never truncated: dropping an entry would
make a replica forget what it has seen and resurrect superseded versions.

Both are frozen ``msgspec`` structs stored in every event's metadata; their
field layouts are part of the log's format.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Mapping

import msgspec

from eventstore._errors import ClockDriftError

__all__ = [
    "DEFAULT_MAX_DRIFT_MS",
    "HLCTimestamp",
    "HybridLogicalClock",
    "Ordering",
    "VersionVector",
]

DEFAULT_MAX_DRIFT_MS = 60_000


class HLCTimestamp(msgspec.Struct, frozen=True, array_like=True, order=True):
    """A hybrid-logical-clock reading: wall milliseconds, then a logical counter."""

    physical_ms: int
    logical: int = 0


class Ordering(enum.Enum):
    """How two version vectors relate in the causal partial order."""

    BEFORE = "before"
    AFTER = "after"
    EQUAL = "equal"
    CONCURRENT = "concurrent"


class VersionVector(msgspec.Struct, frozen=True, array_like=True):
    """How many events of each origin replica a version has seen.

    A replica that is absent counts as 0, so zero entries are not allowed:
    the struct's equality is then the vectors' causal equality.

    Raises:
        ValueError: If a replica id is empty or a counter is not a positive int.

    """

    counters: dict[str, int] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        for replica, counter in self.counters.items():
            if not replica:
                raise ValueError("a version vector's replica id must not be empty")
            if type(counter) is not int or counter < 1:
                raise ValueError(
                    f"version vector counter for replica {replica!r} must be "
                    f"a positive int (absent means 0), got {counter!r}"
                )

    @classmethod
    def of(cls, counters: Mapping[str, int]) -> VersionVector:
        """A vector from a mapping in which zero counters mean "absent"."""
        return cls({replica: n for replica, n in counters.items() if n != 0})

    def get(self, replica: str) -> int:
        """How many events of ``replica`` this vector has seen."""
        return self.counters.get(replica, 0)

    def increment(self, replica: str) -> VersionVector:
        """A new vector that has also seen the next event of ``replica``."""
        counters = dict(self.counters)
        counters[replica] = counters.get(replica, 0) + 1
        return VersionVector(counters)

    def merge(self, other: VersionVector) -> VersionVector:
        """The pointwise maximum: the least vector that descends from both."""
        if not other.counters:
            return self
        if not self.counters:
            return other
        counters = dict(self.counters)
        for replica, n in other.counters.items():
            if n > counters.get(replica, 0):
                counters[replica] = n
        return VersionVector(counters)

    def descends(self, other: VersionVector) -> bool:
        """Whether this vector has seen everything ``other`` has (``>=``)."""
        mine = self.counters
        return all(mine.get(replica, 0) >= n for replica, n in other.counters.items())

    def dominates(self, other: VersionVector) -> bool:
        """Whether this vector descends from ``other`` and differs from it (``>``)."""
        return self.descends(other) and self.counters != other.counters

    def concurrent_with(self, other: VersionVector) -> bool:
        """Whether neither vector has seen everything the other has."""
        return not self.descends(other) and not other.descends(self)

    def compare(self, other: VersionVector) -> Ordering:
        """Where this vector stands relative to ``other``.

        Returns:
            ``BEFORE`` if ``other`` dominates this vector, ``AFTER`` if this one
            dominates ``other``, ``EQUAL`` or ``CONCURRENT``.

        """
        ge = self.descends(other)
        le = other.descends(self)
        if ge and le:
            return Ordering.EQUAL
        if ge:
            return Ordering.AFTER
        if le:
            return Ordering.BEFORE
        return Ordering.CONCURRENT


def system_time_ms() -> int:
    """The system's wall clock in whole milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


class HybridLogicalClock:
    """A thread-safe hybrid logical clock for one replica.

    Every timestamp it issues is later than every timestamp it issued or
    received before, even if the wall clock goes backwards; while the wall
    clock moves forwards, timestamps follow it.

    Args:
        replica_id: The replica this clock belongs to.
        wall_clock_ms: Returns wall time in milliseconds (injectable for tests).
        max_drift_ms: How far ahead of the local wall clock a received
            timestamp may be before ``update`` refuses it.
        initial: The latest timestamp this replica issued or received before
            (from its log), so that a restarted clock continues after it.

    Raises:
        ValueError: If ``replica_id`` is empty or ``max_drift_ms`` is negative.

    """

    def __init__(
        self,
        replica_id: str,
        *,
        wall_clock_ms: Callable[[], int] = system_time_ms,
        max_drift_ms: int = DEFAULT_MAX_DRIFT_MS,
        initial: HLCTimestamp | None = None,
    ) -> None:
        if not replica_id:
            raise ValueError("a hybrid logical clock needs a non-empty replica_id")
        if max_drift_ms < 0:
            raise ValueError(f"max_drift_ms must be >= 0, got {max_drift_ms!r}")
        self.replica_id = replica_id
        self.max_drift_ms = max_drift_ms
        self._wall_clock_ms = wall_clock_ms
        self._lock = threading.Lock()
        self._last = initial if initial is not None else HLCTimestamp(0, 0)

    def __repr__(self) -> str:
        return f"HybridLogicalClock({self.replica_id!r}, current={self._last!r})"

    @property
    def current(self) -> HLCTimestamp:
        """The latest timestamp issued or received (without advancing the clock)."""
        return self._last

    def now(self) -> HLCTimestamp:
        """A new timestamp for a local event, later than every one before."""
        wall_ms = self._wall_clock_ms()
        with self._lock:
            last = self._last
            if wall_ms > last.physical_ms:
                stamp = HLCTimestamp(wall_ms, 0)
            else:
                stamp = HLCTimestamp(last.physical_ms, last.logical + 1)
            self._last = stamp
            return stamp

    def update(self, remote: HLCTimestamp) -> HLCTimestamp:
        """Take in a received timestamp; return one later than it and than ours.

        Raises:
            ClockDriftError: If ``remote`` is more than ``max_drift_ms`` ahead of
                the local wall clock; the clock is left unchanged.

        """
        wall_ms = self._wall_clock_ms()
        ahead_ms = remote.physical_ms - wall_ms
        if ahead_ms > self.max_drift_ms:
            raise ClockDriftError(
                f"replica {self.replica_id!r} refuses remote timestamp "
                f"{remote.physical_ms} ms (logical {remote.logical}): it is "
                f"{ahead_ms} ms ahead of the local wall clock ({wall_ms} ms), "
                f"more than the allowed drift of {self.max_drift_ms} ms"
            )
        with self._lock:
            last = self._last
            physical_ms = max(wall_ms, last.physical_ms, remote.physical_ms)
            if physical_ms == last.physical_ms == remote.physical_ms:
                logical = max(last.logical, remote.logical) + 1
            elif physical_ms == last.physical_ms:
                logical = last.logical + 1
            elif physical_ms == remote.physical_ms:
                logical = remote.logical + 1
            else:
                logical = 0
            stamp = HLCTimestamp(physical_ms, logical)
            self._last = stamp
            return stamp
