from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import actors
from actors import (
    CONFLICT_STRATEGIES,
    Resolution,
    Version,
    check_strategy,
    merge_data,
    resolve,
)
from eventstore import Dot, DottedVersionVector, HLCTimestamp, VersionVector

REPLICAS = ("east", "north", "west")
FIELDS = ("name", "email", "age", "tags")

field_data = st.dictionaries(st.sampled_from(FIELDS), st.integers(0, 9))
timestamps = st.builds(HLCTimestamp, st.integers(0, 3), st.integers(0, 2))


def seen_context(versions: list[Version], seen: set[int] | tuple[()]) -> VersionVector:
    """The context of a client that read ``seen``, and so all they had seen.

    A reader who saw a write also saw every write its context covers: dots of
    one replica reach others in order, with what they had seen.
    """
    context = VersionVector()
    for index in seen:
        context = context.merge(versions[index].vector)
    while True:
        closed = context
        for v in versions:
            if closed.get(v.origin) >= v.dot.counter:
                closed = closed.merge(v.vector)
        if closed == context:
            return context
        context = closed


@st.composite
def histories(draw: st.DrawFn, *, tombstones: bool = True) -> list[Version]:
    """Versions of one record, each written after seeing some earlier ones."""
    versions: list[Version] = []
    issued: dict[str, int] = {}
    for _ in range(draw(st.integers(1, 6))):
        replica = draw(st.sampled_from(REPLICAS))
        seen = draw(st.sets(st.sampled_from(range(len(versions))))) if versions else ()
        context = seen_context(versions, seen)
        counter = max(issued.get(replica, 0), context.get(replica)) + 1
        issued[replica] = counter
        deleted = tombstones and draw(st.integers(0, 4)) == 0
        versions.append(
            Version(
                data=None if deleted else draw(field_data),
                clock=DottedVersionVector(Dot(replica, counter), context),
                hlc=draw(timestamps),
                changed=draw(st.none() | st.frozensets(st.sampled_from(FIELDS))),
            )
        )
    return versions


@st.composite
def concurrent_versions(draw: st.DrawFn, *, tombstones: bool = False) -> list[Version]:
    """Versions none of which had seen another: every one is a sibling."""
    dots = draw(
        st.lists(
            st.builds(Dot, st.sampled_from(REPLICAS), st.integers(1, 3)),
            min_size=2,
            max_size=5,
            unique=True,
        )
    )
    return [
        Version(
            data=None if tombstones and draw(st.booleans()) else draw(field_data),
            clock=DottedVersionVector(dot),
            hlc=draw(timestamps),
        )
        for dot in dots
    ]


def first_fields(siblings: tuple[Version, ...]) -> Mapping[str, Any]:
    return siblings[0].data or {"deleted": True}


strategies = st.sampled_from([*CONFLICT_STRATEGIES, first_fields])


def version(
    replica: str,
    counter: int,
    data: dict[str, Any] | None,
    *,
    hlc: int,
    seen: VersionVector | None = None,
    changed: frozenset[str] | None = None,
) -> Version:
    return Version(
        data=data,
        clock=DottedVersionVector(Dot(replica, counter), seen or VersionVector()),
        hlc=HLCTimestamp(hlc),
        changed=changed,
    )


@given(histories(), strategies, st.randoms(use_true_random=False))
def test_resolution_does_not_depend_on_the_order_of_the_siblings(
    versions: list[Version], strategy: Any, random: Any
) -> None:
    shuffled = list(versions)
    random.shuffle(shuffled)

    assert resolve(shuffled, strategy) == resolve(versions, strategy)
    assert resolve([*versions, *shuffled], strategy) == resolve(versions, strategy)


@given(histories(), strategies)
def test_resolving_a_resolved_set_changes_nothing(
    versions: list[Version], strategy: Any
) -> None:
    first = resolve(versions, strategy)

    again = resolve(first.siblings, strategy)

    assert again == first
    if first.resolved:
        written = first.as_version("east", HLCTimestamp(0))
        settled = resolve([*versions, written], strategy)
        assert settled.siblings == (written,)
        assert settled.data == first.data
        assert not settled.conflict
        assert resolve([written], strategy).data == first.data


@given(histories(), strategies)
def test_the_siblings_are_the_versions_no_other_supersedes_in_canonical_order(
    versions: list[Version], strategy: Any
) -> None:
    resolution = resolve(versions, strategy)

    keys = [v.order_key for v in resolution.siblings]
    assert keys == sorted(keys)
    for kept in resolution.siblings:
        assert not any(v.clock.supersedes(kept.clock) for v in versions)
    for v in versions:
        if v not in resolution.siblings:
            assert any(k.clock.supersedes(v.clock) for k in resolution.siblings)
    for v in versions:
        assert resolution.context.descends(v.vector)


@given(concurrent_versions(tombstones=True))
def test_lww_picks_the_greatest_hlc_then_replica(versions: list[Version]) -> None:
    expected = max(versions, key=lambda v: (v.hlc, v.origin, v.dot.counter))

    resolution = resolve(versions, "lww")

    assert resolution.winner == expected
    assert resolution.data == expected.data
    assert resolution.deleted == expected.deleted
    assert resolution.conflict
    assert len(resolution.siblings) == len(versions)


@given(concurrent_versions(tombstones=True))
def test_merge_takes_each_field_from_the_greatest_version_holding_it(
    versions: list[Version],
) -> None:
    live = sorted(
        (v for v in versions if v.data is not None),
        key=lambda v: (v.hlc, v.origin, v.dot.counter),
    )

    resolution = resolve(versions, "merge")

    if not live:
        assert resolution.deleted
        return
    assert resolution.resolved
    assert resolution.winner is None
    merged = resolution.data
    assert merged is not None
    assert merged.keys() == {f for v in live for f in v.data or {}}
    for field_name, value in merged.items():
        holders = [v for v in live if field_name in (v.data or {})]
        assert value == (holders[-1].data or {})[field_name]


def test_merge_takes_each_changed_field_from_the_write_that_changed_it() -> None:
    base = VersionVector({"east": 1})
    renamed = version(
        "north",
        1,
        {"name": "Ann", "email": "a@old", "age": 30},
        hlc=10,
        seen=base,
        changed=frozenset({"name"}),
    )
    moved = version(
        "west",
        1,
        {"name": "Anna", "email": "a@new", "age": 30},
        hlc=20,
        seen=base,
        changed=frozenset({"email"}),
    )

    resolution = merge_data(renamed, moved)

    assert resolution.data == {"age": 30, "email": "a@new", "name": "Ann"}
    assert resolution.context == VersionVector({"east": 1, "north": 1, "west": 1})


def test_merge_honours_a_field_removed_by_the_later_write() -> None:
    kept = version("east", 1, {"name": "Ann", "note": "x"}, hlc=5)
    removed = version("west", 1, {"name": "Ann"}, hlc=9, changed=frozenset({"note"}))

    assert merge_data(kept, removed).data == {"name": "Ann"}


def test_an_update_beats_a_concurrent_delete_under_merge() -> None:
    delete = version("east", 2, None, hlc=50, seen=VersionVector({"east": 1}))
    update = version(
        "west",
        1,
        {"name": "Ann"},
        hlc=10,
        seen=VersionVector({"east": 1}),
        changed=frozenset({"name"}),
    )

    resolution = merge_data(delete, update)

    assert resolution.data == {"name": "Ann"}
    assert not resolution.deleted
    assert resolve([delete, update], "lww").deleted


def test_concurrent_deletes_resolve_to_deleted() -> None:
    one = version("east", 1, None, hlc=1)
    two = version("west", 1, None, hlc=2)

    assert merge_data(one, two).deleted
    assert merge_data(one, two).data is None


def test_a_version_that_saw_the_other_wins_whatever_its_timestamp() -> None:
    newer_clock = version("east", 1, {"v": 1}, hlc=99)
    later_write = version("west", 1, {"v": 2}, hlc=1, seen=newer_clock.vector)

    for strategy in ("lww", "merge", "siblings"):
        resolution = merge_data(newer_clock, later_write, strategy=strategy)
        assert resolution.data == {"v": 2}
        assert resolution.siblings == (later_write,)
        assert resolution.winner == later_write
        assert not resolution.conflict


def test_the_siblings_strategy_keeps_every_concurrent_version() -> None:
    one = version("east", 1, {"v": 1}, hlc=1)
    two = version("west", 1, {"v": 2}, hlc=2)

    resolution = resolve([two, one], "siblings")

    assert not resolution.resolved
    assert not resolution.deleted
    assert resolution.siblings == (one, two)
    assert resolution.data is None
    with pytest.raises(ValueError, match="kept 2 siblings"):
        resolution.as_version("east", HLCTimestamp(3))


def test_a_custom_strategy_sees_the_siblings_in_canonical_order() -> None:
    calls: list[tuple[Version, ...]] = []
    one = version("west", 1, {"v": 1}, hlc=1)
    two = version("east", 1, {"v": 2}, hlc=1)
    three = version("east", 2, {"v": 3}, hlc=0)

    def pick_lowest(siblings: tuple[Version, ...]) -> Version:
        calls.append(siblings)
        return siblings[0]

    resolution = resolve([one, two, three], pick_lowest)

    assert calls == [(three, two, one)]
    assert resolution.winner == three
    assert resolution.data == {"v": 3}
    assert resolution.strategy.endswith("pick_lowest")


def test_a_custom_strategy_may_return_new_data() -> None:
    one = version("east", 1, {"n": 1}, hlc=1)
    two = version("west", 1, {"n": 2}, hlc=2)

    def add(siblings: tuple[Version, ...]) -> dict[str, Any]:
        return {"n": sum((v.data or {})["n"] for v in siblings)}

    resolution = merge_data(one, two, strategy=add)

    assert resolution.data == {"n": 3}
    assert resolution.winner is None


def test_a_custom_strategy_returning_something_else_is_an_error() -> None:
    one = version("east", 1, {"n": 1}, hlc=1)
    two = version("west", 1, {"n": 2}, hlc=2)

    def broken(_siblings: tuple[Version, ...]) -> Any:
        return None

    with pytest.raises(TypeError, match=r"broken returned NoneType"):
        merge_data(one, two, strategy=broken)


def test_an_unknown_strategy_name_is_refused_naming_it() -> None:
    only = version("east", 1, {"n": 1}, hlc=1)

    with pytest.raises(ValueError, match=r"unknown conflict strategy 'newest'"):
        resolve([only], "newest")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got int 3"):
        check_strategy(3)
    assert check_strategy("merge") == "merge"
    assert check_strategy(first_fields) is first_fields


def test_resolving_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one version"):
        resolve([], "lww")


def test_two_different_versions_with_one_dot_are_refused() -> None:
    one = version("east", 1, {"n": 1}, hlc=1)
    forged = version("east", 1, {"n": 2}, hlc=1)

    with pytest.raises(ValueError, match=r"share the dot \('east', 1\)"):
        merge_data(one, forged)


def test_a_resolution_written_as_a_version_supersedes_every_sibling() -> None:
    one = version("east", 1, {"n": 1}, hlc=1)
    two = version("west", 1, {"n": 2}, hlc=2)

    written = merge_data(one, two, strategy="lww").as_version("east", HLCTimestamp(3))

    assert written.dot == Dot("east", 2)
    assert written.origin == "east"
    assert written.clock.supersedes(one.clock)
    assert written.clock.supersedes(two.clock)
    assert written.data == {"n": 2}


def test_versions_and_resolutions_round_trip_through_msgpack() -> None:
    one = version("east", 1, {"n": 1}, hlc=1, changed=frozenset({"n"}))
    two = version("west", 1, None, hlc=2)
    resolution = merge_data(one, two)

    raw = msgspec.msgpack.encode(resolution)

    assert msgspec.msgpack.decode(raw, type=Resolution) == resolution


def test_the_conflict_names_are_exported_from_actors() -> None:
    assert {"Resolution", "Version", "merge_data", "resolve"} <= set(actors.__all__)
    assert CONFLICT_STRATEGIES == ("lww", "merge", "siblings")
