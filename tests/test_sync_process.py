"""Two stores in two processes sync over WebSocket through a proxy that is cut."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from click.testing import CliRunner

from actors import StoreEndpoint, SyncConnectionError, sync_websocket
from actors._cli_sync import mount_store_sync, serve_store, sync_cli
from eventstore import (
    LmdbEventStore,
    NewEvent,
    RecordCreated,
    high_water_marks,
    record_stream,
    replica_id,
)

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 30.0


def fill(path: Path, prefix: str, count: int) -> str:
    with LmdbEventStore.open(path, durability="fast") as store:
        store.append(
            [
                NewEvent(
                    record_stream("users", f"{prefix}{i}"),
                    "RecordCreated",
                    RecordCreated("users", f"{prefix}{i}", {"n": i, "pad": "x" * 64}),
                )
                for i in range(count)
            ]
        )
        return replica_id(store)


class CuttingProxy:
    """A TCP proxy that drops every connection after ``cut_after_bytes``."""

    def __init__(self, target_port: int, *, cut_after_bytes: int | None) -> None:
        self.target_port = target_port
        self.cut_after_bytes = cut_after_bytes
        self.forwarded_bytes = 0
        self.cut = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        server_reader, server_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )
        self._writers += [client_writer, server_writer]
        await asyncio.gather(
            self._pump(client_reader, server_writer, count=False),
            self._pump(server_reader, client_writer, count=True),
        )

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, count: bool
    ) -> None:
        while chunk := await reader.read(4096):
            if count and self.cut_after_bytes is not None:
                self.forwarded_bytes += len(chunk)
                if self.forwarded_bytes > self.cut_after_bytes:
                    self.cut.set()
                    for each in self._writers:
                        each.transport.abort()
                    return
            writer.write(chunk)
            await writer.drain()
        writer.close()


@pytest.fixture
async def served_store(tmp_path: Path) -> AsyncIterator[tuple[Path, str, int]]:
    """Store A with 3,000 events, served by `python -m actors._cli_sync serve`."""
    path = tmp_path / "a"
    origin = fill(path, "a", 3000)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "actors._cli_sync",
        "serve",
        "--store",
        str(path),
        "--port",
        "0",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), TIMEOUT_S)
    url = line.decode().strip().rsplit(" ", 1)[1]
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    try:
        yield path, origin, port
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(process.stdout.read(), TIMEOUT_S)
        assert await asyncio.wait_for(process.wait(), TIMEOUT_S) == 0
        assert b"served" in rest


async def test_a_sync_cut_mid_batch_resumes_where_it_stopped(
    tmp_path: Path, served_store: tuple[Path, str, int]
) -> None:
    _, a_origin, a_port = served_store
    b_path = tmp_path / "b"
    b_origin = fill(b_path, "b", 500)
    proxy = CuttingProxy(a_port, cut_after_bytes=150_000)
    proxy_port = await proxy.start()
    url = f"ws://127.0.0.1:{proxy_port}/sync"

    with LmdbEventStore.open(b_path, durability="fast") as b:
        endpoint = StoreEndpoint(b)
        with pytest.raises(SyncConnectionError):
            await asyncio.wait_for(
                sync_websocket(endpoint, url, batch_size=200, timeout_s=5), TIMEOUT_S
            )
        partial = high_water_marks(b).get(a_origin, 0)
        await proxy.stop()

        restored = CuttingProxy(a_port, cut_after_bytes=None)
        await restored.start(proxy_port)
        report = await asyncio.wait_for(
            sync_websocket(endpoint, url, batch_size=200), TIMEOUT_S
        )
        await restored.stop()
        b_marks = high_water_marks(b)

    assert proxy.cut.is_set()
    assert 0 < partial < 3000
    assert partial % 200 == 0  # batches land whole or not at all
    assert report.received == 3000 - partial
    assert report.sent + report.skipped <= 500
    assert b_marks == {a_origin: 3000, b_origin: 500}

    runner = CliRunner()
    c_path = tmp_path / "c"
    result = await asyncio.to_thread(
        runner.invoke,
        sync_cli,
        ["run", "--store", str(c_path), f"ws://127.0.0.1:{a_port}/sync"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["received"] == 3500


async def test_the_run_command_reports_an_unreachable_peer(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"ws://127.0.0.1:{port}/sync"

    result = await asyncio.to_thread(
        CliRunner().invoke, sync_cli, ["run", "--store", str(tmp_path / "c"), url]
    )

    assert result.exit_code == 1
    assert "cannot connect" in result.output


async def test_serve_store_serves_until_stopped(tmp_path: Path) -> None:
    fill(tmp_path / "a", "a", 5)
    stop = asyncio.Event()
    ready = asyncio.Event()
    urls: list[str] = []

    def announce(url: str) -> None:
        urls.append(url)
        ready.set()

    with (
        LmdbEventStore.open(tmp_path / "a", durability="fast") as a,
        LmdbEventStore.open(tmp_path / "b", durability="fast") as b,
    ):
        serving = asyncio.ensure_future(serve_store(a, ready=announce, stop=stop))
        await asyncio.wait_for(ready.wait(), TIMEOUT_S)
        report = await sync_websocket(StoreEndpoint(b), urls[0])
        stop.set()
        reports = await asyncio.wait_for(serving, TIMEOUT_S)

    assert report.received == 5
    assert len(reports) == 1


async def test_the_serve_command_can_mount_sync_on_its_application(
    tmp_path: Path,
) -> None:
    fill(tmp_path / "a", "a", 2)
    app = web.Application()
    with (
        LmdbEventStore.open(tmp_path / "a", durability="fast") as a,
        LmdbEventStore.open(tmp_path / "b", durability="fast") as b,
    ):
        endpoint = mount_store_sync(app, a, collections=("users",))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            report = await sync_websocket(
                StoreEndpoint(b), f"ws://127.0.0.1:{port}/sync"
            )
        finally:
            await runner.cleanup()

    assert report.received == 2
    assert endpoint.validation is not None
    assert endpoint.validation.accepts_collection("users")
    assert not endpoint.validation.accepts_collection("orders")
