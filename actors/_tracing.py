"""Spans for commands, appends, folds, workflows and syncs; trace context.

Design note. Library code uses the OpenTelemetry API only; the SDK is the
application's choice (``configure_tracing`` sets it up in one call). When
no SDK is configured the global provider is the API's proxy, and every
helper here returns a shared invalid span without asking the API for a
tracer or a span: the price of tracing nobody collects is a
context-variable read and a look at the API's global provider, about half
a microsecond. Spans follow the OpenTelemetry messaging
conventions: a command or an append is a ``PRODUCER`` of events, an actor
handling a message or a projection folding events is a ``CONSUMER``, a
sync is a ``CLIENT`` of the other replica. A failure sets the span's
status, its ``error.type`` attribute and an exception event.

Trace context crosses threads only inside messages: ``inject`` writes the
current context into a carrier (the actor message envelope), ``extract``
reads it back on the receiving side. ``current_traceparent``
(``_trace_context``) gives the W3C header stored in each event's
metadata, so that a consumer of the event, even much later, can link back
to the trace that caused it.

Replaying history must not emit spans for what already happened: code that
replays or recovers runs inside ``suppress_tracing()``. The flag lives in a
context variable, so it holds for the current thread or task (and tasks it
creates), never for others.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import (
    INVALID_SPAN,
    Link,
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    TracerProvider,
)

from actors._trace_context import (
    attach_traceparent,
    current_traceparent,
    format_traceparent,
    link_to,
    parse_traceparent,
)

__all__ = [
    "MESSAGING_SYSTEM",
    "append_span",
    "attach_traceparent",
    "command_span",
    "current_traceparent",
    "extract",
    "fold_span",
    "format_traceparent",
    "inject",
    "link_to",
    "parse_traceparent",
    "receive_span",
    "record_error",
    "step_span",
    "suppress_tracing",
    "sync_span",
    "tracing_suppressed",
    "use_tracer_provider",
    "workflow_span",
]

MESSAGING_SYSTEM = "actorlog"
_SCOPE = "actorlog"
_MAX_LINKS = 32

_suppressed: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "actorlog_tracing_suppressed", default=False
)
_own_provider: TracerProvider | None = None
_UNKNOWN = object()
_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
_cached: tuple[TracerProvider, Tracer] | None = None


def use_tracer_provider(provider: TracerProvider | None) -> None:
    """Give actorlog its own tracer provider instead of the global one.

    Useful when an application keeps several providers, and in tests and
    benchmarks (the global provider can be set only once per process).
    ``None`` goes back to the global provider.
    """
    global _own_provider, _cached  # noqa: PLW0603 - the module's one setting
    _own_provider = provider
    _cached = None


def _global_provider() -> TracerProvider | None:
    # trace.get_tracer_provider() reads os.environ on every call until a
    # provider is set, which is half the cost of an untraced command span.
    # Read the API's global directly while it is unset and no provider is
    # named in the environment; anything unexpected takes the public path.
    provider = getattr(trace, "_TRACER_PROVIDER", _UNKNOWN)
    if provider is None and not _PROVIDER_FROM_ENV:
        return None
    if isinstance(provider, TracerProvider):
        return provider
    return trace.get_tracer_provider()  # pragma: no cover - other API versions


def _tracer() -> Tracer | None:
    global _cached  # noqa: PLW0603 - a cache of the setting above
    if _suppressed.get():
        return None
    provider = _own_provider or _global_provider()
    if provider is None or isinstance(
        provider, ProxyTracerProvider | NoOpTracerProvider
    ):
        return None
    cached = _cached
    if cached is not None and cached[0] is provider:
        return cached[1]
    tracer = provider.get_tracer(_SCOPE)
    _cached = (provider, tracer)
    return tracer


def tracing_suppressed() -> bool:
    """True inside ``suppress_tracing()``."""
    return _suppressed.get()


@contextlib.contextmanager
def suppress_tracing() -> Iterator[None]:
    """Emit no spans in this block: for replay and recovery.

    Holds for the current thread or task and the tasks it creates.
    """
    token = _suppressed.set(True)
    try:
        yield
    finally:
        _suppressed.reset(token)


def record_error(span: Span, error: BaseException) -> None:
    """Mark ``span`` as failed by ``error`` (status, ``error.type``, event)."""
    span.set_attribute("error.type", type(error).__qualname__)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.record_exception(error)


class _SpanScope:
    """Starts a span on entry, makes it current, ends it on exit."""

    __slots__ = ("_args", "_span", "_token", "_tracer")

    def __init__(
        self,
        tracer: Tracer,
        name: str,
        kind: SpanKind,
        attributes: dict[str, Any],
        *,
        links: list[Link] | None = None,
        parent: otel_context.Context | None = None,
    ) -> None:
        self._tracer = tracer
        self._args = (name, kind, attributes, links, parent)
        self._span: Span | None = None
        self._token: contextvars.Token[otel_context.Context] | None = None

    def __enter__(self) -> Span:
        name, kind, attributes, links, parent = self._args
        # start_span and attach directly: start_as_current_span nests two
        # generator context managers, a fifth of an SDK span's cost.
        span = self._tracer.start_span(
            name,
            context=parent,
            kind=kind,
            attributes=attributes,
            links=links,
            record_exception=False,
            set_status_on_exception=False,
        )
        self._span = span
        self._token = otel_context.attach(trace.set_span_in_context(span))
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span, token = self._span, self._token
        if span is None or token is None:  # pragma: no cover - entered once
            return
        self._span = self._token = None
        if exc is not None:
            record_error(span, exc)
        otel_context.detach(token)
        span.end()


class _NoSpan:
    """What every helper returns when no span is recorded: does nothing."""

    __slots__ = ()

    def __enter__(self) -> Span:
        return INVALID_SPAN

    def __exit__(self, *exc: object) -> None:
        return None


_NO_SPAN = _NoSpan()


def _messaging(operation: str, operation_type: str, destination: str) -> dict[str, Any]:
    return {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.name": operation,
        "messaging.operation.type": operation_type,
        "messaging.destination.name": destination,
    }


def command_span(
    name: str,
    collection: str,
    *,
    record_id: str | None = None,
    command_id: str | None = None,
) -> contextlib.AbstractContextManager[Span]:
    """A span for one command (``create users``), current in the block.

    Args:
        name: The command: ``create``, ``update``, ``delete``, ...
        collection: The collection it addresses.
        record_id: The record's id, when the command addresses one.
        command_id: The command's idempotency key, if any.

    """
    tracer = _tracer()
    if tracer is None:
        return _NO_SPAN
    attributes = _messaging(name, "send", collection)
    if record_id is not None:
        attributes["actorlog.record.id"] = record_id
    if command_id is not None:
        attributes["messaging.message.id"] = command_id
    return _SpanScope(tracer, f"{name} {collection}", SpanKind.PRODUCER, attributes)


def append_span(
    destination: str, *, event_count: int
) -> contextlib.AbstractContextManager[Span]:
    """A span for one append of ``event_count`` events to the log.

    Args:
        destination: The stream appended to, or a collection for a batch.
        event_count: How many events the append carries.

    """
    tracer = _tracer()
    if tracer is None:
        return _NO_SPAN
    attributes = _messaging("append", "send", destination)
    attributes["messaging.batch.message_count"] = event_count
    return _SpanScope(tracer, f"append {destination}", SpanKind.PRODUCER, attributes)


def receive_span(
    actor: str, carrier: Mapping[str, str] | None, *, message_type: str
) -> contextlib.AbstractContextManager[Span]:
    """A span for an actor handling a message, child of the sender's span.

    Args:
        actor: The receiving actor's name (its destination).
        carrier: The trace context the sender injected into the envelope.
        message_type: The message's type name.

    """
    tracer = _tracer()
    if tracer is None:
        return _NO_SPAN
    attributes = _messaging(message_type, "process", actor)
    parent = extract(carrier) if carrier else None
    return _SpanScope(
        tracer, f"process {actor}", SpanKind.CONSUMER, attributes, parent=parent
    )


def fold_span(
    projection: str, *, position: int, traceparents: Iterable[str | None] = ()
) -> contextlib.AbstractContextManager[Span]:
    """A span for a projection folding events, linked to their traces.

    Args:
        projection: The projection's name.
        position: The position of the last event folded.
        traceparents: The events' ``metadata.traceparent`` values; the first
            32 distinct ones become links.

    """
    tracer = _tracer()
    if tracer is None:
        return _NO_SPAN
    attributes = _messaging("fold", "process", projection)
    attributes["messaging.consumer.group.name"] = projection
    attributes["actorlog.position"] = position
    links: list[Link] = []
    seen: set[str] = set()
    for header in traceparents:
        if header is None or header in seen or len(links) >= _MAX_LINKS:
            continue
        seen.add(header)
        link = link_to(header)
        if link is not None:
            links.append(link)
    return _SpanScope(
        tracer, f"process {projection}", SpanKind.CONSUMER, attributes, links=links
    )


def workflow_span(
    workflow: str, execution_id: str, *, traceparent: str | None = None
) -> contextlib.AbstractContextManager[Span]:
    """A span for a workflow execution (``execute user-registration``).

    Args:
        workflow: The workflow definition's name.
        execution_id: The execution's id.
        traceparent: The trace that started it, linked when given (an
            execution resumed after a crash links to its first trace).

    """
    tracer = _tracer()
    if tracer is None:
        return _NO_SPAN
    attributes: dict[str, Any] = {
        "actorlog.workflow.name": workflow,
        "actorlog.workflow.execution_id": execution_id,
    }
    link = link_to(traceparent) if traceparent else None
    links = [link] if link is not None else None
    return _SpanScope(
        tracer, f"execute {workflow}", SpanKind.INTERNAL, attributes, links=links
    )


def step_span(
    step: str, *, execution_id: str, attempt: int
) -> contextlib.AbstractContextManager[Span]:
    """A span for one attempt of a workflow step (``step validate``)."""
    tracer = _tracer()
    if tracer is None:
        return _NO_SPAN
    attributes: dict[str, Any] = {
        "actorlog.workflow.execution_id": execution_id,
        "actorlog.workflow.step": step,
        "actorlog.workflow.attempt": attempt,
    }
    return _SpanScope(tracer, f"step {step}", SpanKind.INTERNAL, attributes)


def sync_span(
    collection: str, *, source: str, target: str
) -> contextlib.AbstractContextManager[Span]:
    """A span for one sync of ``collection`` between two replicas."""
    tracer = _tracer()
    if tracer is None:
        return _NO_SPAN
    attributes: dict[str, Any] = {
        "actorlog.sync.source": source,
        "actorlog.sync.target": target,
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.destination.name": collection,
    }
    return _SpanScope(tracer, f"sync {collection}", SpanKind.CLIENT, attributes)


def inject(carrier: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Write the current trace context into ``carrier`` (for an envelope).

    Returns:
        The carrier (a new dict when none was given); left empty when there
        is no current trace or tracing is suppressed.

    """
    out: dict[str, str] = dict(carrier) if carrier is not None else {}
    if _suppressed.get():
        return out
    if not trace.get_current_span().get_span_context().is_valid:
        return out
    propagate.inject(out)
    if carrier is not None:
        carrier.update(out)
    return out


def extract(carrier: Mapping[str, str] | None) -> otel_context.Context:
    """The trace context a sender injected into ``carrier``."""
    if not carrier:
        return otel_context.Context()
    return propagate.extract(carrier)
