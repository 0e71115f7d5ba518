"""In-process metric aggregates with bounded memory, mirrored to OpenTelemetry.

Each metric name with one set of tags is a series. A series keeps running
totals (count, sum, min, max, last) over its whole life and the latest
``window_size`` samples, over which percentiles are computed: memory per
series is bounded, and so is the number of series (further series are
dropped with a warning, since unbounded tag values are a bug).
"""

from __future__ import annotations

import logging
import math
import re
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from opentelemetry import metrics

__all__ = [
    "STATS",
    "MetricKind",
    "MetricSeries",
    "Metrics",
    "Tags",
    "TagsKey",
    "percentile",
    "tags_key",
]

logger = logging.getLogger(__name__)

MetricKind = Literal["metric", "counter", "timer", "gauge"]
Tags = Mapping[str, str | int | float | bool]
TagsKey = tuple[tuple[str, str | int | float | bool], ...]
STATS = ("count", "sum", "min", "max", "mean", "last", "p50", "p95", "p99")

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-/]{0,254}")


def tags_key(tags: Tags | None) -> TagsKey:
    """The hashable, order-free form of ``tags``."""
    if not tags:
        return ()
    return tuple(sorted(tags.items()))


def percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of an ascending, non-empty list."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class MetricSeries:
    """One metric with one set of tags: running totals and a sample window."""

    __slots__ = (
        "count",
        "kind",
        "last",
        "max",
        "min",
        "name",
        "samples",
        "sum",
        "tags",
    )

    def __init__(
        self, name: str, kind: MetricKind, tags: TagsKey, window_size: int
    ) -> None:
        self.name = name
        self.kind: MetricKind = kind
        self.tags = tags
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.last = 0.0
        self.samples: deque[tuple[float, float]] = deque(maxlen=window_size)

    def add(self, value: float, at: float) -> None:
        """Take one sample ``value`` observed at time ``at``."""
        self.count += 1
        self.sum += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        self.last = value
        self.samples.append((at, value))

    def stats(self) -> dict[str, float]:
        """Count, sum, min, max, mean, last; percentiles over the window."""
        return summarise([self])


def summarise(series: Iterable[MetricSeries]) -> dict[str, float]:
    """The statistics of several series taken together (empty when none)."""
    chosen = [one for one in series if one.count]
    if not chosen:
        return {}
    count = sum(one.count for one in chosen)
    total = sum(one.sum for one in chosen)
    window = sorted(value for one in chosen for _, value in one.samples)
    latest = max(chosen, key=lambda one: one.samples[-1][0])
    return {
        "count": count,
        "sum": total,
        "min": min(one.min for one in chosen),
        "max": max(one.max for one in chosen),
        "mean": total / count,
        "last": latest.last,
        "p50": percentile(window, 0.50),
        "p95": percentile(window, 0.95),
        "p99": percentile(window, 0.99),
    }


class Metrics:
    """Every series of one monitoring system, and their OpenTelemetry twins."""

    def __init__(
        self,
        *,
        window_size: int,
        max_series: int,
        meter: metrics.Meter | None = None,
    ) -> None:
        if window_size < 1:
            raise ValueError(f"window_size must be >= 1, not {window_size}")
        if max_series < 1:
            raise ValueError(f"max_series must be >= 1, not {max_series}")
        self.window_size = window_size
        self.max_series = max_series
        self.dropped_series = 0
        self._meter = meter or metrics.get_meter("actorlog")
        self._series: dict[tuple[str, TagsKey], MetricSeries] = {}
        self._kinds: dict[str, MetricKind] = {}
        self._instruments: dict[str, Any] = {}

    def _instrument(self, name: str, kind: MetricKind) -> Any:
        known = self._kinds.get(name)
        if known is None:
            if not _NAME.fullmatch(name):
                raise ValueError(
                    f"metric name {name!r} must start with a letter and hold only "
                    "letters, digits, '_', '.', '-' and '/' (at most 255)"
                )
            self._kinds[name] = kind
            self._instruments[name] = self._create(name, kind)
        elif known != kind:
            raise ValueError(f"metric {name!r} is a {known}, not a {kind}")
        return self._instruments[name]

    def _create(self, name: str, kind: MetricKind) -> Any:
        if kind == "counter":
            return self._meter.create_counter(name)
        if kind == "gauge":
            return self._meter.create_gauge(name)
        if kind == "timer":
            return self._meter.create_histogram(name, unit="s")
        return self._meter.create_histogram(name)

    def record(
        self, name: str, kind: MetricKind, value: float, tags: Tags | None, at: float
    ) -> MetricSeries | None:
        """Take a sample; None when the series was dropped (too many)."""
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise TypeError(f"metric {name!r}: value must be a number, not {value!r}")
        if math.isnan(value):
            raise ValueError(f"metric {name!r}: value is NaN")
        if kind == "counter" and value < 0:
            raise ValueError(f"counter {name!r}: increment must be >= 0, not {value}")
        instrument = self._instrument(name, kind)
        key = (name, tags_key(tags))
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= self.max_series:
                self.dropped_series += 1
                if self.dropped_series == 1:
                    logger.warning(
                        "metric %r %s dropped: %d series already (max_series)",
                        name,
                        dict(key[1]),
                        self.max_series,
                    )
                return None
            series = MetricSeries(name, kind, key[1], self.window_size)
            self._series[key] = series
        series.add(float(value), at)
        attributes = dict(tags) if tags else None
        if kind == "counter":
            instrument.add(value, attributes)
        elif kind == "gauge":
            instrument.set(value, attributes)
        else:
            instrument.record(value, attributes)
        return series

    def series(
        self, name: str | None = None, tags: Tags | None = None
    ) -> list[MetricSeries]:
        """The series of ``name`` (all if None) whose tags include ``tags``."""
        wanted = set(tags_key(tags))
        return [
            one
            for (series_name, key), one in self._series.items()
            if (name is None or series_name == name) and wanted <= set(key)
        ]

    def stat(self, name: str, stat: str, tags: Tags | None = None) -> float | None:
        """One statistic of ``name`` over the matching series; None if no data."""
        return summarise(self.series(name, tags)).get(stat)

    def names(self) -> list[str]:
        """The metric names seen, sorted."""
        return sorted(self._kinds)

    def kind(self, name: str) -> MetricKind | None:
        """The kind ``name`` was first recorded as."""
        return self._kinds.get(name)

    def clear(self) -> None:
        """Forget every sample (instruments stay: OpenTelemetry keeps them)."""
        self._series.clear()
