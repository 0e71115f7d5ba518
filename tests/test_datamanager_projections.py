"""The DataManager's supervised projections and its subscriptions."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _projection_helpers import run_workflow

from actors import ActorError, DataManager, RestartPolicy
from eventstore import NewEvent, StoredEvent, ViewReader, ViewTxn
from projections import (
    Folder,
    Projection,
    RecordsView,
    Subscriber,
    UnknownProjectionError,
)


@pytest.fixture
async def dm(tmp_path: Path) -> AsyncIterator[DataManager]:
    manager = DataManager.open(tmp_path / "data", durability="fast")
    manager.projections._poll_s = 0.05
    async with manager:
        manager.add_data_source("notes")
        yield manager


class _Counting(Folder):
    def __init__(self, owner: Counted, table: str) -> None:
        self._owner = owner
        self._table = table

    def apply(self, txn: ViewTxn, event: StoredEvent) -> None:
        key = str(event.position).encode()
        assert txn.get(self._table, key) is None, "folded twice"
        txn.put(self._table, key, b"")
        self._owner.folded.append(event.position)


class Counted(Projection):
    """Counts what it folds; its first ``failures`` batches fail outright."""

    name = "counted"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.folded: list[int] = []
        self.lock = threading.Lock()

    def folder(self, reader: ViewReader, table: str) -> Folder:
        del reader
        with self.lock:
            if self.failures:
                self.failures -= 1
                raise RuntimeError("the view's disk went away")
        return _Counting(self, table)


async def test_the_async_projections_follow_the_log(dm: DataManager) -> None:
    await dm.create("notes", {"n": 1}, id="n1")
    await asyncio.to_thread(run_workflow, dm.store, "e1", fail=False)

    await dm.projections.wait(timeout_s=10)
    statuses = await dm.projections.status()

    assert [s.name for s in statuses] == ["records", "streams", "workflows"]
    assert all(s.lag_events == 0 for s in statuses)
    assert dm.projections.streams.get("records/notes/n1") is not None
    execution = dm.projections.workflows.get("e1")
    assert execution is not None
    assert execution.status == "completed"
    assert dm.projections.records.get("notes", "n1") is not None
    assert dm.system.children == ["collections", "projections"]


async def test_a_failed_projection_actor_restarts_from_its_checkpoint(
    tmp_path: Path,
) -> None:
    counted = Counted(failures=2)
    policy = RestartPolicy(backoff_initial_s=0.001, jitter=0.0)
    manager = DataManager.open(tmp_path / "data", restart_policy=policy)
    manager.projections.add(counted, poll_s=0.02)
    async with manager:
        manager.add_data_source("notes")
        await manager.batch_create("notes", [{"n": i} for i in range(5)])
        for _ in range(3):
            await manager.create("notes", {"n": 0})

        await manager.projections.wait(["counted"], timeout_s=10)
        restarts = manager.projections.supervisor.restarts

    # The writer retries a failed batch job by job, so one fold may use
    # both failures: one restart or two.
    assert 1 <= restarts <= 2
    assert sorted(counted.folded) == list(range(1, 9))


async def test_rebuild_and_replay_through_the_manager(dm: DataManager) -> None:
    rec = await dm.create("notes", {"n": 1})
    await dm.update("notes", rec.id, {"n": 2})

    checkpoint = await dm.projections.rebuild("records")
    past = await dm.projections.replay(1, ["records"])
    everything = await dm.projections.replay(2)
    again = await dm.read("notes", rec.id)

    assert checkpoint == 2
    old = RecordsView(past).get("notes", rec.id)
    assert old is not None
    assert old.data == {"n": 1}
    assert RecordsView(everything).count("notes") == 1
    assert again is not None
    assert again.data == {"n": 2}


async def test_parked_events_are_listed_and_retried(dm: DataManager) -> None:
    from eventstore import RecordUpdated  # noqa: PLC0415

    ghost = RecordUpdated("notes", "ghost", {"a": 1})
    await dm.store.append_async(
        [NewEvent("records/notes/ghost", "RecordUpdated", ghost)]
    )

    parked = await dm.projections.parked("records")
    still = await dm.projections.retry_parked("records")

    assert [p.type for p in parked] == ["RecordUpdated"]
    assert [p.position for p in still] == [parked[0].position]


async def test_unknown_or_doubled_projections_are_refused(dm: DataManager) -> None:
    with pytest.raises(UnknownProjectionError, match="unknown projection 'nope'"):
        await dm.projections.status("nope")
    with pytest.raises(ActorError, match="runs already"):
        dm.projections.add(_named("streams"))
    with pytest.raises(ActorError, match="runs inline"):
        DataManager.in_memory(async_projections=("records",))


def _named(name: str) -> Projection:
    projection = Counted(0)
    projection.name = name
    return projection


async def _reached(subscriber: Subscriber, position: int) -> None:
    async def poll() -> None:
        while subscriber.position < position:  # noqa: ASYNC110 - a thread moves it
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), 10)


async def test_subscribe_delivers_matching_events_with_positions(
    dm: DataManager,
) -> None:
    seen: list[tuple[int, str]] = []
    later: list[int] = []
    done = asyncio.Event()

    def handler(event: StoredEvent) -> None:
        seen.append((event.position, event.type))

    async def async_handler(event: StoredEvent) -> None:
        later.append(event.position)
        if len(later) == 2:
            done.set()

    subscriber = dm.subscribe(
        "records/notes/", handler, types=["RecordUpdated", "Noted"]
    )
    rec = await dm.create("notes", {"n": 1})
    await dm.store.append_async([NewEvent("other/1", "Noted", {"x": 1})])
    await dm.update("notes", rec.id, {"n": 2})
    dm.subscribe("records/notes/*", async_handler, from_position=1)
    await asyncio.wait_for(done.wait(), 10)
    await _reached(subscriber, 3)
    await dm.unsubscribe(subscriber)

    assert seen == [(3, "RecordUpdated")]
    assert later[:2] == [1, 3]


async def test_a_failing_handler_is_retried_before_it_moves_on(
    dm: DataManager,
) -> None:
    calls: list[int] = []

    def flaky(event: StoredEvent) -> None:
        calls.append(event.position)
        if len(calls) == 1:
            raise RuntimeError("once")

    subscriber = dm.subscribe("records/", flaky, from_position=1)
    await dm.create("notes", {"n": 1})
    await _reached(subscriber, 1)

    assert calls == [1, 1]
    assert subscriber.failures == 1


async def test_subscribe_events_iterates_committed_events(dm: DataManager) -> None:
    first = await dm.create("notes", {"n": 1})
    await dm.create("notes", {"n": 2})

    got = [
        (event.position, event.data.id)
        async for event in dm.subscribe_events(
            "records/notes/", from_position=1, timeout_s=0.2
        )
    ]

    assert got[0] == (1, first.id)
    assert [position for position, _ in got] == [1, 2]


def test_a_fold_told_its_events_are_complete_reads_only_the_gap_before(
    tmp_path: Path,
) -> None:
    from eventstore import LmdbEventStore  # noqa: PLC0415
    from projections import WorkflowsProjection, WorkflowsView, fold_batch  # noqa: PLC0415

    with LmdbEventStore.open(tmp_path / "s", durability="fast") as store:
        run_workflow(store, "e1", fail=False)
        store.append([NewEvent("notes/1", "Noted", {"n": 1})])
        head = store.head_position()

        outcome = fold_batch(
            store, WorkflowsProjection(), [], seen_after=head - 1, through=head
        )
        execution = WorkflowsView(store).get("e1")

    assert outcome.checkpoint == head
    assert execution is not None
    assert execution.status == "completed"
