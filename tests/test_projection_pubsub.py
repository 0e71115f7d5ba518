from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from _projection_helpers import create, run_workflow

from eventstore import LmdbEventStore, StoredEvent
from projections import stream_matches, subscribe, subscribe_async


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LmdbEventStore]:
    with LmdbEventStore.open(tmp_path / "store", durability="fast") as opened:
        yield opened


def test_patterns_are_prefixes_or_globs() -> None:
    assert stream_matches("records/users/", "records/users/u1")
    assert not stream_matches("records/users/", "records/items/i1")
    assert stream_matches("workflows/*", "workflows/e1")
    assert stream_matches("records/*/u?", "records/users/u1")
    assert not stream_matches("records/*/u?", "records/users/u12")


def test_a_subscriber_gets_matching_events_from_a_position(
    store: LmdbEventStore,
) -> None:
    create(store, "users", "u1", {"a": 1})
    create(store, "items", "i1", {"a": 1})
    seen: list[StoredEvent] = []
    done = threading.Event()

    def handle(event: StoredEvent) -> None:
        seen.append(event)
        if event.stream == "records/users/u2":
            done.set()

    with subscribe(store, "records/users/", handle, from_position=1) as subscriber:
        create(store, "users", "u2", {"a": 2})
        assert done.wait(10)

    assert [e.stream for e in seen] == ["records/users/u1", "records/users/u2"]
    assert subscriber.position == 3


def test_a_subscriber_filters_by_type_and_starts_after_the_head(
    store: LmdbEventStore,
) -> None:
    run_workflow(store, "old", fail=False)
    seen: list[str] = []
    done = threading.Event()

    def handle(event: StoredEvent) -> None:
        seen.append(event.stream)
        done.set()

    with subscribe(store, "workflows/*", handle, types={"WorkflowCompleted"}):
        run_workflow(store, "new", fail=False)
        assert done.wait(10)

    assert seen == ["workflows/new"]


def test_a_failing_handler_is_retried_then_skipped(store: LmdbEventStore) -> None:
    calls: list[int] = []
    delays: list[float] = []
    done = threading.Event()

    def handle(event: StoredEvent) -> None:
        calls.append(event.position)
        if event.position == 1:
            raise RuntimeError("boom")
        done.set()

    subscriber = subscribe(
        store, "records/", handle, from_position=1, backoff_s=0.5, sleep=delays.append
    )
    try:
        create(store, "users", "u1", {})
        create(store, "users", "u2", {})
        assert done.wait(10)
    finally:
        subscriber.close()

    assert calls == [1, 1, 1, 2]
    assert delays == [0.5, 1.0]
    assert subscriber.failures == 3


def test_subscribe_refuses_zero_attempts(store: LmdbEventStore) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        subscribe(store, "x", print, max_attempts=0)


async def test_the_async_iterator_yields_matching_events(
    store: LmdbEventStore,
) -> None:
    create(store, "users", "u1", {})
    create(store, "items", "i1", {})
    create(store, "users", "u2", {})

    async def collect() -> list[str]:
        return [
            event.stream
            async for event in subscribe_async(
                store, "records/users/", from_position=1, timeout_s=0.2
            )
        ]

    streams = await asyncio.wait_for(collect(), 10)

    assert streams == ["records/users/u1", "records/users/u2"]
