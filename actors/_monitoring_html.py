"""The monitoring dashboard as one self-contained HTML page (inline SVG)."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from typing import Any

__all__ = ["render_html", "sparkline"]

_WIDTH = 240
_HEIGHT = 48

_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; }
table { border-collapse: collapse; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.firing { color: #b00020; font-weight: bold; } .pending { color: #b36b00; }
svg polyline { fill: none; stroke: #1565c0; stroke-width: 1.5; }
"""


def sparkline(points: Sequence[Sequence[float]]) -> str:
    """An inline SVG line chart of ``(time, value)`` points."""
    if not points:
        return ""
    times = [point[0] for point in points]
    values = [point[1] for point in points]
    t0, t1 = min(times), max(times)
    low, high = min(values), max(values)
    span_t = (t1 - t0) or 1.0
    span_v = (high - low) or 1.0
    if len(points) == 1:
        coords = f"0,{_HEIGHT / 2:.1f} {_WIDTH},{_HEIGHT / 2:.1f}"
    else:
        coords = " ".join(
            f"{(t - t0) / span_t * _WIDTH:.1f},"
            f"{_HEIGHT - 2 - (v - low) / span_v * (_HEIGHT - 4):.1f}"
            for t, v in zip(times, values, strict=True)
        )
    label = html.escape(f"min {low:.6g}, max {high:.6g}")
    return (
        f'<svg width="{_WIDTH}" height="{_HEIGHT}" role="img" '
        f'aria-label="{label}"><polyline points="{coords}"/></svg>'
    )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.6g}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape('' if value is None else str(value))}</td>"


def _state(state: str) -> str:
    escaped = html.escape(state)
    return f'<td class="{escaped}">{escaped}</td>'


def _when(at: float | None) -> str:
    if at is None:
        return ""
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="seconds")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(name)}</th>" for name in headers)
    body = "".join(f"<tr>{''.join(row)}</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(snapshot: dict[str, Any]) -> str:
    """The dashboard ``snapshot`` as a standalone HTML document."""
    metric_rows = [
        [
            _cell(one["name"]),
            _cell(one["kind"]),
            _cell(", ".join(f"{k}={v}" for k, v in one["tags"].items())),
            *(
                _cell(one.get(stat))
                for stat in ("count", "mean", "p50", "p95", "p99", "max")
            ),
            f"<td>{sparkline(one['points'])}</td>",
        ]
        for one in snapshot["metrics"]
    ]
    alert_rows = [
        [
            _cell(alert["name"]),
            _state(alert["state"]),
            _cell(alert["count"]),
            _cell(_when(alert["last_fired"])),
            _cell(alert["last_value"]),
        ]
        for alert in snapshot["alerts"]
    ]
    error_rows = [
        [
            _cell(e["type"]),
            _cell(e["where"]),
            _cell(e["count"]),
            _cell(e["last_message"]),
        ]
        for e in snapshot["errors"]
    ]
    log_rows = [
        [_cell(_when(entry["at"])), _cell(entry["level"]), _cell(entry["message"])]
        for entry in snapshot["logs"]["recent"]
    ]
    generated = _when(snapshot["generated_at"])
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>actorlog monitoring {generated}</title><style>{_STYLE}</style>"
        f"</head><body><h1>actorlog monitoring</h1><p>Generated {generated} UTC.</p>"
        "<h2>Metrics</h2>"
        + _table(
            [
                "metric",
                "kind",
                "tags",
                "count",
                "mean",
                "p50",
                "p95",
                "p99",
                "max",
                "recent",
            ],
            metric_rows,
        )
        + "<h2>Alerts</h2>"
        + _table(["alert", "state", "fired", "last fired", "last value"], alert_rows)
        + "<h2>Errors</h2>"
        + _table(["type", "where", "count", "last message"], error_rows)
        + f"<h2>Logs</h2><p>{snapshot['logs']['count']} entries kept.</p>"
        + _table(["time", "level", "message"], log_rows)
        + "</body></html>\n"
    )
