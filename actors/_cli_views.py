"""``actorlog projections ...`` and ``actorlog workflows ...``."""

from __future__ import annotations

from typing import Any

import click

from actors._cli_output import emit, event_row, open_store
from eventstore import workflow_stream
from projections import (
    RecordsView,
    StreamsView,
    UnknownProjectionError,
    WorkflowsView,
    builtin_projections,
    parked_events,
    projection_named,
    rebuild,
    retry_parked,
    status,
)

__all__ = ["projections_group", "workflows_group"]


@click.group("projections")
def projections_group() -> None:
    """List, show and rebuild projections; list and retry parked events."""


@projections_group.command("list")
@click.pass_context
def list_projections(ctx: click.Context) -> None:
    """Each projection's checkpoint, lag, rate, parked events and last error."""
    with open_store(ctx) as store:
        rows = [status(store, name) for name in builtin_projections()]
    emit(ctx, rows, title="projections")


@projections_group.command("show")
@click.argument("name")
@click.option("--key", help="One entry: a record id, execution id or stream.")
@click.option("--collection", help="The records of one collection.")
@click.pass_context
def show(
    ctx: click.Context, name: str, key: str | None, collection: str | None
) -> None:
    """Print a projection's view, or one entry of it."""
    projection_named(name)
    with open_store(ctx) as store:
        value = _show(store, name, key, collection)
    emit(ctx, value, title=name)


def _show_records(store: Any, key: str | None, collection: str | None) -> Any:
    records = RecordsView(store)
    if key is not None:
        if collection is None:
            raise click.UsageError("--key needs --collection for records")
        record = records.get(collection, key)
        if record is None:
            raise click.ClickException(f"no record {key!r} in {collection!r}")
        return record
    if collection is not None:
        return records.query(collection)
    return [
        {"collection": c, "records": n, "indexes": list(records.indexes(c))}
        for c, n in records.collections().items()
    ]


def _show(store: Any, name: str, key: str | None, collection: str | None) -> Any:
    if name == "records":
        return _show_records(store, key, collection)
    if collection is not None:
        raise click.UsageError(f"--collection applies to records, not {name}")
    if name == "workflows":
        if key is None:
            return [_summary(e) for e in WorkflowsView(store).list()]
        return _execution(store, key)
    if key is None:
        return StreamsView(store).list()
    stats = StreamsView(store).get(key)
    if stats is None:
        raise click.ClickException(f"no stream {key!r} in the streams view")
    return stats


def _writable_projection(name: str) -> Any:
    try:
        return projection_named(name)
    except UnknownProjectionError as exc:
        raise click.ClickException(str(exc)) from exc


@projections_group.command("rebuild")
@click.argument("name")
@click.pass_context
def rebuild_command(ctx: click.Context, name: str) -> None:
    """Rebuild a view from position 1 (refused while the app runs)."""
    projection = _writable_projection(name)
    with open_store(ctx, write=True, exclusive=True) as store:
        rebuild(store, projection)
        done = status(store, name)
    emit(ctx, done, title=name)


@projections_group.command("parked")
@click.argument("name")
@click.pass_context
def parked(ctx: click.Context, name: str) -> None:
    """Events a projection's handler failed on."""
    projection_named(name)
    with open_store(ctx) as store, store.read_views() as reader:
        rows = parked_events(reader, name)
    emit(ctx, rows, title=f"parked in {name}")


@projections_group.command("retry")
@click.argument("name")
@click.pass_context
def retry(ctx: click.Context, name: str) -> None:
    """Fold parked events again; print those still parked."""
    projection = _writable_projection(name)
    with open_store(ctx, write=True, exclusive=True) as store:
        still = retry_parked(store, projection)
    emit(ctx, still, title=f"still parked in {name}")


@click.group("workflows")
def workflows_group() -> None:
    """Workflow executions: list, show, history."""


def _summary(execution: Any) -> dict[str, Any]:
    return {
        "execution_id": execution.execution_id,
        "workflow": execution.workflow,
        "status": execution.status,
        "steps": len(execution.steps),
        "started_at": execution.started_at,
        "finished_at": execution.finished_at,
    }


def _execution(store: Any, execution_id: str) -> Any:
    execution = WorkflowsView(store).get(execution_id)
    if execution is None:
        raise click.ClickException(f"no workflow execution {execution_id!r}")
    return execution


@workflows_group.command("list")
@click.option("--status", "wanted", help="Only executions with this status.")
@click.pass_context
def list_workflows(ctx: click.Context, wanted: str | None) -> None:
    """Executions with their status."""
    with open_store(ctx) as store:
        rows = [_summary(e) for e in WorkflowsView(store).list(status=wanted)]
    emit(ctx, rows, title="executions")


@workflows_group.command("show")
@click.argument("execution_id")
@click.pass_context
def show_workflow(ctx: click.Context, execution_id: str) -> None:
    """An execution: its steps, their states, attempts, errors and timings."""
    with open_store(ctx) as store:
        execution = _execution(store, execution_id)
    if ctx.obj["output"] != "table":
        emit(ctx, execution)
        return
    summary = _summary(execution)
    summary.update(error=execution.error, output=execution.output)
    emit(ctx, summary, title=execution_id)
    steps = [{"step": name, **_step(s)} for name, s in execution.steps.items()]
    emit(ctx, steps, title="steps")


def _step(step: Any) -> dict[str, Any]:
    return {
        "status": step.status,
        "attempts": step.attempts,
        "error": step.error,
        "started_at": step.started_at,
        "finished_at": step.finished_at,
        "duration_s": step.duration_s,
    }


@workflows_group.command("history")
@click.argument("execution_id")
@click.pass_context
def history(ctx: click.Context, execution_id: str) -> None:
    """Every event of an execution, in order."""
    with open_store(ctx) as store:
        rows = [event_row(e) for e in store.read_stream(workflow_stream(execution_id))]
    if not rows:
        raise click.ClickException(f"no workflow execution {execution_id!r}")
    emit(ctx, rows, title=f"history of {execution_id}")
