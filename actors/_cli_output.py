"""How ``actorlog`` prints: rich tables on a terminal, JSON or NDJSON otherwise."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import click
import msgspec
import orjson
from rich.console import Console
from rich.table import Table

from eventstore import LmdbEventStore, StoredEvent, StoreNotFoundError

__all__ = [
    "Output",
    "emit",
    "emit_line",
    "event_row",
    "open_store",
    "plain",
]

Output = Literal["table", "json", "ndjson"]
_CELL_CHARS = 60


def plain(value: Any) -> Any:
    """Structs, dates and bytes as JSON-ready builtins."""
    return msgspec.to_builtins(value)


def event_row(event: StoredEvent) -> dict[str, Any]:
    """An event as the CLI prints it."""
    row: dict[str, Any] = plain(event)
    if not row.get("metadata"):
        row.pop("metadata", None)
    return row


@contextlib.contextmanager
def open_store(
    ctx: click.Context,
    *,
    write: bool = False,
    exclusive: bool = False,
    create: bool = False,
) -> Iterator[LmdbEventStore]:
    """Open the store named by ``--store``: read-only unless ``write``.

    Raises:
        StoreNotFoundError: If there is no store at the path (unless
            ``create``).
        WriterBusyError: If ``exclusive`` and another process writes.

    """
    path: Path = ctx.obj["store"]
    if not create and not (path / "data.mdb").is_file():
        raise StoreNotFoundError(f"no actorlog store at {path}")
    if write:
        store = LmdbEventStore.open(path, exclusive=exclusive)
    else:
        store = LmdbEventStore.open(path, readonly=True)
    with store:
        yield store


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool | int | float):
        text = f"{value:.3f}" if isinstance(value, float) else str(value)
    else:
        text = orjson.dumps(value).decode()
    return text if len(text) <= _CELL_CHARS else text[: _CELL_CHARS - 1] + "…"


def _table(rows: Sequence[Mapping[str, Any]], title: str | None) -> Table:
    table = Table(title=title)
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    return table


def _pairs(row: Mapping[str, Any], title: str | None) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in row.items():
        table.add_row(key, _cell(value))
    return table


def emit(ctx: click.Context, value: Any, *, title: str | None = None) -> None:
    """Print a row (a mapping), rows (a list) or titled sections (mapping of lists).

    JSON prints one document; NDJSON one line per row; a table one table
    per list (or a two-column table for a single row).
    """
    data = plain(value)
    output: Output = ctx.obj["output"]
    if output == "json":
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    if output == "ndjson":
        for row in data if isinstance(data, list) else [data]:
            click.echo(orjson.dumps(row).decode())
        return
    # Off a terminal rich assumes 80 columns: give tables room instead.
    console = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 160)
    if isinstance(data, list):
        console.print(_table(data, title) if data else f"(no {title or 'rows'})")
    elif (
        isinstance(data, dict)
        and data
        and all(isinstance(v, list) for v in data.values())
    ):
        for name, rows in data.items():
            console.print(_table(rows, name) if rows else f"(no {name})")
    else:
        console.print(_pairs(data, title))


def emit_line(ctx: click.Context, row: Mapping[str, Any]) -> None:
    """Print one row as it arrives (``--follow``), flushed at once."""
    if ctx.obj["output"] == "table":
        fields = [
            str(row.get("position")),
            str(row.get("stream")),
            str(row.get("type")),
        ]
        fields.append(orjson.dumps(row.get("data")).decode())
        click.echo("  ".join(fields))
    else:
        click.echo(orjson.dumps(plain(row)).decode())
    sys.stdout.flush()
