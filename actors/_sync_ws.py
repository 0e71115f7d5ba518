"""Sync over WebSocket: an aiohttp server and client speaking the sync protocol.

Each protocol message is one binary frame of MessagePack. The server answers
the sessions a client opens on one connection until the client closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator
from typing import Any, Self

import aiohttp
import msgspec
from aiohttp import web

from actors._sync import (
    Message,
    SyncConnectionError,
    SyncEndpoint,
    SyncError,
    SyncRefusedError,
    SyncReport,
    run_session,
    serve_sessions,
)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "SyncServer",
    "WebSocketChannel",
    "connect_websocket",
    "mount_sync",
    "sync_websocket",
]

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)
_GONE = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)


class WebSocketChannel:
    """A sync channel over one WebSocket (either end)."""

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse | web.WebSocketResponse
    ) -> None:
        self._ws = ws
        self.bytes_sent = 0
        self.bytes_received = 0

    async def send(self, message: Message) -> None:
        """Send one message as a binary frame."""
        data = _encoder.encode(message)
        try:
            await self._ws.send_bytes(data)
        except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
            raise SyncConnectionError(f"sending to the peer failed: {exc}") from exc
        self.bytes_sent += len(data)

    async def receive(self) -> Message:
        """The next message.

        Raises:
            SyncConnectionError: If the connection closed or failed.
            SyncRefusedError: If the peer sent something not in the protocol.

        """
        frame = await self._ws.receive()
        if frame.type == aiohttp.WSMsgType.BINARY:
            self.bytes_received += len(frame.data)
            try:
                return _decoder.decode(frame.data)
            except msgspec.MsgspecError as exc:
                raise SyncRefusedError(f"malformed sync message: {exc}") from exc
        if frame.type in _GONE:
            raise SyncConnectionError("the peer closed the connection")
        if frame.type == aiohttp.WSMsgType.ERROR:
            raise SyncConnectionError(f"the connection failed: {frame.data!r}")
        raise SyncRefusedError(f"unexpected {frame.type.name} frame from the peer")

    async def close(self) -> None:
        """Close the WebSocket."""
        await self._ws.close()


def mount_sync(
    app: web.Application,
    endpoint: SyncEndpoint,
    *,
    path: str = "/sync",
    batch_size: int = 1000,
    window: int = 2,
    timeout_s: float = 30.0,
    reports: list[SyncReport] | None = None,
) -> None:
    """Serve the sync protocol for ``endpoint`` at ``path`` of ``app``.

    Args:
        app: An aiohttp application (the dashboard's, or a new one).
        endpoint: The local replica.
        path: Where to accept WebSocket connections.
        batch_size: Events per batch at most.
        window: Batches in flight before waiting for an ack.
        timeout_s: How long a session waits for the peer's next message.
        reports: If given, each completed session's report is appended.

    """
    open_sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()

    async def close_all(_: web.Application) -> None:
        for ws in list(open_sockets):
            await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY)

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        open_sockets.add(ws)
        channel = WebSocketChannel(ws)
        try:
            count = await serve_sessions(
                endpoint,
                channel,
                batch_size=batch_size,
                window=window,
                timeout_s=timeout_s,
                on_report=None if reports is None else reports.append,
            )
        except SyncError as exc:
            logger.warning("sync with %s ended: %s", request.remote, exc)
        else:
            logger.info("sync peer %s left after %d sessions", request.remote, count)
        finally:
            await ws.close()
        return ws

    app.router.add_get(path, handle)
    app.on_shutdown.append(close_all)


class SyncServer:
    """A WebSocket sync server for one replica, on 127.0.0.1 by default.

    Use ``async with SyncServer(endpoint) as server:`` and connect to
    ``server.url``.
    """

    def __init__(
        self,
        endpoint: SyncEndpoint,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/sync",
        **options: Any,
    ) -> None:
        self.reports: list[SyncReport] = []
        self._app = web.Application()
        mount_sync(self._app, endpoint, path=path, reports=self.reports, **options)
        self._host = host
        self._port = port
        self._path = path
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        """Start listening; return the URL to connect to."""
        runner = web.AppRunner(self._app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._runner = runner
        port = runner.addresses[0][1]
        self.url = f"ws://{self._host}:{port}{self._path}"
        logger.info("serving sync at %s", self.url)
        return self.url

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


@contextlib.asynccontextmanager
async def connect_websocket(
    url: str, *, timeout_s: float = 10.0
) -> AsyncIterator[WebSocketChannel]:
    """Connect to a sync server.

    Raises:
        SyncConnectionError: If the server cannot be reached.

    """
    async with aiohttp.ClientSession() as session:
        try:
            ws = await asyncio.wait_for(
                session.ws_connect(url, max_msg_size=MAX_MESSAGE_BYTES), timeout_s
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise SyncConnectionError(f"cannot connect to {url}: {exc}") from exc
        channel = WebSocketChannel(ws)
        try:
            yield channel
        finally:
            await channel.close()


async def sync_websocket(
    endpoint: SyncEndpoint,
    url: str,
    *,
    batch_size: int = 1000,
    window: int = 2,
    timeout_s: float = 30.0,
) -> SyncReport:
    """Run one session with the sync server at ``url``."""
    async with connect_websocket(url, timeout_s=timeout_s) as channel:
        return await run_session(
            endpoint,
            channel,
            batch_size=batch_size,
            window=window,
            timeout_s=timeout_s,
        )
