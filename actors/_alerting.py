"""Delivering alert transitions: callbacks, and events in the store.

Nothing here blocks the caller: events are appended with
``append_future`` (``flush`` waits for them), async callbacks run as
tasks on the running loop. A callback that raises is logged and reported
through ``on_error``; it never reaches the code that recorded a metric.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

import msgspec

from actors._alerts import Alert, AlertFired, AlertNotice, AlertResolved, alert_stream
from actors._trace_context import current_traceparent
from eventstore import (
    AppendResult,
    EventMetadata,
    EventStore,
    EventStoreError,
    NewEvent,
)

__all__ = ["AlertNotifier"]

logger = logging.getLogger(__name__)


class AlertNotifier:
    """Runs callbacks and records ``AlertFired``/``AlertResolved`` events."""

    def __init__(
        self,
        store: EventStore | None,
        on_error: Callable[[BaseException, str], None],
    ) -> None:
        self._store = store
        self._on_error = on_error
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future[AppendResult]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    def fired(self, alert: Alert, notice: AlertNotice) -> None:
        """Record the firing and call the alert's callback."""
        logger.warning("alert %r fired (value %s)", alert.name, notice.value)
        event = AlertFired(alert.name, notice.value, notice.data, notice.manual)
        self._append(alert.name, "AlertFired", event)
        if alert.callback is not None:
            self._call_back(alert.name, alert.callback, notice)

    def resolved(self, alert: Alert, value: float | None, firing_s: float) -> None:
        """Record the resolution."""
        logger.info("alert %r resolved after %.3f s", alert.name, firing_s)
        event = AlertResolved(alert.name, value, firing_s)
        self._append(alert.name, "AlertResolved", event)

    def _call_back(
        self, name: str, callback: Callable[[AlertNotice], Any], notice: AlertNotice
    ) -> None:
        try:
            result = callback(notice)
        except Exception as error:
            logger.exception("alert %r: its callback raised", name)
            self._on_error(error, f"alert {name} callback")
            return
        if not inspect.isawaitable(result):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if inspect.iscoroutine(result):
                result.close()
            logger.error(  # noqa: TRY400 - not an exception: a misuse
                "alert %r: its async callback needs a running event loop", name
            )
            return
        task = loop.create_task(_await(result))
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._callback_done(name, done))

    def _callback_done(self, name: str, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("alert %r: its async callback raised %r", name, error)
            self._on_error(error, f"alert {name} callback")

    def _append(self, name: str, event_type: str, data: msgspec.Struct) -> None:
        if self._store is None:
            return
        metadata = EventMetadata(traceparent=current_traceparent())
        event = NewEvent(alert_stream(name), event_type, data, metadata)
        try:
            future = self._store.append_future([event])
        except EventStoreError as error:
            logger.error("alert %r: recording %s failed: %s", name, event_type, error)  # noqa: TRY400 - reported, not hidden
            self._on_error(error, f"alert {name} record")
            return
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._appended)

    def _appended(self, future: concurrent.futures.Future[AppendResult]) -> None:
        with self._lock:
            self._pending.discard(future)
        if (error := future.exception()) is not None:
            logger.error("recording an alert transition failed: %r", error)

    def flush(self, timeout_s: float) -> None:
        """Wait until the recorded transitions are committed (blocking).

        Raises:
            TimeoutError: If they are not committed within ``timeout_s``.

        """
        with self._lock:
            pending = list(self._pending)
        _, waiting = concurrent.futures.wait(pending, timeout=timeout_s)
        if waiting:
            raise TimeoutError(
                f"{len(waiting)} alert events not committed in {timeout_s} s"
            )


async def _await(awaitable: Any) -> Any:
    return await awaitable
