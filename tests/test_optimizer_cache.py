import asyncio
from pathlib import Path

import pytest

from actors import BoundedCache
from eventstore import (
    LmdbEventStore,
    NewEvent,
    RecordCreated,
    RecordUpdated,
    merge_patch,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_least_recently_used_entry_is_evicted_first() -> None:
    cache: BoundedCache[str, int] = BoundedCache(max_size=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1

    cache.put("c", 3)

    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == (1, 3)
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.evictions, stats.size) == (3, 1, 1, 2)
    assert len(cache) == 2


def test_entries_expire_after_their_lifetime() -> None:
    clock = Clock()
    cache: BoundedCache[str, int] = BoundedCache(ttl_s=10, clock=clock)
    cache.put("a", 1)

    clock.now += 10
    fresh = cache.get("a")
    clock.now += 0.5
    expired = cache.get("a", -1)

    assert (fresh, expired) == (1, -1)
    assert cache.stats().expirations == 1
    assert len(cache) == 0


def test_invalidation_drops_named_keys_or_everything() -> None:
    cache: BoundedCache[str, int] = BoundedCache()
    for key in "abcd":
        cache.put(key, 1)

    assert cache.invalidate("a")
    assert not cache.invalidate("a")
    assert cache.invalidate_many(["b", "x"]) == 1
    assert cache.clear() == 2
    assert cache.stats().invalidations == 4
    assert cache.size_bytes() == 0


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="max_size must be >= 1"):
        BoundedCache(max_size=0)
    with pytest.raises(ValueError, match="ttl_s must be > 0"):
        BoundedCache(ttl_s=0)


async def test_concurrent_loads_of_one_key_share_one_call() -> None:
    cache: BoundedCache[str, int] = BoundedCache()
    calls = 0
    gate = asyncio.Event()

    async def load() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return 42

    waiters = [asyncio.ensure_future(cache.get_or_load("k", load)) for _ in range(10)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.wait_for(asyncio.gather(*waiters), timeout=5)

    assert results == [42] * 10
    assert calls == 1
    assert cache.stats().shared_loads == 9
    assert await cache.get_or_load("k", load) == 42
    assert calls == 1


async def test_a_load_spoiled_by_a_write_is_returned_but_never_stored() -> None:
    cache: BoundedCache[str, str] = BoundedCache()
    backing = {"u1": "old"}
    read_done = asyncio.Event()
    may_return = asyncio.Event()

    async def load() -> str:
        value = backing["u1"]
        read_done.set()
        await may_return.wait()
        return value

    reader = asyncio.ensure_future(cache.get_or_load("u1", load))
    await asyncio.wait_for(read_done.wait(), timeout=5)
    backing["u1"] = "new"
    cache.invalidate("u1")
    may_return.set()
    seen_by_reader = await asyncio.wait_for(reader, timeout=5)

    async def reload() -> str:
        return backing["u1"]

    assert seen_by_reader == "old"
    assert cache.get("u1") is None
    assert await cache.get_or_load("u1", reload) == "new"


async def test_a_failed_load_reaches_every_waiter_and_caches_nothing() -> None:
    cache: BoundedCache[str, int] = BoundedCache()
    gate = asyncio.Event()

    async def fail() -> int:
        await gate.wait()
        raise ConnectionError("down")

    waiters = [asyncio.ensure_future(cache.get_or_load("k", fail)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)

    assert all(isinstance(result, ConnectionError) for result in results)
    assert len(cache) == 0


async def test_a_cancelled_waiter_does_not_cancel_the_shared_load() -> None:
    cache: BoundedCache[str, int] = BoundedCache()
    gate = asyncio.Event()

    async def load() -> int:
        await gate.wait()
        return 7

    first = asyncio.ensure_future(cache.get_or_load("k", load))
    second = asyncio.ensure_future(cache.get_or_load("k", load))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()

    assert await asyncio.wait_for(second, timeout=5) == 7
    assert first.cancelled()
    assert cache.get("k") == 7


async def test_a_cache_invalidated_by_the_log_is_never_stale_after_a_write(
    tmp_path: Path,
) -> None:
    cache: BoundedCache[str, dict[str, object]] = BoundedCache()
    stream = "records/users/u1"

    def fold() -> dict[str, object]:
        state: dict[str, object] = {}
        for event in store.read_stream(stream):
            change = event.data
            if isinstance(change, RecordCreated):
                state = dict(change.data)
            elif isinstance(change, RecordUpdated):
                state = merge_patch(state, change.changes)
        return state

    async def read() -> dict[str, object]:
        async def load() -> dict[str, object]:
            return await asyncio.to_thread(fold)

        return await cache.get_or_load(stream, load)

    async def write(data: RecordCreated | RecordUpdated) -> None:
        await store.append_async([NewEvent(stream, type(data).__name__, data)])
        cache.invalidate(stream)

    with LmdbEventStore.open(tmp_path / "store") as store:
        await write(RecordCreated("users", "u1", {"name": "Ada"}))
        first = await read()
        await write(RecordUpdated("users", "u1", {"name": "Grace"}))
        second = await read()
        third = await read()

    assert first == {"name": "Ada"}
    assert second == third == {"name": "Grace"}
    assert cache.stats().hits == 1
