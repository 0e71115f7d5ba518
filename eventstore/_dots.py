"""Dots, dotted version vectors and sibling sets: causality for one record.

Design note. A plain version vector per value cannot tell two blind writes at
the same replica apart: both would get ``{r: n}`` and the later would seem to
supersede the earlier, losing an update. A dotted version vector fixes this
by naming each write by its **dot** ``(replica, counter)`` and keeping, apart
from it, the **context**: the vector the writer had read. A write supersedes
another exactly when its context covers the other's dot.

A ``SiblingSet`` holds the versions of one record that no other known version
supersedes. Its invariants:

* siblings are sorted by dot and no two share a dot (a canonical form, so two
  replicas that know the same writes hold equal sets);
* no sibling's context covers another sibling's dot (they are concurrent).

Adding a write or joining another replica's set takes the union and drops
every sibling some other member supersedes. The join is commutative,
associative and idempotent, so replicas converge whatever the order of
exchanges, and siblings multiply only for writes that did not see each other.
Dots are issued by one replica per record in increasing order and events of
one origin are applied in that order, so a context's counter for a replica
covers every dot of that replica up to it.
"""

from __future__ import annotations

import itertools
from typing import Generic, TypeVar

import msgspec

from eventstore._clock import Ordering, VersionVector

__all__ = ["Dot", "DottedVersionVector", "Sibling", "SiblingSet"]

T = TypeVar("T")

_EMPTY = VersionVector()


class Dot(msgspec.Struct, frozen=True, array_like=True, order=True):
    """The name of one write: the replica that made it and its counter there.

    Raises:
        ValueError: If the replica id is empty or the counter is not >= 1.

    """

    replica: str
    counter: int

    def __post_init__(self) -> None:
        if not self.replica:
            raise ValueError("a dot's replica id must not be empty")
        if type(self.counter) is not int or self.counter < 1:
            raise ValueError(
                f"a dot's counter must be an int >= 1, got {self.counter!r} "
                f"for replica {self.replica!r}"
            )


class DottedVersionVector(msgspec.Struct, frozen=True, array_like=True):
    """A write's causal identity: its dot and the context it was written in.

    Raises:
        ValueError: If the context already covers the dot (a write cannot have
            seen itself).

    """

    dot: Dot
    context: VersionVector = _EMPTY

    def __post_init__(self) -> None:
        if self.context.get(self.dot.replica) >= self.dot.counter:
            raise ValueError(
                f"the context {self.context.counters!r} already covers the dot "
                f"({self.dot.replica!r}, {self.dot.counter}) it was written with"
            )

    @property
    def vector(self) -> VersionVector:
        """The version vector of the write: its context plus its own dot."""
        counters = dict(self.context.counters)
        counters[self.dot.replica] = self.dot.counter
        return VersionVector(counters)

    def covers(self, dot: Dot) -> bool:
        """Whether the write is ``dot`` or had seen it."""
        return dot == self.dot or self.context.get(dot.replica) >= dot.counter

    def supersedes(self, other: DottedVersionVector) -> bool:
        """Whether this write had seen ``other`` (and is not ``other``)."""
        dot = other.dot
        return dot != self.dot and self.context.get(dot.replica) >= dot.counter

    def compare(self, other: DottedVersionVector) -> Ordering:
        """Where this write stands relative to ``other`` in causal order."""
        if self.dot == other.dot:
            return Ordering.EQUAL
        if self.supersedes(other):
            return Ordering.AFTER
        if other.supersedes(self):
            return Ordering.BEFORE
        return Ordering.CONCURRENT


class Sibling(msgspec.Struct, Generic[T], frozen=True, array_like=True):
    """One value of a record together with the clock of the write that made it."""

    clock: DottedVersionVector
    value: T


class SiblingSet(msgspec.Struct, Generic[T], frozen=True):
    """The concurrent versions of one record, none superseding another.

    Build one with ``SiblingSet()`` and grow it with ``write``, ``add`` and
    ``sync``; each returns a new set.

    Raises:
        ValueError: If the siblings are not sorted by dot, repeat a dot, or one
            supersedes another.

    """

    siblings: tuple[Sibling[T], ...] = ()

    def __post_init__(self) -> None:
        siblings = self.siblings
        for before, after in itertools.pairwise(siblings):
            if not before.clock.dot < after.clock.dot:
                raise ValueError(
                    "siblings must be sorted by dot without repeats, got "
                    f"{before.clock.dot!r} before {after.clock.dot!r}"
                )
        for sibling in siblings:
            for other in siblings:
                if sibling.clock.supersedes(other.clock):
                    raise ValueError(
                        f"sibling {sibling.clock.dot!r} supersedes sibling "
                        f"{other.clock.dot!r}; siblings must be concurrent"
                    )

    @property
    def context(self) -> VersionVector:
        """What a reader of this set has seen: the merge of the siblings' vectors.

        A write made with this context supersedes every current sibling.
        """
        context = _EMPTY
        for sibling in self.siblings:
            context = context.merge(sibling.clock.vector)
        return context

    @property
    def values(self) -> tuple[T, ...]:
        """The siblings' values, in dot order."""
        return tuple(sibling.value for sibling in self.siblings)

    @property
    def clocks(self) -> tuple[DottedVersionVector, ...]:
        """The siblings' clocks, in dot order."""
        return tuple(sibling.clock for sibling in self.siblings)

    def next_clock(
        self, replica: str, *, context: VersionVector = _EMPTY
    ) -> DottedVersionVector:
        """The clock of a write at ``replica`` by a client that read ``context``.

        Args:
            replica: The replica that takes the write; it must hold this set.
            context: The causal context the client read (``SiblingSet.context``
                of the set it read); empty for a blind write.

        Returns:
            A clock with the next dot of ``replica`` for this record.

        """
        counter = max(self.context.get(replica), context.get(replica)) + 1
        return DottedVersionVector(Dot(replica, counter), context)

    def write(
        self, replica: str, value: T, *, context: VersionVector = _EMPTY
    ) -> SiblingSet[T]:
        """The set after a client that read ``context`` writes ``value`` here.

        Siblings the context covers are discarded; the others stay beside the
        new value, since the client had not seen them.
        """
        return self.add(self.next_clock(replica, context=context), value)

    def add(self, clock: DottedVersionVector, value: T) -> SiblingSet[T]:
        """The set after taking in one write (local, or received from a replica).

        A write that a sibling already supersedes, or one already present, is
        ignored.
        """
        return self._join((Sibling(clock, value),))

    def sync(self, other: SiblingSet[T]) -> SiblingSet[T]:
        """The join of two replicas' sets.

        It holds every write either set knows of, minus those that some other
        write supersedes.
        """
        return self._join(other.siblings)

    def _join(self, incoming: tuple[Sibling[T], ...]) -> SiblingSet[T]:
        by_dot: dict[Dot, Sibling[T]] = {s.clock.dot: s for s in self.siblings}
        for sibling in incoming:
            by_dot.setdefault(sibling.clock.dot, sibling)
        candidates = list(by_dot.values())
        kept = [
            sibling
            for sibling in candidates
            if not any(o.clock.supersedes(sibling.clock) for o in candidates)
        ]
        kept.sort(key=lambda sibling: sibling.clock.dot)
        return SiblingSet(tuple(kept))
