from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors import LeaseLostError, LeaseManager, LockTimeoutError
from actors._locks import LeaseAcquired, LeaseExpired, LeaseReleased, lease_stream
from eventstore import (
    LmdbEventStore,
    NewEvent,
    events_since,
    high_water_marks,
    record_stream,
)

START_MS = 1_800_000_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now_ms = START_MS

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LmdbEventStore]:
    with LmdbEventStore.open(tmp_path / "s", durability="fast") as opened:
        yield opened


def types_in(store: LmdbEventStore, stream: str) -> list[str]:
    return [e.type for e in store.read_stream(stream)]


async def test_a_lease_is_exclusive_and_recorded_in_the_log(
    store: LmdbEventStore,
) -> None:
    clock = FakeClock()
    alice = LeaseManager(store, owner="alice", wall_clock_ms=clock)
    bob = LeaseManager(store, owner="bob", wall_clock_ms=clock)

    async with alice.lock("users", "1", ttl_s=60) as lease:
        with pytest.raises(LockTimeoutError, match="held by 'alice'") as info:
            await bob.acquire("users", "1", timeout_s=0.1)
        held = bob.holder("users", "1")
    free = bob.holder("users", "1")

    assert lease.owner == "alice"
    assert lease.expires_at_ms == START_MS + 60_000
    assert held == lease
    assert free is None
    assert info.value.collection == "users"
    assert info.value.record_id == "1"
    assert "record '1' of collection 'users' is locked" in str(info.value)
    assert types_in(store, lease_stream("users", "1")) == [
        "LeaseAcquired",
        "LeaseReleased",
    ]


async def test_a_waiting_writer_gets_the_lease_when_it_is_released(
    store: LmdbEventStore,
) -> None:
    alice = LeaseManager(store, owner="alice")
    bob = LeaseManager(store, owner="bob")
    order: list[str] = []

    async def second() -> None:
        async with bob.lock("users", "1", timeout_s=10):
            order.append("bob")

    async with alice.lock("users", "1"):
        waiter = asyncio.ensure_future(second())
        await asyncio.sleep(0.05)
        order.append("alice")
    await asyncio.wait_for(waiter, 10)

    assert order == ["alice", "bob"]


async def test_leases_on_other_records_do_not_wait(store: LmdbEventStore) -> None:
    manager = LeaseManager(store)

    async with (
        manager.lock("users", "1") as one,
        manager.lock("users", "2") as two,
    ):
        assert one.lease_id != two.lease_id


async def test_an_expired_lease_is_released_and_recorded_as_an_event(
    store: LmdbEventStore,
) -> None:
    clock = FakeClock()
    crashed = LeaseManager(store, owner="crashed", wall_clock_ms=clock)
    bob = LeaseManager(store, owner="bob", wall_clock_ms=clock)
    stale = await crashed.acquire("users", "1", ttl_s=5)

    clock.now_ms += 5_001
    lease = await bob.acquire("users", "1", timeout_s=1)
    events = list(store.read_stream(lease_stream("users", "1")))

    assert [e.type for e in events] == [
        "LeaseAcquired",
        "LeaseExpired",
        "LeaseAcquired",
    ]
    expired = events[1].data
    assert isinstance(expired, LeaseExpired)
    assert (expired.owner, expired.lease_id) == ("crashed", stale.lease_id)
    assert expired.expired_at_ms == START_MS + 5_001
    assert lease.owner == "bob"
    with pytest.raises(LeaseLostError, match="expired and was released"):
        await crashed.release(stale)
    await bob.release(lease)


async def test_wait_writable_lets_the_holder_through_and_makes_others_wait(
    store: LmdbEventStore,
) -> None:
    clock = FakeClock()
    manager = LeaseManager(store, owner="alice", wall_clock_ms=clock)

    async def other_writer() -> None:
        await manager.wait_writable("users", "1", timeout_s=0.1)

    def elsewhere() -> asyncio.Task[None]:
        # A task started in a fresh context: tasks started inside the block
        # inherit its lease.
        loop = asyncio.get_running_loop()
        return loop.create_task(other_writer(), context=contextvars.Context())

    async with manager.lock("users", "1"):
        await manager.wait_writable("users", "1", timeout_s=0.1)
        with pytest.raises(LockTimeoutError):
            await asyncio.wait_for(elsewhere(), 5)
        clock.now_ms += 60_000
        await asyncio.wait_for(elsewhere(), 5)  # expired: writable again
        clock.now_ms -= 60_000
    await manager.wait_writable("users", "1", timeout_s=0.1)


async def test_lease_streams_are_never_replicated(store: LmdbEventStore) -> None:
    manager = LeaseManager(store)
    store.append(
        [
            NewEvent(
                record_stream("users", "1"),
                "RecordDeleted",
                {"collection": "users", "id": "1"},
            )
        ]
    )

    async with manager.lock("users", "1"):
        pass

    shipped = events_since(store, {})
    assert [e.stream for e in shipped] == [record_stream("users", "1")]
    assert sum(high_water_marks(store).values()) == 1


async def test_a_lease_needs_a_positive_ttl(store: LmdbEventStore) -> None:
    with pytest.raises(ValueError, match="ttl_s must be > 0"):
        await LeaseManager(store).acquire("users", "1", ttl_s=0)


def test_lease_events_are_plain_structs() -> None:
    acquired = LeaseAcquired("users", "1", "l", "o", 1.0, 5)
    released = LeaseReleased("users", "1", "l")

    assert acquired.expires_at_ms == 5
    assert released.lease_id == "l"


async def test_racing_writers_never_hold_one_record_together(
    store: LmdbEventStore,
) -> None:
    managers = [LeaseManager(store, owner=f"w{i}") for i in range(5)]
    inside: list[str] = []
    overlaps: list[list[str]] = []

    async def work(manager: LeaseManager) -> None:
        async with manager.lock("users", "1", timeout_s=15):
            inside.append(manager.owner)
            if len(inside) > 1:
                overlaps.append(list(inside))
            await asyncio.sleep(0.01)
            inside.remove(manager.owner)

    await asyncio.wait_for(asyncio.gather(*(work(m) for m in managers)), 30)

    assert overlaps == []
    assert types_in(store, lease_stream("users", "1")).count("LeaseAcquired") == 5
