from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from actors import StoreEndpoint, Version, sync_in_process
from actors._sync_conflicts import (
    auto_resolver,
    find_conflicts,
    resolve_conflicts,
)
from eventstore import (
    ApplyResult,
    EventMetadata,
    LmdbEventStore,
    NewEvent,
    RecordCreated,
    RecordDeleted,
    RecordUpdated,
    RemoteEventError,
    ReplicatedEvent,
    VersionVector,
    apply_remote,
    conflicted_records,
    events_since,
    record_siblings,
    record_stream,
    replica_id,
)

TIMEOUT_S = 20.0


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[LmdbEventStore, LmdbEventStore]]:
    a = LmdbEventStore.open(tmp_path / "a", durability="fast")
    b = LmdbEventStore.open(tmp_path / "b", durability="fast")
    yield a, b
    a.close()
    b.close()


def create(store: LmdbEventStore, record_id: str, **data: object) -> None:
    store.append(
        [
            NewEvent(
                record_stream("users", record_id),
                "RecordCreated",
                RecordCreated("users", record_id, dict(data)),
            )
        ]
    )


def update(store: LmdbEventStore, record_id: str, **changes: object) -> None:
    store.append(
        [
            NewEvent(
                record_stream("users", record_id),
                "RecordUpdated",
                RecordUpdated("users", record_id, dict(changes)),
            )
        ]
    )


def delete(store: LmdbEventStore, record_id: str) -> None:
    store.append(
        [
            NewEvent(
                record_stream("users", record_id),
                "RecordDeleted",
                RecordDeleted("users", record_id),
            )
        ]
    )


Hook = Callable[[ApplyResult, Sequence[ReplicatedEvent]], tuple[int, int]]


async def sync(
    a: LmdbEventStore,
    b: LmdbEventStore,
    hooks: tuple[Hook | None, Hook | None] = (None, None),
) -> None:
    left = StoreEndpoint(a, on_applied=hooks[0])
    right = StoreEndpoint(b, on_applied=hooks[1])
    await asyncio.wait_for(sync_in_process(left, right, batch_size=7), TIMEOUT_S)


def data_of(store: LmdbEventStore, record_id: str) -> list[object]:
    return [v.data for v in record_siblings(store, "users", record_id)]


async def test_sequential_writes_never_conflict_and_ship_their_clocks(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    a, b = stores
    create(a, "1", name="Ann")
    update(a, "1", email="ann@example.com")
    update(a, "1", name=None)

    shipped = events_since(a, {})
    await sync(a, b)

    me = replica_id(a)
    assert [e.metadata.vector for e in shipped] == [
        VersionVector({me: 1}),
        VersionVector({me: 2}),
        VersionVector({me: 3}),
    ]
    assert shipped[2].metadata.context == VersionVector({me: 2})
    assert data_of(a, "1") == data_of(b, "1") == [{"email": "ann@example.com"}]
    assert conflicted_records(a) == conflicted_records(b) == []


async def test_concurrent_updates_become_the_same_siblings_on_both_replicas(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    a, b = stores
    create(a, "1", name="Ann", email="ann@old.example")
    await sync(a, b)

    update(a, "1", name="Ann Smith")
    update(b, "1", email="ann@new.example")
    await sync(a, b)

    expected = [
        {"name": "Ann Smith", "email": "ann@old.example"},
        {"name": "Ann", "email": "ann@new.example"},
    ]
    assert sorted(map(str, data_of(a, "1"))) == sorted(map(str, expected))
    assert data_of(a, "1") == data_of(b, "1")
    assert conflicted_records(a, "users") == [("users", "1")]
    assert conflicted_records(b, "orders") == []
    conflicts = find_conflicts(a, "users")
    assert len(conflicts) == 1
    assert all(isinstance(v, Version) for v in conflicts[0].versions)
    assert {v.changed for v in conflicts[0].versions} == {
        frozenset({"name"}),
        frozenset({"email"}),
    }


async def test_a_merge_resolution_supersedes_the_siblings_everywhere(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    a, b = stores
    create(a, "1", name="Ann", email="ann@old.example")
    await sync(a, b)
    update(a, "1", name="Ann Smith")
    update(b, "1", email="ann@new.example")
    await sync(a, b)

    resolutions = resolve_conflicts(a, find_conflicts(a), "merge")
    await sync(a, b)

    merged = {"email": "ann@new.example", "name": "Ann Smith"}
    assert [r.data for r in resolutions] == [merged]
    assert data_of(a, "1") == data_of(b, "1") == [merged]
    assert find_conflicts(a) == find_conflicts(b) == []


async def test_a_delete_and_a_concurrent_update_merge_to_the_update(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    a, b = stores
    create(a, "1", name="Ann")
    await sync(a, b)
    delete(a, "1")
    update(b, "1", name="Anne")
    await sync(a, b)

    assert sorted(map(str, data_of(b, "1"))) == ["None", "{'name': 'Anne'}"]
    resolve_conflicts(b, find_conflicts(b), {"users": "merge"})
    await sync(a, b)

    assert data_of(a, "1") == data_of(b, "1") == [{"name": "Anne"}]


async def test_the_siblings_strategy_and_unlisted_collections_write_nothing(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    a, b = stores
    create(a, "1", n=0)
    await sync(a, b)
    update(a, "1", n=1)
    update(b, "1", n=2)
    await sync(a, b)
    head = a.head_position()

    kept = resolve_conflicts(a, find_conflicts(a), "siblings")
    ignored = resolve_conflicts(a, find_conflicts(a), {"orders": "lww"})

    assert [r.resolved for r in kept] == [False]
    assert ignored == []
    assert a.head_position() == head


async def test_replicas_that_resolve_on_their_own_converge_without_ping_pong(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    a, b = stores
    hooks = (auto_resolver(a, "lww"), auto_resolver(b, "lww"))
    create(a, "1", n=0)
    await sync(a, b, hooks)
    update(a, "1", n=1)
    update(b, "1", n=2)

    await sync(a, b, hooks)
    await sync(a, b, hooks)
    heads = (a.head_position(), b.head_position())
    await sync(a, b, hooks)

    assert (a.head_position(), b.head_position()) == heads
    assert find_conflicts(a) == find_conflicts(b) == []
    values = {str(d) for d in data_of(a, "1")}
    assert values == {str(d) for d in data_of(b, "1")}
    assert len(values) == 1


async def test_a_custom_strategy_decides_and_the_report_counts_it(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    a, b = stores
    create(a, "1", n=1)
    await sync(a, b)
    update(a, "1", n=5)
    update(b, "1", n=7)

    def biggest(versions: tuple[Version, ...]) -> dict[str, object]:
        return {"n": max(int((v.data or {}).get("n", 0)) for v in versions)}

    report = await asyncio.wait_for(
        sync_in_process(
            StoreEndpoint(a, on_applied=auto_resolver(a, biggest)),
            StoreEndpoint(b),
        ),
        TIMEOUT_S,
    )

    assert (report.conflicts_found, report.conflicts_resolved) == (1, 1)
    assert data_of(a, "1") == [{"n": 7}]


def test_a_writer_that_read_an_old_context_makes_a_sibling(tmp_path: Path) -> None:
    with LmdbEventStore.open(tmp_path / "s", durability="fast") as store:
        create(store, "1", n=1)
        me = replica_id(store)
        update(store, "1", n=2)
        stale = EventMetadata(context=VersionVector({me: 1}))
        store.append(
            [
                NewEvent(
                    record_stream("users", "1"),
                    "RecordUpdated",
                    RecordUpdated("users", "1", {"m": 1}),
                    stale,
                )
            ]
        )

        assert sorted(map(str, data_of(store, "1"))) == [
            "{'n': 1, 'm': 1}",
            "{'n': 2}",
        ]


async def test_an_update_that_arrives_before_what_it_read_is_refused(
    tmp_path: Path,
) -> None:
    paths = [tmp_path / name for name in ("a", "b", "c")]
    a, b, c = (LmdbEventStore.open(p, durability="fast") for p in paths)
    try:
        create(a, "1", n=1)
        await sync(a, b)
        update(b, "1", m=2)
        shipped = events_since(b, {})

        with pytest.raises(RemoteEventError, match="must arrive in causal order"):
            apply_remote(c, shipped[1:])
        apply_remote(c, shipped)

        assert data_of(c, "1") == data_of(b, "1") == [{"n": 1, "m": 2}]
    finally:
        for store in (a, b, c):
            store.close()
