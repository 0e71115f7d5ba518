"""``actorlog trace``: export recorded history as OpenTelemetry spans."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from actors._observability_errors import TraceExportError, TracingNotAvailableError
from actors._tracing_setup import export_trace
from eventstore import EventStoreError, LmdbEventStore

__all__ = ["trace"]


@click.group()
def trace() -> None:
    """Export recorded executions and streams as OpenTelemetry spans."""


@trace.command("export")
@click.option("--execution", help="The workflow execution id to export.")
@click.option("--stream", help="A stream whose history to export (a record's).")
@click.option(
    "--to",
    "to",
    type=click.Choice(["otlp", "jsonl", "console"]),
    default="console",
    show_default=True,
    help="Where the spans go.",
)
@click.option("--endpoint", help="The OTLP/HTTP traces URL (with --to otlp).")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The file for --to jsonl (appended to); stdout if omitted.",
)
@click.option(
    "--store",
    "store_option",
    type=click.Path(file_okay=False, path_type=Path),
    help="The store directory (or the parent group's --store).",
)
@click.pass_context
def export(  # noqa: PLR0917 - click passes each option by position
    ctx: click.Context,
    execution: str | None,
    stream: str | None,
    to: str,
    endpoint: str | None,
    output: Path | None,
    store_option: Path | None,
) -> None:
    """Export one execution (--execution) or one stream (--stream)."""
    if (execution is None) == (stream is None):
        raise click.UsageError("give exactly one of --execution and --stream")
    parent = ctx.obj.get("store") if isinstance(ctx.obj, dict) else None
    store_path = store_option or parent
    if store_path is None:
        raise click.UsageError("no store: give --store PATH")
    try:
        with LmdbEventStore.open(store_path, readonly=True) as store:
            count = export_trace(
                store,
                execution_id=execution,
                stream=stream,
                to=to,  # type: ignore[arg-type]
                endpoint=endpoint,
                path=output,
                out=sys.stdout,
            )
    except (TraceExportError, TracingNotAvailableError, EventStoreError) as error:
        raise click.ClickException(str(error)) from error
    if to == "otlp" or output is not None:
        click.echo(f"exported {count} spans", err=True)
