from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from _projection_helpers import create, run_workflow, update

from eventstore import (
    LmdbEventStore,
    NewEvent,
    StoredEvent,
    ViewReader,
    ViewTxn,
    WorkflowCancelled,
    WorkflowPaused,
    WorkflowResumed,
    WorkflowStepRetried,
    WorkflowStepSkipped,
    workflow_stream,
)
from projections import (
    Folder,
    HandlerError,
    InlineRunner,
    Projection,
    ProjectionActor,
    RecordsProjection,
    RecordsView,
    StreamsProjection,
    StreamsView,
    UnknownPositionError,
    UnknownProjectionError,
    WorkflowsProjection,
    WorkflowsView,
    builtin_projections,
    catch_up,
    fold,
    fold_batch,
    parked_events,
    projection_named,
    rebuild,
    replay,
    reset,
    retry_parked,
    status,
    wait_for_checkpoint,
)
from projections._fold import Overlay
from projections._state import read_state, slot_table


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LmdbEventStore]:
    with LmdbEventStore.open(tmp_path / "store", durability="fast") as opened:
        yield opened


class Flaky(Projection):
    """Counts ``Tick`` events; refuses ticks whose ``n`` is in ``refuse``."""

    name = "ticks"
    types = frozenset({"Tick"})

    def __init__(self, refuse: set[int]) -> None:
        self.refuse = refuse
        self.calls = 0

    def folder(self, reader: ViewReader, table: str) -> Folder:
        del reader
        return _TickFolder(self, table)


class _TickFolder(Folder):
    def __init__(self, owner: Flaky, table: str) -> None:
        self.owner = owner
        self.table = table

    def apply(self, txn: ViewTxn, event: StoredEvent) -> None:
        self.owner.calls += 1
        n = event.data["n"]
        txn.put(self.table, b"half", str(n).encode())
        if n in self.owner.refuse:
            raise HandlerError(f"tick {n} refused")
        raw = txn.get(self.table, b"sum")
        total = int(raw or b"0") + n
        txn.put(self.table, b"sum", str(total).encode())


def _ticks(store: LmdbEventStore, *numbers: int) -> None:
    store.append([NewEvent("ticks/1", "Tick", {"n": n}) for n in numbers])


def _sum(store: LmdbEventStore) -> int:
    with store.read_views() as reader:
        raw = reader.get(slot_table("ticks", read_state(reader, "ticks").slot), b"sum")
    return int(raw or b"0")


def test_the_actor_folds_new_events_and_resumes_after_a_restart(
    store: LmdbEventStore,
) -> None:
    projection = Flaky(set())
    _ticks(store, 1, 2)
    ref = ProjectionActor.start(store, projection, poll_s=0.05)
    try:
        wait_for_checkpoint(store, "ticks", 2, timeout_s=10)
        _ticks(store, 3)
        wait_for_checkpoint(store, "ticks", 3, timeout_s=10)
    finally:
        ref.stop()
    _ticks(store, 4)

    again = ProjectionActor.start(store, projection, poll_s=0.05)
    try:
        wait_for_checkpoint(store, "ticks", 4, timeout_s=10)
    finally:
        again.stop()

    assert _sum(store) == 10


def test_a_failing_event_is_retried_with_backoff_then_parked(
    store: LmdbEventStore,
) -> None:
    projection = Flaky({2})
    delays: list[float] = []
    _ticks(store, 1, 2, 3)

    ref = ProjectionActor.start(
        store,
        projection,
        poll_s=0.05,
        max_attempts=3,
        backoff_s=0.5,
        sleep=delays.append,
    )
    try:
        wait_for_checkpoint(store, "ticks", 3, timeout_s=10)
    finally:
        ref.stop()

    assert delays == [0.5, 1.0]
    assert _sum(store) == 4
    with store.read_views() as reader:
        parked = parked_events(reader, "ticks")
        half = reader.get(slot_table("ticks", 0), b"half")
    assert [(p.position, p.attempts) for p in parked] == [(2, 3)]
    assert parked[0].error == "HandlerError: tick 2 refused"
    assert half == b"3"
    found = status(store, "ticks")
    assert found.parked == 1
    assert found.last_error == "HandlerError: tick 2 refused"


def test_retrying_parked_events_folds_those_that_now_succeed(
    store: LmdbEventStore,
) -> None:
    projection = Flaky({2, 3})
    _ticks(store, 1, 2, 3)
    fold_batch(store, projection, list(store.read_all()))

    projection.refuse = {3}
    still = retry_parked(store, projection)

    assert [(p.position, p.attempts) for p in still] == [(3, 2)]
    assert _sum(store) == 3
    projection.refuse = set()
    assert retry_parked(store, projection) == []
    assert _sum(store) == 6
    assert status(store, "ticks").last_error is None


def test_the_actor_refuses_a_bad_setting_and_unknown_messages(
    store: LmdbEventStore,
) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        ProjectionActor(store, Flaky(set()), max_attempts=0)
    actor = ProjectionActor(store, Flaky(set()))
    with pytest.raises(ValueError, match="unknown message"):
        actor.on_receive("dance")


def test_a_fold_skips_events_already_folded_and_fills_gaps(
    store: LmdbEventStore,
) -> None:
    projection = Flaky(set())
    _ticks(store, 1, 2, 3, 4)
    events = list(store.read_all())

    fold_batch(store, projection, events[:2])
    fold_batch(store, projection, events[:2])
    fold_batch(store, projection, events[3:])

    assert _sum(store) == 10
    assert status(store, "ticks").checkpoint == 4


def test_a_fold_can_stop_at_a_position(store: LmdbEventStore) -> None:
    projection = Flaky(set())
    _ticks(store, 1, 2, 3)
    events = list(store.read_all())

    outcome = store.write_views(
        lambda txn: fold(
            txn, projection, events, registry=store.registry, to_position=2
        )
    )

    assert outcome.checkpoint == 2
    assert _sum(store) == 3


def test_rebuild_swaps_in_a_fresh_view_only_when_caught_up(
    store: LmdbEventStore,
) -> None:
    for n in range(30):
        create(store, "c", f"r{n:02}", {"n": n})
    runner = InlineRunner(store, RecordsProjection()).attach()
    seen: list[int] = []

    def progress(position: int, head: int) -> None:
        seen.append(RecordsView(store).count("c"))
        update(store, "c", "r00", {"n": 100 + position})
        assert position <= head

    checkpoint = rebuild(store, RecordsProjection(), batch_size=7, progress=progress)
    runner.detach()

    assert seen == [30] * len(seen)
    assert len(seen) >= 3
    record = RecordsView(store).get("c", "r00")
    assert record is not None
    assert checkpoint == store.head_position()
    assert record.data["n"] == 100 + 28
    with store.read_views() as reader:
        state = read_state(reader, "records")
    assert state.slot == 1
    assert not state.building


def test_rebuild_parks_failing_events_and_drops_old_parkings(
    store: LmdbEventStore,
) -> None:
    projection = Flaky({2})
    _ticks(store, 1, 2, 3)
    catch_up(store, projection)

    projection.refuse = {3}
    rebuild(store, projection)

    with store.read_views() as reader:
        parked = parked_events(reader, "ticks")
    assert [(p.position, p.slot) for p in parked] == [(3, 1)]
    assert _sum(store) == 3


def test_reset_empties_the_view_and_its_checkpoint(store: LmdbEventStore) -> None:
    projection = Flaky({1})
    _ticks(store, 1, 2)
    catch_up(store, projection)

    reset(store, "ticks")

    assert _sum(store) == 0
    assert status(store, "ticks").checkpoint == 0
    assert status(store, "ticks").parked == 0
    assert catch_up(store, Flaky(set())) == 2
    assert _sum(store) == 3


def test_replay_folds_up_to_a_position_without_touching_the_live_view(
    store: LmdbEventStore,
) -> None:
    create(store, "c", "a", {"v": 1})
    update(store, "c", "a", {"v": 2})
    run_workflow(store, "e1", fail=False)
    catch_up(store, RecordsProjection())

    past = replay(store, builtin_projections().values(), to_position=1)
    whole = replay(store, builtin_projections().values(), to_position=5)

    old = RecordsView(past).get("c", "a")
    assert old is not None
    assert old.data == {"v": 1}
    live = RecordsView(store).get("c", "a")
    assert live is not None
    assert live.data == {"v": 2}
    running = WorkflowsView(whole).get("e1")
    assert running is not None
    assert running.status == "running"
    assert StreamsView(whole).get("c") is None
    with pytest.raises(UnknownPositionError, match="head is 11"):
        replay(store, [RecordsProjection()], to_position=12)


def test_status_reports_the_lag_in_events_and_seconds(store: LmdbEventStore) -> None:
    _ticks(store, 1, 2, 3)
    fold_batch(store, Flaky(set()), list(store.read_all(to_position=1)))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)

    found = status(store, "ticks", now=later)

    assert (found.checkpoint, found.head, found.lag_events) == (1, 3, 2)
    assert 29 < found.lag_s < 60
    assert found.events_per_s > 0


def test_waiting_for_a_checkpoint_times_out(store: LmdbEventStore) -> None:
    _ticks(store, 1)

    with pytest.raises(TimeoutError, match="at 0, not 1"):
        wait_for_checkpoint(store, "ticks", 1, timeout_s=0.05)


def test_projections_are_found_by_name() -> None:
    assert projection_named("records").name == "records"
    assert sorted(builtin_projections()) == ["records", "streams", "workflows"]
    with pytest.raises(UnknownProjectionError, match="unknown projection 'nope'"):
        projection_named("nope")


def test_the_workflows_view_tells_each_execution_and_its_steps(
    store: LmdbEventStore,
) -> None:
    run_workflow(store, "e1", fail=True)
    run_workflow(store, "e2", fail=False)
    catch_up(store, WorkflowsProjection())
    view = WorkflowsView(store)

    failed = view.get("e1")
    done = view.get("e2")

    assert failed is not None
    assert done is not None
    assert failed.status == "failed"
    assert failed.error == {"step": "save", "error_type": "IOError", "error": "full"}
    assert failed.steps["save"].status == "failed"
    assert failed.steps["save"].attempts == 2
    assert failed.steps["fetch"].output == [1, 2]
    assert done.status == "completed"
    assert done.output == {"saved": 2}
    assert done.finished_at is not None
    assert [e.execution_id for e in view.list(status="failed")] == ["e1"]
    assert len(view.list()) == 2
    assert view.get("nope") is None


def test_workflow_controls_change_the_execution_status(store: LmdbEventStore) -> None:
    run_workflow(store, "e1", fail=True)
    events = [
        WorkflowStepRetried("e1", "save", 3, 0.0, manual=True),
        WorkflowPaused("e1"),
        WorkflowResumed("e1"),
        WorkflowStepSkipped("e1", "save", "by hand", {"o": 1}),
        WorkflowCancelled("e1", "enough"),
    ]
    statuses = []
    for event in events:
        store.append([NewEvent(workflow_stream("e1"), type(event).__name__, event)])
        catch_up(store, WorkflowsProjection())
        execution = WorkflowsView(store).get("e1")
        assert execution is not None
        statuses.append(execution.status)

    assert statuses == ["running", "paused", "running", "running", "cancelled"]
    final = WorkflowsView(store).get("e1")
    assert final is not None
    assert final.steps["save"].status == "skipped"
    assert final.reason == "enough"


def test_a_workflow_event_without_a_start_is_parked(store: LmdbEventStore) -> None:
    store.append(
        [NewEvent(workflow_stream("x"), "WorkflowPaused", WorkflowPaused("x"))]
    )

    catch_up(store, WorkflowsProjection())

    with store.read_views() as reader:
        parked = parked_events(reader, "workflows")
    assert [p.position for p in parked] == [1]
    assert "no WorkflowStarted" in parked[0].error


def test_the_streams_view_counts_events_by_type(store: LmdbEventStore) -> None:
    create(store, "c", "a", {"v": 1})
    update(store, "c", "a", {"v": 2})
    update(store, "c", "a", {"v": 3})
    run_workflow(store, "e1", fail=False)
    catch_up(store, StreamsProjection())

    found = StreamsView(store).get("records/c/a")

    assert found is not None
    assert found.counts == {"RecordCreated": 1, "RecordUpdated": 2}
    assert (found.version, found.first_position, found.last_position) == (3, 1, 3)
    assert [s.stream for s in StreamsView(store).list(prefix="work")] == [
        "workflows/e1"
    ]
    assert len(StreamsView(store).list()) == 2


def test_an_overlay_reads_its_own_writes_and_flushes_them(
    store: LmdbEventStore,
) -> None:
    def work(txn: ViewTxn) -> list[tuple[bytes, bytes]]:
        txn.put("view:t", b"a", b"1")
        txn.put("view:t", b"b", b"2")
        overlay = Overlay(txn)
        overlay.put("view:t", b"c", b"3")
        overlay.put("view:u", b"z", b"9")
        assert overlay.delete("view:t", b"a")
        assert not overlay.delete("view:t", b"nope")
        assert overlay.get("view:t", b"a") is None
        assert overlay.get("view:t", b"b") == b"2"
        seen = list(overlay.scan("view:t", b"b"))
        with pytest.raises(HandlerError, match="not supported"):
            overlay.drop("view:t")
        overlay.flush()
        return seen

    seen = store.write_views(work)

    assert seen == [(b"b", b"2"), (b"c", b"3")]
    with store.read_views() as reader:
        assert list(reader.scan("view:t")) == [(b"b", b"2"), (b"c", b"3")]
