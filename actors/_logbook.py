"""Application log entries and error groups, both in bounded memory."""

from __future__ import annotations

import logging
import threading
import traceback
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any

import msgspec

__all__ = ["LEVELS", "ErrorBook", "ErrorGroup", "LogBook", "LogEntry", "parse_level"]

logger = logging.getLogger(__name__)

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_FILTER_KEYS = {"level", "text", "since", "until", "limit"}


class LogEntry(msgspec.Struct, frozen=True):
    """One application log entry kept by the monitoring system."""

    at: float
    level: str
    message: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class ErrorGroup(msgspec.Struct):
    """Errors of one type raised at one place, counted."""

    type: str
    where: str
    count: int
    first_seen: float
    last_seen: float
    last_message: str


def parse_level(level: str | int) -> tuple[str, int]:
    """The name and number of a log level given by either.

    Raises:
        ValueError: If it is not debug, info, warning, error or critical.

    """
    if isinstance(level, int):
        name = logging.getLevelName(level).lower()
        if name not in LEVELS:
            raise ValueError(
                f"log level {level} is not one of {sorted(LEVELS.values())}"
            )
        return name, level
    number = LEVELS.get(level.lower())
    if number is None:
        raise ValueError(f"log level {level!r} is not one of {list(LEVELS)}")
    return level.lower(), number


class LogBook:
    """The latest ``max_logs`` entries, filtered on demand."""

    def __init__(self, max_logs: int) -> None:
        self._lock = threading.Lock()
        self._entries: deque[LogEntry] = deque(maxlen=max_logs)

    def add(self, entry: LogEntry) -> None:
        """Keep ``entry`` (the oldest goes when full)."""
        with self._lock:
            self._entries.append(entry)

    def query(self, wanted: Mapping[str, Any]) -> list[LogEntry]:
        """The entries passing ``wanted``; see ``MonitoringSystem.get_logs``."""
        unknown = set(wanted) - _FILTER_KEYS
        if unknown:
            raise ValueError(
                f"unknown log filter keys {sorted(unknown)}; use {sorted(_FILTER_KEYS)}"
            )
        minimum = parse_level(wanted["level"])[1] if "level" in wanted else 0
        text = str(wanted.get("text", "")).lower()
        since = wanted.get("since")
        until = wanted.get("until")
        with self._lock:
            entries = [
                entry
                for entry in self._entries
                if LEVELS[entry.level] >= minimum
                and text in entry.message.lower()
                and (since is None or entry.at >= since)
                and (until is None or entry.at <= until)
            ]
        limit = wanted.get("limit")
        return entries[-limit:] if limit else entries

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()

    def summary(self, recent: int = 20) -> dict[str, Any]:
        """The count, the count per level and the latest entries."""
        with self._lock:
            levels = Counter(entry.level for entry in self._entries)
            latest = list(self._entries)[-recent:]
        return {
            "count": sum(levels.values()),
            "by_level": dict(levels),
            "recent": [msgspec.to_builtins(entry) for entry in latest],
        }


def _place(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "unknown"
    frame = frames[-1]
    return f"{frame.filename}:{frame.lineno} in {frame.name}"


class ErrorBook:
    """Errors grouped by type and place; at most ``max_groups`` groups."""

    def __init__(self, max_groups: int) -> None:
        self._lock = threading.Lock()
        self._groups: dict[tuple[str, str], ErrorGroup] = {}
        self._max_groups = max_groups

    def record(self, error: BaseException, where: str | None, at: float) -> None:
        """Count ``error`` in its group (``where``, or the raising frame)."""
        place = where or _place(error)
        key = (type(error).__qualname__, place)
        with self._lock:
            group = self._groups.get(key)
            if group is not None:
                group.count += 1
                group.last_seen = at
                group.last_message = str(error)
                return
            if len(self._groups) >= self._max_groups:
                logger.warning(
                    "error group %s dropped: %d groups kept", key, len(self._groups)
                )
                return
            self._groups[key] = ErrorGroup(key[0], place, 1, at, at, str(error))

    def groups(self) -> list[dict[str, Any]]:
        """The groups, the most frequent first."""
        with self._lock:
            ordered = sorted(self._groups.values(), key=lambda group: -group.count)
            return [msgspec.to_builtins(group) for group in ordered]
