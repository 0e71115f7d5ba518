import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from actors import (
    PerformanceOptimizer,
    PoolExhaustedError,
    ResourcePool,
    UnknownPoolError,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Conn:
    made = 0

    def __init__(self) -> None:
        Conn.made += 1
        self.number = Conn.made
        self.closed = False
        self.healthy = True

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def optimizer(clock: Clock) -> AsyncIterator[PerformanceOptimizer]:
    made = PerformanceOptimizer(clock=clock)
    yield made
    await made.close_pools()


async def test_a_pool_is_filled_to_its_minimum_and_reuses_resources(
    optimizer: PerformanceOptimizer,
) -> None:
    await optimizer.create_pool("db", Conn, min_size=2, max_size=4, dispose=Conn.close)

    async with optimizer.get_from_pool("db") as first:
        during = optimizer.get_pool_stats("db")
    async with optimizer.get_from_pool("db") as second:
        pass

    assert first is second
    assert during["in_use"] == 1
    stats = optimizer.get_pool_stats("db")
    assert (stats["size"], stats["idle"], stats["created"], stats["acquired"]) == (
        2,
        2,
        2,
        2,
    )
    assert optimizer.get_pool_stats() == {"db": stats}


async def test_an_exhausted_pool_waits_for_a_return(
    optimizer: PerformanceOptimizer,
) -> None:
    await optimizer.create_pool("db", Conn, max_size=1)
    taken = await optimizer.get_from_pool("db")

    waiter = asyncio.ensure_future(
        optimizer.get_from_pool("db", timeout_s=5).__aenter__()
    )
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await optimizer.return_to_pool("db", taken)
    again = await asyncio.wait_for(waiter, timeout=5)

    assert again is taken
    assert optimizer.get_pool_stats("db")["waited"] == 1
    await optimizer.return_to_pool("db", again)


async def test_an_exhausted_pool_times_out_naming_the_pool(
    optimizer: PerformanceOptimizer,
) -> None:
    await optimizer.create_pool("api", Conn, max_size=1, acquire_timeout_s=0.05)
    taken = await optimizer.get_from_pool("api")

    with pytest.raises(PoolExhaustedError, match="pool 'api' exhausted: all 1"):
        await optimizer.get_from_pool("api")

    assert optimizer.get_pool_stats("api")["timeouts"] == 1
    await optimizer.return_to_pool("api", taken)


async def test_a_resource_broken_in_use_is_discarded_and_replaced(
    optimizer: PerformanceOptimizer,
) -> None:
    await optimizer.create_pool("db", Conn, max_size=1, dispose=Conn.close)

    with pytest.raises(ConnectionResetError):
        async with optimizer.get_from_pool("db") as broken:
            raise ConnectionResetError
    with pytest.raises(KeyError):
        async with optimizer.get_from_pool("db") as fresh:
            raise KeyError("app error, the resource is fine")
    async with optimizer.get_from_pool("db") as kept:
        pass

    assert broken.closed
    assert fresh is not broken
    assert kept is fresh
    stats = optimizer.get_pool_stats("db")
    assert (stats["broken"], stats["created"], stats["size"]) == (1, 2, 1)


async def test_resources_failing_or_raising_in_validation_are_replaced(
    optimizer: PerformanceOptimizer, caplog: pytest.LogCaptureFixture
) -> None:
    def validate(conn: Conn) -> bool:
        if conn.closed:
            raise RuntimeError("ping failed")
        return conn.healthy

    await optimizer.create_pool("db", Conn, min_size=1, max_size=1, validate=validate)
    async with optimizer.get_from_pool("db") as first:
        first.healthy = False
    async with optimizer.get_from_pool("db") as second:
        second.closed = True
    with caplog.at_level(logging.ERROR):
        async with optimizer.get_from_pool("db") as third:
            pass

    assert len({id(first), id(second), id(third)}) == 3
    assert third.healthy
    assert not third.closed
    assert optimizer.get_pool_stats("db")["broken"] == 2
    assert "validating a resource raised" in caplog.text


async def test_manual_checkout_and_return_and_bad_returns(
    optimizer: PerformanceOptimizer,
) -> None:
    await optimizer.create_pool("db", Conn)
    conn = await optimizer.get_from_pool("db")

    await optimizer.return_to_pool("db", conn, broken=True)

    with pytest.raises(ValueError, match="not lent by it"):
        await optimizer.return_to_pool("db", conn)
    with pytest.raises(UnknownPoolError, match="no pool named 'nope'"):
        optimizer.get_from_pool("nope")
    with pytest.raises(ValueError, match="pool 'db' exists already"):
        await optimizer.create_pool("db", Conn)
    assert optimizer.get_pool_stats("db")["size"] == 0


async def test_idle_resources_beyond_the_minimum_are_closed_after_the_timeout(
    optimizer: PerformanceOptimizer, clock: Clock
) -> None:
    await optimizer.create_pool(
        "db", Conn, min_size=1, max_size=3, idle_timeout_s=60, dispose=Conn.close
    )
    conns = [await optimizer.get_from_pool("db") for _ in range(3)]
    for conn in conns:
        await optimizer.return_to_pool("db", conn)
    assert optimizer.get_pool_stats("db")["size"] == 3

    clock.now += 61
    async with optimizer.get_from_pool("db"):
        pass

    stats = optimizer.get_pool_stats("db")
    assert (stats["size"], stats["disposed"]) == (1, 2)
    assert sum(conn.closed for conn in conns) == 2


async def test_a_failing_factory_frees_its_slot(
    optimizer: PerformanceOptimizer,
) -> None:
    attempts = 0

    async def flaky() -> Conn:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionRefusedError("no server")
        return Conn()

    await optimizer.create_pool("db", flaky, max_size=1)

    with pytest.raises(ConnectionRefusedError):
        await optimizer.get_from_pool("db")
    async with optimizer.get_from_pool("db", timeout_s=1) as conn:
        pass

    assert isinstance(conn, Conn)
    assert optimizer.get_pool_stats("db")["size"] == 1


async def test_a_cancelled_waiter_leaks_nothing(
    optimizer: PerformanceOptimizer,
) -> None:
    await optimizer.create_pool("db", Conn, max_size=1)
    held = await optimizer.get_from_pool("db")

    waiter = asyncio.ensure_future(
        optimizer.get_from_pool("db", timeout_s=5).__aenter__()
    )
    await asyncio.sleep(0.01)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    await optimizer.return_to_pool("db", held)

    async with optimizer.get_from_pool("db", timeout_s=1) as again:
        assert again is held


async def test_closing_disposes_idle_now_and_lent_on_return(
    caplog: pytest.LogCaptureFixture,
) -> None:
    disposed: list[Conn] = []

    async def dispose(conn: Conn) -> None:
        disposed.append(conn)
        if len(disposed) == 2:
            raise OSError("close failed")

    pool: ResourcePool[Conn] = ResourcePool("db", Conn, min_size=2, dispose=dispose)
    await pool.fill()
    lent = await pool.acquire()

    await pool.close()
    with caplog.at_level(logging.ERROR):
        await pool.release(lent)

    assert len(disposed) == 2
    assert disposed[-1] is lent
    assert "disposing of a resource failed" in caplog.text
    with pytest.raises(PoolExhaustedError, match="pool 'db' is closed"):
        await pool.acquire()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_size": 0}, "min_size <= max_size"),
        ({"min_size": 3, "max_size": 2}, "min_size <= max_size"),
        ({"idle_timeout_s": -1}, "timeouts must be >= 0"),
    ],
)
def test_bad_pool_options_are_refused(options: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ResourcePool("db", Conn, **options)  # type: ignore[arg-type]
