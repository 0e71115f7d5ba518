"""``PerformanceOptimizer``: profiles, memoized operations, resource pools.

Profiles and metrics are in-process aggregates (the same bounded series as
the monitoring system). Caching memoizes async operations in a
``BoundedCache`` each, so concurrent calls with the same arguments share
one call. Pools are ``ResourcePool``s bound to the event loop that uses
them.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator
from typing import Any, TypeVar, cast, overload

import msgspec

from actors._cache import BoundedCache
from actors._metrics import MetricSeries, summarise
from actors._observability_errors import (
    OperationNotSupportedError,
    UnknownPoolError,
    UnknownProfileError,
)
from actors._pool import Lease, ResourcePool

__all__ = ["PerformanceOptimizer"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
R = TypeVar("R")


def _name(operation: Callable[..., Any] | str) -> str:
    if isinstance(operation, str):
        return operation
    return f"{operation.__module__}.{operation.__qualname__}"


def _default_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
    key = (args, tuple(sorted(kwargs.items())))
    try:
        hash(key)
    except TypeError:
        try:
            return msgspec.msgpack.encode((args, kwargs))
        except (TypeError, msgspec.EncodeError) as error:
            raise TypeError(
                "cached operation: arguments are neither hashable nor "
                f"msgpack-encodable ({error}); pass key=..."
            ) from error
    return key


class _Memo:
    def __init__(
        self,
        name: str,
        operation: Callable[..., Awaitable[Any]],
        cache: BoundedCache[Hashable, Any],
        key: Callable[..., Hashable] | None,
    ) -> None:
        self.name = name
        self.operation = operation
        self.cache = cache
        self.key = key
        self.enabled = True


class PerformanceOptimizer:
    """Profiling, caching and pooling for one application.

    Args:
        window_size: Samples kept per profile and metric for percentiles.
        clock: Monotonic seconds for cache lifetimes and pool idleness;
            injectable for tests.

    """

    def __init__(
        self,
        *,
        window_size: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window_size < 1:
            raise ValueError(f"window_size must be >= 1, not {window_size}")
        self._window_size = window_size
        self._clock = clock
        self._profiles: dict[str, MetricSeries] = {}
        self._started: dict[str, list[float]] = {}
        self._metrics: dict[str, MetricSeries] = {}
        self._memos: dict[str, _Memo] = {}
        self._pools: dict[str, ResourcePool[Any]] = {}

    # -- profiling --------------------------------------------------------

    def start_profile(self, name: str) -> None:
        """Start timing ``name``; profiles of one name nest (last in, first out).

        Concurrent tasks timing the same name should use :meth:`profile`.
        """
        self._started.setdefault(name, []).append(time.perf_counter())

    def end_profile(self, name: str) -> float:
        """Stop the latest ``start_profile(name)``; return its duration (s).

        Raises:
            UnknownProfileError: If ``name`` has no profile running.

        """
        running = self._started.get(name)
        if not running:
            raise UnknownProfileError(f"profile {name!r} was not started")
        duration = time.perf_counter() - running.pop()
        if not running:
            del self._started[name]
        self._add(self._profiles, name, duration)
        return duration

    @contextlib.contextmanager
    def profile(self, name: str) -> Iterator[None]:
        """Time the block as one run of profile ``name`` (also if it raises)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self._add(self._profiles, name, time.perf_counter() - started)

    def _add(self, table: dict[str, MetricSeries], name: str, value: float) -> None:
        series = table.get(name)
        if series is None:
            series = table[name] = MetricSeries(name, "timer", (), self._window_size)
        series.add(value, self._clock())

    def record_metric(self, name: str, value: float) -> None:
        """Record one observation of metric ``name``."""
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise TypeError(f"metric {name!r}: value must be a number, not {value!r}")
        self._add(self._metrics, name, float(value))

    def get_profile(self, name: str) -> dict[str, Any]:
        """Runs, total and per-run statistics (s) of profile ``name``.

        Raises:
            UnknownProfileError: If ``name`` never ran.

        """
        series = self._profiles.get(name)
        if series is None:
            raise UnknownProfileError(f"no profile named {name!r}")
        return {
            "name": name,
            "running": len(self._started.get(name, ())),
            **summarise([series]),
        }

    def get_metrics(self) -> dict[str, dict[str, float]]:
        """The statistics of every recorded metric."""
        return {name: summarise([series]) for name, series in self._metrics.items()}

    # -- caching ----------------------------------------------------------

    def enable_caching(
        self,
        operation: F,
        *,
        ttl_s: float | None = 60.0,
        max_size: int = 1024,
        key: Callable[..., Hashable] | None = None,
    ) -> F:
        """Memoize an async operation; return the memoized callable.

        Calls with equal arguments within ``ttl_s`` return the cached result;
        concurrent calls with equal arguments share one call. Each uncached
        call is profiled under the operation's name.

        Args:
            operation: A coroutine function.
            ttl_s: How long a result stays cached; None until evicted.
            max_size: Results kept (least recently used go first).
            key: Makes the cache key from the call's arguments; by default
                the arguments themselves, or their MessagePack encoding.

        Raises:
            TypeError: If ``operation`` is not a coroutine function.

        """
        if not inspect.iscoroutinefunction(operation):
            raise TypeError(
                f"enable_caching memoizes async operations; {operation!r} is not "
                "a coroutine function"
            )
        name = _name(operation)
        cache: BoundedCache[Hashable, Any] = BoundedCache(
            max_size=max_size, ttl_s=ttl_s, clock=self._clock
        )
        memo = _Memo(name, operation, cache, key)
        self._memos[name] = memo

        async def run(*args: Any, **kwargs: Any) -> Any:
            with self.profile(name):
                return await operation(*args, **kwargs)

        @functools.wraps(operation)
        async def cached(*args: Any, **kwargs: Any) -> Any:
            if not memo.enabled:
                return await operation(*args, **kwargs)
            made = key(*args, **kwargs) if key else _default_key(args, kwargs)
            return await cache.get_or_load(made, lambda: run(*args, **kwargs))

        cached.__actorlog_memo__ = memo  # type: ignore[attr-defined]
        return cast("F", cached)

    def _memo(self, operation: Callable[..., Any] | str) -> _Memo:
        memo = getattr(operation, "__actorlog_memo__", None)
        if isinstance(memo, _Memo):
            return memo
        found = self._memos.get(_name(operation))
        if found is None:
            raise ValueError(f"caching is not enabled for {_name(operation)!r}")
        return found

    def disable_caching(self, operation: Callable[..., Any] | str) -> None:
        """Stop caching ``operation`` (the original, its memoized form or name).

        Its memoized form goes on working, uncached.

        Raises:
            ValueError: If caching was not enabled for it.

        """
        memo = self._memo(operation)
        memo.enabled = False
        memo.cache.clear()
        self._memos.pop(memo.name, None)

    def clear_cache(self, operation: Callable[..., Any] | str | None = None) -> int:
        """Drop cached results of one operation, or of all; return how many."""
        if operation is not None:
            return self._memo(operation).cache.clear()
        return sum(memo.cache.clear() for memo in self._memos.values())

    def get_cache_stats(
        self, operation: Callable[..., Any] | str | None = None
    ) -> dict[str, Any]:
        """Hits, misses, evictions, size, ... of one operation, or by name of all."""
        if operation is not None:
            stats: dict[str, Any] = msgspec.to_builtins(
                self._memo(operation).cache.stats()
            )
            return stats
        return {
            name: msgspec.to_builtins(memo.cache.stats())
            for name, memo in self._memos.items()
        }

    # -- pools ------------------------------------------------------------

    @overload
    async def create_pool(
        self,
        name: str,
        factory: Callable[[], Awaitable[R]],
        *,
        min_size: int = 0,
        max_size: int = 10,
        idle_timeout_s: float = 300.0,
        acquire_timeout_s: float = 10.0,
        validate: Callable[[R], bool | Awaitable[bool]] | None = None,
        dispose: Callable[[R], object] | None = None,
        broken_on: tuple[type[BaseException], ...] = (OSError,),
    ) -> ResourcePool[R]: ...

    @overload
    async def create_pool(
        self,
        name: str,
        factory: Callable[[], R],
        *,
        min_size: int = 0,
        max_size: int = 10,
        idle_timeout_s: float = 300.0,
        acquire_timeout_s: float = 10.0,
        validate: Callable[[R], bool | Awaitable[bool]] | None = None,
        dispose: Callable[[R], object] | None = None,
        broken_on: tuple[type[BaseException], ...] = (OSError,),
    ) -> ResourcePool[R]: ...

    async def create_pool(
        self,
        name: str,
        factory: Callable[[], Awaitable[R]] | Callable[[], R],
        *,
        min_size: int = 0,
        max_size: int = 10,
        idle_timeout_s: float = 300.0,
        acquire_timeout_s: float = 10.0,
        validate: Callable[[R], bool | Awaitable[bool]] | None = None,
        dispose: Callable[[R], object] | None = None,
        broken_on: tuple[type[BaseException], ...] = (OSError,),
    ) -> ResourcePool[R]:
        """Create pool ``name`` and fill it to ``min_size``.

        See ``ResourcePool`` for the arguments.

        Raises:
            ValueError: If a pool of that name exists or the sizes are wrong.

        """
        if name in self._pools:
            raise ValueError(f"pool {name!r} exists already")
        pool: ResourcePool[R] = ResourcePool(
            name,
            factory,
            min_size=min_size,
            max_size=max_size,
            idle_timeout_s=idle_timeout_s,
            acquire_timeout_s=acquire_timeout_s,
            validate=validate,
            dispose=dispose,
            broken_on=broken_on,
            clock=self._clock,
        )
        self._pools[name] = pool
        await pool.fill()
        return pool

    def _pool(self, name: str) -> ResourcePool[Any]:
        pool = self._pools.get(name)
        if pool is None:
            raise UnknownPoolError(f"no pool named {name!r}")
        return pool

    def get_from_pool(self, name: str, *, timeout_s: float | None = None) -> Lease[Any]:
        """Borrow from pool ``name``: ``async with`` it, or ``await`` it.

        Raises:
            UnknownPoolError: If there is no such pool.
            PoolExhaustedError: If none came free within the timeout.

        """
        return self._pool(name).acquire(timeout_s)

    async def return_to_pool(
        self, name: str, resource: Any, *, broken: bool = False
    ) -> None:
        """Give back a resource taken with ``await get_from_pool(name)``."""
        await self._pool(name).release(resource, broken=broken)

    def get_pool_stats(self, name: str | None = None) -> dict[str, Any]:
        """The stats of pool ``name``, or of every pool by name."""
        if name is not None:
            return self._pool(name).stats()
        return {pool_name: pool.stats() for pool_name, pool in self._pools.items()}

    async def close_pools(self) -> None:
        """Close every pool (idle resources now, lent ones on return)."""
        for pool in self._pools.values():
            await pool.close()
        self._pools.clear()

    # -- optimisation and reports -----------------------------------------

    async def optimize_memory_usage(self) -> dict[str, int]:
        """Drop cached results and idle pool resources, then collect garbage.

        Returns:
            ``cache_entries`` dropped, ``cache_bytes_freed`` (a shallow
            estimate of what they held), ``idle_resources_closed`` and
            ``gc_objects_collected``.

        """
        freed = sum(memo.cache.size_bytes() for memo in self._memos.values())
        entries = self.clear_cache()
        closed = 0
        for pool in self._pools.values():
            closed += await pool.prune(idle_timeout_s=0)
        collected = gc.collect()
        logger.info(
            "memory optimised: %d cache entries (~%d bytes), %d idle resources, "
            "%d objects collected",
            entries,
            freed,
            closed,
            collected,
        )
        return {
            "cache_entries": entries,
            "cache_bytes_freed": freed,
            "idle_resources_closed": closed,
            "gc_objects_collected": collected,
        }

    def optimize_operation(self, operation: Callable[..., Any]) -> None:
        """Not supported: there is no general way to speed up an operation.

        Raises:
            OperationNotSupportedError: Always.

        """
        raise OperationNotSupportedError(
            f"optimize_operation({_name(operation)!r}) is not supported: profile "
            "it with profile(), then memoize it with enable_caching() or pool "
            "its resources with create_pool()"
        )

    def optimize_network_usage(self) -> None:
        """Not supported: actorlog does not own the application's network I/O.

        Raises:
            OperationNotSupportedError: Always.

        """
        raise OperationNotSupportedError(
            "optimize_network_usage() is not supported: pool connections with "
            "create_pool() and memoize remote reads with enable_caching()"
        )

    def generate_report(self, *, slowest: int = 10) -> dict[str, Any]:
        """Profiles, metrics, cache and pool stats, and the slowest operations.

        The slowest are profiles ranked by their p95 duration.
        """
        profiles = {name: self.get_profile(name) for name in self._profiles}
        ranked = sorted(profiles.values(), key=lambda profile: -profile["p95"])
        return {
            "profiles": profiles,
            "metrics": self.get_metrics(),
            "caches": self.get_cache_stats(),
            "pools": self.get_pool_stats(),
            "slowest": [
                {key: profile[key] for key in ("name", "count", "mean", "p95", "max")}
                for profile in ranked[:slowest]
            ],
        }
