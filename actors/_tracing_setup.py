"""Setting up the OpenTelemetry SDK, and exporting recorded history.

Both need the ``otel`` extra; they import it when called and say which
extra to install when it is missing.
"""

from __future__ import annotations

import logging
from typing import IO, TYPE_CHECKING, Literal

from opentelemetry import trace

from actors._observability_errors import TracingNotAvailableError
from actors._tracing import use_tracer_provider

if TYPE_CHECKING:
    from pathlib import Path

    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

    from eventstore import EventStore

__all__ = ["Exporter", "configure_tracing", "export_trace"]

logger = logging.getLogger(__name__)

Exporter = Literal["console", "otlp", "jsonl"]


def configure_tracing(
    exporter: Exporter = "console",
    *,
    endpoint: str | None = None,
    path: str | None = None,
    service_name: str = "actorlog",
    sample_ratio: float = 1.0,
    set_global: bool = True,
) -> SdkTracerProvider:
    """Set up the OpenTelemetry SDK for an application in one call.

    Args:
        exporter: ``"console"`` (stdout), ``"otlp"`` (OTLP over HTTP) or
            ``"jsonl"`` (one JSON span per line in a file).
        endpoint: The OTLP/HTTP traces URL (``http://host:4318/v1/traces``);
            the exporter's default (or ``OTEL_EXPORTER_OTLP_*``) if omitted.
        path: The file of the ``jsonl`` exporter (required for it).
        service_name: The ``service.name`` resource attribute.
        sample_ratio: The share of traces recorded (their root decides;
            children follow their parent). An unsampled span costs a small
            fraction of a recorded one.
        set_global: Install the provider as OpenTelemetry's global one (it
            can be set once per process); otherwise only actorlog uses it.

    Returns:
        The SDK tracer provider; call its ``shutdown()`` to flush at exit.

    Raises:
        TracingNotAvailableError: If the ``otel`` extra is not installed.
        ValueError: If the exporter is unknown or its options are missing.

    """
    if exporter not in ("console", "otlp", "jsonl"):
        raise ValueError(
            f"exporter must be 'console', 'otlp' or 'jsonl', not {exporter!r}"
        )
    if not 0.0 <= sample_ratio <= 1.0:
        raise ValueError(f"sample_ratio must be within [0, 1], not {sample_ratio}")
    if exporter == "jsonl" and not path:
        raise ValueError("the 'jsonl' exporter needs path=... (the file to write)")
    try:
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415 - optional extra
        from opentelemetry.sdk.trace import TracerProvider as SdkProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
            BatchSpanProcessor,
            SpanExporter,
        )
        from opentelemetry.sdk.trace.sampling import (  # noqa: PLC0415
            ParentBased,
            TraceIdRatioBased,
        )

        from actors._trace_jsonl import make_exporter  # noqa: PLC0415
    except ImportError as error:
        raise TracingNotAvailableError(
            "tracing needs the OpenTelemetry SDK: pip install 'actorlog[otel]' "
            f"({error})"
        ) from error

    span_exporter: SpanExporter = make_exporter(exporter, endpoint=endpoint, path=path)
    provider = SdkProvider(
        resource=Resource.create({"service.name": service_name}),
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    if set_global:
        trace.set_tracer_provider(provider)
        use_tracer_provider(None)
    else:
        use_tracer_provider(provider)
    logger.info("tracing configured: exporter %s, service %s", exporter, service_name)
    return provider


def export_trace(
    store: EventStore,
    *,
    execution_id: str | None = None,
    stream: str | None = None,
    to: Literal["console", "otlp", "jsonl"] = "console",
    endpoint: str | None = None,
    path: str | Path | None = None,
    out: IO[str] | None = None,
) -> int:
    """Export a recorded execution, or a stream's history, as spans.

    Span times are those the log recorded; trace and span ids are derived
    from the store's replica id, so exporting twice gives the same ids.

    Args:
        store: The store (open it read-only beside a running application).
        execution_id: The workflow execution to export, or
        stream: the stream whose history to export (give exactly one).
        to: ``"console"``, ``"otlp"`` or ``"jsonl"``.
        endpoint: The OTLP/HTTP traces URL, for ``otlp``.
        path: The file for ``jsonl``; ``out`` (stdout) if omitted.
        out: The text stream for ``console`` and path-less ``jsonl``.

    Returns:
        How many spans were exported.

    Raises:
        TracingNotAvailableError: If the ``otel`` extra is not installed.
        TraceExportError: If there is no such history, or the export failed.
        ValueError: If not exactly one of ``execution_id`` and ``stream``.

    """
    if (execution_id is None) == (stream is None):
        raise ValueError("give exactly one of execution_id and stream")
    try:
        from actors._trace_export import (  # noqa: PLC0415 - optional extra
            execution_spans,
            export_spans,
            stream_spans,
        )
    except ImportError as error:
        raise TracingNotAvailableError(
            "trace export needs the OpenTelemetry SDK: pip install "
            f"'actorlog[otel]' ({error})"
        ) from error
    if execution_id is not None:
        spans = execution_spans(store, execution_id)
    else:
        spans = stream_spans(store, str(stream))
    return export_spans(spans, to=to, endpoint=endpoint, path=path, out=out)
