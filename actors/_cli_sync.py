"""The command line of sync: serve a store's replica, or sync it with a peer once.

``actorlog serve --store PATH --sync`` calls :func:`mount_store_sync` on its
application; ``python -m actors._cli_sync`` runs these commands alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
import msgspec

from actors._sync import StoreEndpoint, SyncError, SyncReport
from eventstore import EventStore, LmdbEventStore, RemoteValidation

if TYPE_CHECKING:
    from aiohttp import web

# aiohttp (the `web` extra) is imported where it is used, so that the
# actorlog CLI works without it.

__all__ = ["mount_store_sync", "serve_store", "sync_cli"]


def mount_store_sync(
    app: web.Application,
    store: EventStore,
    *,
    path: str = "/sync",
    collections: tuple[str, ...] | None = None,
) -> StoreEndpoint:
    """Serve the sync protocol for ``store`` at ``path`` of ``app``.

    Args:
        app: The aiohttp application of ``actorlog serve``.
        store: The store, opened writable.
        path: Where peers connect (``ws://host:port/sync``).
        collections: Accept records of these collections only (all if None).

    Returns:
        The endpoint now served.

    """
    from actors._sync_ws import mount_sync  # noqa: PLC0415

    endpoint = StoreEndpoint(
        store, validation=RemoteValidation(collections=collections)
    )
    mount_sync(app, endpoint, path=path)
    return endpoint


async def serve_store(
    store: EventStore,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> list[SyncReport]:
    """Serve ``store`` for sync until ``stop`` is set (or SIGINT/SIGTERM).

    Returns:
        The reports of the sessions served.

    """
    from actors._sync_ws import SyncServer  # noqa: PLC0415

    stopping = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        async with SyncServer(StoreEndpoint(store), host=host, port=port) as server:
            if ready is not None:
                ready(server.url)
            await stopping.wait()
            return server.reports
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@click.group(name="sync")
def sync_cli() -> None:
    """Sync actorlog stores with each other over WebSocket."""


_store_option = click.option(
    "--store",
    "store_path",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The store directory (created if missing).",
)


@sync_cli.command("serve")
@_store_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
def serve_command(store_path: Path, host: str, port: int) -> None:
    """Serve the store's replica until interrupted; print the URL first."""

    def announce(url: str) -> None:
        click.echo(f"serving sync at {url}")

    with LmdbEventStore.open(store_path) as store:
        reports = asyncio.run(serve_store(store, host=host, port=port, ready=announce))
    click.echo(f"served {len(reports)} sessions")


@sync_cli.command("run")
@_store_option
@click.argument("url")
@click.option("--batch-size", default=1000, show_default=True, type=int)
def run_command(store_path: Path, url: str, batch_size: int) -> None:
    """Sync the store once with the peer at URL; print the report as JSON."""
    from actors._sync_ws import sync_websocket  # noqa: PLC0415

    with LmdbEventStore.open(store_path) as store:
        endpoint = StoreEndpoint(store)
        try:
            report = asyncio.run(sync_websocket(endpoint, url, batch_size=batch_size))
        except SyncError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(msgspec.json.encode(report).decode())


if __name__ == "__main__":  # pragma: no cover
    with contextlib.suppress(KeyboardInterrupt):
        sync_cli()
