"""Span exporters of the ``otel`` extra: JSON lines, console, OTLP/HTTP.

This module imports the OpenTelemetry SDK; import it only where the SDK is
known to be installed (``configure_tracing`` and the trace export do).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import (
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)

__all__ = ["JsonLinesSpanExporter", "make_exporter"]


class JsonLinesSpanExporter(SpanExporter):
    """Writes each span as one line of JSON to a file or a text stream."""

    def __init__(self, target: str | Path | IO[str]) -> None:
        self._lock = threading.Lock()
        if isinstance(target, str | Path):
            self._out: IO[str] = Path(target).open("a", encoding="utf-8")  # noqa: SIM115 - closed in shutdown
            self._owned = True
        else:
            self._out = target
            self._owned = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write the spans, one per line."""
        lines = "".join(span.to_json(indent=None) + "\n" for span in spans)
        with self._lock:
            self._out.write(lines)
            self._out.flush()
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:  # noqa: ARG002 - the SDK's signature
        """Flush the file."""
        with self._lock:
            self._out.flush()
        return True

    def shutdown(self) -> None:
        """Close the file if this exporter opened it."""
        with self._lock:
            if self._owned and not self._out.closed:
                self._out.close()


def make_exporter(
    kind: str,
    *,
    endpoint: str | None = None,
    path: str | Path | None = None,
    out: IO[str] | None = None,
) -> SpanExporter:
    """The span exporter named ``kind``: ``console``, ``otlp`` or ``jsonl``.

    ``console`` and ``jsonl`` without a path write to ``out`` (stdout by
    default).
    """
    stream = out if out is not None else sys.stdout
    if kind == "console":
        return ConsoleSpanExporter(out=stream)
    if kind == "jsonl":
        return JsonLinesSpanExporter(path if path is not None else stream)
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415 - slow import, only when used
            OTLPSpanExporter,
        )

        return OTLPSpanExporter(endpoint=endpoint)
    raise ValueError(f"span exporter must be console, otlp or jsonl, not {kind!r}")
