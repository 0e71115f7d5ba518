"""Spans and metrics of workflow executions, for the workflow engine.

Everything here runs on the engine's event loop: the engine calls
``started`` and ``finished``, its step runner wraps each attempt in
``step``. An execution's span opens when it starts and ends when it does;
its steps' spans are its children. An execution resumed after a restart
gets a fresh span (its history is not replayed as spans).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, SpanKind, Status, StatusCode

from actors._trace_context import format_traceparent
from actors._tracing import open_span, step_span

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from actors._monitoring import MonitoringSystem

__all__ = ["WorkflowObserver"]

logger = logging.getLogger(__name__)


class WorkflowObserver:
    """Records executions by state and step durations; traces both.

    Args:
        monitoring: Where the metrics go; None records none (spans only).

    """

    def __init__(self, monitoring: MonitoringSystem | None = None) -> None:
        self.monitoring = monitoring
        self._spans: dict[str, Span] = {}
        self._workflows: dict[str, str] = {}

    def started(self, execution_id: str, workflow: str) -> str | None:
        """An execution starts; return its span's ``traceparent`` (or None)."""
        self._workflows[execution_id] = workflow
        if self.monitoring is not None:
            self.monitoring.record_workflow_execution(workflow, "started")
        span = self._open(execution_id, workflow)
        if span is None:
            return None
        return format_traceparent(span.get_span_context())

    def _open(self, execution_id: str, workflow: str) -> Span | None:
        span = open_span(
            f"execute {workflow}",
            SpanKind.INTERNAL,
            {
                "actorlog.workflow.name": workflow,
                "actorlog.workflow.execution_id": execution_id,
            },
        )
        if span is not None:
            self._spans[execution_id] = span
        return span

    @contextlib.contextmanager
    def step(
        self, execution_id: str, workflow: str, step: str, attempt: int
    ) -> Iterator[Span]:
        """Run one attempt of a step inside its span (a child of the execution)."""
        self._workflows.setdefault(execution_id, workflow)
        parent = self._spans.get(execution_id)
        if parent is None:
            parent = self._open(execution_id, workflow)
        if parent is None:
            yield INVALID_SPAN
            return
        token = trace.use_span(parent, end_on_exit=False)
        with token, step_span(step, execution_id=execution_id, attempt=attempt) as span:
            yield span

    @staticmethod
    def step_failed(span: Span, error_type: str, error: str) -> None:
        """Mark a step's span failed (the step's error is an outcome, not raised)."""
        if span.is_recording():
            span.set_attribute("error.type", error_type)
            span.set_status(Status(StatusCode.ERROR, f"{error_type}: {error}"))

    def step_done(
        self, workflow: str, step: str, duration_s: float, *, outcome: str
    ) -> None:
        """Record a step attempt's duration and outcome."""
        if self.monitoring is not None:
            self.monitoring.record_workflow_step(
                workflow, step, duration_s, outcome=outcome
            )

    def finished(self, execution_id: str, state: str, error: str | None) -> None:
        """An execution ended (or its actor crashed): end its span, count it."""
        workflow = self._workflows.pop(execution_id, None)
        span = self._spans.pop(execution_id, None)
        if workflow is not None and self.monitoring is not None:
            self.monitoring.record_workflow_execution(workflow, state)
        if span is None:
            return
        span.set_attribute("actorlog.workflow.state", state)
        if state != "completed":
            span.set_status(Status(StatusCode.ERROR, error or state))
        span.end()

    def close(self) -> None:
        """End the spans of executions still running (the engine stops)."""
        for execution_id in list(self._spans):
            span = self._spans.pop(execution_id)
            span.set_attribute("actorlog.workflow.state", "interrupted")
            span.end()
        self._workflows.clear()
