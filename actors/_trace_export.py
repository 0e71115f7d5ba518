"""Recorded history as OpenTelemetry spans: executions and record streams.

A workflow execution's events (stream ``workflows/<id>``) become one root
span for the execution and one child span per step attempt, whose start and
end times are the times the log recorded (``StoredEvent.recorded_at``).
Trace and span ids are derived by hashing the store's replica id, the
execution id, the step and the attempt, so exporting the same history twice
gives the same ids and a collector deduplicates them. The trace that
started the execution (its ``traceparent``) becomes a link.

This module needs the OpenTelemetry SDK (the ``otel`` extra).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from actors._observability_errors import TraceExportError
from actors._trace_jsonl import make_exporter
from actors._tracing import MESSAGING_SYSTEM, link_to
from eventstore import EventStore, StoredEvent, workflow_stream

__all__ = [
    "execution_spans",
    "export_spans",
    "span_id_for",
    "stream_spans",
    "trace_id_for",
]

_SCOPE = InstrumentationScope("actorlog.trace_export")
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_TERMINAL = {"WorkflowCompleted", "WorkflowFailed", "WorkflowCancelled"}
_MARKS = {"WorkflowPaused", "WorkflowResumed", "WorkflowStepRetried"}


def _hash_id(size_bytes: int, *parts: str) -> int:
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:size_bytes], "big") or 1


def trace_id_for(replica_id: str, kind: str, name: str) -> int:
    """The trace id of an execution (``kind="workflow"``) or a stream."""
    return _hash_id(16, replica_id, kind, name)


def span_id_for(replica_id: str, *parts: str) -> int:
    """The span id derived from the replica id and ``parts``."""
    return _hash_id(8, replica_id, *parts)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def _ns(when: dt.datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return (when - _EPOCH) // _MICROSECOND * 1_000


def _get(data: Any, name: str, default: Any = None) -> Any:
    if isinstance(data, dict):
        return data.get(name, default)
    return getattr(data, name, default)


def _replica_id(store: EventStore, replica_id: str | None) -> str:
    if replica_id is not None:
        return replica_id
    meta = getattr(store, "meta", None)
    if meta is None:
        return "memory"
    found: str = meta().get("replica_id", "unknown")
    return found


class _Builder:
    """Collects the spans of one trace."""

    def __init__(self, replica_id: str, trace_id: int) -> None:
        self.replica_id = replica_id
        self.trace_id = trace_id
        self.resource = Resource(
            {"service.name": "actorlog", "actorlog.replica_id": replica_id}
        )
        self.spans: list[ReadableSpan] = []

    def context(self, span_id: int) -> SpanContext:
        return SpanContext(
            self.trace_id, span_id, is_remote=False, trace_flags=_SAMPLED
        )

    def add(
        self,
        name: str,
        span_id: int,
        *,
        parent: SpanContext | None,
        start_ns: int,
        end_ns: int,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: dict[str, Any] | None = None,
        events: Sequence[Event] = (),
        links: Sequence[Link] = (),
        status: Status | None = None,
    ) -> None:
        self.spans.append(
            ReadableSpan(
                name,
                context=self.context(span_id),
                parent=parent,
                resource=self.resource,
                attributes=attributes or {},
                events=events,
                links=links,
                kind=kind,
                status=status or Status(StatusCode.UNSET),
                start_time=start_ns,
                end_time=max(end_ns, start_ns),
                instrumentation_scope=_SCOPE,
            )
        )


def execution_spans(
    store: EventStore, execution_id: str, *, replica_id: str | None = None
) -> list[ReadableSpan]:
    """The spans of a recorded workflow execution, root span first.

    Args:
        store: The store holding stream ``workflows/<execution_id>``.
        execution_id: The execution.
        replica_id: The id hashed into trace and span ids; the store's own
            replica id by default.

    Raises:
        TraceExportError: If the store has no such execution.

    """
    stream = workflow_stream(execution_id)
    events = list(store.read_stream(stream))
    if not events:
        raise TraceExportError(f"no workflow execution {execution_id!r} ({stream!r})")
    replica = _replica_id(store, replica_id)
    builder = _Builder(replica, trace_id_for(replica, "workflow", execution_id))
    root = builder.context(span_id_for(replica, execution_id, "execution"))
    steps = _StepSpans(builder, root, execution_id)
    marks: list[Event] = []
    workflow = execution_id
    status = Status(StatusCode.UNSET)
    outcome = "running"
    attributes: dict[str, Any] = {
        "actorlog.workflow.execution_id": execution_id,
        "messaging.system": MESSAGING_SYSTEM,
    }
    links: list[Link] = []
    end = events[-1]
    for event in events:
        data = event.data
        if event.type == "WorkflowStarted":
            workflow = _get(data, "workflow", execution_id)
            attributes["actorlog.workflow.name"] = workflow
            attributes["actorlog.workflow.definition_version"] = _get(
                data, "definition_version", 0
            )
            link = link_to(event.metadata.traceparent)
            links.extend([link] if link is not None else [])
        elif event.type in _MARKS:
            marks.append(_mark(event))
        elif event.type in _TERMINAL:
            end = event
            outcome = event.type.removeprefix("Workflow").lower()
            if event.type == "WorkflowFailed":
                error_type = str(_get(data, "error_type", "Error"))
                attributes["error.type"] = error_type
                attributes["actorlog.workflow.failed_step"] = str(_get(data, "step"))
                status = Status(
                    StatusCode.ERROR, f"{error_type}: {_get(data, 'error')}"
                )
            elif event.type == "WorkflowCompleted":
                status = Status(StatusCode.OK)
            else:
                marks.append(_mark(event))
        else:
            steps.feed(event)
    attributes["actorlog.workflow.status"] = outcome
    steps.finish(_ns(end.recorded_at))
    builder.spans.insert(
        0,
        ReadableSpan(
            f"execute {workflow}",
            context=root,
            parent=None,
            resource=builder.resource,
            attributes=attributes,
            events=marks,
            links=links,
            kind=SpanKind.INTERNAL,
            status=status,
            start_time=_ns(events[0].recorded_at),
            end_time=_ns(end.recorded_at),
            instrumentation_scope=_SCOPE,
        ),
    )
    return builder.spans


def _mark(event: StoredEvent) -> Event:
    attributes: dict[str, Any] = {"actorlog.position": event.position}
    for field in ("step", "attempt", "delay_s", "manual", "reason"):
        value = _get(event.data, field)
        if value is not None:
            attributes[f"actorlog.workflow.{field}"] = value
    return Event(event.type, attributes, timestamp=_ns(event.recorded_at))


class _StepSpans:
    """Pairs each step attempt's start with its outcome."""

    def __init__(self, builder: _Builder, root: SpanContext, execution_id: str) -> None:
        self.builder = builder
        self.root = root
        self.execution_id = execution_id
        self.open: dict[tuple[str, int], StoredEvent] = {}

    def _add(
        self,
        step: str,
        attempt: int,
        start_ns: int,
        end_ns: int,
        extra: dict[str, Any],
        *,
        status: Status | None = None,
        events: Sequence[Event] = (),
    ) -> None:
        attributes: dict[str, Any] = {
            "actorlog.workflow.execution_id": self.execution_id,
            "actorlog.workflow.step": step,
            "actorlog.workflow.attempt": attempt,
            **extra,
        }
        span_id = span_id_for(
            self.builder.replica_id, self.execution_id, step, str(attempt)
        )
        self.builder.add(
            f"step {step}",
            span_id,
            parent=self.root,
            start_ns=start_ns,
            end_ns=end_ns,
            attributes=attributes,
            status=status,
            events=events,
        )

    def feed(self, event: StoredEvent) -> None:
        data = event.data
        step = str(_get(data, "step", "?"))
        attempt = int(_get(data, "attempt", 0))
        at = _ns(event.recorded_at)
        if event.type == "WorkflowStepStarted":
            self.open[step, attempt] = event
            return
        if event.type == "WorkflowStepSkipped":
            skipped = {
                "actorlog.workflow.step.status": "skipped",
                "actorlog.workflow.skip_reason": str(_get(data, "reason", "")),
            }
            self._add(step, 0, at, at, skipped)
            return
        if event.type not in ("WorkflowStepSucceeded", "WorkflowStepFailed"):
            return
        started = self.open.pop((step, attempt), None)
        if started is not None:
            start = _ns(started.recorded_at)
        else:
            start = at - int(float(_get(data, "duration_s", 0.0)) * 1e9)
        extra: dict[str, Any] = {
            "actorlog.workflow.duration_s": float(_get(data, "duration_s", 0.0))
        }
        if started is not None:
            key = str(_get(started.data, "idempotency_key", ""))
            extra["actorlog.workflow.idempotency_key"] = key
        if event.type == "WorkflowStepSucceeded":
            extra["actorlog.workflow.step.status"] = "succeeded"
            self._add(step, attempt, start, at, extra, status=Status(StatusCode.OK))
            return
        error_type = str(_get(data, "error_type", "Error"))
        message = str(_get(data, "error", ""))
        extra["actorlog.workflow.step.status"] = "failed"
        extra["error.type"] = error_type
        extra["actorlog.workflow.will_retry"] = bool(_get(data, "will_retry"))
        exception = Event(
            "exception",
            {"exception.type": error_type, "exception.message": message},
            timestamp=at,
        )
        status = Status(StatusCode.ERROR, f"{error_type}: {message}")
        self._add(step, attempt, start, at, extra, status=status, events=[exception])

    def finish(self, end_ns: int) -> None:
        for (step, attempt), started in sorted(self.open.items()):
            extra = {"actorlog.workflow.step.status": "unfinished"}
            self._add(step, attempt, _ns(started.recorded_at), end_ns, extra)
        self.open.clear()


def stream_spans(
    store: EventStore, stream: str, *, replica_id: str | None = None
) -> list[ReadableSpan]:
    """The spans of one stream's history: a root span and one per event.

    Each event's span lasts no time, sits at the time it was recorded and
    links to the trace of the command that appended it.

    Raises:
        TraceExportError: If the stream has no events.

    """
    events = list(store.read_stream(stream))
    if not events:
        raise TraceExportError(f"stream {stream!r} has no events")
    replica = _replica_id(store, replica_id)
    builder = _Builder(replica, trace_id_for(replica, "stream", stream))
    root_id = span_id_for(replica, stream, "history")
    root = builder.context(root_id)
    builder.add(
        f"history {stream}",
        root_id,
        parent=None,
        start_ns=_ns(events[0].recorded_at),
        end_ns=_ns(events[-1].recorded_at),
        attributes={
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.destination.name": stream,
            "messaging.batch.message_count": len(events),
        },
    )
    for event in events:
        at = _ns(event.recorded_at)
        link = link_to(event.metadata.traceparent)
        builder.add(
            f"{event.type} {stream}",
            span_id_for(replica, stream, str(event.version)),
            parent=root,
            start_ns=at,
            end_ns=at,
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": MESSAGING_SYSTEM,
                "messaging.destination.name": stream,
                "messaging.operation.type": "send",
                "messaging.message.id": str(event.position),
                "actorlog.event.type": event.type,
                "actorlog.version": event.version,
                "actorlog.position": event.position,
            },
            links=[link] if link is not None else [],
        )
    return builder.spans


def export_spans(
    spans: Sequence[ReadableSpan],
    *,
    to: str,
    endpoint: str | None = None,
    path: str | Path | None = None,
    out: IO[str] | None = None,
) -> int:
    """Send ``spans`` through the ``to`` exporter and return how many.

    Args:
        spans: The spans, from :func:`execution_spans` or :func:`stream_spans`.
        to: ``"otlp"``, ``"jsonl"`` or ``"console"``.
        endpoint: The OTLP/HTTP traces URL, for ``otlp``.
        path: The file for ``jsonl`` (appended to); ``out`` if omitted.
        out: The text stream for ``console`` and path-less ``jsonl``.

    Raises:
        TraceExportError: If the exporter reports a failure.

    """
    exporter = make_exporter(to, endpoint=endpoint, path=path, out=out)
    try:
        result = exporter.export(spans)
    finally:
        exporter.shutdown()
    if result is not SpanExportResult.SUCCESS:
        where = f" to {endpoint}" if endpoint else ""
        raise TraceExportError(
            f"the {to} exporter failed to send {len(spans)} spans{where}"
        )
    return len(spans)
