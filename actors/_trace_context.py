"""W3C ``traceparent`` headers: the trace context stored in event metadata."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, TraceFlags

__all__ = [
    "attach_traceparent",
    "current_traceparent",
    "format_traceparent",
    "link_to",
    "parse_traceparent",
]


def format_traceparent(span_context: SpanContext) -> str:
    """The W3C ``traceparent`` header of ``span_context``."""
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{int(span_context.trace_flags):02x}"
    )


def parse_traceparent(header: str) -> SpanContext | None:
    """The remote span context of a W3C ``traceparent``; None if malformed."""
    parts = header.strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16:  # noqa: PLR2004 - the W3C layout
        return None
    try:
        trace_id = int(parts[1], 16)
        span_id = int(parts[2], 16)
        flags = int(parts[3][:2], 16)
    except ValueError:
        return None
    context = SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags)
    )
    return context if context.is_valid else None


def current_traceparent() -> str | None:
    """The ``traceparent`` of the current span, for ``EventMetadata``."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return format_traceparent(span_context)


def link_to(traceparent: str | None) -> Link | None:
    """A span link to the trace a stored event names; None if it names none."""
    if not traceparent:
        return None
    span_context = parse_traceparent(traceparent)
    return Link(span_context) if span_context is not None else None


@contextlib.contextmanager
def attach_traceparent(traceparent: str | None) -> Iterator[None]:
    """Make a stored ``traceparent`` the current context in the block."""
    span_context = parse_traceparent(traceparent) if traceparent else None
    if span_context is None:
        yield
        return
    token = otel_context.attach(
        trace.set_span_in_context(NonRecordingSpan(span_context))
    )
    try:
        yield
    finally:
        otel_context.detach(token)
