from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from actors import DataManager, LockTimeoutError, SyncRefusedError, Version
from eventstore import ReplicationError, high_water_marks

TIMEOUT_S = 20.0


async def open_dm(
    path: Path, replica: str, strategy: Any = "lww", **options: Any
) -> DataManager:
    dm = DataManager.open(path, durability="fast", replica_id=replica, **options)
    await dm.start()
    dm.add_data_source("users", conflict_strategy=strategy)
    return dm


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[DataManager, DataManager]]:
    east = await open_dm(tmp_path / "east", "east")
    west = await open_dm(tmp_path / "west", "west")
    yield east, west
    await east.close()
    await west.close()


async def data(dm: DataManager, record_id: str) -> dict[str, Any] | None:
    record = await dm.read("users", record_id)
    return None if record is None else record.data


async def test_two_datamanagers_sync_records_both_ways(
    pair: tuple[DataManager, DataManager],
) -> None:
    east, west = pair
    await east.create("users", {"name": "Ann"}, id="ann")
    await west.create("users", {"name": "Bob"}, id="bob")

    report = await asyncio.wait_for(east.sync(west), TIMEOUT_S)
    updated = await west.update("users", "ann", {"email": "ann@example.com"})
    await asyncio.wait_for(west.sync(east), TIMEOUT_S)

    assert (report.sent, report.received) == (1, 1)
    assert east.replica_id == "east"
    assert await data(west, "bob") == {"name": "Bob"}
    assert updated.version == 2
    assert await data(east, "ann") == {"name": "Ann", "email": "ann@example.com"}
    events = list(east.store.read_all())
    assert [e.metadata.origin for e in events] == ["east", "west", "west"]
    assert all(e.metadata.hlc is not None for e in events)


async def test_concurrent_updates_resolve_by_the_collections_strategy(
    tmp_path: Path,
) -> None:
    east = await open_dm(tmp_path / "east", "east", "merge")
    west = await open_dm(tmp_path / "west", "west", "merge")
    try:
        await east.create("users", {"name": "Ann", "email": "a@old"}, id="ann")
        await east.sync(west)
        await east.update("users", "ann", {"name": "Ann Smith"})
        await west.update("users", "ann", {"email": "a@new"})

        report = await asyncio.wait_for(east.sync(west), TIMEOUT_S)
        await asyncio.wait_for(east.sync(west), TIMEOUT_S)

        merged = {"name": "Ann Smith", "email": "a@new"}
        assert report.conflicts_found >= 1
        assert report.conflicts_resolved >= 1
        assert await data(east, "ann") == await data(west, "ann") == merged
        assert await east.conflicts("users") == await west.conflicts("users") == []
        after = await east.update("users", "ann", {"age": 40})
        assert after.data == {**merged, "age": 40}
    finally:
        await east.close()
        await west.close()


async def test_siblings_are_kept_for_the_application_to_resolve(
    tmp_path: Path,
) -> None:
    east = await open_dm(tmp_path / "east", "east", "siblings")
    west = await open_dm(tmp_path / "west", "west", "siblings")
    try:
        await east.create("users", {"n": 0}, id="x")
        await east.sync(west)
        await east.update("users", "x", {"n": 1})
        await west.update("users", "x", {"n": 2})
        await east.sync(west)

        conflicts = await east.conflicts("users")
        assert conflicts == await west.conflicts("users")
        assert len(conflicts) == 1
        assert sorted(v.data["n"] for v in conflicts[0].versions if v.data) == [1, 2]

        def biggest(versions: tuple[Version, ...]) -> dict[str, Any]:
            return {"n": max((v.data or {}).get("n", 0) for v in versions) * 10}

        [resolution] = await east.resolve_conflicts(conflicts, biggest)
        await east.sync(west)

        assert resolution.data == {"n": 20}
        assert await data(east, "x") == await data(west, "x") == {"n": 20}
        assert await west.conflicts("users") == []
    finally:
        await east.close()
        await west.close()


async def test_a_delete_concurrent_with_an_update_converges(
    pair: tuple[DataManager, DataManager],
) -> None:
    east, west = pair
    await east.create("users", {"n": 0}, id="x")
    await east.sync(west)
    await east.delete("users", "x")
    await west.update("users", "x", {"n": 1})

    await east.sync(west)
    await east.sync(west)

    assert await data(east, "x") == await data(west, "x")


async def test_merge_data_is_resolve_of_two_versions(
    pair: tuple[DataManager, DataManager],
) -> None:
    east, west = pair
    await east.create("users", {"a": 1}, id="x")
    await east.sync(west)
    await east.update("users", "x", {"a": 2})
    await west.update("users", "x", {"b": 3})
    # Keep the conflict: resolve nothing on the way in, on either side.
    east.replica.strategies["users"] = west.replica.strategies["users"] = "siblings"
    await east.sync(west)

    [conflict] = await east.conflicts("users")
    merged = DataManager.merge_data(*conflict.versions)

    assert merged.data == {"a": 2, "b": 3}


async def test_a_peer_over_websocket_and_live_replication(
    pair: tuple[DataManager, DataManager],
) -> None:
    east, west = pair
    statuses: list[bool] = []
    async with west.sync_server() as server:
        await east.create("users", {"n": 1}, id="one")
        report = await asyncio.wait_for(east.sync(server.url), TIMEOUT_S)
        replicator = east.replicate(
            server.url, interval_s=30, on_status=lambda up, _: statuses.append(up)
        )
        await replicator.wait_round(timeout_s=TIMEOUT_S)
        await east.create("users", {"n": 2}, id="two")
        replicator.wake()
        await replicator.wait_round(timeout_s=TIMEOUT_S)

    assert report.sent == 1
    assert await data(west, "two") == {"n": 2}
    assert statuses[0] is True
    assert high_water_marks(east.store) == high_water_marks(west.store)


async def test_only_the_named_collections_are_accepted(
    pair: tuple[DataManager, DataManager],
) -> None:
    east, west = pair
    west.add_data_source("secrets")
    await west.create("secrets", {"pin": 1234}, id="s")

    with pytest.raises(SyncRefusedError, match="collection 'secrets' is not accepted"):
        await asyncio.wait_for(east.sync(west, collections={"users"}), TIMEOUT_S)

    assert high_water_marks(east.store).get("west", 0) == 0


async def test_a_lock_makes_other_lockers_and_writers_wait(
    pair: tuple[DataManager, DataManager],
) -> None:
    east, _ = pair
    await east.create("users", {"n": 0}, id="x")
    order: list[str] = []

    async def writer() -> None:
        await east.update("users", "x", {"n": 2})
        order.append("writer")

    async with east.lock("users", "x", ttl_s=30) as lease:
        loop = asyncio.get_running_loop()
        task = loop.create_task(writer(), context=contextvars.Context())
        await east.update("users", "x", {"n": 1})  # the holder writes at once
        with pytest.raises(LockTimeoutError, match="record 'x' of collection 'users'"):
            async with east.lock("users", "x", timeout_s=0.05):
                pass
        order.append("holder")
    await asyncio.wait_for(task, TIMEOUT_S)

    assert lease.owner == "east"
    assert order == ["holder", "writer"]
    assert await data(east, "x") == {"n": 2}


async def test_a_replica_id_cannot_change_once_written(tmp_path: Path) -> None:
    east = await open_dm(tmp_path / "east", "east")
    await east.create("users", {"n": 0}, id="x")
    await east.close()

    again = DataManager.open(tmp_path / "east", durability="fast", replica_id="west")
    with pytest.raises(ReplicationError, match="cannot change to 'west'"):
        await again.start()
    await again.close()
    same = await open_dm(tmp_path / "east", "east")
    assert await data(same, "x") == {"n": 0}
    await same.close()
