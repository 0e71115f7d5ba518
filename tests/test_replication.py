from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from eventstore import (
    HLCTimestamp,
    HybridLogicalClock,
    LmdbEventStore,
    MemoryEventStore,
    NewEvent,
    OriginSequenceError,
    RecordCreated,
    RemoteEventError,
    RemoteValidation,
    ReplicatedEvent,
    ReplicationError,
    VersionVector,
    apply_remote,
    events_since,
    high_water_marks,
    latest_hlc,
    record_stream,
    replica_id,
    replication_index,
)
from eventstore._types import EventMetadata

NOW_MS = 1_800_000_000_000


def created(collection: str, record_id: str, **data: object) -> NewEvent:
    return NewEvent(
        record_stream(collection, record_id),
        "RecordCreated",
        RecordCreated(collection, record_id, dict(data)),
    )


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[LmdbEventStore, LmdbEventStore]]:
    a = LmdbEventStore.open(tmp_path / "a", durability="fast")
    b = LmdbEventStore.open(tmp_path / "b", durability="fast")
    yield a, b
    a.close()
    b.close()


def remote(
    origin: str,
    seq: int,
    *,
    stream: str = "records/users/1",
    type_: str = "RecordCreated",
    data: object = None,
    hlc: HLCTimestamp | None = None,
    vector: VersionVector | None = None,
    context: VersionVector | None = None,
    schema_version: int = 1,
) -> ReplicatedEvent:
    payload = (
        data if data is not None else {"collection": "users", "id": "1", "data": {}}
    )
    return ReplicatedEvent(
        stream,
        type_,
        schema_version,
        msgspec.Raw(msgspec.msgpack.encode(payload)),
        EventMetadata(
            hlc=hlc or HLCTimestamp(NOW_MS),
            origin=origin,
            origin_seq=seq,
            vector=vector,
            context=context,
        ),
    )


def fixed_clock() -> RemoteValidation:
    return RemoteValidation(wall_clock_ms=lambda: NOW_MS)


def test_local_events_are_numbered_gaplessly_under_the_store_replica_id(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    a, _ = stores
    a.append([created("users", str(i), n=i) for i in range(3)])
    a.append([created("users", "3")])

    marks = high_water_marks(a)
    shipped = events_since(a, {})

    me = replica_id(a)
    assert me == a.meta()["replica_id"]
    assert marks == {me: 4}
    assert [e.metadata.origin_seq for e in shipped] == [1, 2, 3, 4]
    assert {e.metadata.origin for e in shipped} == {me}
    assert all(e.metadata.hlc is not None for e in shipped)


def test_events_appended_before_the_index_was_attached_are_numbered(
    tmp_path: Path,
) -> None:
    with LmdbEventStore.open(tmp_path / "s", durability="fast") as store:
        store.append([created("users", str(i)) for i in range(5)])
        me = replica_id(store)

        assert high_water_marks(store) == {me: 5}
        store.append([created("users", "5")])
        assert high_water_marks(store) == {me: 6}


def test_the_index_survives_a_reopen_and_catches_up_inside_an_append(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s"
    with LmdbEventStore.open(path, durability="fast") as store:
        store.append([created("users", "a")])
        me = replica_id(store)
        assert high_water_marks(store) == {me: 1}
    with LmdbEventStore.open(path, durability="fast") as store:
        # Appended while no index is attached in this process.
        store.append([created("users", "b"), created("users", "c")])
        index = replication_index(store)
        store.append([created("users", "d")])

        assert index.replica_id == me
        assert high_water_marks(store) == {me: 4}
        assert [e.metadata.origin_seq for e in events_since(store, {me: 2})] == [3, 4]


def test_events_since_sends_only_what_the_other_side_lacks_in_bounded_batches(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    a, b = stores
    a.append([created("users", str(i)) for i in range(10)])

    first = events_since(a, high_water_marks(b), limit=4)
    apply_remote(b, first, validation=fixed_clock())
    second = events_since(a, high_water_marks(b), limit=4)
    nothing = events_since(a, high_water_marks(a))

    assert [e.metadata.origin_seq for e in first] == [1, 2, 3, 4]
    assert [e.metadata.origin_seq for e in second] == [5, 6, 7, 8]
    assert nothing == []
    with pytest.raises(ValueError, match="limit must be >= 1"):
        events_since(a, {}, limit=0)


def test_events_since_interleaves_origins_in_the_senders_position_order(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    a, b = stores
    a.append([created("users", "a1")])
    apply_remote(b, events_since(a, {}), validation=fixed_clock())
    b.append([created("users", "b1")])
    a.append([created("users", "a2")])
    apply_remote(a, events_since(b, high_water_marks(a)), validation=fixed_clock())
    a.append([created("users", "a3")])

    shipped = events_since(a, {}, limit=10)

    streams = [e.stream.rsplit("/", 1)[1] for e in shipped]
    assert streams == ["a1", "a2", "b1", "a3"]
    assert [e.metadata.origin for e in shipped][2] == replica_id(b)


def test_applying_a_batch_twice_changes_nothing(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    a, b = stores
    a.append([created("users", str(i), n=i) for i in range(3)])
    batch = events_since(a, {})

    first = apply_remote(b, batch, validation=fixed_clock())
    head = b.head_position()
    second = apply_remote(b, batch, validation=fixed_clock())

    assert (first.applied, first.skipped) == (3, 0)
    assert (second.applied, second.skipped) == (0, 3)
    assert b.head_position() == head == 3
    copied = list(b.read_all())
    assert [e.data for e in copied] == [e.data for e in a.read_all()]
    assert copied[0].metadata.origin == replica_id(a)
    assert copied[0].metadata.origin_seq == 1
    assert high_water_marks(b) == high_water_marks(a)


def test_a_batch_that_overlaps_what_the_store_holds_applies_only_the_rest(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    a, b = stores
    a.append([created("users", str(i)) for i in range(5)])
    apply_remote(b, events_since(a, {}, limit=2), validation=fixed_clock())

    result = apply_remote(b, events_since(a, {}), validation=fixed_clock())

    assert (result.applied, result.skipped) == (3, 2)
    assert (result.first_position, result.last_position) == (3, 5)


def test_a_gap_in_an_origins_sequence_is_refused_and_nothing_is_applied(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    _, b = stores
    batch = [remote("east", 1), remote("west", 1), remote("east", 3)]

    with pytest.raises(OriginSequenceError, match="event 3 of origin 'east'") as info:
        apply_remote(b, batch, validation=fixed_clock())

    assert (info.value.expected, info.value.actual) == (2, 3)
    assert b.head_position() == 0
    assert "gap" in str(info.value)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (remote("", 1), "origin must be a replica id"),
        (remote("e\x00st", 1), "origin must be a replica id"),
        (remote("east", 0), "sequence number must be an int >= 1"),
        (remote("east", 1, stream=""), "stream and type must not be empty"),
        (remote("east", 1, stream="local/locks/x/1"), "belongs to its replica"),
        (remote("east", 1, stream="records/users"), "is not a record stream"),
        (remote("east", 1, data={"collection": 5}), "data is malformed"),
        (remote("east", 1, schema_version=9), "data is malformed"),
        (remote("east", 1, hlc=HLCTimestamp(NOW_MS + 3_600_000)), "ahead"),
        (
            remote("east", 1, vector=VersionVector({"west": 1})),
            "omits its origin",
        ),
        (
            remote(
                "east",
                1,
                vector=VersionVector({"east": 2}),
                context=VersionVector({"east": 2}),
            ),
            "already covers its own write",
        ),
    ],
)
def test_a_malformed_or_suspicious_event_refuses_its_whole_batch(
    stores: tuple[LmdbEventStore, LmdbEventStore], event: ReplicatedEvent, reason: str
) -> None:
    _, b = stores
    fine = remote("north", 1, stream="records/users/2")

    with pytest.raises(RemoteEventError, match=reason):
        apply_remote(b, [fine, event], validation=fixed_clock())

    assert b.head_position() == 0


def test_an_event_without_a_timestamp_is_refused() -> None:
    store = MemoryEventStore()
    event = msgspec.structs.replace(
        remote("east", 1), metadata=EventMetadata(origin="east", origin_seq=1)
    )

    with pytest.raises(RemoteEventError, match="no hybrid-logical-clock") as info:
        apply_remote(store, [event])

    assert info.value.origin == "east"
    assert info.value.origin_seq == 1


def test_collections_are_accepted_by_allow_list_or_predicate(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    _, b = stores
    users = remote("east", 1)
    orders = remote("east", 2, stream="records/orders/1")
    by_list = RemoteValidation(wall_clock_ms=lambda: NOW_MS, collections={"users"})
    by_predicate = RemoteValidation(
        wall_clock_ms=lambda: NOW_MS, collections=lambda name: name != "orders"
    )

    with pytest.raises(RemoteEventError, match="collection 'orders' is not accepted"):
        apply_remote(b, [users, orders], validation=by_list)
    with pytest.raises(RemoteEventError, match="collection 'orders'"):
        apply_remote(b, [users, orders], validation=by_predicate)
    result = apply_remote(
        b, [users, remote("east", 2, stream="misc")], validation=by_list
    )

    assert result.applied == 2


def test_a_version_vector_that_goes_backwards_for_its_record_is_refused(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    _, b = stores
    first = remote("east", 1, vector=VersionVector({"east": 2}))
    stale = remote("east", 2, vector=VersionVector({"east": 2, "west": 1}))
    later = remote("east", 2, vector=VersionVector({"east": 3}))
    other_record = remote(
        "east", 3, stream="records/users/2", vector=VersionVector({"east": 1})
    )

    apply_remote(b, [first], validation=fixed_clock())
    with pytest.raises(RemoteEventError, match="goes backwards on stream"):
        apply_remote(b, [stale], validation=fixed_clock())
    repeat = remote("east", 3, vector=VersionVector({"east": 3}))
    with pytest.raises(RemoteEventError, match="goes backwards"):
        apply_remote(b, [later, repeat], validation=fixed_clock())
    result = apply_remote(b, [later, other_record], validation=fixed_clock())

    assert result.applied == 2


def test_the_drift_check_uses_and_advances_the_given_clock() -> None:
    store = MemoryEventStore()
    clock = HybridLogicalClock("here", wall_clock_ms=lambda: NOW_MS, max_drift_ms=10)
    ahead = HLCTimestamp(NOW_MS + 5, 2)

    apply_remote(
        store, [remote("east", 1, hlc=ahead)], validation=RemoteValidation(clock=clock)
    )

    assert clock.current > ahead
    assert latest_hlc(store) == ahead
    with pytest.raises(RemoteEventError, match="allowed drift of 10 ms"):
        apply_remote(
            store,
            [remote("east", 2, hlc=HLCTimestamp(NOW_MS + 11))],
            validation=RemoteValidation(clock=clock),
        )


def test_a_remote_event_appended_out_of_turn_is_refused_inside_the_append() -> None:
    store = MemoryEventStore()
    replication_index(store)
    bad = NewEvent("s", "T", {}, EventMetadata(origin="east", origin_seq=2))

    with pytest.raises(OriginSequenceError, match="gap"):
        store.append([bad])

    assert store.head_position() == 0


def test_concurrent_appliers_of_one_batch_apply_it_exactly_once(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    a, b = stores
    a.append([created("users", str(i)) for i in range(50)])
    batch = events_since(a, {})
    replication_index(b)
    errors: list[BaseException] = []

    def apply() -> None:
        try:
            apply_remote(b, batch, validation=fixed_clock())
        except BaseException as exc:  # noqa: BLE001 - collected for the assert
            errors.append(exc)

    threads = [threading.Thread(target=apply) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert b.head_position() == 50
    assert high_water_marks(b) == high_water_marks(a)


def test_the_memory_store_gets_a_replica_id_on_first_use() -> None:
    store = MemoryEventStore()

    first = replica_id(store)

    assert first == replica_id(store)
    assert len(first) == 32


def test_a_read_only_store_with_a_current_index_can_be_exported(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with LmdbEventStore.open(path, durability="fast") as store:
        store.append([created("users", "1")])
        marks = high_water_marks(store)
    with LmdbEventStore.open(path, readonly=True) as reader:
        assert high_water_marks(reader) == marks
        assert len(events_since(reader, {})) == 1


def test_a_read_only_store_with_a_stale_index_says_so(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with LmdbEventStore.open(path, durability="fast") as store:
        store.append([created("users", "1")])
    with (
        LmdbEventStore.open(path, readonly=True) as reader,
        pytest.raises(ReplicationError, match="open it writable once"),
    ):
        high_water_marks(reader)
