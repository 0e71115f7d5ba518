import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventstore import Ordering, VersionVector

REPLICAS = ("a", "b", "c", "d")

vectors = st.dictionaries(st.sampled_from(REPLICAS), st.integers(1, 4)).map(
    VersionVector
)


@given(vectors)
def test_every_vector_descends_from_and_equals_itself(v: VersionVector) -> None:
    assert v.descends(v)
    assert not v.dominates(v)
    assert not v.concurrent_with(v)
    assert v.compare(v) is Ordering.EQUAL


@given(vectors, vectors)
def test_vectors_that_descend_from_each_other_are_equal(
    a: VersionVector, b: VersionVector
) -> None:
    if a.descends(b) and b.descends(a):
        assert a == b
    else:
        assert a != b


@given(vectors, vectors, vectors)
def test_descends_is_transitive(
    a: VersionVector, b: VersionVector, c: VersionVector
) -> None:
    b_over_c = b.merge(c)
    a_over_b = a.merge(b_over_c)

    assert a_over_b.descends(b_over_c)
    assert b_over_c.descends(c)
    assert a_over_b.descends(c)
    if a.descends(b) and b.descends(c):
        assert a.descends(c)


@given(vectors, vectors)
def test_compare_agrees_with_descends_and_flips_when_swapped(
    a: VersionVector, b: VersionVector
) -> None:
    flipped = {
        Ordering.BEFORE: Ordering.AFTER,
        Ordering.AFTER: Ordering.BEFORE,
        Ordering.EQUAL: Ordering.EQUAL,
        Ordering.CONCURRENT: Ordering.CONCURRENT,
    }

    ordering = a.compare(b)

    assert b.compare(a) is flipped[ordering]
    assert (ordering is Ordering.AFTER) == a.dominates(b)
    assert (ordering is Ordering.BEFORE) == b.dominates(a)
    assert (ordering is Ordering.CONCURRENT) == a.concurrent_with(b)
    assert (ordering in {Ordering.AFTER, Ordering.EQUAL}) == a.descends(b)


@given(vectors, vectors)
def test_merge_is_commutative(a: VersionVector, b: VersionVector) -> None:
    assert a.merge(b) == b.merge(a)


@given(vectors, vectors, vectors)
def test_merge_is_associative(
    a: VersionVector, b: VersionVector, c: VersionVector
) -> None:
    assert a.merge(b).merge(c) == a.merge(b.merge(c))


@given(vectors)
def test_merge_is_idempotent(a: VersionVector) -> None:
    assert a.merge(a) == a


@given(vectors, vectors, vectors)
def test_merge_is_the_least_upper_bound(
    a: VersionVector, b: VersionVector, c: VersionVector
) -> None:
    merged = a.merge(b)

    assert merged.descends(a)
    assert merged.descends(b)
    if c.descends(a) and c.descends(b):
        assert c.descends(merged)
    for replica in REPLICAS:
        assert merged.get(replica) == max(a.get(replica), b.get(replica))


@given(vectors, st.sampled_from(REPLICAS))
def test_increment_counts_one_more_event_of_one_replica(
    v: VersionVector, replica: str
) -> None:
    after = v.increment(replica)

    assert after.dominates(v)
    assert after.compare(v) is Ordering.AFTER
    assert after.get(replica) == v.get(replica) + 1
    for other in REPLICAS:
        if other != replica:
            assert after.get(other) == v.get(other)


def test_two_increments_at_different_replicas_are_concurrent() -> None:
    base = VersionVector({"a": 2})

    left = base.increment("a")
    right = base.increment("b")

    assert left.concurrent_with(right)
    assert left.compare(right) is Ordering.CONCURRENT
    assert left.merge(right) == VersionVector({"a": 3, "b": 1})


def test_a_vector_keeps_every_replica_it_has_seen() -> None:
    v = VersionVector()
    for i in range(500):
        v = v.increment(f"replica-{i}")

    assert len(v.counters) == 500
    assert v.merge(VersionVector({"late": 1})).get("replica-0") == 1


@given(vectors)
def test_a_vector_round_trips_through_msgpack_and_json(v: VersionVector) -> None:
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(v), type=VersionVector) == v
    assert msgspec.json.decode(msgspec.json.encode(v), type=VersionVector) == v


@pytest.mark.parametrize("counter", [0, -1, True, 1.5])
def test_a_counter_that_is_not_a_positive_int_is_refused(counter: object) -> None:
    with pytest.raises(ValueError, match=r"replica 'a' must be a positive int"):
        VersionVector({"a": counter})  # type: ignore[dict-item]


def test_an_empty_replica_id_is_refused() -> None:
    with pytest.raises(ValueError, match="replica id must not be empty"):
        VersionVector({"": 1})


def test_a_stored_vector_with_a_zero_counter_fails_to_decode() -> None:
    raw = msgspec.msgpack.encode([{"a": 0}])

    with pytest.raises(msgspec.ValidationError, match="replica 'a'"):
        msgspec.msgpack.decode(raw, type=VersionVector)


def test_of_reads_zero_counters_as_absent() -> None:
    v = VersionVector.of({"a": 0, "b": 2})

    assert v == VersionVector({"b": 2})
    assert v.get("a") == 0
