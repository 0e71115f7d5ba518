"""An asyncio pool of reusable resources (connections, clients, sessions).

Design note. The pool's count (``size``) includes resources being created,
so concurrent checkouts never create more than ``max_size``: a slot is
reserved under the condition's lock and filled outside it, since a factory
may take long. A checkout that finds the pool exhausted waits on the
condition until a resource is returned or discarded, up to its timeout.
Broken resources (failing ``validate`` at checkout, returned with
``broken=True``, or in use when an exception of a ``broken_on`` type
escaped the ``async with`` block) are disposed of and their slot freed, so
the next checkout creates a fresh one. Idle resources beyond ``min_size``
are closed once idle for ``idle_timeout_s``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from types import TracebackType
from typing import Any, Generic, TypeVar

from actors._observability_errors import PoolExhaustedError

__all__ = ["Lease", "ResourcePool"]

logger = logging.getLogger(__name__)

R = TypeVar("R")


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    result = fn(*args)
    if inspect.isawaitable(result):
        return await result
    return result


class ResourcePool(Generic[R]):
    """Up to ``max_size`` resources made by ``factory``, lent one at a time.

    Args:
        name: The pool's name, used in errors and stats.
        factory: Makes a resource (sync or async).
        min_size: Resources kept even when idle (made by ``fill``).
        max_size: Resources at most, lent or idle.
        idle_timeout_s: An idle resource beyond ``min_size`` is closed
            after this long.
        acquire_timeout_s: How long a checkout waits when exhausted.
        validate: Checks a resource at checkout (sync or async); a false
            result discards it.
        dispose: Closes a resource (sync or async).
        broken_on: Exceptions that, escaping an ``async with`` block,
            mark the lent resource broken.
        clock: Monotonic seconds; injectable for tests.

    """

    def __init__(
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size < 1 or not 0 <= min_size <= max_size:
            raise ValueError(
                f"pool {name!r}: need 0 <= min_size <= max_size and max_size >= 1, "
                f"not min_size={min_size}, max_size={max_size}"
            )
        if idle_timeout_s < 0 or acquire_timeout_s < 0:
            raise ValueError(f"pool {name!r}: timeouts must be >= 0")
        self.name = name
        self.min_size = min_size
        self.max_size = max_size
        self.idle_timeout_s = idle_timeout_s
        self.acquire_timeout_s = acquire_timeout_s
        self.broken_on = broken_on
        self._factory = factory
        self._validate = validate
        self._dispose = dispose
        self._clock = clock
        self._condition = asyncio.Condition()
        self._idle: deque[tuple[R, float]] = deque()
        self._lent: dict[int, R] = {}
        self._size = 0
        self._closed = False
        self._counts = dict.fromkeys(
            ("created", "disposed", "broken", "acquired", "waited", "timeouts"), 0
        )

    async def fill(self) -> None:
        """Create resources until ``min_size`` exist."""
        while True:
            async with self._condition:
                if self._size >= self.min_size:
                    return
                self._size += 1
            resource = await self._create()
            async with self._condition:
                self._idle.append((resource, self._clock()))
                self._condition.notify()

    async def _create(self) -> R:
        try:
            resource: R = await _call(self._factory)
        except BaseException:
            async with self._condition:
                self._size -= 1
                self._condition.notify()
            raise
        self._counts["created"] += 1
        return resource

    async def _dispose_of(self, resource: R) -> None:
        self._counts["disposed"] += 1
        if self._dispose is None:
            return
        try:
            await _call(self._dispose, resource)
        except Exception:
            logger.exception("pool %r: disposing of a resource failed", self.name)

    async def _forget(self, resource: R) -> None:
        async with self._condition:
            self._size -= 1
            self._condition.notify()
        await self._dispose_of(resource)

    def acquire(self, timeout_s: float | None = None) -> Lease[R]:
        """Lend a resource: ``async with pool.acquire() as r`` or ``await``.

        Awaited, the resource must be given back with :meth:`release`.

        Raises:
            PoolExhaustedError: If none came free within the timeout.

        """
        return Lease(self, self.acquire_timeout_s if timeout_s is None else timeout_s)

    async def checkout(self, timeout_s: float) -> R:
        """Take a resource, waiting up to ``timeout_s``; see :meth:`acquire`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            reserved, create = await self._reserve(deadline, timeout_s)
            if create or reserved is None:
                resource = await self._create()
            else:
                resource = reserved
                try:
                    valid = await self._valid(resource)
                except BaseException:
                    await self._forget(resource)
                    raise
                if not valid:
                    self._counts["broken"] += 1
                    await self._forget(resource)
                    continue
            self._lent[id(resource)] = resource
            self._counts["acquired"] += 1
            return resource

    async def _reserve(
        self, deadline: float, timeout_s: float
    ) -> tuple[R | None, bool]:
        loop = asyncio.get_running_loop()
        async with self._condition:
            waited = False
            while True:
                if self._closed:
                    raise PoolExhaustedError(f"pool {self.name!r} is closed")
                if self._idle:
                    return self._idle.pop()[0], False
                if self._size < self.max_size:
                    self._size += 1
                    return None, True
                remaining = deadline - loop.time()
                if not waited:
                    self._counts["waited"] += 1
                    waited = True
                try:
                    await asyncio.wait_for(self._condition.wait(), max(remaining, 0))
                except TimeoutError:
                    self._counts["timeouts"] += 1
                    raise PoolExhaustedError(
                        f"pool {self.name!r} exhausted: all {self.max_size} resources "
                        f"in use after waiting {timeout_s} s"
                    ) from None

    async def _valid(self, resource: R) -> bool:
        if self._validate is None:
            return True
        try:
            return bool(await _call(self._validate, resource))
        except Exception:
            logger.exception("pool %r: validating a resource raised", self.name)
            return False

    async def release(self, resource: R, *, broken: bool = False) -> None:
        """Give back a lent resource; a ``broken`` one is disposed of.

        Raises:
            ValueError: If the resource is not lent by this pool.

        """
        async with self._condition:
            if self._lent.pop(id(resource), None) is None:
                raise ValueError(
                    f"pool {self.name!r}: resource {resource!r} is not lent by it "
                    "(returned twice, or from another pool)"
                )
            if not broken and not self._closed:
                self._idle.append((resource, self._clock()))
                self._condition.notify()
        if broken or self._closed:
            self._counts["broken"] += broken
            await self._forget(resource)
        await self.prune()

    async def prune(self, *, idle_timeout_s: float | None = None) -> int:
        """Close idle resources beyond ``min_size`` idle for too long."""
        limit = self.idle_timeout_s if idle_timeout_s is None else idle_timeout_s
        now = self._clock()
        expired: list[R] = []
        async with self._condition:
            while self._idle and self._size - len(expired) > self.min_size:
                resource, since = self._idle[0]
                if now - since < limit:
                    break
                self._idle.popleft()
                expired.append(resource)
        for resource in expired:
            await self._forget(resource)
        return len(expired)

    async def close(self) -> None:
        """Dispose of idle resources; lent ones are disposed of on return."""
        async with self._condition:
            self._closed = True
            idle = [resource for resource, _ in self._idle]
            self._idle.clear()
            self._condition.notify_all()
        for resource in idle:
            await self._forget(resource)

    def stats(self) -> dict[str, Any]:
        """Sizes and counters: created, disposed, broken, waited, timeouts, ..."""
        return {
            "name": self.name,
            "size": self._size,
            "idle": len(self._idle),
            "in_use": len(self._lent),
            "min_size": self.min_size,
            "max_size": self.max_size,
            **self._counts,
        }


class Lease(Generic[R]):
    """A pending checkout: an async context manager, or awaitable."""

    def __init__(self, pool: ResourcePool[R], timeout_s: float) -> None:
        self._pool = pool
        self._timeout_s = timeout_s
        self._resource: R | None = None

    def __await__(self) -> Generator[Any, None, R]:
        return self._pool.checkout(self._timeout_s).__await__()

    async def __aenter__(self) -> R:
        self._resource = await self._pool.checkout(self._timeout_s)
        return self._resource

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        resource = self._resource
        self._resource = None
        broken = exc is not None and isinstance(exc, self._pool.broken_on)
        await self._pool.release(resource, broken=broken)  # type: ignore[arg-type]
