"""Leases: exclusive, expiring locks on records of one store, kept in its log.

Design note. A lease on a record lives in the replica-local stream
``local/locks/<collection>/<id>``: ``LeaseAcquired`` takes it,
``LeaseReleased`` gives it back, ``LeaseExpired`` records that a holder
outlived its time-to-live and lost it. Each of these is appended with the
stream's expected version, so of two writers racing for one record exactly
one wins, whether they share a process or only the store; the loser re-reads
and waits. A lease that is never released (its holder crashed) blocks
others only until it expires. Lease streams are never replicated: a lease
guards one store.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable

import msgspec

from eventstore import (
    LOCAL_STREAM_PREFIX,
    ConcurrencyError,
    EventStore,
    NewEvent,
    register_event,
)

__all__ = [
    "Lease",
    "LeaseAcquired",
    "LeaseExpired",
    "LeaseLostError",
    "LeaseManager",
    "LeaseReleased",
    "LockError",
    "LockTimeoutError",
    "lease_stream",
]

logger = logging.getLogger(__name__)

_POLL_S = 0.05
_held: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "actorlog_leases", default=frozenset()
)


@register_event("LeaseAcquired")
class LeaseAcquired(msgspec.Struct, frozen=True):
    """A lease on a record was taken."""

    collection: str
    id: str
    lease_id: str
    owner: str
    ttl_s: float
    expires_at_ms: int


@register_event("LeaseReleased")
class LeaseReleased(msgspec.Struct, frozen=True):
    """A lease was given back by its holder."""

    collection: str
    id: str
    lease_id: str


@register_event("LeaseExpired")
class LeaseExpired(msgspec.Struct, frozen=True):
    """A lease outlived its time-to-live and was released by another writer."""

    collection: str
    id: str
    lease_id: str
    owner: str
    expired_at_ms: int


class LockError(Exception):
    """The root of the errors of leases."""


class LockTimeoutError(LockError):
    """Raised when a lease could not be taken in time; names the record and holder."""

    def __init__(self, collection: str, record_id: str, holder: Lease | None) -> None:
        self.collection = collection
        self.record_id = record_id
        self.holder = holder
        by = "" if holder is None else f" (held by {holder.owner!r})"
        super().__init__(
            f"record {record_id!r} of collection {collection!r} is locked{by}; "
            "timed out waiting for its lease"
        )


class LeaseLostError(LockError):
    """Raised when a lease expired and was taken over before its holder let go."""


class Lease(msgspec.Struct, frozen=True):
    """A lease on one record, as recorded in the log."""

    collection: str
    id: str
    lease_id: str
    owner: str
    expires_at_ms: int
    version: int


def lease_stream(collection: str, record_id: str) -> str:
    """The replica-local stream that holds the leases of one record."""
    return f"{LOCAL_STREAM_PREFIX}locks/{collection}/{record_id}"


class LeaseManager:
    """Takes and releases leases on records of one store.

    Args:
        store: The store whose records are locked.
        owner: Who takes the leases (shown to waiters); a random id by default.
        wall_clock_ms: The clock that leases expire by (injectable for tests).

    """

    def __init__(
        self,
        store: EventStore,
        *,
        owner: str | None = None,
        wall_clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.store = store
        self.owner = owner or f"owner-{uuid.uuid4().hex[:12]}"
        self._now_ms = wall_clock_ms
        self.held: dict[tuple[str, str], str] = {}

    def holder(self, collection: str, record_id: str) -> Lease | None:
        """The lease held on a record now, or None (blocking: a quick read)."""
        lease, _ = self._state(collection, record_id)
        if lease is None or lease.expires_at_ms <= self._now_ms():
            return None
        return lease

    @contextlib.asynccontextmanager
    async def lock(
        self,
        collection: str,
        record_id: str,
        *,
        ttl_s: float = 30.0,
        timeout_s: float = 10.0,
    ) -> AsyncIterator[Lease]:
        """Hold an exclusive lease on a record for the ``async with`` block.

        Args:
            collection: The record's collection.
            record_id: The record's id.
            ttl_s: How long the lease lasts unless released first.
            timeout_s: How long to wait for another holder to let go.

        Raises:
            LockTimeoutError: If the record stayed locked for ``timeout_s``.
            LeaseLostError: On exit, if the lease had expired and another
                writer took the record meanwhile.

        """
        lease = await self.acquire(
            collection, record_id, ttl_s=ttl_s, timeout_s=timeout_s
        )
        token = _held.set(_held.get() | {lease.lease_id})
        try:
            yield lease
        finally:
            _held.reset(token)
            await self.release(lease)

    async def acquire(
        self,
        collection: str,
        record_id: str,
        *,
        ttl_s: float = 30.0,
        timeout_s: float = 10.0,
    ) -> Lease:
        """Take the lease on a record, waiting up to ``timeout_s`` for it.

        Raises:
            ValueError: If ``ttl_s`` is not positive.
            LockTimeoutError: If the record stayed locked.

        """
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        stream = lease_stream(collection, record_id)
        deadline = time.monotonic() + timeout_s
        while True:
            generation = self.store.notifier.generation
            held, version = await asyncio.to_thread(self._state, collection, record_id)
            now_ms = self._now_ms()
            if held is not None and held.expires_at_ms <= now_ms:
                await self._expire(held, version, now_ms)
                continue
            if held is None:
                lease_id = uuid.uuid4().hex
                expires_at_ms = now_ms + int(ttl_s * 1000)
                event = LeaseAcquired(
                    collection, record_id, lease_id, self.owner, ttl_s, expires_at_ms
                )
                try:
                    result = await self.store.append_async(
                        [NewEvent(stream, "LeaseAcquired", event)],
                        expected_versions={stream: version},
                    )
                except ConcurrencyError:
                    continue
                logger.debug("%s took the lease on %s", self.owner, stream)
                self.held[collection, record_id] = lease_id
                return Lease(
                    collection,
                    record_id,
                    lease_id,
                    self.owner,
                    expires_at_ms,
                    result.events[0].version,
                )
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise LockTimeoutError(collection, record_id, held)
            await self.store.notifier.wait_async(generation, min(_POLL_S, remaining_s))

    async def release(self, lease: Lease) -> None:
        """Give a lease back.

        Raises:
            LeaseLostError: If it expired and another writer took the record.

        """
        stream = lease_stream(lease.collection, lease.id)
        event = LeaseReleased(lease.collection, lease.id, lease.lease_id)
        if self.held.get((lease.collection, lease.id)) == lease.lease_id:
            del self.held[lease.collection, lease.id]
        try:
            await self.store.append_async(
                [NewEvent(stream, "LeaseReleased", event)],
                expected_versions={stream: lease.version},
            )
        except ConcurrencyError as exc:
            raise LeaseLostError(
                f"the lease of {lease.owner!r} on record {lease.id!r} of collection "
                f"{lease.collection!r} expired and was released by another writer "
                "before its holder let go"
            ) from exc

    def leased_elsewhere(self, collection: str, record_id: str) -> bool:
        """Whether this manager leased a record to a context other than the caller's.

        A cheap check (no read) for writers: only then need they wait.
        """
        lease_id = self.held.get((collection, record_id))
        return lease_id is not None and lease_id not in _held.get()

    async def wait_writable(
        self, collection: str, record_id: str, *, timeout_s: float = 10.0
    ) -> None:
        """Wait until a record is not leased by anyone but the caller's context.

        Raises:
            LockTimeoutError: If another holder kept it for ``timeout_s``.

        """
        deadline = time.monotonic() + timeout_s
        while True:
            generation = self.store.notifier.generation
            held, _ = await asyncio.to_thread(self._state, collection, record_id)
            if (
                held is None
                or held.expires_at_ms <= self._now_ms()
                or held.lease_id in _held.get()
            ):
                return
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise LockTimeoutError(collection, record_id, held)
            await self.store.notifier.wait_async(generation, min(_POLL_S, remaining_s))

    async def _expire(self, held: Lease, version: int, now_ms: int) -> None:
        stream = lease_stream(held.collection, held.id)
        event = LeaseExpired(
            held.collection, held.id, held.lease_id, held.owner, now_ms
        )
        try:
            await self.store.append_async(
                [NewEvent(stream, "LeaseExpired", event)],
                expected_versions={stream: version},
            )
        except ConcurrencyError:
            return  # another writer moved first: look again
        logger.warning(
            "the lease of %s on %s expired unreleased; released it", held.owner, stream
        )

    def _state(self, collection: str, record_id: str) -> tuple[Lease | None, int]:
        stream = lease_stream(collection, record_id)
        version = self.store.stream_version(stream)
        if version == 0:
            return None, 0
        last = next(iter(self.store.read_stream(stream, from_version=version)))
        data = last.data
        if isinstance(data, LeaseAcquired):
            lease = Lease(
                data.collection,
                data.id,
                data.lease_id,
                data.owner,
                data.expires_at_ms,
                last.version,
            )
            return lease, version
        return None, version
