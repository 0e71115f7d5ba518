"""A bounded LRU cache with a TTL, explicit invalidation and shared loads.

Design note. A cache in front of the log must never serve a value older
than a write the caller has seen acknowledged. Writers invalidate the keys
they change once the append commits; the hazard is a load that read the
old value *before* the invalidation and stores it *after*. So every load in
flight is registered, an invalidation of its key (or a ``clear``) marks it
stale, and a stale load's result is handed to its waiters but never
stored. Concurrent loads of one key share one call of the loader (it runs
as its own task, so a waiter's cancellation does not cancel it).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Generic, TypeVar

import msgspec

__all__ = ["BoundedCache", "CacheStats"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_MISSING = object()


class CacheStats(msgspec.Struct, frozen=True):
    """A cache's counters and size."""

    hits: int
    misses: int
    evictions: int
    expirations: int
    invalidations: int
    shared_loads: int
    size: int
    max_size: int


class _Load(Generic[V]):
    __slots__ = ("stale", "task")

    def __init__(self, task: asyncio.Task[V]) -> None:
        self.task = task
        self.stale = False


class BoundedCache(Generic[K, V]):
    """At most ``max_size`` entries, each for at most ``ttl_s`` seconds.

    Args:
        max_size: Entries kept; the least recently used goes first.
        ttl_s: An entry's lifetime; None keeps entries until evicted.
        clock: Monotonic seconds; injectable for tests.

    """

    def __init__(
        self,
        *,
        max_size: int = 1024,
        ttl_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"cache max_size must be >= 1, not {max_size}")
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError(f"cache ttl_s must be > 0 or None, not {ttl_s}")
        self.max_size = max_size
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._loads: dict[K, _Load[V]] = {}
        self._hits = self._misses = self._evictions = 0
        self._expirations = self._invalidations = self._shared = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _lookup(self, key: K) -> object:
        found = self._entries.get(key)
        if found is None:
            self._misses += 1
            return _MISSING
        expires, value = found
        if expires < self._clock():
            del self._entries[key]
            self._expirations += 1
            self._misses += 1
            return _MISSING
        self._entries.move_to_end(key)
        self._hits += 1
        return value

    def get(self, key: K, default: V | None = None) -> V | None:
        """The cached value of ``key``, or ``default`` (a miss)."""
        with self._lock:
            found = self._lookup(key)
        return default if found is _MISSING else found  # type: ignore[return-value]

    def put(self, key: K, value: V) -> None:
        """Cache ``value`` under ``key``, evicting the least recently used."""
        expires = self._clock() + self.ttl_s if self.ttl_s is not None else float("inf")
        with self._lock:
            self._entries[key] = (expires, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_size:
                self._entries.popitem(last=False)
                self._evictions += 1

    def invalidate(self, key: K) -> bool:
        """Drop ``key`` (and spoil a load of it in flight); True if cached."""
        with self._lock:
            load = self._loads.get(key)
            if load is not None:
                load.stale = True
            found = self._entries.pop(key, None) is not None
            self._invalidations += found
        return found

    def invalidate_many(self, keys: Iterable[K]) -> int:
        """Drop each of ``keys``; return how many were cached."""
        return sum(self.invalidate(key) for key in keys)

    def clear(self) -> int:
        """Drop every entry and spoil every load in flight; return the count."""
        with self._lock:
            for load in self._loads.values():
                load.stale = True
            dropped = len(self._entries)
            self._entries.clear()
            self._invalidations += dropped
        return dropped

    def size_bytes(self) -> int:
        """A shallow estimate of the memory the entries hold."""
        with self._lock:
            items = list(self._entries.items())
        return sum(
            sys.getsizeof(key) + sys.getsizeof(value) for key, (_, value) in items
        )

    def stats(self) -> CacheStats:
        """The counters since creation and the current size."""
        with self._lock:
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                expirations=self._expirations,
                invalidations=self._invalidations,
                shared_loads=self._shared,
                size=len(self._entries),
                max_size=self.max_size,
            )

    async def get_or_load(self, key: K, loader: Callable[[], Awaitable[V]]) -> V:
        """The cached value of ``key``, or the result of one shared ``loader``.

        Callers asking for the same key while it loads await the same call.
        A loader's error reaches every waiter and nothing is cached.
        """
        with self._lock:
            found = self._lookup(key)
            if found is not _MISSING:
                return found  # type: ignore[return-value]
            load = self._loads.get(key)
            if load is not None:
                self._shared += 1
            else:
                load = _Load(asyncio.ensure_future(loader()))
                self._loads[key] = load
                load.task.add_done_callback(lambda task: self._loaded(key, load, task))
        return await asyncio.shield(load.task)

    def _loaded(self, key: K, load: _Load[V], task: asyncio.Task[V]) -> None:
        with self._lock:
            if self._loads.get(key) is load:
                del self._loads[key]
        if task.cancelled() or task.exception() is not None or load.stale:
            return
        self.put(key, task.result())
