"""The event types the built-in projections fold: part of the log's format.

Records live in streams named ``records/<collection>/<id>``; workflow
executions in ``workflows/<execution id>``. Every type here is registered in
the default registry at schema version 1.
"""

from __future__ import annotations

from typing import Any

import msgspec

from eventstore._codec import register_event

__all__ = [
    "RECORD_STREAM_PREFIX",
    "WORKFLOW_STREAM_PREFIX",
    "RecordCreated",
    "RecordDeleted",
    "RecordUpdated",
    "WorkflowCancelled",
    "WorkflowCompleted",
    "WorkflowFailed",
    "WorkflowPaused",
    "WorkflowResumed",
    "WorkflowStarted",
    "WorkflowStepFailed",
    "WorkflowStepRetried",
    "WorkflowStepSkipped",
    "WorkflowStepStarted",
    "WorkflowStepSucceeded",
    "merge_patch",
    "parse_record_stream",
    "record_stream",
    "workflow_stream",
]

RECORD_STREAM_PREFIX = "records/"
WORKFLOW_STREAM_PREFIX = "workflows/"


def record_stream(collection: str, record_id: str) -> str:
    """The stream of one record."""
    return f"{RECORD_STREAM_PREFIX}{collection}/{record_id}"


def parse_record_stream(stream: str) -> tuple[str, str]:
    """The collection and id of a record stream.

    Raises:
        ValueError: If ``stream`` is not a record stream.

    """
    if not stream.startswith(RECORD_STREAM_PREFIX):
        raise ValueError(f"{stream!r} is not a record stream")
    collection, sep, record_id = stream[len(RECORD_STREAM_PREFIX) :].partition("/")
    if not sep or not collection or not record_id:
        raise ValueError(f"{stream!r} is not a record stream")
    return collection, record_id


def workflow_stream(execution_id: str) -> str:
    """The stream of one workflow execution."""
    return f"{WORKFLOW_STREAM_PREFIX}{execution_id}"


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply a JSON merge patch (RFC 7396) and return the result.

    Objects merge recursively, ``None`` removes a key, anything else
    replaces. Neither argument is changed.
    """
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@register_event("RecordCreated")
class RecordCreated(msgspec.Struct, frozen=True):
    """A record was created with ``data``."""

    collection: str
    id: str
    data: dict[str, Any]


@register_event("RecordUpdated")
class RecordUpdated(msgspec.Struct, frozen=True):
    """A record changed: ``changes`` is a merge patch, or the whole data."""

    collection: str
    id: str
    changes: dict[str, Any]
    replace: bool = False


@register_event("RecordDeleted")
class RecordDeleted(msgspec.Struct, frozen=True):
    """A record was deleted (a tombstone: its stream stays)."""

    collection: str
    id: str


@register_event("WorkflowStarted")
class WorkflowStarted(msgspec.Struct, frozen=True):
    """An execution of a workflow definition started."""

    execution_id: str
    workflow: str
    definition_version: int
    input: Any
    definition: dict[str, Any]


@register_event("WorkflowStepStarted")
class WorkflowStepStarted(msgspec.Struct, frozen=True):
    """A step's attempt started; the key lets its action be idempotent."""

    execution_id: str
    step: str
    attempt: int
    idempotency_key: str


@register_event("WorkflowStepSucceeded")
class WorkflowStepSucceeded(msgspec.Struct, frozen=True):
    """A step's attempt returned ``output``."""

    execution_id: str
    step: str
    attempt: int
    output: Any
    duration_s: float


@register_event("WorkflowStepFailed")
class WorkflowStepFailed(msgspec.Struct, frozen=True):
    """A step's attempt raised; ``will_retry`` says whether a retry follows."""

    execution_id: str
    step: str
    attempt: int
    error_type: str
    error: str
    duration_s: float
    will_retry: bool


@register_event("WorkflowStepRetried")
class WorkflowStepRetried(msgspec.Struct, frozen=True):
    """A failed step is tried again (by policy, or by hand if ``manual``)."""

    execution_id: str
    step: str
    attempt: int
    delay_s: float
    manual: bool = False


@register_event("WorkflowStepSkipped")
class WorkflowStepSkipped(msgspec.Struct, frozen=True):
    """A step was skipped (its condition was false, or by hand)."""

    execution_id: str
    step: str
    reason: str
    output: Any = None


@register_event("WorkflowPaused")
class WorkflowPaused(msgspec.Struct, frozen=True):
    """No new step starts until the execution is resumed."""

    execution_id: str


@register_event("WorkflowResumed")
class WorkflowResumed(msgspec.Struct, frozen=True):
    """A paused or interrupted execution goes on."""

    execution_id: str


@register_event("WorkflowCancelled")
class WorkflowCancelled(msgspec.Struct, frozen=True):
    """The execution ended cancelled."""

    execution_id: str
    reason: str = ""


@register_event("WorkflowCompleted")
class WorkflowCompleted(msgspec.Struct, frozen=True):
    """Every step succeeded or was skipped; ``output`` is the execution's."""

    execution_id: str
    output: Any = None


@register_event("WorkflowFailed")
class WorkflowFailed(msgspec.Struct, frozen=True):
    """A step failed for good; the execution stopped."""

    execution_id: str
    step: str
    error_type: str
    error: str
