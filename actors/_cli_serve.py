"""``actorlog serve``: the live dashboard of a store, until interrupted."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import click

from actors._dashboard import DashboardError, DashboardServer
from eventstore import EventStoreError, LmdbEventStore

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
@click.pass_context
def serve(
    ctx: click.Context,
    *,
    store_path: Path | None,
    host: str,
    port: int,
    token: str | None,
    refresh_s: float,
) -> None:
    """Serve the live dashboard of a store (read only) until interrupted."""
    obj: dict[str, Any] = ctx.obj if isinstance(ctx.obj, dict) else {}
    path = store_path or obj.get("store")
    if path is None:
        raise click.UsageError("give the store with --store PATH")
    try:
        store = LmdbEventStore.open(Path(path), readonly=True)
    except EventStoreError as exc:
        raise click.ClickException(str(exc)) from exc
    with store:
        try:
            server = DashboardServer(
                store, host=host, port=port, token=token, refresh_s=refresh_s
            )
            asyncio.run(_run(server, token=token))
        except DashboardError as exc:
            raise click.ClickException(str(exc)) from exc


async def _run(server: DashboardServer, *, token: str | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await server.start()
        shown = f"{server.url}?token=..." if token else server.url
        click.echo(f"actorlog dashboard at {shown} (Ctrl-C stops it)")
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await server.stop()
        click.echo("dashboard stopped")
