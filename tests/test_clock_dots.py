"""Dotted version vectors and sibling sets, checked against a causal history.

The simulation keeps, beside the replicas' sibling sets, the ground truth: for
every write, the writes its client had seen. A replica's siblings must be
exactly the writes it knows of that no other write it knows of had seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

import eventstore
from eventstore import (
    Dot,
    DottedVersionVector,
    Ordering,
    Sibling,
    SiblingSet,
    VersionVector,
)

REPLICAS = ("a", "b", "c")
CLIENTS = 3


@dataclass
class Replica:
    name: str
    state: SiblingSet[int] = field(default_factory=SiblingSet[int])
    known: frozenset[int] = frozenset()


@dataclass
class Client:
    context: VersionVector = field(default_factory=VersionVector)
    seen: frozenset[int] = frozenset()


@dataclass
class World:
    """Three replicas, some clients, and the causal past of every write."""

    replicas: list[Replica] = field(
        default_factory=lambda: [Replica(name) for name in REPLICAS]
    )
    clients: list[Client] = field(
        default_factory=lambda: [Client() for _ in range(CLIENTS)]
    )
    past: dict[int, frozenset[int]] = field(default_factory=dict)

    def read(self, client: int, replica: int) -> None:
        source = self.replicas[replica]
        self.clients[client] = Client(source.state.context, source.known)

    def write(self, client: int, replica: int) -> int:
        reader = self.clients[client]
        target = self.replicas[replica]
        value = len(self.past) + 1
        self.past[value] = reader.seen
        target.state = target.state.write(target.name, value, context=reader.context)
        target.known = target.known | reader.seen | {value}
        self.clients[client] = Client(VersionVector(), frozenset())
        return value

    def sync(self, left: int, right: int) -> None:
        a, b = self.replicas[left], self.replicas[right]
        joined = a.state.sync(b.state)
        known = a.known | b.known
        a.state, a.known = joined, known
        b.state, b.known = joined, known

    def converge(self) -> None:
        for _ in range(2):
            for i in range(1, len(self.replicas)):
                self.sync(0, i)

    def frontier(self, known: frozenset[int]) -> set[int]:
        return {w for w in known if not any(w in self.past[o] for o in known)}


indexes = st.integers(0, len(REPLICAS) - 1)
steps = st.lists(
    st.tuples(st.sampled_from(("read", "write", "sync")), indexes, indexes),
    max_size=40,
)


def play(moves: list[tuple[str, int, int]]) -> World:
    world = World()
    for kind, first, second in moves:
        if kind == "read":
            world.read(first, second)
        elif kind == "write":
            world.write(first, second)
        else:
            world.sync(first, second)
    return world


def states(world: World) -> list[SiblingSet[int]]:
    return [replica.state for replica in world.replicas]


@given(steps)
def test_each_replica_holds_exactly_the_writes_nothing_it_knows_had_seen(
    moves: list[tuple[str, int, int]],
) -> None:
    world = play(moves)

    for replica in world.replicas:
        assert set(replica.state.values) == world.frontier(replica.known)


@given(steps, indexes, indexes)
def test_sync_is_commutative(moves: list[tuple[str, int, int]], i: int, j: int) -> None:
    sets = states(play(moves))

    assert sets[i].sync(sets[j]) == sets[j].sync(sets[i])


@given(steps)
def test_sync_is_associative(moves: list[tuple[str, int, int]]) -> None:
    a, b, c = states(play(moves))

    assert a.sync(b).sync(c) == a.sync(b.sync(c))


@given(steps, indexes)
def test_sync_is_idempotent(moves: list[tuple[str, int, int]], i: int) -> None:
    s = states(play(moves))[i]

    assert s.sync(s) == s
    assert s.sync(SiblingSet()) == s


@given(steps, indexes, indexes)
def test_sync_keeps_every_sibling_that_nothing_supersedes(
    moves: list[tuple[str, int, int]], i: int, j: int
) -> None:
    world = play(moves)
    left, right = world.replicas[i], world.replicas[j]

    joined = left.state.sync(right.state)

    assert set(joined.values) == world.frontier(left.known | right.known)
    assert joined.context == left.state.context.merge(right.state.context)


@given(steps, indexes)
def test_a_write_with_the_full_context_replaces_all_siblings(
    moves: list[tuple[str, int, int]], i: int
) -> None:
    state = states(play(moves))[i]

    after = state.write(REPLICAS[i], -1, context=state.context)

    assert after.values == (-1,)
    assert after.context.dominates(state.context)


@given(steps, indexes, indexes)
def test_two_writes_from_the_same_read_yield_exactly_two_siblings(
    moves: list[tuple[str, int, int]], i: int, j: int
) -> None:
    world = play(moves)
    world.converge()
    world.read(0, i)
    world.read(1, i)

    world.write(0, i)
    world.write(1, j)
    world.sync(i, j)

    assert len(world.replicas[i].state.siblings) == 2


def test_two_blind_writes_at_one_replica_are_both_kept() -> None:
    state = SiblingSet[str]().write("a", "x").write("a", "y")

    assert state.values == ("x", "y")
    assert [c.dot for c in state.clocks] == [Dot("a", 1), Dot("a", 2)]


def test_a_write_keeps_the_siblings_its_client_had_not_seen() -> None:
    first = SiblingSet[str]().write("a", "x")
    read = first.context
    both = first.write("b", "y")

    after = both.write("a", "z", context=read)

    assert after.values == ("z", "y")


def test_a_received_write_that_is_already_superseded_is_ignored() -> None:
    old = SiblingSet[str]().write("a", "x")
    new = old.write("a", "y", context=old.context)

    assert new.add(old.clocks[0], "x") == new
    assert new.add(new.clocks[0], "y") == new


class SiblingsBetweenReplicas(RuleBasedStateMachine):
    """Random reads, writes and syncs by clients of three replicas."""

    def __init__(self) -> None:
        super().__init__()
        self.world = World()
        self.concurrent_writes = 0

    @rule(client=st.integers(0, CLIENTS - 1), replica=indexes)
    def read(self, client: int, replica: int) -> None:
        self.world.read(client, replica)

    @rule(client=st.integers(0, CLIENTS - 1), replica=indexes)
    def write(self, client: int, replica: int) -> None:
        self.world.write(client, replica)

    @rule(left=indexes, right=indexes)
    def sync(self, left: int, right: int) -> None:
        self.world.sync(left, right)

    @precondition(lambda self: len(self.world.past) > 0)
    @rule()
    def sync_all(self) -> None:
        self.world.converge()
        states = {msgspec.msgpack.encode(r.state) for r in self.world.replicas}
        assert len(states) == 1

    @invariant()
    def siblings_are_exactly_the_concurrent_writes(self) -> None:
        for replica in self.world.replicas:
            truly_concurrent = self.world.frontier(replica.known)
            assert set(replica.state.values) == truly_concurrent
            assert len(replica.state.siblings) <= len(replica.known)

    @invariant()
    def the_context_covers_every_known_write(self) -> None:
        for replica in self.world.replicas:
            counted = sum(replica.state.context.counters.values())
            assert counted == len(replica.known)


SiblingsBetweenReplicas.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None
)
test_no_sibling_explosion_between_three_replicas = SiblingsBetweenReplicas.TestCase


def test_a_dot_needs_a_replica_and_a_positive_counter() -> None:
    with pytest.raises(ValueError, match="replica id must not be empty"):
        Dot("", 1)
    with pytest.raises(ValueError, match="counter must be an int >= 1, got 0"):
        Dot("a", 0)


def test_a_clock_whose_context_covers_its_own_dot_is_refused() -> None:
    with pytest.raises(ValueError, match=r"already covers the dot \('a', 2\)"):
        DottedVersionVector(Dot("a", 2), VersionVector({"a": 2}))


def test_clocks_compare_by_whether_their_contexts_cover_the_other_dot() -> None:
    first = DottedVersionVector(Dot("a", 1))
    later = DottedVersionVector(Dot("b", 1), VersionVector({"a": 1}))
    blind = DottedVersionVector(Dot("a", 2))

    assert later.compare(first) is Ordering.AFTER
    assert first.compare(later) is Ordering.BEFORE
    assert blind.compare(first) is Ordering.CONCURRENT
    assert first.compare(first) is Ordering.EQUAL
    assert later.covers(Dot("a", 1))
    assert later.covers(Dot("b", 1))
    assert not later.covers(Dot("b", 2))
    assert later.vector == VersionVector({"a": 1, "b": 1})


def test_a_sibling_set_out_of_dot_order_is_refused() -> None:
    x = Sibling(DottedVersionVector(Dot("b", 1)), "x")
    y = Sibling(DottedVersionVector(Dot("a", 1)), "y")

    with pytest.raises(ValueError, match="sorted by dot"):
        SiblingSet((x, y))
    with pytest.raises(ValueError, match="sorted by dot"):
        SiblingSet((y, y))


def test_a_sibling_set_holding_a_superseded_value_is_refused() -> None:
    old = Sibling(DottedVersionVector(Dot("a", 1)), "old")
    new = Sibling(DottedVersionVector(Dot("b", 1), VersionVector({"a": 1})), "new")

    with pytest.raises(ValueError, match="supersedes sibling"):
        SiblingSet((old, new))


def test_a_sibling_set_round_trips_through_msgpack() -> None:
    state = SiblingSet[str]().write("a", "x").write("b", "y")

    raw = msgspec.msgpack.encode(state)

    assert msgspec.msgpack.decode(raw, type=SiblingSet[str]) == state


def test_the_clock_names_are_exported_from_eventstore() -> None:
    assert {
        "Dot",
        "DottedVersionVector",
        "HLCTimestamp",
        "HybridLogicalClock",
        "Ordering",
        "Sibling",
        "SiblingSet",
        "VersionVector",
    } <= set(eventstore.__all__)
