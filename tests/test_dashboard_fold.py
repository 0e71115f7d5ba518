"""The dashboard's fold of the log, event by event, with chosen timestamps."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import msgspec
import pytest

from actors._dashboard_fold import (
    DashboardState,
    fold_execution,
    metric_series,
    to_plain,
)
from eventstore import (
    EventMetadata,
    RecordCreated,
    StoredEvent,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowPaused,
    WorkflowResumed,
    WorkflowStarted,
    WorkflowStepFailed,
    WorkflowStepRetried,
    WorkflowStepSkipped,
    WorkflowStepStarted,
    WorkflowStepSucceeded,
    record_stream,
    workflow_stream,
)

T0 = 1_800_000_000.0


class Log:
    """Builds stored events with chosen commit times."""

    def __init__(self) -> None:
        self._positions = itertools.count(1)
        self._versions: dict[str, int] = {}

    def commit(self, at_s: float, *items: tuple[str, str, Any]) -> list[StoredEvent]:
        when = dt.datetime.fromtimestamp(at_s, dt.UTC)
        events = []
        for stream, type_, data in items:
            version = self._versions.get(stream, 0) + 1
            self._versions[stream] = version
            events.append(
                StoredEvent(
                    next(self._positions),
                    stream,
                    version,
                    type_,
                    data,
                    EventMetadata(),
                    when,
                )
            )
        return events


def record(collection: str, record_id: str) -> tuple[str, str, Any]:
    data = RecordCreated(collection, record_id, {"n": 1})
    return (record_stream(collection, record_id), "RecordCreated", data)


def wf(execution_id: str, data: msgspec.Struct) -> tuple[str, str, Any]:
    return (workflow_stream(execution_id), type(data).__name__, data)


def started(execution_id: str, workflow: str = "signup") -> tuple[str, str, Any]:
    definition = {"steps": [{"name": "validate"}, {"name": "create"}]}
    return wf(
        execution_id,
        WorkflowStarted(execution_id, workflow, 1, {"user": "ann"}, definition),
    )


def test_throughput_counts_events_per_second_by_type_and_collection() -> None:
    log = Log()
    state = DashboardState(window_s=10)

    state.apply(log.commit(T0, record("users", "1"), record("users", "2")))
    state.apply(log.commit(T0 + 0.5, record("orders", "1")))
    state.apply(log.commit(T0 + 3, started("e1")))
    snapshot = state.snapshot(T0 + 3.2)

    throughput = snapshot["throughput"]
    assert throughput["seconds"] == 10
    assert throughput["total"][-4:] == [3, 0, 0, 1]
    assert throughput["type_totals"] == {"RecordCreated": 3, "WorkflowStarted": 1}
    assert throughput["collection_totals"] == {
        "users": 2,
        "orders": 1,
        "workflows/": 1,
    }
    assert throughput["by_type"]["RecordCreated"][-4:] == [3, 0, 0, 0]
    assert snapshot["position"] == 4


def test_events_of_one_commit_count_as_one_commit_of_that_size() -> None:
    log = Log()
    state = DashboardState(window_s=5)

    state.apply(log.commit(T0, *(record("users", str(i)) for i in range(4))))
    state.apply(log.commit(T0 + 0.1, record("users", "x")))
    throughput = state.snapshot(T0)["throughput"]

    assert throughput["commits"][-1] == 2
    assert throughput["max_commit"][-1] == 4


def test_seconds_older_than_the_window_are_dropped() -> None:
    log = Log()
    state = DashboardState(window_s=5)
    state.apply(log.commit(T0, record("users", "1")))

    assert sum(state.snapshot(T0 + 4)["throughput"]["total"]) == 1
    assert sum(state.snapshot(T0 + 5)["throughput"]["total"]) == 0
    assert state.snapshot(T0 + 5)["throughput"]["type_totals"] == {}


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window_s must be >= 1, not 0"):
        DashboardState(window_s=0)


def test_step_latency_percentiles_per_second() -> None:
    log = Log()
    state = DashboardState(window_s=3)
    steps = [
        wf("e1", WorkflowStepSucceeded("e1", f"s{i}", 1, None, i / 100))
        for i in range(1, 101)
    ]

    state.apply(log.commit(T0, *steps))
    latency = state.snapshot(T0 + 1)["step_latency"]

    assert latency["p50"] == [None, 0.5, None]
    assert latency["p95"] == [None, 0.95, None]
    assert latency["p99"] == [None, 0.99, None]


def test_a_busy_second_keeps_a_bounded_sample_of_durations() -> None:
    log = Log()
    state = DashboardState(window_s=1)
    steps = [
        wf("e1", WorkflowStepSucceeded("e1", "s", 1, None, 1.0)) for _ in range(3000)
    ]

    state.apply(log.commit(T0, *steps))
    bucket = state._buckets[int(T0)]

    assert len(bucket.durations) == 1024
    assert bucket.steps_seen == 3000
    assert state.snapshot(T0)["step_latency"]["p99"] == [1.0]


def test_workflows_are_counted_by_state_as_they_move() -> None:
    log = Log()
    state = DashboardState()
    state.apply(log.commit(T0, started("a"), started("b"), started("c", "sync")))

    state.apply(log.commit(T0 + 1, wf("a", WorkflowCompleted("a", {"ok": True}))))
    state.apply(log.commit(T0 + 1, wf("b", WorkflowPaused("b"))))
    state.apply(log.commit(T0 + 2, wf("c", WorkflowCancelled("c", "by hand"))))
    workflows = state.snapshot(T0 + 2)["workflows"]

    assert workflows["by_state"] == {"completed": 1, "paused": 1, "cancelled": 1}
    assert workflows["by_workflow"] == {
        "signup": {"completed": 1, "paused": 1},
        "sync": {"cancelled": 1},
    }
    assert workflows["total"] == 3
    assert [e["execution_id"] for e in workflows["recent"]] == ["c", "b", "a"]
    assert workflows["recent"][0]["ended_at"] is not None
    assert workflows["recent"][1]["ended_at"] is None


def test_a_resumed_execution_runs_again() -> None:
    log = Log()
    state = DashboardState()
    state.apply(log.commit(T0, started("a"), wf("a", WorkflowPaused("a"))))

    state.apply(log.commit(T0 + 1, wf("a", WorkflowResumed("a"))))

    assert state.snapshot(T0 + 1)["workflows"]["by_state"] == {"running": 1}


def test_failures_become_recent_errors_and_a_manual_retry_revives() -> None:
    log = Log()
    state = DashboardState()
    failed = WorkflowStepFailed(
        "a", "create", 2, "TimeoutError", "slow db", 0.2, will_retry=False
    )
    state.apply(log.commit(T0, started("a"), wf("a", failed)))
    state.apply(
        log.commit(T0 + 1, wf("a", WorkflowFailed("a", "create", "TimeoutError", "x")))
    )

    before = state.snapshot(T0 + 1)
    state.apply(
        log.commit(
            T0 + 2, wf("a", WorkflowStepRetried("a", "create", 3, 0.0, manual=True))
        )
    )
    after = state.snapshot(T0 + 2)

    assert before["workflows"]["by_state"] == {"failed": 1}
    errors = before["errors"]
    assert [e["kind"] for e in errors] == ["execution", "step"]
    assert errors[1] | {"at": None} == {
        "position": 2,
        "at": None,
        "execution_id": "a",
        "workflow": "signup",
        "kind": "step",
        "step": "create",
        "attempt": 2,
        "error_type": "TimeoutError",
        "error": "slow db",
        "will_retry": False,
    }
    assert before["workflows"]["recent"][0]["failures"] == 1
    assert after["workflows"]["by_state"] == {"running": 1}
    assert after["workflows"]["recent"][0]["ended_at"] is None


def test_workflow_events_read_back_as_plain_dicts_fold_the_same() -> None:
    log = Log()
    state = DashboardState()
    data = {"execution_id": "a", "workflow": "signup", "definition_version": 1}

    state.apply(log.commit(T0, (workflow_stream("a"), "WorkflowStarted", data)))

    assert state.snapshot(T0)["workflows"]["by_workflow"] == {"signup": {"running": 1}}


def test_alerts_fire_and_resolve_by_name() -> None:
    log = Log()
    state = DashboardState()
    fired = {"name": "latency", "p95_s": 0.8}

    state.apply(log.commit(T0, ("alerts/latency", "AlertFired", fired)))
    state.apply(log.commit(T0 + 1, ("alerts/disk", "AlertFired", {"free": 0.1})))
    firing = state.snapshot(T0 + 1)["alerts"]
    state.apply(log.commit(T0 + 2, ("alerts/latency", "AlertResolved", {})))
    resolved = state.snapshot(T0 + 2)["alerts"]

    assert [a["name"] for a in firing["active"]] == ["latency", "disk"]
    assert firing["active"][0]["data"] == fired
    assert firing["active"][0]["fired"] == 1
    assert [a["name"] for a in resolved["active"]] == ["disk"]
    assert resolved["known"] == 2
    assert [(e["name"], e["type"]) for e in resolved["recent"]] == [
        ("latency", "AlertResolved"),
        ("disk", "AlertFired"),
        ("latency", "AlertFired"),
    ]


def test_fold_execution_lists_steps_with_state_attempts_and_errors() -> None:
    log = Log()
    events = [
        *log.commit(T0, started("a")),
        *log.commit(T0 + 1, wf("a", WorkflowStepStarted("a", "validate", 1, "k1"))),
        *log.commit(
            T0 + 2, wf("a", WorkflowStepSucceeded("a", "validate", 1, {"ok": 1}, 1.0))
        ),
        *log.commit(T0 + 2, wf("a", WorkflowStepStarted("a", "create", 1, "k2"))),
        *log.commit(
            T0 + 3,
            wf(
                "a",
                WorkflowStepFailed(
                    "a", "create", 1, "IOError", "disk", 0.5, will_retry=True
                ),
            ),
        ),
        *log.commit(T0 + 3, wf("a", WorkflowStepRetried("a", "create", 2, 0.1))),
        *log.commit(T0 + 4, wf("a", WorkflowStepStarted("a", "create", 2, "k3"))),
        *log.commit(
            T0 + 5,
            wf(
                "a",
                WorkflowStepFailed(
                    "a", "create", 2, "IOError", "disk", 0.5, will_retry=False
                ),
            ),
        ),
        *log.commit(T0 + 5, wf("a", WorkflowFailed("a", "create", "IOError", "disk"))),
    ]

    execution = fold_execution(events)

    assert execution is not None
    assert execution["execution_id"] == "a"
    assert execution["workflow"] == "signup"
    assert execution["state"] == "failed"
    assert execution["input"] == {"user": "ann"}
    assert execution["error"] == "IOError: disk"
    assert (
        execution["ended_at"] == dt.datetime.fromtimestamp(T0 + 5, dt.UTC).isoformat()
    )
    validate, create = execution["steps"]
    assert validate["state"] == "succeeded"
    assert validate["output"] == {"ok": 1}
    assert validate["duration_s"] == 1.0
    assert create["state"] == "failed"
    assert create["attempts"] == 2
    assert create["error"] == "IOError: disk"
    assert create["started_at"] == dt.datetime.fromtimestamp(T0 + 2, dt.UTC).isoformat()
    assert len(execution["history"]) == 9
    assert execution["history"][4]["type"] == "WorkflowStepFailed"


def test_fold_execution_shows_retrying_skipped_pending_and_completion() -> None:
    log = Log()
    definition: dict[str, Any] = {"steps": {"fetch": {}, "save": {}, "notify": {}}}
    events = [
        *log.commit(T0, wf("b", WorkflowStarted("b", "sync", 2, None, definition))),
        *log.commit(T0, wf("b", WorkflowStepStarted("b", "fetch", 1, "k"))),
        *log.commit(
            T0,
            wf(
                "b", WorkflowStepFailed("b", "fetch", 1, "E", "x", 0.1, will_retry=True)
            ),
        ),
        *log.commit(T0, wf("b", WorkflowStepSkipped("b", "save", "condition", 7))),
    ]

    running = fold_execution(events)
    events += log.commit(T0 + 1, wf("b", WorkflowCompleted("b", [1, 2])))
    done = fold_execution(events)

    assert running is not None
    assert done is not None
    assert [(s["step"], s["state"]) for s in running["steps"]] == [
        ("fetch", "retrying"),
        ("save", "skipped"),
        ("notify", "pending"),
    ]
    assert running["steps"][1]["reason"] == "condition"
    assert running["steps"][1]["output"] == 7
    assert running["state"] == "running"
    assert done["state"] == "completed"
    assert done["output"] == [1, 2]


def test_a_manual_retry_of_a_failed_execution_runs_it_again() -> None:
    log = Log()
    events = [
        *log.commit(T0, started("c")),
        *log.commit(T0, wf("c", WorkflowFailed("c", "create", "E", "x"))),
        *log.commit(
            T0 + 1, wf("c", WorkflowStepRetried("c", "create", 2, 0.0, manual=True))
        ),
    ]

    execution = fold_execution(events)

    assert execution is not None
    assert execution["state"] == "running"
    assert execution["ended_at"] is None


def test_fold_execution_of_an_empty_stream_is_none() -> None:
    assert fold_execution([]) is None


def test_a_definition_without_a_steps_list_adds_no_pending_steps() -> None:
    log = Log()
    data = WorkflowStarted("d", "w", 1, None, {"graph": "a->b"})

    execution = fold_execution(log.commit(T0, wf("d", data)))

    assert execution is not None
    assert execution["steps"] == []


def test_metric_series_are_found_at_any_depth_by_their_shape() -> None:
    snapshot = {
        "metrics": {
            "db.query": {"count": 3, "sum": 0.3, "p50": 0.1, "p95": 0.2, "tags": {}},
            "nested": {"http": {"count": 2, "max": 5, "p99": 4}},
        },
        "gauges": {"queue": {"count": 1}},
        "flag": {"count": 1, "p50": True},
        "logs": [{"count": 1, "p50": 2}],
    }

    series = metric_series(snapshot)

    assert series == {
        "metrics.db.query": {"count": 3.0, "sum": 0.3, "p50": 0.1, "p95": 0.2},
        "metrics.nested.http": {"count": 2.0, "max": 5.0, "p99": 4.0},
    }


def test_metric_series_stop_at_the_depth_limit() -> None:
    deep = {"a": {"b": {"c": {"count": 1, "p50": 1}}}}

    assert metric_series(deep, depth=2) == {}
    assert list(metric_series(deep, depth=3)) == ["a.b.c"]


def test_to_plain_turns_structs_and_datetimes_into_json_data() -> None:
    when = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)

    plain = to_plain({"event": RecordCreated("c", "1", {}), 3: when, "s": {1}})

    assert plain == {
        "event": {"collection": "c", "id": "1", "data": {}},
        "3": "2026-01-02T00:00:00Z",
        "s": [1],
    }
