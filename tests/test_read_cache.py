import asyncio
import datetime as dt
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from actors import DataManager
from actors._cached_reader import CachedReader
from actors._instrument import CommandMeter
from actors._monitoring import MonitoringSystem
from actors._records import Record
from eventstore import MemoryEventStore, NewEvent, RecordUpdated, record_stream


@pytest.fixture
async def dm(tmp_path: Path) -> AsyncIterator[DataManager]:
    manager = DataManager.open(tmp_path / "store", durability="fast")
    async with manager:
        manager.add_data_source("users")
        yield manager


async def test_a_read_after_a_write_is_never_stale_under_concurrent_writes(
    dm: DataManager,
) -> None:
    created = await dm.batch_create("users", [{"n": 0}] * 20)
    ids = [record.id for record in created]
    stale: list[tuple[str, int, int]] = []
    writing = True

    async def writer(record_id: str) -> None:
        for n in range(1, 20):
            written = await dm.update("users", record_id, {"n": n})
            found = await dm.read("users", record_id)
            assert found is not None
            if found.version < written.version:
                stale.append((record_id, written.version, found.version))

    async def reader(seed: int) -> None:
        rng = random.Random(seed)
        while writing:
            await dm.read("users", rng.choice(ids))
            await dm.batch_read("users", rng.sample(ids, 3))
            # A cache hit does not yield to the loop: give the writers a turn.
            await asyncio.sleep(0.001)

    readers = [asyncio.create_task(reader(seed)) for seed in range(10)]
    try:
        await asyncio.wait_for(
            asyncio.gather(*(writer(record_id) for record_id in ids)), 60
        )
    finally:
        writing = False
        await asyncio.wait_for(asyncio.gather(*readers), 10)

    assert stale == []
    cache = dm.read_cache
    assert cache is not None
    stats = cache.stats()
    assert stats.hits > 0
    assert stats.invalidations > 0


async def test_a_transaction_invalidates_the_records_it_writes(
    dm: DataManager,
) -> None:
    record = await dm.create("users", {"n": 1})
    assert (await dm.read("users", record.id)) == record

    async with dm.transaction() as tx:
        tx.update("users", record.id, {"n": 2})
    found = await dm.read("users", record.id)

    assert found is not None
    assert found.data == {"n": 2}


async def test_a_past_version_is_read_past_the_cache(dm: DataManager) -> None:
    record = await dm.create("users", {"n": 1})
    await dm.update("users", record.id, {"n": 2})

    first = await dm.read("users", record.id, as_of_version=1)

    assert first is not None
    assert first.data == {"n": 1}


class CountingReader:
    """A reader over a dict of records, counting what it is asked."""

    def __init__(self, records: dict[str, Record]) -> None:
        self.records = records
        self.asked: list[str] = []
        self.gate: asyncio.Event | None = None
        self.names: set[str] = set()

    async def read(
        self, name: str, record_id: str, *, as_of_version: int | None = None
    ) -> Record | None:
        self.names.add(name)
        self.asked.append(record_id if as_of_version is None else "past")
        found = self.records.get(record_id)
        if self.gate is not None:
            await self.gate.wait()
        return found

    async def batch_read(self, name: str, ids: Sequence[str]) -> list[Record | None]:
        self.names.add(name)
        self.asked.extend(ids)
        return [self.records.get(record_id) for record_id in ids]

    async def query(self, name: str, **options: Any) -> list[Record]:
        self.names.add(name)
        assert options["offset"] == 0
        return list(self.records.values())


AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def record(record_id: str, n: int) -> Record:
    return Record(id=record_id, version=n, data={"n": n}, created_at=AT, updated_at=AT)


@pytest.fixture
def store() -> MemoryEventStore:
    return MemoryEventStore()


def cached(
    store: MemoryEventStore, inner: CountingReader, **options: Any
) -> CachedReader:
    reader = CachedReader(inner, store, CommandMeter(MonitoringSystem()), **options)
    store.add_inline_projector(reader.invalidator)
    return reader


def touch(store: MemoryEventStore, record_id: str) -> None:
    data = RecordUpdated("users", record_id, {"n": 9})
    store.append([NewEvent(record_stream("users", record_id), "RecordUpdated", data)])


async def test_a_cached_record_is_served_until_the_log_touches_it(
    store: MemoryEventStore,
) -> None:
    inner = CountingReader({"u1": record("u1", 1)})
    reader = cached(store, inner)

    await reader.read("users", "u1")
    await reader.read("users", "u1")
    touch(store, "u1")
    await reader.read("users", "u1")

    assert inner.asked == ["u1", "u1"]


async def test_a_load_overtaken_by_a_commit_is_answered_but_not_cached(
    store: MemoryEventStore,
) -> None:
    inner = CountingReader({"u1": record("u1", 1)})
    reader = cached(store, inner)
    inner.gate = asyncio.Event()

    loading = asyncio.create_task(reader.read("users", "u1"))
    await asyncio.sleep(0)
    touch(store, "u1")
    inner.gate.set()
    old = await asyncio.wait_for(loading, 5)
    inner.gate = None
    await reader.read("users", "u1")

    assert old == record("u1", 1)
    assert inner.asked == ["u1", "u1"]


async def test_a_load_begun_between_a_fold_and_its_commit_is_not_cached(
    store: MemoryEventStore,
) -> None:
    inner = CountingReader({"u1": record("u1", 1)})
    reader = cached(store, inner)
    reader.folding = reader.generation()  # folded, not yet announced

    await reader.read("users", "u1")
    touch(store, "u1")  # the announcement moves the generation on
    await reader.read("users", "u1")
    await reader.read("users", "u1")

    assert inner.asked == ["u1", "u1"]


async def test_a_batch_read_asks_only_for_what_the_cache_lacks(
    store: MemoryEventStore,
) -> None:
    inner = CountingReader({"u1": record("u1", 1), "u2": record("u2", 2)})
    reader = cached(store, inner)
    await reader.read("users", "u1")

    found = await reader.batch_read("users", ["u1", "u2", "u3", "u2"])

    assert found == [record("u1", 1), record("u2", 2), None, record("u2", 2)]
    assert inner.asked == ["u1", "u2", "u3"]
    assert await reader.batch_read("users", ["u3", "u2"]) == [None, record("u2", 2)]
    assert inner.asked == ["u1", "u2", "u3"]


async def test_a_cache_of_size_zero_asks_the_inner_reader_every_time(
    store: MemoryEventStore,
) -> None:
    inner = CountingReader({"u1": record("u1", 1)})
    reader = cached(store, inner, max_size=0)

    await reader.read("users", "u1")
    await reader.read("users", "u1")
    await reader.batch_read("users", ["u1"])

    assert inner.asked == ["u1", "u1", "u1"]


async def test_a_failing_load_caches_nothing_and_is_counted(
    store: MemoryEventStore,
) -> None:
    monitoring = MonitoringSystem()
    inner = CountingReader({})

    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    reader = CachedReader(inner, store, CommandMeter(monitoring))
    inner.read = broken  # type: ignore[method-assign]
    inner.batch_read = broken  # type: ignore[method-assign]
    inner.query = broken  # type: ignore[method-assign]

    for call in (
        reader.read("users", "u1"),
        reader.batch_read("users", ["u1"]),
        reader.query("users"),
    ):
        with pytest.raises(RuntimeError):
            await call

    assert len(reader.cache) == 0
    errors = monitoring.get_metric("command.errors", {"collection": "users"})
    assert errors["sum"] == 3
