"""Live replication: sync with a peer again and again, reconnecting with backoff.

Local writes never wait for the peer: they go to the local log, and the next
round ships them. While the peer is unreachable the replicator reports it
offline and retries with exponential backoff and jitter; when it is back,
one session brings both sides level, whatever was written meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Self

from actors._sync import (
    Channel,
    SyncEndpoint,
    SyncError,
    SyncReport,
    connect_in_process,
    run_session,
)

__all__ = ["Peer", "Replicator", "connector"]

logger = logging.getLogger(__name__)

Peer = str | SyncEndpoint
Connector = Callable[[], AbstractAsyncContextManager[Channel]]


def connector(peer: Peer, *, timeout_s: float = 30.0) -> Connector:
    """How to reach ``peer``: a ``ws://`` URL or an endpoint in this process.

    Raises:
        ValueError: If ``peer`` is a string that is not a ws:// or wss:// URL.

    """
    if isinstance(peer, str):
        if not peer.startswith(("ws://", "wss://")):
            raise ValueError(
                f"a sync peer URL must start with ws:// or wss://: {peer!r}"
            )
        url = peer

        def open_websocket() -> AbstractAsyncContextManager[Channel]:
            from actors._sync_ws import connect_websocket  # noqa: PLC0415 - aiohttp only when used

            return connect_websocket(url, timeout_s=timeout_s)

        return open_websocket

    endpoint = peer

    def open_in_process() -> AbstractAsyncContextManager[Channel]:
        return connect_in_process(endpoint, timeout_s=timeout_s)

    return open_in_process


class Replicator:
    """Keeps a local replica in sync with a peer in the background.

    Args:
        endpoint: The local replica.
        peer: A ``ws://`` URL of a sync server, or an endpoint in this process.
        interval_s: The pause between rounds while the peer is online.
        backoff_initial_s: The first pause after a failure; it doubles after
            each further failure, up to ``backoff_max_s``, with jitter.
        backoff_max_s: The longest pause between attempts.
        on_status: Called with ``(online, error)`` whenever the peer goes
            online or offline (``error`` is why it went offline).
        batch_size: Events per batch at most.
        timeout_s: How long a session waits for the peer.

    """

    def __init__(
        self,
        endpoint: SyncEndpoint,
        peer: Peer,
        *,
        interval_s: float = 5.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        on_status: Callable[[bool, Exception | None], None] | None = None,
        batch_size: int = 1000,
        timeout_s: float = 30.0,
    ) -> None:
        if interval_s <= 0 or backoff_initial_s <= 0 or backoff_max_s <= 0:
            raise ValueError("interval_s and the backoff delays must be > 0")
        self.endpoint = endpoint
        self._connect = connector(peer, timeout_s=timeout_s)
        self.interval_s = interval_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.on_status = on_status
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.online: bool | None = None
        self.last_error: Exception | None = None
        self.last_report: SyncReport | None = None
        self.rounds = 0
        self.failures = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._round_done = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start replicating in the background (in the running event loop)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop after the current round; local writes are unaffected."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            task, self._task = self._task, None
            try:
                await asyncio.wait_for(task, self.timeout_s)
            except TimeoutError:
                logger.warning("replication round did not stop in time; cancelled")

    def wake(self) -> None:
        """Start the next round now instead of after the pause."""
        self._wake.set()

    async def wait_round(self, *, timeout_s: float) -> SyncReport:
        """Wait for the next successful round and return its report.

        Raises:
            TimeoutError: If none completes within ``timeout_s``.

        """
        async with self._round_done:
            target = self.rounds + 1
            await asyncio.wait_for(
                self._round_done.wait_for(lambda: self.rounds >= target), timeout_s
            )
        assert self.last_report is not None  # noqa: S101 - set with rounds
        return self.last_report

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                async with self._connect() as channel:
                    await self._rounds(channel)
            except SyncError as exc:
                self._set_status(online=False, error=exc)
                self.failures += 1
                await self._pause(self._backoff_s())

    async def _rounds(self, channel: Channel) -> None:
        while not self._stopping:
            report = await run_session(
                self.endpoint,
                channel,
                batch_size=self.batch_size,
                timeout_s=self.timeout_s,
            )
            self.failures = 0
            self._set_status(online=True, error=None)
            async with self._round_done:
                self.last_report = report
                self.rounds += 1
                self._round_done.notify_all()
            await self._pause(self.interval_s)

    def _backoff_s(self) -> float:
        ceiling: float = self.backoff_initial_s * 2.0 ** min(self.failures - 1, 30)
        return min(self.backoff_max_s, ceiling) * random.uniform(0.5, 1.0)

    async def _pause(self, delay_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay_s)
        self._wake.clear()

    def _set_status(self, *, online: bool, error: Exception | None) -> None:
        self.last_error = error
        if self.online is online:
            return
        self.online = online
        if online:
            logger.info("sync peer of %s is online", self.endpoint.replica_id)
        else:
            logger.warning(
                "sync peer of %s is offline: %s", self.endpoint.replica_id, error
            )
        if self.on_status is not None:
            self.on_status(online, error)
