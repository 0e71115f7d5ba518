"""A workflow's metrics, folded from its executions' streams."""

from __future__ import annotations

import statistics

import msgspec

from actors._workflows._state import fold_execution
from eventstore import (
    WORKFLOW_STREAM_PREFIX,
    EventStore,
    WorkflowStarted,
    WorkflowStepFailed,
    WorkflowStepRetried,
    WorkflowStepSucceeded,
)

__all__ = ["WorkflowMetrics", "workflow_metrics"]


class WorkflowMetrics(msgspec.Struct, frozen=True):
    """How a workflow's executions went.

    Attributes:
        workflow: The workflow's name.
        executions: How many were started.
        by_state: Executions per state (running, paused, completed, ...).
        steps_succeeded: Step attempts that succeeded.
        steps_failed: Step attempts that failed (retried or not).
        retries: Retries, by policy or by hand.
        failure_rate: Failed executions over ended ones (0 when none ended).
        step_duration_p50_s: The median duration of a step attempt.
        step_duration_p95_s: The 95th percentile of a step attempt's duration.

    """

    workflow: str
    executions: int
    by_state: dict[str, int]
    steps_succeeded: int
    steps_failed: int
    retries: int
    failure_rate: float
    step_duration_p50_s: float | None
    step_duration_p95_s: float | None


def _quantile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def workflow_metrics(store: EventStore, name: str) -> WorkflowMetrics:
    """Fold every execution of workflow ``name`` (blocking: call off the loop)."""
    by_state: dict[str, int] = {}
    durations: list[float] = []
    succeeded = failed = retries = executions = 0
    for info in store.streams(prefix=WORKFLOW_STREAM_PREFIX):
        first = next(iter(store.read_stream(info.stream, to_version=1)), None)
        if first is None or not isinstance(first.data, WorkflowStarted):
            continue
        if first.data.workflow != name:
            continue
        events = list(store.read_stream(info.stream))
        state = fold_execution(events)
        if state is None:  # pragma: no cover - the first event was WorkflowStarted
            continue
        executions += 1
        by_state[state.state] = by_state.get(state.state, 0) + 1
        for event in events:
            data = event.data
            if isinstance(data, WorkflowStepSucceeded):
                succeeded += 1
                durations.append(data.duration_s)
            elif isinstance(data, WorkflowStepFailed):
                failed += 1
                durations.append(data.duration_s)
            elif isinstance(data, WorkflowStepRetried):
                retries += 1
    ended = sum(by_state.get(s, 0) for s in ("completed", "failed", "cancelled"))
    return WorkflowMetrics(
        workflow=name,
        executions=executions,
        by_state=by_state,
        steps_succeeded=succeeded,
        steps_failed=failed,
        retries=retries,
        failure_rate=by_state.get("failed", 0) / ended if ended else 0.0,
        step_duration_p50_s=_quantile(durations, 50),
        step_duration_p95_s=_quantile(durations, 95),
    )
