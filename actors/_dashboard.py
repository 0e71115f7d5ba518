"""The live dashboard: an aiohttp server over a store, pushing over WebSocket.

Design note. One task follows the log (a subscription read in a worker
thread, folded on the event loop), one task ticks every ``refresh_s``:
it samples the metrics provider and pushes one encoded snapshot to every
open WebSocket. Nothing rescans the log; a drill-down reads one execution's
stream in a worker thread. The server binds to loopback unless given a
token; with a token, every request must carry it (a bearer header, a
``token`` query parameter, or the cookie the page sets), and without one
the ``Host`` must be a loopback name, which stops DNS-rebinding pages from
reading a local dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ipaddress
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Self

from actors._dashboard_fold import (
    DashboardState,
    fold_execution,
    metric_series,
    to_json,
)
from eventstore import EventStore, EventStoreError, workflow_stream

if TYPE_CHECKING:
    from actors._dashboard_http import DashboardHttp

__all__ = ["DashboardError", "DashboardServer", "MetricsProvider"]

logger = logging.getLogger(__name__)

MetricsProvider = Callable[[], Mapping[str, Any] | Awaitable[Mapping[str, Any]]]

_HISTORY_POINTS = 120
_FOLLOW_WAIT_S = 0.5
_STOP_TIMEOUT_S = 10.0


class DashboardError(Exception):
    """Raised when the dashboard cannot start as configured."""


def is_loopback(host: str) -> bool:
    """True if ``host`` names this machine's loopback interface only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class DashboardServer:
    """Serves the live dashboard of one store.

    Args:
        store: The store to show; read only.
        host: The interface to bind; loopback by default.
        port: The port; 0 picks a free one (see :attr:`url`).
        token: The secret every request must carry; required to bind
            anywhere but loopback.
        metrics: Returns a JSON-able monitoring snapshot (such as
            ``MonitoringSystem.get_dashboard()``); may be async. Its metric
            series (mappings with ``count`` and ``p50``/``p95``/...) are
            charted, and a ``projections`` mapping of name to checkpoint
            position is shown as projection lag.
        refresh_s: How often the page is pushed a new snapshot.
        window_s: How many seconds the charts span.
        clock: The wall clock, in seconds since the epoch.

    Raises:
        DashboardError: If the bind is not loopback and there is no token.
        ValueError: If ``refresh_s`` or ``window_s`` is not positive, or the
            token is empty.

    """

    def __init__(
        self,
        store: EventStore,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        metrics: MetricsProvider | None = None,
        refresh_s: float = 1.0,
        window_s: int = 120,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if refresh_s <= 0:
            raise ValueError(f"refresh_s must be > 0, not {refresh_s}")
        if token is not None and not token.strip():
            raise ValueError("token must not be empty")
        if token is None and not is_loopback(host):
            raise DashboardError(
                f"refusing to serve the dashboard on {host!r} without a token: "
                "a non-loopback bind needs --token (or token=...)"
            )
        self._store = store
        self._host = host
        self._port = port
        self._token = token
        self._metrics = metrics
        self._refresh_s = refresh_s
        self._clock = clock
        self._state = DashboardState(window_s=window_s)
        self._tasks: list[asyncio.Task[None]] = []
        self._http: DashboardHttp | None = None
        self._bound: tuple[str, int] | None = None
        self._stopping = False
        self._follow_error: str | None = None
        self._metrics_snapshot: Mapping[str, Any] = {}
        self._metrics_error: str | None = None
        self._history: dict[str, dict[str, deque[float | None]]] = {}
        self._subscription = store.subscribe(1)

    @property
    def url(self) -> str:
        """The page's address (without the token).

        Raises:
            DashboardError: If the server is not started.

        """
        if self._bound is None:
            raise DashboardError("the dashboard is not started")
        host, port = self._bound
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    async def start(self) -> None:
        """Bind and start serving; returns once the port is open.

        Raises:
            DashboardError: If aiohttp is missing, the address cannot be
                bound, or the server was started before.

        """
        if self._http is not None or self._stopping:
            raise DashboardError("the dashboard is already started")
        try:
            from actors._dashboard_http import DashboardHttp  # noqa: PLC0415
        except ImportError as exc:
            raise DashboardError(
                "the dashboard needs aiohttp: pip install 'actorlog[web]'"
            ) from exc

        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        try:
            sock = socket.create_server((self._host, self._port), family=family)
        except OSError as exc:
            raise DashboardError(
                f"cannot bind the dashboard to {self._host}:{self._port}: {exc}"
            ) from exc
        self._http = DashboardHttp(self, host=self._host, token=self._token)
        await self._http.start(sock)
        self._bound = (self._host, sock.getsockname()[1])
        self._tasks = [
            asyncio.create_task(self._follow(), name="dashboard-follow"),
            asyncio.create_task(self._tick(), name="dashboard-tick"),
        ]
        logger.info("dashboard serving %s", self.url)

    async def stop(self) -> None:
        """Close every connection and stop serving."""
        self._stopping = True
        self._subscription.close()
        for task in self._tasks:
            if task.get_name() == "dashboard-follow":
                # A closed subscription returns within its poll interval;
                # waiting keeps its worker thread off a store about to close.
                await asyncio.wait_for(task, _STOP_TIMEOUT_S)
            else:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks = []
        if self._http is not None:
            await self._http.stop()
        logger.info("dashboard stopped")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _follow(self) -> None:
        subscription = self._subscription
        try:
            while not self._stopping:
                batch = await asyncio.to_thread(subscription.next_batch, _FOLLOW_WAIT_S)
                self._state.apply(batch)
        except Exception as exc:
            # The log cannot be skipped past: stop following and show why.
            logger.exception("dashboard stopped following the log")
            self._follow_error = f"{type(exc).__name__}: {exc}"

    async def _tick(self) -> None:
        while True:
            await self.sample_metrics()
            if self._http is not None and self._http.has_clients:
                try:
                    body = to_json(self.snapshot()).decode()
                except Exception:
                    # One bad snapshot must not end the pushes for good.
                    logger.exception("the dashboard could not build a snapshot")
                else:
                    await self._http.broadcast(body)
            await asyncio.sleep(self._refresh_s)

    async def sample_metrics(self) -> None:
        """Call the metrics provider once and add a point to each series."""
        if self._metrics is None:
            return
        try:
            self._metrics_snapshot = await _call(self._metrics)
            self._metrics_error = None
        except Exception as exc:
            logger.exception("the dashboard's metrics provider failed")
            self._metrics_error = f"{type(exc).__name__}: {exc}"
            return
        series = metric_series(self._metrics_snapshot)
        for name in list(self._history):
            if name not in series:
                del self._history[name]
        for name, stats in series.items():
            history = self._history.setdefault(
                name,
                {key: deque(maxlen=_HISTORY_POINTS) for key in ("p50", "p95", "p99")},
            )
            for key, points in history.items():
                points.append(stats.get(key))

    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, as JSON-able data."""
        now_s = self._clock()
        data = self._state.snapshot(now_s)
        try:
            head = self._store.head_position()
        except EventStoreError as exc:
            # A closed or broken store: show what was folded, and why no more.
            head = data["position"]
            self._follow_error = self._follow_error or f"{type(exc).__name__}: {exc}"
        data.update(
            server_time_s=now_s,
            refresh_s=self._refresh_s,
            store=str(getattr(self._store, "path", type(self._store).__name__)),
            head_position=head,
            lag=max(0, head - data["position"]),
            follow_error=self._follow_error,
        )
        series = metric_series(self._metrics_snapshot)
        data["metrics"] = {
            "enabled": self._metrics is not None,
            "error": self._metrics_error,
            "series": series,
            "history": {
                name: {key: list(points) for key, points in history.items()}
                for name, history in self._history.items()
            },
        }
        data["projections"] = _projections(self._metrics_snapshot, head)
        return data

    async def execution(self, execution_id: str) -> dict[str, Any] | None:
        """One execution's steps and history, folded from its stream."""
        stream = workflow_stream(execution_id)
        events = await asyncio.to_thread(lambda: list(self._store.read_stream(stream)))
        return fold_execution(events)


async def _call(provider: MetricsProvider) -> Mapping[str, Any]:
    result = provider()
    if inspect.isawaitable(result):
        result = await result
    if not isinstance(result, Mapping):
        raise TypeError(
            f"the metrics provider returned {type(result).__name__}, not a mapping"
        )
    return result


def _projections(metrics: Mapping[str, Any], head: int) -> list[dict[str, Any]]:
    """Projection checkpoints named in a monitoring snapshot, with their lag."""
    found = metrics.get("projections")
    if not isinstance(found, Mapping):
        return []
    rows = []
    for name, value in sorted(found.items()):
        position = value.get("position") if isinstance(value, Mapping) else value
        if isinstance(position, int) and not isinstance(position, bool):
            rows.append(
                {
                    "name": str(name),
                    "position": position,
                    "lag": max(0, head - position),
                }
            )
    return rows
