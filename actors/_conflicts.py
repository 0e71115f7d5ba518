"""Conflict resolution between concurrent versions of a record: pure functions.

Design note. Every replica that holds the same siblings must reach the same
resolution, whatever order it learned them in, or replicas would diverge and
resolve each other's resolutions forever. So ``resolve`` first drops every
version that another one supersedes (causality beats clocks), then sorts the
rest canonically by (hybrid logical clock, origin replica, dot counter), and
only then applies the strategy. Built-in strategies are deterministic
functions of that tuple; a custom one must be too. A resolution is written as
a new version whose context is the merge of the siblings' vectors, so it
supersedes them all and replicates like any other write.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, TypeAlias

import msgspec

from eventstore import (
    Dot,
    DottedVersionVector,
    HLCTimestamp,
    VersionVector,
)

__all__ = [
    "CONFLICT_STRATEGIES",
    "ConflictStrategy",
    "CustomStrategy",
    "Resolution",
    "StrategyName",
    "Version",
    "check_strategy",
    "merge_data",
    "resolve",
]

StrategyName: TypeAlias = Literal["lww", "merge", "siblings"]
CONFLICT_STRATEGIES: tuple[StrategyName, ...] = ("lww", "merge", "siblings")


class Version(msgspec.Struct, frozen=True, kw_only=True):
    """One version of a record as some replica wrote it.

    Attributes:
        data: The whole record after the write, or ``None`` for a tombstone
            (the record was deleted).
        clock: The write's dot and the causal context it was written in.
        hlc: The write's hybrid-logical-clock timestamp at its origin.
        changed: The top-level fields the write set or removed, where known
            (the keys of an update's merge patch). ``None`` means unknown:
            the version then stands for the fields it holds.

    """

    data: dict[str, Any] | None
    clock: DottedVersionVector
    hlc: HLCTimestamp
    changed: frozenset[str] | None = None

    @property
    def dot(self) -> Dot:
        """The name of the write: origin replica and counter."""
        return self.clock.dot

    @property
    def origin(self) -> str:
        """The replica where the write was made."""
        return self.clock.dot.replica

    @property
    def vector(self) -> VersionVector:
        """The record's version vector after this write."""
        return self.clock.vector

    @property
    def deleted(self) -> bool:
        """Whether this version is a tombstone."""
        return self.data is None

    @property
    def order_key(self) -> tuple[HLCTimestamp, str, int]:
        """The canonical sort key: (hlc, origin replica, dot counter)."""
        return self.hlc, self.clock.dot.replica, self.clock.dot.counter


CustomStrategy: TypeAlias = Callable[[tuple[Version, ...]], Mapping[str, Any] | Version]
ConflictStrategy: TypeAlias = StrategyName | CustomStrategy


class Resolution(msgspec.Struct, frozen=True, kw_only=True):
    """What a strategy decided for a set of sibling versions.

    Attributes:
        strategy: ``"lww"``, ``"merge"``, ``"siblings"``, or the custom
            function's qualified name.
        siblings: The versions no other supersedes, in canonical order.
        context: The merge of every version's vector: a write made with it
            supersedes all of them.
        resolved: ``False`` when the strategy keeps the siblings.
        data: The resolved record, or ``None`` if it is deleted (or kept as
            siblings).
        winner: The version whose data won outright (lww, a custom choice, or
            the only version), else ``None``.

    """

    strategy: str
    siblings: tuple[Version, ...]
    context: VersionVector
    resolved: bool
    data: dict[str, Any] | None = None
    winner: Version | None = None

    @property
    def conflict(self) -> bool:
        """Whether there were concurrent versions to resolve."""
        return len(self.siblings) > 1

    @property
    def deleted(self) -> bool:
        """Whether the resolved record is deleted."""
        return self.resolved and self.data is None

    def as_version(self, replica: str, hlc: HLCTimestamp) -> Version:
        """The resolution as a new version written at ``replica``.

        Its context is ``context``, so it supersedes every sibling. The dot
        takes the replica's next counter after ``context``, which is right when
        the siblings are all the replica holds for the record (otherwise take
        the clock from ``SiblingSet.next_clock``).

        Args:
            replica: The replica that writes the resolution.
            hlc: Its timestamp there.

        Raises:
            ValueError: If the strategy kept the siblings (nothing to write).

        """
        if not self.resolved:
            raise ValueError(
                f"strategy {self.strategy!r} kept {len(self.siblings)} siblings; "
                "there is no resolution to write"
            )
        dot = Dot(replica, self.context.get(replica) + 1)
        return Version(
            data=self.data, clock=DottedVersionVector(dot, self.context), hlc=hlc
        )


def check_strategy(strategy: object) -> ConflictStrategy:
    """Return ``strategy`` if it names a built-in strategy or is callable.

    Raises:
        ValueError: If it is a string that names no strategy.
        TypeError: If it is neither a string nor callable.

    """
    if isinstance(strategy, str):
        if strategy not in CONFLICT_STRATEGIES:
            raise ValueError(
                f"unknown conflict strategy {strategy!r}; expected one of "
                f"{', '.join(map(repr, CONFLICT_STRATEGIES))} or a callable"
            )
        return strategy
    if callable(strategy):
        return strategy
    raise TypeError(
        "a conflict strategy is a name or a callable, got "
        f"{type(strategy).__name__} {strategy!r}"
    )


def resolve(siblings: Iterable[Version], strategy: ConflictStrategy) -> Resolution:
    """Resolve concurrent versions of one record by ``strategy``.

    The result does not depend on the order of ``siblings``: superseded
    versions are dropped and the rest sorted canonically first.

    Args:
        siblings: Versions of one record; superseded ones may be included.
        strategy: ``"lww"``: the greatest (hlc, origin) wins. ``"merge"``:
            each field takes the value of the greatest version that set it,
            and an update beats a concurrent delete. ``"siblings"``: keep
            them all. Or a callable that takes the siblings in canonical
            order and returns the resolved data or one of the versions.

    Raises:
        ValueError: If there are no versions, two share a dot but differ, or
            the strategy name is unknown.
        TypeError: If the strategy is not a name or callable, or a custom
            strategy returns something other than a mapping or a Version.

    """
    checked = check_strategy(strategy)
    versions = tuple(siblings)
    if not versions:
        raise ValueError("resolve needs at least one version")
    context = VersionVector()
    for version in versions:
        context = context.merge(version.vector)
    frontier = _frontier(versions)
    name = checked if isinstance(checked, str) else _callable_name(checked)
    decided = functools.partial(
        Resolution, strategy=name, siblings=frontier, context=context
    )

    if len(frontier) == 1:
        only = frontier[0]
        return decided(resolved=True, data=only.data, winner=only)
    if not isinstance(checked, str):
        data, chosen = _run_custom(checked, name, frontier)
        return decided(resolved=True, data=data, winner=chosen)
    if checked == "lww":
        winner = frontier[-1]
        return decided(resolved=True, data=winner.data, winner=winner)
    if checked == "merge":
        return decided(resolved=True, data=_merge_fields(frontier))
    return decided(resolved=False)


def merge_data(
    a: Version, b: Version, *, strategy: ConflictStrategy = "merge"
) -> Resolution:
    """Merge two versions of a record by the rules of ``resolve``.

    If one version supersedes the other it wins whatever its timestamp;
    otherwise the two are concurrent and ``strategy`` decides.
    """
    return resolve((a, b), strategy)


def _frontier(versions: tuple[Version, ...]) -> tuple[Version, ...]:
    by_dot: dict[Dot, Version] = {}
    for version in versions:
        seen = by_dot.setdefault(version.dot, version)
        if seen != version:
            raise ValueError(
                f"two different versions share the dot ({version.origin!r}, "
                f"{version.dot.counter}); a dot names exactly one write"
            )
    candidates = list(by_dot.values())
    kept = [
        version
        for version in candidates
        if not any(other.clock.supersedes(version.clock) for other in candidates)
    ]
    kept.sort(key=lambda version: version.order_key)
    return tuple(kept)


def _merge_fields(frontier: tuple[Version, ...]) -> dict[str, Any] | None:
    live = [(v, v.data) for v in frontier if v.data is not None]
    if not live:
        return None
    set_by: dict[str, dict[str, Any]] = {}
    held_by: dict[str, dict[str, Any]] = {}
    for version, data in live:
        fields = version.changed if version.changed is not None else data.keys()
        for field in fields:
            set_by[field] = data
        for field in data.keys() - fields:
            held_by[field] = data

    merged: dict[str, Any] = {}
    for field in sorted(set_by.keys() | held_by.keys()):
        source = set_by[field] if field in set_by else held_by[field]
        if field in source:
            merged[field] = source[field]
    return merged


def _run_custom(
    function: CustomStrategy, name: str, frontier: tuple[Version, ...]
) -> tuple[dict[str, Any] | None, Version | None]:
    result = function(frontier)
    if isinstance(result, Version):
        return result.data, result
    if isinstance(result, Mapping):
        return dict(result), None
    raise TypeError(
        f"custom conflict strategy {name} returned {type(result).__name__}; "
        "it must return the resolved data (a mapping) or one of the versions"
    )


def _callable_name(function: Callable[..., object]) -> str:
    name = getattr(function, "__qualname__", None) or repr(function)
    module = getattr(function, "__module__", None)
    return f"{module}.{name}" if module else str(name)
