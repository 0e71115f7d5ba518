"""What a DataManager needs to be a replica: clock, conflicts, sync, leases.

The DataManager owns one ``ReplicaSupport``. Remote events are applied to
the store directly (one atomic append per batch, see ``eventstore``); the
collection actors then learn of them through their ``dirty`` sets and reload
those records from the log before their next command. Conflicts a batch
caused are resolved right after it, by each collection's strategy, with
resolution events that replicate like any write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from actors._conflicts import (
    ConflictStrategy,
    Resolution,
    Version,
    check_strategy,
    merge_data,
)
from actors._locks import Lease, LeaseManager
from actors._sync import StoreEndpoint, SyncEndpoint, SyncReport, sync_in_process
from actors._sync_conflicts import (
    Conflict,
    conflicts_of,
    find_conflicts,
    resolve_conflicts,
)
from actors._sync_live import Replicator
from eventstore import (
    ApplyResult,
    EventStore,
    HybridLogicalClock,
    RemoteValidation,
    ReplicatedEvent,
    latest_hlc,
    parse_record_stream,
    replica_id,
    replicating,
    replication_index,
    set_replica_id,
)

if TYPE_CHECKING:
    from actors._datamanager import DataManager
    from actors._sync_ws import SyncServer

__all__ = ["Peer", "ReplicaSupport"]

logger = logging.getLogger(__name__)

Peer = Any  # a DataManager, a SyncEndpoint, or a ws:// URL


class ReplicaSupport:
    """The replica side of one DataManager (see the module docstring)."""

    def __init__(self, manager: DataManager, *, requested_id: str | None) -> None:
        self.manager = manager
        self.requested_id = requested_id
        self.strategies: dict[str, ConflictStrategy] = {}
        self.replicators: list[Replicator] = []
        self._clock: HybridLogicalClock | None = None
        self._leases: LeaseManager | None = None
        self.replica_id = ""

    def start(self, store: EventStore) -> None:
        """Fix the replica id and start the clock (blocking).

        The replication index costs every append some work, so a store that
        never replicated gets it on first use (the first sync asks for its
        marks, off the event loop); it then numbers what was written before.
        """
        if self.requested_id is not None:
            set_replica_id(store, self.requested_id)
        self.replica_id = replica_id(store)
        initial = None
        if replicating(store):
            initial = latest_hlc(store)
        elif head := store.head_position():
            initial = next(iter(store.read_all(from_position=head))).metadata.hlc
        self._clock = HybridLogicalClock(self.replica_id, initial=initial)
        self._leases = LeaseManager(store, owner=self.replica_id)

    def attach(self) -> None:
        """Attach the replication index (blocking; cheap once attached)."""
        replication_index(self.manager.store)

    async def stop(self) -> None:
        """Stop every live replication."""
        replicators, self.replicators = self.replicators, []
        for replicator in replicators:
            await replicator.stop()

    @property
    def clock(self) -> HybridLogicalClock:
        """The replica's hybrid logical clock."""
        if self._clock is None:
            raise RuntimeError("the DataManager is not started")
        return self._clock

    @property
    def leases(self) -> LeaseManager:
        """The lease manager of the replica's store."""
        if self._leases is None:
            raise RuntimeError("the DataManager is not started")
        return self._leases

    # -- conflicts ----------------------------------------------------------

    def set_strategy(self, collection: str, strategy: ConflictStrategy | None) -> None:
        """Resolve conflicts of ``collection`` by ``strategy`` ("lww" if None)."""
        self.strategies[collection] = check_strategy(strategy or "lww")

    async def conflicts(self, collection: str) -> list[Conflict]:
        """The records of ``collection`` whose concurrent versions differ."""
        await asyncio.to_thread(self.attach)
        return await asyncio.to_thread(find_conflicts, self.manager.store, collection)

    async def resolve(
        self, conflicts: Iterable[Conflict], strategy: ConflictStrategy
    ) -> list[Resolution]:
        """Resolve ``conflicts`` by ``strategy``; write the resolutions."""
        chosen = tuple(conflicts)
        await asyncio.to_thread(self.attach)
        resolutions = await asyncio.to_thread(
            resolve_conflicts, self.manager.store, chosen, strategy
        )
        self._mark_dirty((c.collection, c.id) for c in chosen)
        return resolutions

    @staticmethod
    def merge(a: Version, b: Version, strategy: ConflictStrategy) -> Resolution:
        """Merge two versions of a record by ``strategy``."""
        return merge_data(a, b, strategy=strategy)

    def _on_applied(
        self, result: ApplyResult, events: Sequence[ReplicatedEvent]
    ) -> tuple[int, int]:
        del result
        touched = sorted(
            {
                parse_record_stream(e.stream)
                for e in events
                if e.stream.startswith("records/")
            }
        )
        store = self.manager.store
        conflicts = conflicts_of(store, touched)
        resolutions = resolve_conflicts(store, conflicts, self.strategies)
        self._mark_dirty(touched)
        resolved = sum(1 for r in resolutions if r.resolved)
        if conflicts:
            logger.info(
                "replica %s: %d conflicts after a batch, %d resolved",
                self.replica_id,
                len(conflicts),
                resolved,
            )
        return len(conflicts), resolved

    def _mark_dirty(self, records: Iterable[tuple[str, str]]) -> None:
        shared = self.manager.shared_states
        for collection, record_id in records:
            state = shared.get(collection)
            if state is not None:
                state.dirty.add(record_id)

    # -- sync -----------------------------------------------------------------

    def endpoint(self, collections: Collection[str] | None = None) -> StoreEndpoint:
        """The replica as a sync endpoint (accepting ``collections`` only)."""
        validation = RemoteValidation(clock=self.clock, collections=collections)
        return StoreEndpoint(
            self.manager.store, validation=validation, on_applied=self._on_applied
        )

    def peer_endpoint(self, peer: Peer) -> SyncEndpoint | str:
        """The endpoint or URL to reach ``peer``."""
        support = getattr(peer, "replica", None)
        if isinstance(support, ReplicaSupport):
            return support.endpoint()
        if isinstance(peer, str):
            return peer
        endpoint: SyncEndpoint = peer
        return endpoint

    async def sync(
        self,
        peer: Peer,
        *,
        collections: Collection[str] | None = None,
        batch_size: int = 1000,
        timeout_s: float = 30.0,
    ) -> SyncReport:
        """One sync session with ``peer``; see ``DataManager.sync``."""
        await asyncio.to_thread(self.attach)
        local = self.endpoint(collections)
        target = self.peer_endpoint(peer)
        if isinstance(target, str):
            from actors._sync_ws import sync_websocket  # noqa: PLC0415 - aiohttp

            return await sync_websocket(
                local, target, batch_size=batch_size, timeout_s=timeout_s
            )
        return await sync_in_process(
            local, target, batch_size=batch_size, timeout_s=timeout_s
        )

    def replicate(
        self,
        peer: Peer,
        *,
        interval_s: float,
        on_status: Callable[[bool, Exception | None], None] | None,
        **options: Any,
    ) -> Replicator:
        """Start live replication with ``peer``; see ``DataManager.replicate``."""
        replicator = Replicator(
            self.endpoint(),
            self.peer_endpoint(peer),
            interval_s=interval_s,
            on_status=on_status,
            **options,
        )
        replicator.start()
        self.replicators.append(replicator)
        return replicator

    def server(self, *, host: str, port: int) -> SyncServer:
        """A WebSocket sync server for this replica (not started)."""
        from actors._sync_ws import SyncServer  # noqa: PLC0415 - aiohttp

        return SyncServer(self.endpoint(), host=host, port=port)

    # -- leases ---------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lock(
        self, collection: str, record_id: str, *, ttl_s: float, timeout_s: float
    ) -> AsyncIterator[Lease]:
        """An exclusive lease on a record; see ``DataManager.lock``."""
        async with self.leases.lock(
            collection, record_id, ttl_s=ttl_s, timeout_s=timeout_s
        ) as lease:
            yield lease

    async def wait_writable(
        self, collection: str, ids: Iterable[str | None], timeout_s: float
    ) -> None:
        """Wait while another task of this DataManager leases one of ``ids``."""
        leases = self._leases
        if leases is None or not leases.held:
            return
        for record_id in ids:
            if record_id is not None and leases.leased_elsewhere(collection, record_id):
                await leases.wait_writable(collection, record_id, timeout_s=timeout_s)
