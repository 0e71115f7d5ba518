"""The ``workflows`` view: each execution's status and its steps.

One key per execution (its id) holds an :class:`Execution`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from eventstore import (
    StoredEvent,
    ViewReader,
    ViewTxn,
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
from projections._errors import HandlerError
from projections._fold import Folder, Projection
from projections._records import ViewSource
from projections._state import read_state, slot_table

__all__ = ["Execution", "StepState", "WorkflowsProjection", "WorkflowsView"]

NAME = "workflows"


class StepState(msgspec.Struct):
    """One step of an execution.

    Attributes:
        status: ``running``, ``succeeded``, ``failed``, ``retrying`` or
            ``skipped``.
        attempts: How many attempts started.
        error_type: The last error's type, if the last attempt failed.
        error: The last error's message.
        started_at: When the last attempt started (UTC).
        finished_at: When the step last finished (UTC).
        output: What the step returned (or its skip output).
        duration_s: How long the last attempt ran.
        idempotency_key: The last attempt's idempotency key.

    """

    status: str
    attempts: int = 0
    error_type: str | None = None
    error: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    output: Any = None
    duration_s: float | None = None
    idempotency_key: str | None = None


class Execution(msgspec.Struct):
    """One workflow execution, as its events tell it.

    Attributes:
        execution_id: Its id.
        workflow: The workflow's name.
        definition_version: The definition's version.
        status: ``running``, ``paused``, ``completed``, ``failed`` or
            ``cancelled``.
        input: The execution's input.
        definition: The definition it runs.
        steps: Each step's state, in the order steps first appeared.
        output: The execution's output, once completed.
        error: ``{"step", "error_type", "error"}`` once failed.
        reason: Why it was cancelled.
        started_at: When it started (UTC).
        updated_at: When its last event was recorded (UTC).
        finished_at: When it completed, failed or was cancelled (UTC).
        version: Its stream version.

    """

    execution_id: str
    workflow: str
    definition_version: int
    status: str
    input: Any
    definition: dict[str, Any]
    steps: dict[str, StepState] = msgspec.field(default_factory=dict)
    output: Any = None
    error: dict[str, Any] | None = None
    reason: str | None = None
    started_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    version: int = 0


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Execution).decode


class WorkflowsProjection(Projection):
    """Folds ``Workflow*`` events into one :class:`Execution` per execution."""

    name = NAME
    types = frozenset(
        {
            "WorkflowStarted",
            "WorkflowStepStarted",
            "WorkflowStepSucceeded",
            "WorkflowStepFailed",
            "WorkflowStepRetried",
            "WorkflowStepSkipped",
            "WorkflowPaused",
            "WorkflowResumed",
            "WorkflowCancelled",
            "WorkflowCompleted",
            "WorkflowFailed",
        }
    )

    def folder(self, reader: ViewReader, table: str) -> Folder:
        """A folder for one batch into ``table``."""
        del reader
        return _WorkflowsFolder(table)


class _WorkflowsFolder(Folder):
    def __init__(self, table: str) -> None:
        self._table = table

    def _load(self, txn: ViewTxn, execution_id: str, position: int) -> Execution:
        raw = txn.get(self._table, execution_id.encode())
        if raw is None:
            raise HandlerError(
                f"position {position}: execution {execution_id!r} has no "
                "WorkflowStarted"
            )
        return _decode(raw)

    def apply(self, txn: ViewTxn, event: StoredEvent) -> None:
        data = event.data
        at = event.recorded_at
        if isinstance(data, WorkflowStarted):
            execution = Execution(
                data.execution_id,
                data.workflow,
                data.definition_version,
                "running",
                data.input,
                data.definition,
                started_at=at,
            )
        else:
            execution_id = getattr(data, "execution_id", None)
            if not isinstance(execution_id, str):
                raise HandlerError(
                    f"position {event.position}: {event.type} data is not the "
                    f"registered struct ({type(data).__name__})"
                )
            execution = self._load(txn, execution_id, event.position)
            _change(execution, data, at)
        execution.updated_at = at
        execution.version = event.version
        txn.put(self._table, execution.execution_id.encode(), _encode(execution))


def _step(execution: Execution, name: str) -> StepState:
    step = execution.steps.get(name)
    if step is None:
        step = execution.steps[name] = StepState("pending")
    return step


def _change(execution: Execution, data: Any, at: dt.datetime) -> None:  # noqa: C901, PLR0915 - one branch per event type
    if isinstance(data, WorkflowStepStarted):
        step = _step(execution, data.step)
        step.status = "running"
        step.attempts = max(step.attempts, data.attempt)
        step.started_at = at
        step.finished_at = None
        step.idempotency_key = data.idempotency_key
    elif isinstance(data, WorkflowStepSucceeded):
        step = _step(execution, data.step)
        step.status = "succeeded"
        step.output = data.output
        step.duration_s = data.duration_s
        step.finished_at = at
        step.error_type = step.error = None
    elif isinstance(data, WorkflowStepFailed):
        step = _step(execution, data.step)
        step.status = "retrying" if data.will_retry else "failed"
        step.error_type = data.error_type
        step.error = data.error
        step.duration_s = data.duration_s
        step.finished_at = at
    elif isinstance(data, WorkflowStepRetried):
        step = _step(execution, data.step)
        step.status = "retrying"
        if data.manual and execution.status == "failed":
            execution.status = "running"
            execution.error = None
            execution.finished_at = None
    elif isinstance(data, WorkflowStepSkipped):
        step = _step(execution, data.step)
        step.status = "skipped"
        step.output = data.output
        step.error = data.reason
        step.finished_at = at
        if execution.status == "failed":
            execution.status = "running"
            execution.error = None
            execution.finished_at = None
    elif isinstance(data, WorkflowPaused):
        execution.status = "paused"
    elif isinstance(data, WorkflowResumed):
        execution.status = "running"
    elif isinstance(data, WorkflowCancelled):
        execution.status = "cancelled"
        execution.reason = data.reason
        execution.finished_at = at
    elif isinstance(data, WorkflowCompleted):
        execution.status = "completed"
        execution.output = data.output
        execution.finished_at = at
    elif isinstance(data, WorkflowFailed):
        execution.status = "failed"
        execution.error = {
            "step": data.step,
            "error_type": data.error_type,
            "error": data.error,
        }
        execution.finished_at = at


class WorkflowsView:
    """Reads of the ``workflows`` view.

    Args:
        source: A store (or a temporary view from :func:`replay`).

    """

    def __init__(self, source: ViewSource) -> None:
        self._source = source

    def get(self, execution_id: str) -> Execution | None:
        """The execution, or None if it never started."""
        with self._source.read_views() as reader:
            table = slot_table(NAME, read_state(reader, NAME).slot)
            raw = reader.get(table, execution_id.encode())
        return None if raw is None else _decode(raw)

    def list(self, *, status: str | None = None) -> list[Execution]:
        """Every execution (with ``status``, if given), by id."""
        with self._source.read_views() as reader:
            table = slot_table(NAME, read_state(reader, NAME).slot)
            found = [_decode(raw) for _, raw in reader.scan(table)]
        return [e for e in found if status is None or e.status == status]
