"""Appending vocabulary events directly, as the actors will."""

from __future__ import annotations

from typing import Any

from eventstore import (
    ANY,
    AppendResult,
    EventStore,
    NewEvent,
    RecordCreated,
    RecordDeleted,
    RecordUpdated,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
    WorkflowStepFailed,
    WorkflowStepRetried,
    WorkflowStepStarted,
    WorkflowStepSucceeded,
    record_stream,
    workflow_stream,
)


def create(
    store: EventStore, collection: str, record_id: str, data: dict[str, Any]
) -> AppendResult:
    stream = record_stream(collection, record_id)
    return store.append(
        [NewEvent(stream, "RecordCreated", RecordCreated(collection, record_id, data))]
    )


def update(
    store: EventStore,
    collection: str,
    record_id: str,
    changes: dict[str, Any],
    *,
    replace: bool = False,
) -> AppendResult:
    stream = record_stream(collection, record_id)
    event = RecordUpdated(collection, record_id, changes, replace)
    return store.append([NewEvent(stream, "RecordUpdated", event)])


def delete(store: EventStore, collection: str, record_id: str) -> AppendResult:
    stream = record_stream(collection, record_id)
    return store.append(
        [NewEvent(stream, "RecordDeleted", RecordDeleted(collection, record_id))],
        expected_versions={stream: ANY},
    )


def run_workflow(store: EventStore, execution_id: str, *, fail: bool) -> None:
    """An execution of two steps; the second fails (retried once) or succeeds."""
    stream = workflow_stream(execution_id)
    definition = {"steps": [{"name": "fetch"}, {"name": "save"}]}
    events: list[Any] = [
        WorkflowStarted(execution_id, "data-sync", 1, {"n": 1}, definition),
        WorkflowStepStarted(execution_id, "fetch", 1, f"{execution_id}:fetch:1"),
        WorkflowStepSucceeded(execution_id, "fetch", 1, [1, 2], 0.5),
        WorkflowStepStarted(execution_id, "save", 1, f"{execution_id}:save:1"),
        WorkflowStepFailed(
            execution_id, "save", 1, "IOError", "disk", 0.1, will_retry=True
        ),
        WorkflowStepRetried(execution_id, "save", 2, 0.2),
        WorkflowStepStarted(execution_id, "save", 2, f"{execution_id}:save:2"),
    ]
    if fail:
        events += [
            WorkflowStepFailed(
                execution_id, "save", 2, "IOError", "full", 0.1, will_retry=False
            ),
            WorkflowFailed(execution_id, "save", "IOError", "full"),
        ]
    else:
        events += [
            WorkflowStepSucceeded(execution_id, "save", 2, None, 0.3),
            WorkflowCompleted(execution_id, {"saved": 2}),
        ]
    store.append([NewEvent(stream, type(e).__name__, e) for e in events])
