"""Alert rules, alert state, and the events that record alert transitions.

An alert holds a condition: a callable, or a rule over a metric's statistic
(``{"metric": "command.latency", "stat": "p99", "op": ">", "value": 0.05,
"for_s": 10}``). It fires once the condition has held for ``for_s``
seconds, by the monitoring system's clock, and resolves when it stops
holding. Both transitions are events in stream ``alerts/<name>`` when the
monitoring system has a store.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any, Literal

import msgspec

from actors._metrics import STATS
from eventstore import register_event

__all__ = [
    "ALERT_STREAM_PREFIX",
    "Alert",
    "AlertFired",
    "AlertNotice",
    "AlertResolved",
    "AlertRule",
    "AlertState",
    "alert_stream",
    "parse_rule",
]

ALERT_STREAM_PREFIX = "alerts/"
AlertState = Literal["ok", "pending", "firing"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


def alert_stream(name: str) -> str:
    """The stream recording the transitions of alert ``name``."""
    return f"{ALERT_STREAM_PREFIX}{name}"


@register_event("AlertFired")
class AlertFired(msgspec.Struct, frozen=True):
    """An alert's condition held (for its ``for_s``), or it was triggered."""

    alert: str
    value: float | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    manual: bool = False


@register_event("AlertResolved")
class AlertResolved(msgspec.Struct, frozen=True):
    """A firing alert's condition stopped holding after ``firing_s``."""

    alert: str
    value: float | None = None
    firing_s: float = 0.0


class AlertNotice(msgspec.Struct, frozen=True):
    """What an alert's callback receives when it fires."""

    name: str
    value: float | None
    at: float
    data: dict[str, Any]
    manual: bool


class AlertRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A condition on one statistic of one metric.

    Attributes:
        metric: The metric's name.
        stat: One of count, sum, min, max, mean, last, p50, p95, p99.
        op: One of ``>``, ``>=``, ``<``, ``<=``, ``==``, ``!=``.
        value: The threshold.
        for_s: How long it must hold before the alert fires.
        tags: Only series whose tags include these.

    """

    metric: str
    op: str
    value: float
    stat: str = "last"
    for_s: float = 0.0
    tags: dict[str, str | int | float | bool] | None = None

    def __post_init__(self) -> None:
        if self.stat not in STATS:
            raise ValueError(f"alert rule stat {self.stat!r} is not one of {STATS}")
        if self.op not in _OPS:
            raise ValueError(f"alert rule op {self.op!r} is not one of {tuple(_OPS)}")
        if self.for_s < 0:
            raise ValueError(f"alert rule for_s must be >= 0, not {self.for_s}")

    def holds(self, observed: float | None) -> bool:
        """Whether ``observed`` (None: no data yet) meets the rule."""
        return observed is not None and _OPS[self.op](observed, self.value)


def parse_rule(rule: Mapping[str, Any] | AlertRule) -> AlertRule:
    """An ``AlertRule`` from its dict form.

    Raises:
        ValueError: If a field is missing, unknown or of the wrong type.

    """
    if isinstance(rule, AlertRule):
        return rule
    try:
        return msgspec.convert(dict(rule), AlertRule)
    except msgspec.ValidationError as error:
        raise ValueError(f"bad alert rule {dict(rule)!r}: {error}") from error


class Alert:
    """One alert's condition, callback and state."""

    def __init__(
        self,
        name: str,
        condition: AlertRule | Callable[[Any], bool],
        callback: Callable[[AlertNotice], Any] | None,
    ) -> None:
        self.name = name
        self.condition = condition
        self.callback = callback
        self.state: AlertState = "ok"
        self.pending_since: float | None = None
        self.fired_at: float | None = None
        self.last_fired: float | None = None
        self.last_resolved: float | None = None
        self.last_value: float | None = None
        self.fire_count = 0
        self.last_checked: float | None = None

    @property
    def for_s(self) -> float:
        """How long the condition must hold before firing."""
        return self.condition.for_s if isinstance(self.condition, AlertRule) else 0.0

    def summary(self) -> dict[str, Any]:
        """The alert's state, for ``get_alerts`` and the dashboard."""
        rule = self.condition
        return {
            "name": self.name,
            "state": self.state,
            "condition": (
                msgspec.to_builtins(rule)
                if isinstance(rule, AlertRule)
                else getattr(rule, "__qualname__", repr(rule))
            ),
            "count": self.fire_count,
            "last_fired": self.last_fired,
            "last_resolved": self.last_resolved,
            "last_value": self.last_value,
            "pending_since": self.pending_since,
        }
