"""An execution's state, folded from the events of its own stream.

The execution actor and the status queries use the same fold, so what the
actor decides and what a query shows can never disagree.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, Literal

import msgspec

from actors._workflows._definition import WorkflowSpec
from actors._workflows._statemachine import StateMachine, Transition
from eventstore import (
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
)

__all__ = [
    "TERMINAL",
    "ExecutionState",
    "ExecutionStatus",
    "StepStatus",
    "fold_execution",
    "lifecycle_machine",
]

StepPhase = Literal["pending", "running", "succeeded", "failed", "skipped", "retrying"]
TERMINAL = frozenset({"completed", "failed", "cancelled"})


def lifecycle_machine(execution_id: str) -> StateMachine:
    """The lifecycle every execution follows."""
    live = ("running", "paused")
    return StateMachine(
        f"execution {execution_id}",
        "pending",
        [
            Transition("start", ("pending",), "running"),
            Transition("pause", ("running",), "paused"),
            Transition("resume", ("paused",), "running"),
            Transition("recover", live, "running"),
            Transition("cancel", ("pending", *live), "cancelled"),
            Transition("complete", ("running",), "completed"),
            Transition("fail", live, "failed"),
            Transition("reopen", ("failed",), "running"),
        ],
    )


class StepStatus(msgspec.Struct):
    """One step of an execution, as its events tell it."""

    name: str
    state: StepPhase = "pending"
    attempts: int = 0
    retries: int = 0
    output: Any = None
    error_type: str | None = None
    error: str | None = None
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    duration_s: float | None = None
    retry_delay_s: float = 0.0


class ExecutionStatus(msgspec.Struct):
    """An execution as its events tell it."""

    execution_id: str
    workflow: str
    definition_version: int
    state: str
    steps: dict[str, StepStatus]
    input: Any = None
    output: Any = None
    failed_step: str | None = None
    error_type: str | None = None
    error: str | None = None
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    events: int = 0


class ExecutionState:
    """The fold of one execution's stream; ``apply`` one event at a time."""

    def __init__(self, started: WorkflowStarted, at: dt.datetime, version: int) -> None:
        self.spec = WorkflowSpec.from_dict(started.definition)
        self.lifecycle = lifecycle_machine(started.execution_id)
        self.lifecycle.apply("start")
        self.status = ExecutionStatus(
            execution_id=started.execution_id,
            workflow=started.workflow,
            definition_version=started.definition_version,
            state="running",
            steps={step.name: StepStatus(step.name) for step in self.spec.steps},
            input=started.input,
            started_at=at,
            events=version,
        )

    @property
    def state(self) -> str:
        """The lifecycle state: running, paused, completed, failed, cancelled."""
        return self.lifecycle.state

    def step(self, name: str) -> StepStatus:
        """One step's status."""
        return self.status.steps[name]

    def apply(self, event: StoredEvent) -> None:
        """Fold one more event of the stream."""
        self.apply_data(event.data, event.recorded_at, event.version)

    def apply_data(self, data: Any, at: dt.datetime, version: int) -> None:  # noqa: C901 - one branch per event type
        """Fold one event given by its data, time and stream version."""
        self.status.events = version
        if isinstance(data, WorkflowStepStarted):
            step = self.step(data.step)
            step.state, step.attempts, step.started_at = "running", data.attempt, at
        elif isinstance(data, WorkflowStepSucceeded):
            step = self.step(data.step)
            step.state, step.output, step.ended_at = "succeeded", data.output, at
            step.duration_s, step.error_type, step.error = data.duration_s, None, None
        elif isinstance(data, WorkflowStepFailed):
            step = self.step(data.step)
            step.state, step.ended_at, step.duration_s = "failed", at, data.duration_s
            step.error_type, step.error = data.error_type, data.error
        elif isinstance(data, WorkflowStepRetried):
            step = self.step(data.step)
            step.state, step.retries, step.retry_delay_s = (
                "retrying",
                step.retries + 1,
                data.delay_s,
            )
        elif isinstance(data, WorkflowStepSkipped):
            step = self.step(data.step)
            step.state, step.output, step.ended_at = "skipped", data.output, at
        elif isinstance(data, WorkflowPaused):
            self.lifecycle.apply("pause")
        elif isinstance(data, WorkflowResumed):
            if self.state == "failed":
                self._reopen()
            else:
                self.lifecycle.apply("recover")
        elif isinstance(data, WorkflowCancelled):
            self.lifecycle.apply("cancel", data.reason)
            self.status.ended_at = at
        elif isinstance(data, WorkflowCompleted):
            self.lifecycle.apply("complete")
            self.status.output, self.status.ended_at = data.output, at
        elif isinstance(data, WorkflowFailed):
            self.lifecycle.apply("fail")
            self.status.failed_step = data.step
            self.status.error_type, self.status.error = data.error_type, data.error
            self.status.ended_at = at
        self.status.state = self.lifecycle.state

    def _reopen(self) -> None:
        self.lifecycle.apply("reopen")
        self.status.failed_step = self.status.error_type = self.status.error = None
        self.status.ended_at = None


def fold_execution(events: Iterable[StoredEvent]) -> ExecutionState | None:
    """Fold an execution's stream; ``None`` when it has no ``WorkflowStarted``."""
    state: ExecutionState | None = None
    for event in events:
        if state is None:
            if isinstance(event.data, WorkflowStarted):
                state = ExecutionState(event.data, event.recorded_at, event.version)
            continue
        state.apply(event)
    return state
