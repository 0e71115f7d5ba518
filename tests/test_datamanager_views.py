"""The DataManager over its projections: reads from the records view, indexes."""

from __future__ import annotations

import asyncio
import operator
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _projection_helpers import create as append_created

from actors import (
    ActorError,
    ActorReader,
    ConcurrencyError,
    DataManager,
    UnknownDataSourceError,
)
from eventstore import LmdbEventStore, NewEvent, RecordUpdated, record_stream
from projections import RecordsView

PEOPLE: list[dict[str, Any]] = [
    {"name": f"p{i:02d}", "age": 20 + i % 7, "city": ["Oslo", "Rome", "Lima"][i % 3]}
    for i in range(40)
]


@pytest.fixture(params=["memory", "lmdb"])
async def dm(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[DataManager]:
    if request.param == "memory":
        manager = DataManager.in_memory(async_projections=())
    else:
        manager = DataManager.open(
            tmp_path / "data", durability="fast", async_projections=()
        )
    async with manager:
        manager.add_data_source("people", indexes=["age", "city"])
        manager.add_data_source("notes")
        yield manager


@pytest.fixture
def scans() -> Iterator[list[str]]:
    """Every collection the records view scans, while the test runs."""
    seen: list[str] = []
    original = RecordsView._scan

    def counted(reader: Any, table: str, collection: str) -> Any:
        seen.append(collection)
        return original(reader, table, collection)

    RecordsView._scan = staticmethod(counted)  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        RecordsView._scan = staticmethod(original)  # type: ignore[method-assign]


async def test_a_read_right_after_each_acknowledged_write_sees_it(
    dm: DataManager,
) -> None:
    async def client(i: int) -> None:
        rec = await dm.create("notes", {"n": i})
        assert await dm.read("notes", rec.id) == rec
        rec = await dm.update("notes", rec.id, {"n": -i})
        assert await dm.read("notes", rec.id) == rec
        assert await dm.batch_read("notes", [rec.id, "none"]) == [rec, None]
        await dm.delete("notes", rec.id)
        assert await dm.read("notes", rec.id) is None

    await asyncio.gather(*(client(i) for i in range(100)))

    assert dm.projections.records.count("notes") == 0


async def test_reads_come_from_the_view_not_from_the_actor(dm: DataManager) -> None:
    rec = await dm.create("notes", {"text": "kept"})
    worker = dm.collections.child("notes")

    await asyncio.to_thread(worker.stop)
    found = await asyncio.wait_for(dm.read("notes", rec.id), 5)
    rows = await asyncio.wait_for(dm.query("notes"), 5)

    assert found == rec
    assert rows == [rec]


async def test_a_write_that_fails_at_commit_is_never_read(dm: DataManager) -> None:
    rec = await dm.create("notes", {"n": 1}, id="n1")
    stream = record_stream("notes", "n1")
    # Behind the actor's back: its next update expects version 1 and fails
    # (without an expected version it would be decided again and succeed).
    dm.store.append(
        [NewEvent(stream, "RecordUpdated", RecordUpdated("notes", "n1", {"n": 5}))]
    )

    with pytest.raises(ConcurrencyError):
        await dm.update("notes", rec.id, {"n": 2}, expected_version=1)
    found = await dm.read("notes", "n1")

    assert found is not None
    assert (found.version, found.data) == (2, {"n": 5})


async def test_records_in_the_log_before_the_manager_opened_are_read(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data"
    with LmdbEventStore.open(path, durability="fast") as store:
        append_created(store, "notes", "old", {"t": "before"})

    async with DataManager.open(path, async_projections=()) as manager:
        manager.add_data_source("notes")
        found = await manager.read("notes", "old")
        status = await manager.projections.status("records")

    assert found is not None
    assert found.data == {"t": "before"}
    assert status[0].checkpoint == 1


async def test_reads_of_an_unknown_source_name_it(dm: DataManager) -> None:
    with pytest.raises(UnknownDataSourceError, match="ghosts"):
        await dm.read("ghosts", "x")
    with pytest.raises(UnknownDataSourceError, match="ghosts"):
        await dm.batch_read("ghosts", ["x"])
    with pytest.raises(UnknownDataSourceError, match="ghosts"):
        await dm.query("ghosts")


async def test_a_large_batch_read_keeps_the_order_asked(dm: DataManager) -> None:
    created = await dm.batch_create("notes", [{"n": i} for i in range(150)])
    ids = [rec.id for rec in reversed(created)]

    found = await dm.batch_read("notes", [*ids, "missing"])

    assert found == [*reversed(created), None]


async def test_reads_as_of_a_version_fold_the_log(dm: DataManager) -> None:
    rec = await dm.create("notes", {"n": 1})
    await dm.update("notes", rec.id, {"n": 2})
    await dm.delete("notes", rec.id)

    first = await dm.read("notes", rec.id, as_of_version=1)
    deleted = await dm.read("notes", rec.id, as_of_version=3)

    assert first == rec
    assert deleted is None


async def test_an_indexed_query_reads_the_index_and_matches_a_scan(
    dm: DataManager, scans: list[str]
) -> None:
    await dm.batch_create("people", PEOPLE)
    clauses: list[dict[str, Any]] = [
        {"age": 23},
        {"city": {"in": ["Oslo", "Lima"]}},
        {"age": {"gte": 22, "lt": 25}, "city": "Rome"},
    ]
    records = dm.projections.records

    for where in clauses:
        indexed = await dm.query("people", where=where, order_by="name")
        assert records.uses_index("people", where)
        assert scans == []
        dm.reader = ActorReader(dm)
        scanned = await dm.query("people", where=where, order_by="name")
        dm.reader = dm._views
        expected = [
            p["name"] for p in PEOPLE if all(_holds(p, f, c) for f, c in where.items())
        ]
        assert [r.data["name"] for r in indexed] == sorted(expected)
        assert indexed == scanned


def _holds(person: dict[str, Any], field: str, condition: Any) -> bool:
    value = person[field]
    if not isinstance(condition, dict):
        return bool(value == condition)
    checks: dict[str, Callable[[Any, Any], bool]] = {
        "in": operator.contains,
        "gte": operator.ge,
        "lt": operator.lt,
    }
    return all(
        checks[op](arg, value) if op == "in" else checks[op](value, arg)
        for op, arg in condition.items()
    )


async def test_a_query_on_an_unindexed_field_scans(
    dm: DataManager, scans: list[str]
) -> None:
    await dm.batch_create("people", PEOPLE[:5])

    rows = await dm.query("people", where={"name": "p01"})

    assert [r.data["name"] for r in rows] == ["p01"]
    assert scans == ["people"]
    assert not dm.projections.records.uses_index("people", {"name": "p01"})


async def test_indexes_declared_before_start_cover_older_records(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data"
    async with DataManager.open(path, async_projections=()) as manager:
        manager.add_data_source("people")
        await manager.batch_create("people", PEOPLE)

    manager = DataManager.open(path, async_projections=())
    manager.add_data_source("people", indexes=["city"])
    async with manager:
        rows = await manager.query("people", where={"city": "Lima"})
        indexes = manager.projections.records.indexes("people")

    assert indexes == ("city",)
    assert len(rows) == len([p for p in PEOPLE if p["city"] == "Lima"])


async def test_a_malformed_index_field_is_refused_with_its_source(
    dm: DataManager,
) -> None:
    with pytest.raises(ActorError, match="index fields are non-empty"):
        dm.add_data_source("odd", indexes=["bad\x00field"])

    assert "odd" not in dm.list_data_sources()


async def test_the_actor_reader_and_the_view_reader_agree(dm: DataManager) -> None:
    created = await dm.batch_create("notes", [{"n": i} for i in range(5)])
    await dm.update("notes", created[0].id, {"n": 9})
    ids = [rec.id for rec in created] + ["none"]

    from_view = await dm.batch_read("notes", ids)
    one_from_view = await dm.read("notes", created[0].id)
    dm.reader = ActorReader(dm)
    from_actor = await dm.batch_read("notes", ids)
    one_from_actor = await dm.read("notes", created[0].id)

    assert from_view == from_actor
    assert one_from_view == one_from_actor


async def test_the_records_view_is_there_once_started(tmp_path: Path) -> None:
    manager = DataManager.open(tmp_path / "data", async_projections=())

    with pytest.raises(ActorError, match="not started"):
        manager.projections.records  # noqa: B018 - the property raises
    with pytest.raises(RuntimeError, match="attached when the DataManager starts"):
        manager._views.view  # noqa: B018 - the same, one level down
