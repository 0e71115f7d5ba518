import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from actors import (
    OperationNotSupportedError,
    PerformanceOptimizer,
    UnknownProfileError,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def optimizer(clock: Clock) -> AsyncIterator[PerformanceOptimizer]:
    made = PerformanceOptimizer(clock=clock)
    yield made
    await made.close_pools()


def test_profiles_time_runs_and_nest(optimizer: PerformanceOptimizer) -> None:
    optimizer.start_profile("import")
    optimizer.start_profile("import")
    inner = optimizer.end_profile("import")
    running = optimizer.get_profile("import")["running"]
    time.sleep(0.002)
    outer = optimizer.end_profile("import")

    profile = optimizer.get_profile("import")
    assert running == 1
    assert outer > inner
    assert profile["count"] == 2
    assert profile["running"] == 0
    assert profile["sum"] == pytest.approx(inner + outer)
    assert profile["max"] == outer


def test_the_profile_block_records_even_when_it_raises(
    optimizer: PerformanceOptimizer,
) -> None:
    with optimizer.profile("save"):
        pass
    with pytest.raises(OSError, match="disk"), optimizer.profile("save"):
        raise OSError("disk")

    assert optimizer.get_profile("save")["count"] == 2


def test_unknown_profiles_are_errors(optimizer: PerformanceOptimizer) -> None:
    with pytest.raises(UnknownProfileError, match="profile 'x' was not started"):
        optimizer.end_profile("x")
    with pytest.raises(UnknownProfileError, match="no profile named 'x'"):
        optimizer.get_profile("x")
    with pytest.raises(ValueError, match="window_size"):
        PerformanceOptimizer(window_size=0)


def test_metrics_are_aggregated(optimizer: PerformanceOptimizer) -> None:
    for value in (3, 1, 2):
        optimizer.record_metric("batch", value)

    stats = optimizer.get_metrics()["batch"]

    assert (stats["count"], stats["sum"], stats["min"], stats["max"]) == (3, 6, 1, 3)
    with pytest.raises(TypeError, match="'batch': value must be a number"):
        optimizer.record_metric("batch", None)  # type: ignore[arg-type]


async def test_caching_memoizes_and_shares_concurrent_calls(
    optimizer: PerformanceOptimizer,
) -> None:
    calls: list[str] = []

    async def fetch(user: str, *, fields: tuple[str, ...] = ()) -> str:
        calls.append(user + "".join(fields))
        await asyncio.sleep(0.01)
        return user.upper()

    cached = optimizer.enable_caching(fetch, ttl_s=30)
    together = await asyncio.wait_for(
        asyncio.gather(*(cached("ada") for _ in range(5))), timeout=5
    )
    again = await cached("ada")
    other = await cached("bob", fields=("a",))

    assert together == ["ADA"] * 5
    assert (again, other) == ("ADA", "BOB")
    assert calls == ["ada", "boba"]
    stats = optimizer.get_cache_stats(fetch)
    assert (stats["hits"], stats["misses"], stats["shared_loads"], stats["size"]) == (
        1,
        6,
        4,
        2,
    )
    assert (
        optimizer.get_profile(f"{fetch.__module__}.{fetch.__qualname__}")["count"] == 2
    )


async def test_cached_results_expire_and_can_be_cleared(
    optimizer: PerformanceOptimizer, clock: Clock
) -> None:
    calls = 0

    async def count() -> int:
        nonlocal calls
        calls += 1
        return calls

    cached = optimizer.enable_caching(count, ttl_s=10)
    first = await cached()
    clock.now += 11
    second = await cached()
    cleared = optimizer.clear_cache(cached)
    third = await cached()

    assert (first, second, third) == (1, 2, 3)
    assert cleared == 1
    assert optimizer.clear_cache() == 1


async def test_unhashable_arguments_are_keyed_by_their_encoding(
    optimizer: PerformanceOptimizer,
) -> None:
    calls = 0

    async def total(items: list[object]) -> int:
        nonlocal calls
        calls += 1
        return len(items)

    cached = optimizer.enable_caching(total)

    assert await cached([1, 2]) == 2
    assert await cached([1, 2]) == 2
    assert calls == 1
    with pytest.raises(TypeError, match="pass key="):
        await cached([object()])


async def test_a_key_function_decides_what_is_the_same_call(
    optimizer: PerformanceOptimizer,
) -> None:
    async def lookup(user: str, trace: str) -> str:
        return f"{user}/{trace}"

    cached = optimizer.enable_caching(lookup, key=lambda user, _: user)

    assert await cached("ada", "t1") == "ada/t1"
    assert await cached("ada", "t2") == "ada/t1"


async def test_disabled_caching_calls_through(optimizer: PerformanceOptimizer) -> None:
    calls = 0

    async def ping() -> int:
        nonlocal calls
        calls += 1
        return calls

    cached = optimizer.enable_caching(ping)
    await cached()
    optimizer.disable_caching(ping)
    await cached()
    await cached()

    assert calls == 3
    assert optimizer.get_cache_stats() == {}
    with pytest.raises(ValueError, match="caching is not enabled for"):
        optimizer.disable_caching(ping)
    with pytest.raises(ValueError, match="caching is not enabled for 'nothing'"):
        optimizer.get_cache_stats("nothing")


def test_only_async_operations_can_be_cached(optimizer: PerformanceOptimizer) -> None:
    def sync() -> int:
        return 1

    with pytest.raises(TypeError, match="not a coroutine function"):
        optimizer.enable_caching(sync)  # type: ignore[type-var]


async def test_optimizing_memory_drops_caches_and_idle_resources(
    optimizer: PerformanceOptimizer,
) -> None:
    async def blob(n: int) -> bytes:
        return b"x" * n

    cached = optimizer.enable_caching(blob)
    for n in (1000, 2000):
        await cached(n)
    await optimizer.create_pool("conns", list, min_size=0, max_size=2)
    lent = [await optimizer.get_from_pool("conns") for _ in range(2)]
    for resource in lent:
        await optimizer.return_to_pool("conns", resource)

    report = await optimizer.optimize_memory_usage()

    assert report["cache_entries"] == 2
    assert report["cache_bytes_freed"] > 3000
    assert report["idle_resources_closed"] == 2
    assert report["gc_objects_collected"] >= 0
    assert optimizer.get_cache_stats(blob)["size"] == 0


def test_unsupported_optimizations_say_what_to_do_instead(
    optimizer: PerformanceOptimizer,
) -> None:
    with pytest.raises(OperationNotSupportedError, match="enable_caching"):
        optimizer.optimize_operation(print)
    with pytest.raises(OperationNotSupportedError, match="create_pool"):
        optimizer.optimize_network_usage()


async def test_the_report_ranks_the_slowest_operations(
    optimizer: PerformanceOptimizer,
) -> None:
    with optimizer.profile("fast"):
        pass
    with optimizer.profile("slow"):
        await asyncio.sleep(0.005)
    optimizer.record_metric("rows", 10)
    await optimizer.create_pool("db", dict)

    report = optimizer.generate_report(slowest=1)

    assert [entry["name"] for entry in report["slowest"]] == ["slow"]
    assert set(report["profiles"]) == {"fast", "slow"}
    assert report["metrics"]["rows"]["sum"] == 10
    assert report["pools"]["db"]["size"] == 0
    assert report["caches"] == {}
