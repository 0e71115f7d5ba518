"""``actorlog``: inspect a store from the command line, beside a running app.

The store is opened read-only (the commands that write say so: ``import``,
``projections rebuild`` and ``projections retry``) and no actor is
started. Other command groups plug in with ``main.add_command(group)``;
they find the store's path in ``ctx.obj["store"]`` and the output format
in ``ctx.obj["output"]``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from actors._cli_output import emit, emit_line, event_row, open_store, plain
from actors._cli_serve import serve
from actors._cli_sync import sync_cli
from actors._cli_trace import trace
from actors._cli_views import projections_group, workflows_group
from eventstore import EventStoreError, StoredEvent
from eventstore._tools import export_ndjson, import_ndjson, verify
from projections import (
    ProjectionError,
    RecordsView,
    StreamsView,
    WorkflowsView,
    builtin_projections,
    projection_named,
    replay,
)

__all__ = ["main"]

_DEFAULT_STORE = "./actorlog-data"


class _Group(click.Group):
    """A group that turns the library's errors into a message and exit 1.

    ``-o FORMAT`` is a global option, but users write it after the command
    too (``actorlog events -o json``): no command has a ``-o`` of its own,
    so the root group moves it to the front before parsing.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.parent is None:
            args = _hoist_output(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (EventStoreError, ProjectionError, OSError) as exc:
            raise click.ClickException(str(exc)) from exc


_FORMATS = ("table", "json", "ndjson")


def _hoist_output(args: list[str]) -> list[str]:
    """Move ``-o FORMAT`` given after the command name to the front."""
    if "--" in args:
        return args
    for index, arg in enumerate(args[1:], start=1):
        if arg == "-o" and index + 1 < len(args) and args[index + 1] in _FORMATS:
            return ["-o", args[index + 1], *args[:index], *args[index + 2 :]]
        if arg.startswith("-o") and arg[2:] in _FORMATS:
            return [arg, *args[:index], *args[index + 1 :]]
    return args


@click.group(cls=_Group)
@click.option(
    "--store",
    "store_path",
    type=click.Path(path_type=Path),
    default=None,
    help=f"The store directory [default: $ACTORLOG_STORE, else {_DEFAULT_STORE}].",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json", "ndjson"]),
    default=None,
    help="Output format [default: table on a terminal, JSON otherwise].",
)
@click.option("-v", "--verbose", count=True, help="Log to stderr (-vv: debug).")
@click.version_option(package_name="actorlog")
@click.pass_context
def main(
    ctx: click.Context, store_path: Path | None, output: str | None, verbose: int
) -> None:
    """Inspect an actorlog store without starting its actors."""
    if store_path is None:
        store_path = Path(os.environ.get("ACTORLOG_STORE") or _DEFAULT_STORE)
    if output is None:
        output = "table" if sys.stdout.isatty() else "json"
    if verbose:
        logging.basicConfig(
            level=logging.DEBUG if verbose > 1 else logging.INFO,
            stream=sys.stderr,
            format="%(levelname)s %(name)s: %(message)s",
        )
    ctx.ensure_object(dict)
    ctx.obj["store"] = store_path
    ctx.obj["output"] = output


@main.command()
@click.pass_context
def info(ctx: click.Context) -> None:
    """Path, size, durability, head position, counts and reader slots."""
    with open_store(ctx) as store:
        details = store.info()
        meta = store.meta()
        head = store.head_position()
        streams = sum(1 for _ in store.streams())
    emit(
        ctx,
        {
            "path": details["path"],
            "size_bytes": details["size_bytes"],
            "map_size_bytes": details["map_size_bytes"],
            "durability": meta.get("durability"),
            "replica_id": meta.get("replica_id"),
            "created_at": meta.get("created_at"),
            "head_position": head,
            "events": head,
            "streams": streams,
            "reader_slots_used": details["reader_slots_used"],
            "max_readers": details["max_readers"],
        },
        title="store",
    )


@main.command()
@click.option("--prefix", default="", help="Only streams whose name starts so.")
@click.pass_context
def streams(ctx: click.Context, prefix: str) -> None:
    """Streams with their version and first and last positions."""
    with open_store(ctx) as store:
        rows = [
            {
                "stream": info.stream,
                "version": info.version,
                "first_position": info.first_position,
                "last_position": info.last_position,
            }
            for info in store.streams(prefix=prefix)
        ]
    emit(ctx, rows, title="streams")


def _positive(_ctx: click.Context, param: click.Parameter, value: int | None) -> Any:
    if value is not None and value < 1:
        raise click.BadParameter(f"must be >= 1, not {value}", param=param)
    return value


@main.command()
@click.option("--stream", help="Only this stream.")
@click.option("--type", "types", multiple=True, help="Only events of this type.")
@click.option("--from", "from_position", type=int, callback=_positive, default=None)
@click.option("--to", "to_position", type=int, callback=_positive, default=None)
@click.option("--limit", type=click.IntRange(min=0), default=None)
@click.option("--follow", is_flag=True, help="Then print new events until ^C.")
@click.pass_context
def events(
    ctx: click.Context,
    *,
    stream: str | None,
    types: tuple[str, ...],
    from_position: int | None,
    to_position: int | None,
    limit: int | None,
    follow: bool,
) -> None:
    """Events of the log (or of one stream), oldest first."""
    wanted = set(types) or None
    with open_store(ctx) as store:
        head = store.head_position()
        if from_position is not None and from_position > head + 1:
            raise click.ClickException(
                f"position {from_position} is not in the log (its head is {head})"
            )
        found = _select(
            store,
            stream=stream,
            wanted=wanted,
            from_position=from_position,
            to_position=to_position,
            limit=limit,
        )
        if not follow:
            emit(ctx, [event_row(e) for e in found], title="events")
            return
        last = head if to_position is None else to_position
        for event in found:
            emit_line(ctx, event_row(event))
        subscription = store.subscribe(last + 1, types=wanted)
        try:
            for event in subscription:
                if stream is None or event.stream == stream:
                    emit_line(ctx, event_row(event))
        except KeyboardInterrupt:
            subscription.close()


def _select(
    store: Any,
    *,
    stream: str | None,
    wanted: set[str] | None,
    from_position: int | None,
    to_position: int | None,
    limit: int | None,
) -> list[StoredEvent]:
    if stream is not None:
        source = store.read_stream(stream)
    else:
        source = store.read_all(
            from_position=from_position or 1, to_position=to_position, types=wanted
        )
    found: list[StoredEvent] = []
    for event in source:
        if limit is not None and len(found) >= limit:
            break
        if from_position is not None and event.position < from_position:
            continue
        if to_position is not None and event.position > to_position:
            break
        if wanted is None or event.type in wanted:
            found.append(event)
    return found


@main.command("replay")
@click.option("--to-position", type=click.IntRange(min=0), required=True)
@click.option("--projection", "name", help="Only this projection's view.")
@click.pass_context
def replay_command(ctx: click.Context, to_position: int, name: str | None) -> None:
    """Fold the log up to a position into a temporary view and print it."""
    chosen = [projection_named(name)] if name else list(builtin_projections().values())
    with open_store(ctx) as store:
        temporary = replay(store, chosen, to_position=to_position)
    views: dict[str, list[Any]] = {}
    for projection in chosen:
        if projection.name == "records":
            records = RecordsView(temporary)
            views["records"] = [
                record
                for collection in records.collections()
                for record in records.query(collection)
            ]
        elif projection.name == "workflows":
            views["workflows"] = WorkflowsView(temporary).list()
        else:
            views["streams"] = StreamsView(temporary).list()
    emit(ctx, views[name] if name else views, title=name)


@main.command("verify")
@click.pass_context
def verify_command(ctx: click.Context) -> None:
    """Check every record, the stream index and stream infos; exit 1 if damaged."""
    with open_store(ctx) as store:
        report = verify(store)
    emit(ctx, {**plain(report), "ok": report.ok}, title="verify")
    if not report.ok:
        raise click.ClickException(
            f"the log is damaged from position {report.first_bad_position}: "
            f"{report.problems[0]}"
        )


@main.command("export")
@click.option("--from", "from_position", type=int, callback=_positive, default=1)
@click.option("--to", "to_position", type=int, callback=_positive, default=None)
@click.pass_context
def export_command(
    ctx: click.Context, from_position: int, to_position: int | None
) -> None:
    """Write events as NDJSON to stdout (``actorlog export > file.ndjson``)."""
    with open_store(ctx) as store:
        stdout = sys.stdout.buffer
        count = export_ndjson(
            store,
            stdout,
            from_position=from_position,
            to_position=to_position,
        )
    click.echo(f"exported {count} events", err=True)


@main.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def import_command(ctx: click.Context, file: Path) -> None:
    """Append the events of an NDJSON export (creates the store if missing)."""
    with open_store(ctx, write=True, create=True) as store:
        report = import_ndjson(store, file)
    emit(ctx, report, title="import")


@main.command()
@click.argument("dest", type=click.Path(path_type=Path))
@click.pass_context
def backup(ctx: click.Context, dest: Path) -> None:
    """Write a consistent, compacted copy of the store to DEST."""
    with open_store(ctx) as store:
        target = store.backup(dest)
        head = store.head_position()
    emit(ctx, {"backup": str(target), "head_position": head}, title="backup")


main.add_command(projections_group)
main.add_command(workflows_group)
main.add_command(trace)
main.add_command(serve)
main.add_command(sync_cli)

if __name__ == "__main__":
    main()
