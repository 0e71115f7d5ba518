"""``actorlog serve``: the live dashboard of a store, until interrupted."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from actors._dashboard import DashboardError, DashboardServer
from eventstore import EventStoreError, LmdbEventStore

if TYPE_CHECKING:
    from actors._sync_ws import SyncServer

__all__ = ["serve"]


@click.command("serve")
@click.option(
    "--store",
    "store_path",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The store's directory (default: the root command's --store).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="The interface to bind; anything but loopback needs --token.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="The port; 0 picks a free one.",
)
@click.option(
    "--token",
    envvar="ACTORLOG_DASHBOARD_TOKEN",
    default=None,
    help="A secret every request must carry (env ACTORLOG_DASHBOARD_TOKEN).",
)
@click.option(
    "--refresh",
    "refresh_s",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between pushes to the page.",
)
@click.option(
    "--sync",
    is_flag=True,
    default=False,
    help="Also serve the store's replica to sync peers (opens it writable).",
)
@click.option(
    "--sync-port",
    type=int,
    default=8765,
    show_default=True,
    help="The sync WebSocket's port (on --host; 0 picks a free one).",
)
@click.pass_context
def serve(
    ctx: click.Context,
    *,
    store_path: Path | None,
    host: str,
    port: int,
    token: str | None,
    refresh_s: float,
    sync: bool,
    sync_port: int,
) -> None:
    """Serve the live dashboard of a store until interrupted.

    The store is opened read only, unless ``--sync`` also serves it to sync
    peers (``actorlog sync run --store OTHER URL``): then it is writable.
    """
    obj: dict[str, Any] = ctx.obj if isinstance(ctx.obj, dict) else {}
    path = store_path or obj.get("store")
    if path is None:
        raise click.UsageError("give the store with --store PATH")
    try:
        store = LmdbEventStore.open(Path(path), readonly=not sync)
    except EventStoreError as exc:
        raise click.ClickException(str(exc)) from exc
    with store:
        try:
            server = DashboardServer(
                store, host=host, port=port, token=token, refresh_s=refresh_s
            )
            sync_server = None
            if sync:
                # aiohttp (the `web` extra) is needed only here.
                from actors._sync import StoreEndpoint  # noqa: PLC0415
                from actors._sync_ws import SyncServer  # noqa: PLC0415

                sync_server = SyncServer(
                    StoreEndpoint(store), host=host, port=sync_port
                )
            asyncio.run(_run(server, token=token, sync_server=sync_server))
        except DashboardError as exc:
            raise click.ClickException(str(exc)) from exc


async def _run(
    server: DashboardServer,
    *,
    token: str | None,
    sync_server: SyncServer | None = None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await server.start()
        shown = f"{server.url}?token=..." if token else server.url
        click.echo(f"actorlog dashboard at {shown} (Ctrl-C stops it)")
        if sync_server is not None:
            await sync_server.start()
            click.echo(f"actorlog sync at {sync_server.url}")
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        if sync_server is not None:
            await sync_server.stop()
        await server.stop()
        click.echo("dashboard stopped")
