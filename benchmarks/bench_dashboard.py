"""How fast the dashboard folds the log, against reading the log alone.

Prints events/s for a plain ``read_all`` (the baseline) and for
``read_all`` plus the dashboard's fold, and their ratio; then the cost of
one snapshot with many executions. Run: ``python benchmarks/bench_dashboard.py``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from actors._dashboard_fold import DashboardState, to_json
from eventstore import (
    LmdbEventStore,
    NewEvent,
    RecordCreated,
    WorkflowCompleted,
    WorkflowStarted,
    WorkflowStepStarted,
    WorkflowStepSucceeded,
    record_stream,
    workflow_stream,
)

EXECUTIONS = 10_000
RECORDS = 100_000
BATCH = 1_000


def fill(store: LmdbEventStore) -> int:
    events: list[NewEvent] = []
    for i in range(RECORDS):
        data = RecordCreated("users", str(i), {"name": f"user {i}", "n": i})
        events.append(NewEvent(record_stream("users", str(i)), "RecordCreated", data))
    for i in range(EXECUTIONS):
        eid = f"ex-{i}"
        stream = workflow_stream(eid)
        events += [
            NewEvent(
                stream, "WorkflowStarted", WorkflowStarted(eid, "signup", 1, {}, {})
            ),
            NewEvent(
                stream,
                "WorkflowStepStarted",
                WorkflowStepStarted(eid, "create", 1, "k"),
            ),
            NewEvent(
                stream,
                "WorkflowStepSucceeded",
                WorkflowStepSucceeded(eid, "create", 1, None, 0.01),
            ),
            NewEvent(stream, "WorkflowCompleted", WorkflowCompleted(eid)),
        ]
    for start in range(0, len(events), BATCH):
        store.append(events[start : start + BATCH])
    return len(events)


def best_of(runs: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        LmdbEventStore.open(Path(tmp) / "store", durability="fast") as store,
    ):
        total = fill(store)

        def read_only() -> None:
            for _ in store.read_all():
                pass

        def read_and_fold() -> None:
            state = DashboardState()
            subscription = store.subscribe(1)
            while batch := subscription.next_batch(0):
                state.apply(batch)

        base_s = best_of(3, read_only)
        fold_s = best_of(3, read_and_fold)
        state = DashboardState()
        state.apply(store.read_all())
        now_s = time.time()
        snapshot_s = best_of(5, lambda: to_json(state.snapshot(now_s)))

    print(f"events in the log:          {total:,}")
    print(f"read_all (baseline):        {total / base_s:,.0f} events/s")
    print(f"subscribe + fold:           {total / fold_s:,.0f} events/s")
    print(f"fold cost vs reading alone: {fold_s / base_s:.2f}x the time")
    print(
        f"one snapshot as JSON ({EXECUTIONS:,} executions): {snapshot_s * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()
