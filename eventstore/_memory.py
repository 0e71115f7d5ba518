"""A store in memory, for tests: the same tables and append path as LMDB."""

from __future__ import annotations

import bisect
import contextlib
import threading
from collections.abc import Iterator
from typing import Self

from eventstore._base import BaseStore
from eventstore._codec import EventRegistry
from eventstore._core import AppendJob, ViewJob, run_jobs
from eventstore._errors import StoreClosedError

__all__ = ["MemoryEventStore"]


class _MemoryTables:
    """Sorted tables with an undo log, so that a failed batch leaves no trace."""

    def __init__(self) -> None:
        self._data: dict[str, dict[bytes, bytes]] = {}
        self._keys: dict[str, list[bytes]] = {}
        self._undo: list[tuple[str, bytes, bytes | None]] = []

    def begin(self) -> None:
        self._undo.clear()

    def rollback(self) -> None:
        for table, key, old in reversed(self._undo):
            self._set(table, key, old)
        self._undo.clear()

    def _set(self, table: str, key: bytes, value: bytes | None) -> None:
        data = self._data.setdefault(table, {})
        keys = self._keys.setdefault(table, [])
        if value is None:
            if data.pop(key, None) is not None:
                del keys[bisect.bisect_left(keys, key)]
            return
        if key not in data:
            bisect.insort(keys, key)
        data[key] = value

    def get(self, table: str, key: bytes) -> bytes | None:
        return self._data.get(table, {}).get(key)

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self._undo.append((table, key, self.get(table, key)))
        self._set(table, key, value)

    def append_put(self, table: str, key: bytes, value: bytes) -> None:
        self.put(table, key, value)

    def get_many(self, table: str, keys: list[bytes]) -> list[bytes | None]:
        data = self._data.get(table, {})
        return [data.get(key) for key in keys]

    def append_many(self, table: str, items: list[tuple[bytes, bytes]]) -> None:
        for key, value in items:
            self.put(table, key, value)

    def put_many(self, table: str, items: list[tuple[bytes, bytes]]) -> None:
        for key, value in items:
            self.put(table, key, value)

    def delete(self, table: str, key: bytes) -> bool:
        old = self.get(table, key)
        if old is None:
            return False
        self._undo.append((table, key, old))
        self._set(table, key, None)
        return True

    def drop(self, table: str) -> None:
        for key in list(self._keys.get(table, [])):
            self.delete(table, key)

    def last_key(self, table: str) -> bytes | None:
        keys = self._keys.get(table)
        return keys[-1] if keys else None

    def scan(
        self, table: str, start: bytes = b"", stop: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        keys = self._keys.get(table, [])
        data = self._data.get(table, {})
        index = bisect.bisect_left(keys, start)
        end = len(keys) if stop is None else bisect.bisect_left(keys, stop)
        # The keys are a snapshot (a scan may delete as it goes); values are
        # looked up lazily, so that a read of a few keys from a long table
        # does not copy all of it.
        return ((key, data[key]) for key in keys[index:end] if key in data)


class MemoryEventStore(BaseStore):
    """An event store that lives and dies with the process (for tests)."""

    def __init__(self, *, registry: EventRegistry | None = None) -> None:
        super().__init__(registry)
        self._tables = _MemoryTables()
        self._lock = threading.RLock()
        self._closed = False
        self.readonly = False

    def _submit(self, job: AppendJob | ViewJob) -> None:
        if self._closed:
            raise StoreClosedError("the memory store is closed")
        job.future.set_running_or_notify_cancel()
        with self._lock:
            self._tables.begin()
            try:
                outcomes = run_jobs(
                    self._tables, [job], self.registry, self._projectors
                )
            except Exception as exc:  # noqa: BLE001 - the waiting caller gets it
                self._tables.rollback()
                job.future.set_exception(exc)
                return
        for done, outcome in outcomes:
            if isinstance(outcome, BaseException):
                done.future.set_exception(outcome)
            else:
                done.future.set_result(outcome)  # type: ignore[arg-type]
        self.notifier.committed()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[_MemoryTables]:
        if self._closed:
            raise StoreClosedError("the memory store is closed")
        with self._lock:
            yield self._tables

    def close(self) -> None:
        """Mark the store closed; its contents are gone."""
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
