"""The DataManager's reads: a bounded cache the log invalidates, timed, traced.

Design note. A cached record must never be older than a write the caller
has seen acknowledged, whoever wrote it (a collection actor, a
transaction, a sync). So the log itself invalidates: :class:`Invalidator`
is an inline projector, run inside the commit of every append, that drops
the records the append touches (and spoils any load of them in flight, see
``BoundedCache.reserve``). One gap remains: a load that starts after the
fold but before the commit is visible reads the old record. The
invalidator notes the store's commit generation when it folds; a load that
starts before the generation has moved past it is handed to its caller
but not cached. Commits by another process do not invalidate (use one
process per store, or no cache: ``read_cache_size=0``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from actors._cache import BoundedCache
from actors._instrument import CommandMeter
from actors._reader import RecordReader
from actors._records import Record
from actors._tracing import command_span
from eventstore import (
    RECORD_STREAM_PREFIX,
    EventStore,
    StoredEvent,
    ViewTxn,
    parse_record_stream,
)

__all__ = ["CachedReader", "Invalidator"]

Key = tuple[str, str]


class Invalidator:
    """An inline projector that drops the records each append touches."""

    name = "read-cache"

    def __init__(self, reader: CachedReader) -> None:
        self._reader = reader

    def apply(self, txn: ViewTxn, events: Sequence[StoredEvent]) -> None:  # noqa: ARG002 - the InlineProjector protocol
        """Note the commit under way; drop the touched records from the cache."""
        reader = self._reader
        reader.folding = reader.generation()
        cache = reader.cache
        if cache.idle:
            return
        for event in events:
            if event.stream.startswith(RECORD_STREAM_PREFIX):
                cache.invalidate(parse_record_stream(event.stream))


class CachedReader:
    """Wraps the installed reader: a read cache, command metrics and spans.

    Args:
        inner: The reader that loads what the cache lacks.
        store: The store whose commits invalidate the cache.
        meter: Where each read's latency goes.
        max_size: Records kept; 0 turns the cache off (reads stay timed).
        ttl_s: How long a record stays cached; None until evicted.

    """

    def __init__(
        self,
        inner: RecordReader,
        store: EventStore,
        meter: CommandMeter,
        *,
        max_size: int = 10_000,
        ttl_s: float | None = None,
    ) -> None:
        self.inner = inner
        self.meter = meter
        self.enabled = max_size > 0
        self.cache: BoundedCache[Key, Record | None] = BoundedCache(
            max_size=max(1, max_size), ttl_s=ttl_s
        )
        self._notifier = store.notifier
        self.folding = -1
        self.invalidator = Invalidator(self)

    def generation(self) -> int:
        """How many commits the store has announced."""
        return self._notifier.generation

    async def read(
        self, name: str, record_id: str, *, as_of_version: int | None = None
    ) -> Record | None:
        """One record, or None; from the cache when it holds it."""
        started = time.perf_counter()
        with command_span("read", name, record_id=record_id):
            try:
                if as_of_version is not None or not self.enabled:
                    found = await self.inner.read(
                        name, record_id, as_of_version=as_of_version
                    )
                else:
                    found = await self._read(name, record_id)
            except Exception as error:
                self.meter.failed("read", name, time.perf_counter() - started, error)
                raise
        self.meter.command("read", name, time.perf_counter() - started)
        return found

    async def _read(self, name: str, record_id: str) -> Record | None:
        cache = self.cache
        key = (name, record_id)
        stale = self._notifier.generation <= self.folding
        _, value, ticket = cache.lookup_or_reserve(key, stale=stale)
        if ticket is None:
            return value
        try:
            found = await self.inner.read(name, record_id)
        except BaseException:
            cache.settle(key, ticket, None, store=False)
            raise
        cache.settle(key, ticket, found)
        return found

    async def batch_read(self, name: str, ids: Sequence[str]) -> list[Record | None]:
        """Records by id, None where absent; the cache serves what it holds."""
        started = time.perf_counter()
        with command_span("batch_read", name):
            try:
                found = await self._batch_read(name, tuple(ids))
            except Exception as error:
                self.meter.failed(
                    "batch_read", name, time.perf_counter() - started, error
                )
                raise
        self.meter.command("batch_read", name, time.perf_counter() - started)
        return found

    async def _batch_read(self, name: str, ids: tuple[str, ...]) -> list[Record | None]:
        if not self.enabled:
            return await self.inner.batch_read(name, ids)
        cache = self.cache
        found: dict[str, Record | None] = {}
        missing: list[str] = []
        for record_id in ids:
            hit, value = cache.lookup((name, record_id))
            if hit:
                found[record_id] = value
            elif record_id not in missing:
                missing.append(record_id)
        if missing:
            stale = self.generation() <= self.folding
            tickets = [cache.reserve((name, one), stale=stale) for one in missing]
            loaded: list[Record | None] = []
            try:
                loaded = await self.inner.batch_read(name, missing)
            finally:
                complete = len(loaded) == len(missing)
                for index, record_id in enumerate(missing):
                    value = loaded[index] if complete else None
                    cache.settle(
                        (name, record_id), tickets[index], value, store=complete
                    )
                    found[record_id] = value
        return [found[record_id] for record_id in ids]

    async def query(
        self,
        name: str,
        *,
        where: dict[str, Any] | None = None,
        order_by: str | Sequence[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Record]:
        """Records matching ``where`` (not cached: the inner reader answers)."""
        started = time.perf_counter()
        with command_span("query", name):
            try:
                found = await self.inner.query(
                    name, where=where, order_by=order_by, limit=limit, offset=offset
                )
            except Exception as error:
                self.meter.failed("query", name, time.perf_counter() - started, error)
                raise
        self.meter.command("query", name, time.perf_counter() - started)
        return found
