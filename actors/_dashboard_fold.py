"""What the dashboard shows, folded from the log one batch at a time.

Design note. The dashboard follows the log from position 1 and folds each
event once: per-second throughput buckets, commit sizes, a small summary
per workflow execution, alerts and recent errors. Nothing here rescans the
log. Memory stays bounded except for one small summary per execution: the
buckets are pruned to the window, and the lists of errors and alerts are
capped. An execution's steps are not kept; a drill-down folds that one
stream on demand (:func:`fold_execution`).

Events of one commit share their ``recorded_at`` (the writer stamps the
transaction), so a run of consecutive events with one timestamp is one
commit: that is how commit sizes are seen from a reader.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import math
import random
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from eventstore import WORKFLOW_STREAM_PREFIX, StoredEvent

__all__ = [
    "ALERT_STREAM_PREFIX",
    "DashboardState",
    "fold_execution",
    "metric_series",
    "to_json",
    "to_plain",
]

ALERT_STREAM_PREFIX = "alerts/"

# Execution states as the dashboard names them.
_RUNNING = "running"
_FINAL_STATES = {
    "WorkflowCompleted": "completed",
    "WorkflowFailed": "failed",
    "WorkflowCancelled": "cancelled",
}
_STATE_AFTER = {
    "WorkflowStarted": _RUNNING,
    "WorkflowPaused": "paused",
    "WorkflowResumed": _RUNNING,
    **_FINAL_STATES,
}
_STEP_EVENTS = frozenset(
    {
        "WorkflowStepStarted",
        "WorkflowStepSucceeded",
        "WorkflowStepFailed",
        "WorkflowStepRetried",
        "WorkflowStepSkipped",
    }
)
_STAT_KEYS = ("count", "sum", "min", "max", "p50", "p95", "p99")
_SAMPLES_PER_BUCKET = 1024
_RECENT = 50


def to_plain(value: Any) -> Any:
    """``value`` as JSON-able builtins (structs, datetimes, bytes included)."""
    return msgspec.to_builtins(value, str_keys=True, enc_hook=repr)


def to_json(value: Any) -> bytes:
    """``value`` as JSON; anything JSON lacks is shown by its ``repr``."""
    return msgspec.json.encode(value, enc_hook=repr)


def _field(data: Any, name: str, default: Any = None) -> Any:
    """A field of event data, whether a registered struct or a plain dict."""
    if isinstance(data, Mapping):
        return data.get(name, default)
    return getattr(data, name, default)


def _iso(when: dt.datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def _category(stream: str) -> str:
    """A record stream's collection; otherwise the stream's first segment."""
    head, sep, rest = stream.partition("/")
    if head == "records" and sep:
        return rest.partition("/")[0] or stream
    return f"{head}/" if sep else head


def _percentile(ordered: list[float], fraction: float) -> float:
    index = max(0, math.ceil(fraction * len(ordered)) - 1)
    return ordered[index]


@dataclasses.dataclass(slots=True)
class _Bucket:
    """One second of the log."""

    events: int = 0
    commits: int = 0
    max_commit: int = 0
    by_type: Counter[str] = dataclasses.field(default_factory=Counter)
    by_collection: Counter[str] = dataclasses.field(default_factory=Counter)
    durations: list[float] = dataclasses.field(default_factory=list)
    steps_seen: int = 0


@dataclasses.dataclass(slots=True)
class _Execution:
    """What the overview keeps of one execution."""

    execution_id: str
    workflow: str = ""
    state: str = _RUNNING
    started_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    last_position: int = 0
    step: str | None = None
    failures: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "workflow": self.workflow,
            "state": self.state,
            "started_at": _iso(self.started_at),
            "updated_at": _iso(self.updated_at),
            "ended_at": _iso(self.ended_at),
            "last_position": self.last_position,
            "step": self.step,
            "failures": self.failures,
        }


class DashboardState:
    """The dashboard's incremental fold of the log.

    Args:
        window_s: How many seconds of throughput history to keep.
        seed: Seeds the sampling of step durations in busy seconds.

    """

    def __init__(self, *, window_s: int = 120, seed: int = 0) -> None:
        if window_s < 1:
            raise ValueError(f"window_s must be >= 1, not {window_s}")
        self.window_s = window_s
        self.position = 0
        self._random = random.Random(seed)
        self._buckets: dict[int, _Bucket] = {}
        self._last_commit: tuple[dt.datetime, int] | None = None
        self._executions: OrderedDict[str, _Execution] = OrderedDict()
        self._by_state: Counter[str] = Counter()
        self._by_workflow: dict[str, Counter[str]] = {}
        self._alerts: dict[str, dict[str, Any]] = {}
        self._alert_events: deque[dict[str, Any]] = deque(maxlen=_RECENT)
        self._errors: deque[dict[str, Any]] = deque(maxlen=_RECENT)

    def apply(self, events: Iterable[StoredEvent]) -> None:
        """Fold ``events``, which follow :attr:`position` in log order."""
        for event in events:
            self._count(event)
            if event.stream.startswith(WORKFLOW_STREAM_PREFIX):
                self._workflow_event(event)
            elif event.stream.startswith(ALERT_STREAM_PREFIX):
                self._alert_event(event)
            self.position = event.position

    def _count(self, event: StoredEvent) -> None:
        second = math.floor(event.recorded_at.timestamp())
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = _Bucket()
        bucket.events += 1
        bucket.by_type[event.type] += 1
        bucket.by_collection[_category(event.stream)] += 1

        if self._last_commit is not None and self._last_commit[0] == event.recorded_at:
            size = self._last_commit[1] + 1
        else:
            size = 1
            bucket.commits += 1
        self._last_commit = (event.recorded_at, size)
        bucket.max_commit = max(bucket.max_commit, size)

        duration_s = _field(event.data, "duration_s")
        if event.type in _STEP_EVENTS and isinstance(duration_s, (int, float)):
            self._sample(bucket, float(duration_s))

    def _sample(self, bucket: _Bucket, duration_s: float) -> None:
        # Reservoir sampling keeps a busy second's percentiles honest in
        # bounded memory.
        bucket.steps_seen += 1
        if len(bucket.durations) < _SAMPLES_PER_BUCKET:
            bucket.durations.append(duration_s)
            return
        slot = self._random.randrange(bucket.steps_seen)
        if slot < _SAMPLES_PER_BUCKET:
            bucket.durations[slot] = duration_s

    def _workflow_event(self, event: StoredEvent) -> None:
        execution_id = event.stream[len(WORKFLOW_STREAM_PREFIX) :]
        execution = self._executions.get(execution_id)
        if execution is None:
            execution = _Execution(execution_id)
            self._executions[execution_id] = execution
            self._move(execution, None, execution.state)
        self._executions.move_to_end(execution_id)
        execution.updated_at = event.recorded_at
        execution.last_position = event.position

        data = event.data
        if event.type == "WorkflowStarted":
            self._move(execution, execution.state, None)
            execution.workflow = str(_field(data, "workflow", ""))
            execution.started_at = event.recorded_at
            self._move(execution, None, execution.state)
        if event.type in _STEP_EVENTS:
            execution.step = _field(data, "step")
        if event.type in {"WorkflowStepFailed", "WorkflowFailed"}:
            self._error(event, execution)
        new_state = _STATE_AFTER.get(event.type)
        if event.type == "WorkflowStepRetried" and execution.state == "failed":
            new_state = _RUNNING
        if new_state is not None and new_state != execution.state:
            self._move(execution, execution.state, new_state)
            execution.state = new_state
            ended = new_state in _FINAL_STATES.values()
            execution.ended_at = event.recorded_at if ended else None

    def _move(self, execution: _Execution, old: str | None, new: str | None) -> None:
        counts = self._by_workflow.setdefault(execution.workflow, Counter())
        if old is not None:
            self._by_state[old] -= 1
            counts[old] -= 1
        if new is not None:
            self._by_state[new] += 1
            counts[new] += 1

    def _error(self, event: StoredEvent, execution: _Execution) -> None:
        data = event.data
        if event.type == "WorkflowStepFailed":
            execution.failures += 1
        self._errors.appendleft(
            {
                "position": event.position,
                "at": _iso(event.recorded_at),
                "execution_id": execution.execution_id,
                "workflow": execution.workflow,
                "kind": "step" if event.type == "WorkflowStepFailed" else "execution",
                "step": _field(data, "step"),
                "attempt": _field(data, "attempt"),
                "error_type": _field(data, "error_type"),
                "error": _field(data, "error"),
                "will_retry": _field(data, "will_retry") is True,
            }
        )

    def _alert_event(self, event: StoredEvent) -> None:
        data = to_plain(event.data)
        name = _field(data, "name") or event.stream[len(ALERT_STREAM_PREFIX) :]
        firing = event.type != "AlertResolved"
        alert = self._alerts.setdefault(str(name), {"name": str(name), "fired": 0})
        if firing:
            alert["fired"] += 1
        if alert.get("firing") != firing:
            alert["since"] = _iso(event.recorded_at)
        alert.update(
            firing=firing, at=_iso(event.recorded_at), data=data, type=event.type
        )
        self._alert_events.appendleft(
            {
                "name": str(name),
                "type": event.type,
                "at": _iso(event.recorded_at),
                "position": event.position,
                "data": data,
            }
        )

    def snapshot(self, now_s: float) -> dict[str, Any]:
        """The overview at time ``now_s`` (seconds since the epoch)."""
        last = math.floor(now_s)
        first = last - self.window_s + 1
        for second in [s for s in self._buckets if s < first]:
            del self._buckets[second]

        seconds = list(range(first, last + 1))
        buckets = [self._buckets.get(s, _Bucket()) for s in seconds]
        by_type: Counter[str] = Counter()
        by_collection: Counter[str] = Counter()
        for bucket in buckets:
            by_type.update(bucket.by_type)
            by_collection.update(bucket.by_collection)
        top_types = [name for name, _ in by_type.most_common(5)]

        return {
            "position": self.position,
            "throughput": {
                "start_s": first,
                "seconds": len(seconds),
                "total": [b.events for b in buckets],
                "by_type": {
                    name: [b.by_type.get(name, 0) for b in buckets]
                    for name in top_types
                },
                "type_totals": dict(by_type.most_common()),
                "collection_totals": dict(by_collection.most_common()),
                "commits": [b.commits for b in buckets],
                "max_commit": [b.max_commit for b in buckets],
            },
            "step_latency": _latency(buckets),
            "workflows": {
                "by_state": {k: v for k, v in self._by_state.items() if v},
                "by_workflow": {
                    name: {k: v for k, v in counts.items() if v}
                    for name, counts in sorted(self._by_workflow.items())
                    if any(counts.values())
                },
                "total": len(self._executions),
                "recent": [
                    execution.as_json()
                    for execution in itertools.islice(
                        reversed(self._executions.values()), _RECENT
                    )
                ],
            },
            "alerts": {
                "active": [dict(a) for a in self._alerts.values() if a["firing"]],
                "known": len(self._alerts),
                "recent": list(self._alert_events),
            },
            "errors": list(self._errors),
        }


def _latency(buckets: list[_Bucket]) -> dict[str, list[float | None]]:
    p50: list[float | None] = []
    p95: list[float | None] = []
    p99: list[float | None] = []
    for bucket in buckets:
        if not bucket.durations:
            p50.append(None)
            p95.append(None)
            p99.append(None)
            continue
        ordered = sorted(bucket.durations)
        p50.append(_percentile(ordered, 0.50))
        p95.append(_percentile(ordered, 0.95))
        p99.append(_percentile(ordered, 0.99))
    return {"p50": p50, "p95": p95, "p99": p99}


def _definition_steps(definition: Any) -> list[str]:
    """Step names a definition lists, in its order, if its shape says so."""
    steps = _field(definition, "steps")
    if isinstance(steps, Mapping):
        return [str(name) for name in steps]
    if isinstance(steps, list):
        names = [_field(step, "name") or _field(step, "id") for step in steps]
        return [str(name) for name in names if name]
    return []


def fold_execution(events: Iterable[StoredEvent]) -> dict[str, Any] | None:
    """One execution's state and steps from its stream's events.

    Returns:
        The execution as JSON-able data, or None if the stream is empty.

    """
    execution: dict[str, Any] | None = None
    steps: dict[str, dict[str, Any]] = {}
    history: list[dict[str, Any]] = []
    for event in events:
        if execution is None:
            execution = {
                "execution_id": event.stream[len(WORKFLOW_STREAM_PREFIX) :],
                "workflow": None,
                "state": _RUNNING,
                "started_at": _iso(event.recorded_at),
                "ended_at": None,
                "input": None,
                "output": None,
                "error": None,
            }
        history.append(
            {
                "position": event.position,
                "version": event.version,
                "type": event.type,
                "at": _iso(event.recorded_at),
                "step": _field(event.data, "step"),
            }
        )
        _execution_event(execution, steps, event)
    if execution is None:
        return None
    execution["steps"] = list(steps.values())
    execution["history"] = history
    return execution


def _execution_event(
    execution: dict[str, Any], steps: dict[str, dict[str, Any]], event: StoredEvent
) -> None:
    data = event.data
    if event.type == "WorkflowStarted":
        execution["workflow"] = _field(data, "workflow")
        execution["input"] = to_plain(_field(data, "input"))
        for name in _definition_steps(_field(data, "definition")):
            steps.setdefault(name, _new_step(name))
    elif event.type in _STEP_EVENTS:
        name = str(_field(data, "step"))
        _step_event(steps.setdefault(name, _new_step(name)), event)
        if event.type == "WorkflowStepRetried" and execution["state"] == "failed":
            execution["state"] = _RUNNING
            execution["ended_at"] = None
    state = _STATE_AFTER.get(event.type)
    if state is not None:
        execution["state"] = state
        final = event.type in _FINAL_STATES
        execution["ended_at"] = _iso(event.recorded_at) if final else None
    if event.type == "WorkflowCompleted":
        execution["output"] = to_plain(_field(data, "output"))
    if event.type == "WorkflowFailed":
        execution["error"] = _error_text(data)


def _new_step(name: str) -> dict[str, Any]:
    return {
        "step": name,
        "state": "pending",
        "attempts": 0,
        "started_at": None,
        "ended_at": None,
        "duration_s": None,
        "error": None,
        "output": None,
        "reason": None,
    }


def _step_event(step: dict[str, Any], event: StoredEvent) -> None:
    data = event.data
    at = _iso(event.recorded_at)
    if event.type == "WorkflowStepStarted":
        step["state"] = "running"
        step["attempts"] = max(step["attempts"], int(_field(data, "attempt", 1)))
        step["started_at"] = step["started_at"] or at
        step["ended_at"] = None
    elif event.type == "WorkflowStepSucceeded":
        step.update(
            state="succeeded",
            ended_at=at,
            duration_s=_field(data, "duration_s"),
            output=to_plain(_field(data, "output")),
            error=None,
        )
    elif event.type == "WorkflowStepFailed":
        will_retry = _field(data, "will_retry") is True
        step.update(
            state="retrying" if will_retry else "failed",
            ended_at=at,
            duration_s=_field(data, "duration_s"),
            error=_error_text(data),
        )
    elif event.type == "WorkflowStepRetried":
        step["state"] = "retrying"
    else:
        step.update(
            state="skipped",
            ended_at=at,
            reason=_field(data, "reason"),
            output=to_plain(_field(data, "output")),
        )


def _error_text(data: Any) -> str:
    error_type = _field(data, "error_type")
    error = _field(data, "error", "")
    return f"{error_type}: {error}" if error_type else str(error)


def metric_series(snapshot: Any, *, depth: int = 4) -> dict[str, dict[str, float]]:
    """The metric series in a monitoring snapshot, by dotted name.

    A series is any mapping holding a numeric ``count`` and at least one of
    ``sum``, ``min``, ``max``, ``p50``, ``p95``, ``p99``; it is found at any
    depth up to ``depth``, so the shape of the snapshot is free.
    """
    found: dict[str, dict[str, float]] = {}

    def walk(value: Any, path: list[str], level: int) -> None:
        if not isinstance(value, Mapping) or level > depth:
            return
        stats = {
            key: float(value[key])
            for key in _STAT_KEYS
            if isinstance(value.get(key), (int, float))
            and not isinstance(value.get(key), bool)
        }
        if "count" in stats and len(stats) > 1:
            found[".".join(path)] = stats
            return
        for key, child in value.items():
            walk(child, [*path, str(key)], level + 1)

    walk(snapshot, [], 0)
    return dict(sorted(found.items()))
