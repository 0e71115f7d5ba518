"""``MonitoringSystem``: metrics, alerts, logs, error tracking, a dashboard.

Design note. Every public method may be called from the event loop and
from actor threads at once, so the state sits behind locks; alert
callbacks and appends (``_alerting``) run after the lock is released, so a
callback may call back into the monitoring system. Nothing here blocks:
alert events are appended with ``append_future`` and ``flush`` waits for
them (at shutdown, or in tests). Memory is bounded everywhere: sample
windows per series, a series count, the log ring and the error groups.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import orjson
from opentelemetry import metrics

from actors._alerting import AlertNotifier
from actors._alerts import (
    Alert,
    AlertNotice,
    AlertRule,
    parse_rule,
)
from actors._logbook import ErrorBook, LogBook, LogEntry, parse_level
from actors._metrics import MetricKind, Metrics, Tags, summarise
from actors._monitoring_html import render_html
from actors._observability_errors import UnknownAlertError
from eventstore import EventStore

__all__ = ["MonitoringSystem"]

logger = logging.getLogger(__name__)
app_logger = logging.getLogger("actors.monitoring.app")

_POINTS_SHOWN = 120


class MonitoringSystem:
    """Metrics, alerts, logs and errors of one application, with a dashboard.

    Args:
        store: Where alert transitions are recorded (stream
            ``alerts/<name>``); none are recorded without one.
        clock: Seconds since the epoch; injectable for tests.
        window_size: Samples kept per series for percentiles.
        max_series: Series kept in all (a bound on tag cardinality).
        max_logs: Log entries kept (the oldest go first).
        max_error_groups: Error groups kept.
        alert_interval_s: A rule is checked when its metric is recorded, at
            most once per this many seconds (a percentile sorts a window:
            checking on every sample would tax the hot path).
        meter: The OpenTelemetry meter; ``actorlog``'s global one if omitted.

    """

    def __init__(
        self,
        *,
        store: EventStore | None = None,
        clock: Callable[[], float] = time.time,
        window_size: int = 1024,
        max_series: int = 1000,
        max_logs: int = 10_000,
        max_error_groups: int = 500,
        alert_interval_s: float = 1.0,
        meter: metrics.Meter | None = None,
    ) -> None:
        if alert_interval_s < 0:
            raise ValueError(f"alert_interval_s must be >= 0, not {alert_interval_s}")
        self._alert_interval_s = alert_interval_s
        self._clock = clock
        self._lock = threading.RLock()
        self._metrics = Metrics(
            window_size=window_size, max_series=max_series, meter=meter
        )
        self._alerts: dict[str, Alert] = {}
        self._logs = LogBook(max_logs)
        self._errors = ErrorBook(max_error_groups)
        self._notifier = AlertNotifier(
            store, lambda error, where: self.record_error(error, where=where)
        )
        self._dashboard: dict[str, Any] | None = None

    # -- metrics ----------------------------------------------------------

    def _record(
        self, name: str, kind: MetricKind, value: float, tags: Tags | None
    ) -> None:
        now = self._clock()
        with self._lock:
            series = self._metrics.record(name, kind, value, tags, now)
            due = [
                alert
                for alert in self._alerts.values()
                if isinstance(alert.condition, AlertRule)
                and alert.condition.metric == name
                and (
                    alert.last_checked is None
                    or now - alert.last_checked >= self._alert_interval_s
                )
            ]
        if series is not None:
            for alert in due:
                self._evaluate(alert)

    def record_metric(self, name: str, value: float, tags: Tags | None = None) -> None:
        """Record one observation of a distribution (a histogram)."""
        self._record(name, "metric", value, tags)

    def record_counter(
        self, name: str, increment: float = 1, tags: Tags | None = None
    ) -> None:
        """Add ``increment`` (>= 0) to a counter."""
        self._record(name, "counter", increment, tags)

    def record_gauge(self, name: str, value: float, tags: Tags | None = None) -> None:
        """Set a gauge to ``value``."""
        self._record(name, "gauge", value, tags)

    def record_timer(
        self, name: str, duration_s: float | None = None, tags: Tags | None = None
    ) -> contextlib.AbstractContextManager[None]:
        """Record a duration in seconds; without one, time the ``with`` block.

        ``monitoring.record_timer("load", 0.2)`` records at once;
        ``with monitoring.record_timer("load"): ...`` records the block's
        duration, also when it raises.
        """
        if duration_s is not None:
            if duration_s < 0:
                raise ValueError(
                    f"timer {name!r}: duration must be >= 0, not {duration_s}"
                )
            self._record(name, "timer", duration_s, tags)
            return contextlib.nullcontext()
        return self._time(name, tags)

    @contextlib.contextmanager
    def _time(self, name: str, tags: Tags | None) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self._record(name, "timer", time.perf_counter() - started, tags)

    def get_metric(self, name: str, tags: Tags | None = None) -> dict[str, float]:
        """The statistics of ``name`` over the series whose tags include ``tags``.

        Returns:
            count, sum, min, max, mean, last, p50, p95, p99; empty if no data.

        """
        with self._lock:
            return summarise(self._metrics.series(name, tags))

    def get_metrics(self) -> dict[str, dict[str, float]]:
        """The statistics of every metric, all tags together."""
        with self._lock:
            return {
                name: summarise(self._metrics.series(name))
                for name in self._metrics.names()
            }

    # -- built-in metrics (hooks for the DataManager and the engine) ------

    def record_command(
        self,
        command: str,
        collection: str,
        duration_s: float,
        *,
        error: BaseException | None = None,
    ) -> None:
        """Record one command: ``command.latency``, ``.count``, ``.errors``."""
        tags = {"command": command, "collection": collection}
        self.record_timer("command.latency", duration_s, tags)
        self.record_counter("command.count", 1, tags)
        if error is not None:
            self.record_counter(
                "command.errors", 1, {**tags, "error.type": type(error).__qualname__}
            )
            self.record_error(error, where=f"{command} {collection}")

    def record_append(self, event_count: int, duration_s: float) -> None:
        """Record one append: ``append.latency`` and ``append.events``."""
        self.record_timer("append.latency", duration_s)
        self.record_counter("append.events", event_count)

    def record_workflow_step(
        self, workflow: str, step: str, duration_s: float, *, outcome: str
    ) -> None:
        """Record a step attempt: ``workflow.step.duration``, ``workflow.steps``."""
        tags = {"workflow": workflow, "step": step, "outcome": outcome}
        self.record_timer("workflow.step.duration", duration_s, tags)
        self.record_counter("workflow.steps", 1, tags)

    def record_projection_lag(self, projection: str, lag_events: int) -> None:
        """Record how many events a projection is behind the log's head."""
        self.record_gauge("projection.lag", lag_events, {"projection": projection})

    def record_sync(self, collection: str, events: int, duration_s: float) -> None:
        """Record one sync: ``sync.latency`` and ``sync.events``."""
        tags = {"collection": collection}
        self.record_timer("sync.latency", duration_s, tags)
        self.record_counter("sync.events", events, tags)

    # -- alerts -----------------------------------------------------------

    def set_alert(
        self,
        name: str,
        condition: Mapping[str, Any] | AlertRule | Callable[[MonitoringSystem], bool],
        callback: Callable[[AlertNotice], Any] | None = None,
    ) -> None:
        """Watch ``condition``; call ``callback`` when the alert fires.

        Args:
            name: The alert's name (replaces an alert of that name).
            condition: A rule (a dict or ``AlertRule``), checked whenever its
                metric is recorded; or a callable taking this monitoring
                system, checked by ``check_alerts``/``update_dashboard``.
            callback: Called with an ``AlertNotice`` on firing; a coroutine
                function runs as a task on the running loop.

        Raises:
            ValueError: If the name is empty or the rule is malformed.

        """
        if not name or "/" in name:
            raise ValueError(f"alert name {name!r} must be non-empty, without '/'")
        rule = condition if callable(condition) else parse_rule(condition)
        with self._lock:
            self._alerts[name] = Alert(name, rule, callback)

    def remove_alert(self, name: str) -> None:
        """Stop watching alert ``name``.

        Raises:
            UnknownAlertError: If there is no such alert.

        """
        with self._lock:
            if self._alerts.pop(name, None) is None:
                raise UnknownAlertError(f"no alert named {name!r}")

    def trigger_alert(self, name: str, data: Mapping[str, Any] | None = None) -> None:
        """Fire alert ``name`` now, whatever its condition, with ``data``.

        Raises:
            UnknownAlertError: If there is no such alert.

        """
        with self._lock:
            alert = self._alerts.get(name)
            if alert is None:
                raise UnknownAlertError(f"no alert named {name!r}")
        self._fire(alert, alert.last_value, dict(data or {}), manual=True)

    def get_alerts(self) -> list[dict[str, Any]]:
        """Each alert's state, condition, fire count and times."""
        with self._lock:
            return [alert.summary() for alert in self._alerts.values()]

    def check_alerts(self) -> list[dict[str, Any]]:
        """Evaluate every alert now (callables included); return their state."""
        with self._lock:
            alerts = list(self._alerts.values())
        for alert in alerts:
            self._evaluate(alert)
        return self.get_alerts()

    def _observe(self, alert: Alert) -> tuple[bool, float | None]:
        condition = alert.condition
        if isinstance(condition, AlertRule):
            with self._lock:
                value = self._metrics.stat(
                    condition.metric, condition.stat, condition.tags
                )
            return condition.holds(value), value
        try:
            return bool(condition(self)), None
        except Exception as error:
            logger.exception("alert %r: its condition raised", alert.name)
            self.record_error(error, where=f"alert {alert.name}")
            return False, None

    def _evaluate(self, alert: Alert) -> None:
        holds, value = self._observe(alert)
        now = self._clock()
        fire = resolve = False
        with self._lock:
            alert.last_value = value
            alert.last_checked = now
            if holds and alert.state == "ok":
                alert.state = "pending"
                alert.pending_since = now
            if holds and alert.state == "pending":
                since = alert.pending_since if alert.pending_since is not None else now
                fire = now - since >= alert.for_s
            elif not holds and alert.state == "firing":
                resolve = True
            elif not holds:
                alert.state = "ok"
                alert.pending_since = None
        if fire:
            self._fire(alert, value, {}, manual=False)
        if resolve:
            self._resolve(alert, value)

    def _fire(
        self, alert: Alert, value: float | None, data: dict[str, Any], *, manual: bool
    ) -> None:
        now = self._clock()
        with self._lock:
            alert.state = "firing"
            alert.pending_since = None
            alert.fire_count += 1
            alert.last_fired = alert.fired_at = now
        self._notifier.fired(alert, AlertNotice(alert.name, value, now, data, manual))

    def _resolve(self, alert: Alert, value: float | None) -> None:
        now = self._clock()
        with self._lock:
            firing_s = now - alert.fired_at if alert.fired_at is not None else 0.0
            alert.state = "ok"
            alert.last_resolved = now
            alert.fired_at = None
        self._notifier.resolved(alert, value, firing_s)

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until recorded alert transitions are committed (blocking).

        Raises:
            TimeoutError: If they are not committed within ``timeout_s``.

        """
        self._notifier.flush(timeout_s)

    # -- logs and errors --------------------------------------------------

    def log(
        self, level: str | int, message: str, data: Mapping[str, Any] | None = None
    ) -> None:
        """Keep a log entry (and pass it to the ``actors.monitoring.app`` logger)."""
        name, number = parse_level(level)
        entry = LogEntry(self._clock(), name, message, dict(data or {}))
        self._logs.add(entry)
        app_logger.log(number, "%s %s", message, entry.data or "")

    def get_logs(self, filter: Mapping[str, Any] | None = None) -> list[LogEntry]:  # noqa: A002 - the specification's name
        """The kept log entries, oldest first, that pass ``filter``.

        Args:
            filter: ``level`` (the minimum), ``text`` (a substring of the
                message, case-insensitive), ``since`` and ``until`` (clock
                times, inclusive), ``limit`` (the newest N).

        Raises:
            ValueError: If the filter has an unknown key or a bad level.

        """
        return self._logs.query(dict(filter or {}))

    def clear_logs(self) -> None:
        """Forget every kept log entry."""
        self._logs.clear()

    def record_error(self, error: BaseException, *, where: str | None = None) -> None:
        """Count ``error`` in its group: its type and where it was raised."""
        self._errors.record(error, where, self._clock())

    @contextlib.contextmanager
    def track_errors(self, where: str | None = None) -> Iterator[None]:
        """Count any exception raised in the block, then let it propagate."""
        try:
            yield
        except Exception as error:
            self.record_error(error, where=where)
            raise

    def get_errors(self) -> list[dict[str, Any]]:
        """The error groups, the most frequent first."""
        return self._errors.groups()

    # -- the dashboard ----------------------------------------------------

    def get_dashboard(self) -> dict[str, Any]:
        """A snapshot of metrics, alerts, errors and logs (JSON-ready)."""
        with self._lock:
            series = [
                {
                    "name": one.name,
                    "kind": one.kind,
                    "tags": dict(one.tags),
                    **one.stats(),
                    "points": [
                        list(point) for point in list(one.samples)[-_POINTS_SHOWN:]
                    ],
                }
                for one in self._metrics.series()
            ]
            dropped = self._metrics.dropped_series
        return {
            "generated_at": self._clock(),
            "metrics": series,
            "dropped_series": dropped,
            "alerts": self.get_alerts(),
            "errors": self.get_errors(),
            "logs": self._logs.summary(),
        }

    def update_dashboard(self) -> dict[str, Any]:
        """Evaluate every alert, then take and keep a fresh snapshot."""
        self.check_alerts()
        snapshot = self.get_dashboard()
        with self._lock:
            self._dashboard = snapshot
        return snapshot

    @property
    def last_dashboard(self) -> dict[str, Any] | None:
        """The snapshot kept by the last ``update_dashboard``."""
        return self._dashboard

    def export_dashboard(self, format: Literal["json", "html"] = "json") -> str:  # noqa: A002 - the specification's name
        """The current snapshot as JSON, or as a self-contained HTML report.

        The HTML has its charts as inline SVG and loads nothing from the
        network.

        Raises:
            ValueError: If the format is neither ``json`` nor ``html``.

        """
        if format not in ("json", "html"):
            raise ValueError(
                f"dashboard format must be 'json' or 'html', not {format!r}"
            )
        snapshot = self.get_dashboard()
        if format == "json":
            return orjson.dumps(
                snapshot, default=str, option=orjson.OPT_INDENT_2
            ).decode()
        return render_html(snapshot)
