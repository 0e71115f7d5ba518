"""The asyncio DataManager: data sources, CRUD, batches, transactions.

Every command goes to its collection's actor through the actor's handle
and comes back through ``loop.call_soon_threadsafe``: the event loop never
waits on another thread. Each command has a timeout, armed with
``loop.call_later`` on the reply's future.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import weakref
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import msgspec

from actors._cache import BoundedCache
from actors._cached_reader import CachedReader
from actors._collection import (
    CollectionActor,
    CollectionConfig,
    CollectionShared,
    History,
    Op,
    Write,
)
from actors._conflicts import ConflictStrategy, Resolution, Version, merge_data
from actors._data import Step, Transformer, process_data, transform, validate
from actors._deadlines import Deadlines
from actors._dm_sync import ReplicaSupport
from actors._errors import ActorError, CommandTimeoutError, UnknownDataSourceError
from actors._instrument import CommandMeter, collect_gauges, trace_inline_folds
from actors._locks import Lease
from actors._monitoring import MonitoringSystem
from actors._optimizer import PerformanceOptimizer
from actors._projections import ASYNC_PROJECTIONS, Projections
from actors._reader import RecordReader
from actors._records import Record
from actors._replies import LoopReply
from actors._subscriptions import EventHandler, Subscriptions, events
from actors._supervisor import (
    ChildHandle,
    FailureHook,
    RestartPolicy,
    Scheduler,
    Supervisor,
    Worker,
)
from actors._sync import SyncReport
from actors._sync_conflicts import Conflict
from actors._sync_live import Replicator
from actors._tracing import command_span, inject
from actors._transaction import Transaction
from actors._views import RecordsViewReader
from actors._workflows import WorkflowEngine
from eventstore import (
    Durability,
    EventStore,
    LmdbEventStore,
    MemoryEventStore,
    StoredEvent,
)
from projections import Subscriber

if TYPE_CHECKING:
    from actors._dashboard import DashboardServer
    from actors._sync_ws import SyncServer

__all__ = ["Command", "DataManager", "DataSource", "Middleware"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

SOURCE_KINDS = ("collection",)
_LATER_KINDS = ("files", "http", "sql", "replica")


class DataSource(msgspec.Struct, frozen=True, kw_only=True):
    """A data source as added to a DataManager.

    Attributes:
        name: Its name, which commands use.
        kind: ``"collection"``: an event-sourced collection in this store.
        schema: The ``msgspec.Struct`` every record must fit, or None.
        transformers: Applied in order before validation on every write.
        indexes: Fields the records view indexes for queries.

    """

    name: str
    kind: str = "collection"
    schema: type[msgspec.Struct] | None = None
    transformers: tuple[Transformer, ...] = ()
    indexes: tuple[str, ...] = ()


class Command(msgspec.Struct, frozen=True):
    """A command as middleware sees it.

    Attributes:
        name: ``create``, ``read``, ``query``, ``update``, ``delete``,
            ``batch_create``, ``batch_read``, ``batch_update``,
            ``batch_delete``, ``history`` or ``transaction``.
        collection: The data source, or None for a transaction.
        args: The command's arguments.

    """

    name: str
    collection: str | None
    args: dict[str, Any]


Middleware = Callable[[Command, Callable[[Command], Awaitable[Any]]], Awaitable[Any]]


class DataManager:
    """Event-sourced collections behind an asyncio API.

    Use :meth:`open` (an LMDB store at a path) or :meth:`in_memory`, then
    ``async with``; see ``docs/API.md``.
    """

    def __init__(
        self,
        *,
        path: str | os.PathLike[str] | None = None,
        store: EventStore | None = None,
        durability: Durability = "durable",
        map_size_bytes: int | None = None,
        command_timeout_s: float = 10.0,
        restart_policy: RestartPolicy | None = None,
        scheduler: Scheduler | None = None,
        snapshot_every: int = 10_000,
        replica_id: str | None = None,
        async_projections: Sequence[str] = ASYNC_PROJECTIONS,
        workflow_options: Mapping[str, Any] | None = None,
        read_cache_size: int = 10_000,
        read_cache_ttl_s: float | None = None,
    ) -> None:
        if (path is None) == (store is None):
            raise ActorError("DataManager needs exactly one of path= and store=")
        self._path = path
        self._durability = durability
        self._map_size_bytes = map_size_bytes
        self._owns_store = store is None
        self._store = store
        self.command_timeout_s = command_timeout_s
        self.snapshot_every = snapshot_every
        self._sources: dict[str, DataSource] = {}
        self._handles: dict[str, ChildHandle] = {}
        self._middleware: list[Middleware] = []
        self._deadlines: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, Deadlines
        ] = weakref.WeakKeyDictionary()
        self._closed = False
        self.shared_states: dict[str, CollectionShared] = {}
        self.replica = ReplicaSupport(self, requested_id=replica_id)
        self.system = Supervisor("system", policy=restart_policy, scheduler=scheduler)
        self.collections = Supervisor(
            "collections", policy=restart_policy, scheduler=scheduler
        )
        self.system.add_child(self.collections)
        self.projections = Projections(
            self, names=async_projections, policy=restart_policy, scheduler=scheduler
        )
        self.system.add_child(self.projections.supervisor)
        self.workflow_supervisor = Supervisor(
            "workflows", policy=restart_policy, scheduler=scheduler
        )
        self.system.add_child(self.workflow_supervisor)
        self._workflow_options = dict(workflow_options or {})
        self._workflows: WorkflowEngine | None = None
        self._views = RecordsViewReader(self)
        self.reader: RecordReader = self._views
        self._subscriptions = Subscriptions()
        self.monitoring = MonitoringSystem()
        self.optimizer = PerformanceOptimizer()
        self._meter = CommandMeter(self.monitoring)
        self.monitoring.add_collector(self._collect)
        self._read_cache = (read_cache_size, read_cache_ttl_s)
        self._cached: CachedReader | None = None
        self._dashboard: DashboardServer | None = None

    # -- life cycle -------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        store: EventStore | None = None,
        durability: Durability = "durable",
        **options: Any,
    ) -> DataManager:
        """A DataManager on the LMDB store at ``path`` (or on ``store``).

        Nothing starts until ``async with`` (or :meth:`start`).
        """
        return cls(path=path, store=store, durability=durability, **options)

    @classmethod
    def in_memory(cls, **options: Any) -> DataManager:
        """A DataManager on a fresh :class:`MemoryEventStore`, for tests."""
        return cls(store=MemoryEventStore(), **options)

    @property
    def store(self) -> EventStore:
        """The event store (open after :meth:`start`)."""
        if self._store is None:
            raise ActorError("the DataManager is not started")
        return self._store

    @property
    def workflows(self) -> WorkflowEngine:
        """The workflow engine on this store (see ``docs/WORKFLOWS.md``).

        Its execution actors run under ``dm.system``. Register actions and
        services, then ``await dm.workflows.start()``: starting it resumes
        the unfinished executions, which need their actions.
        """
        if self._workflows is None:
            raise ActorError("the DataManager is not started")
        return self._workflows

    async def start(self) -> Self:
        """Open the store (off the loop) and start the actor tree."""
        if self._store is None:
            path = self._path
            assert path is not None  # noqa: S101 - checked in __init__
            options: dict[str, Any] = {"durability": self._durability}
            if self._map_size_bytes is not None:
                options["map_size_bytes"] = self._map_size_bytes
            self._store = await asyncio.to_thread(LmdbEventStore.open, path, **options)
        await asyncio.to_thread(self.replica.start, self._store)
        await asyncio.to_thread(self._views.attach, self._store)
        if self._workflows is None:
            engine_options = {"monitoring": self.monitoring, **self._workflow_options}
            self._workflows = WorkflowEngine(
                self._store, supervisor=self.workflow_supervisor, **engine_options
            )
        self.system.start()
        self._instrument(self._store)
        logger.info("DataManager started")
        return self

    async def close(self) -> None:
        """Stop every actor and thread, then close the store if it owns it."""
        if self._closed:
            return
        self._closed = True
        await self.replica.stop()
        for deadlines in list(self._deadlines.values()):
            deadlines.cancel()
        await self._subscriptions.close()
        if self._dashboard is not None:
            await self._dashboard.stop()
            self._dashboard = None
        await self.optimizer.close_pools()
        if self._workflows is not None:
            await self._workflows.close()
        await asyncio.to_thread(self._stop_tree)
        logger.info("DataManager closed")

    def _stop_tree(self) -> None:
        self.system.stop()
        self.system.fail(ActorError("the DataManager is closed"), stopped=True)
        self._meter.flush()
        self.monitoring.flush()
        if self._cached is not None and self._store is not None:
            self._store.remove_inline_projector(self._cached.invalidator)
        self._views.detach()
        if self._owns_store and self._store is not None:
            self._store.close()

    # -- observability ----------------------------------------------------

    def _instrument(self, store: EventStore) -> None:
        # After the rest of start: wraps whatever reader is installed.
        trace_inline_folds()
        self.monitoring.use_store(store)
        size, ttl_s = self._read_cache
        cached = CachedReader(
            self.reader, store, self._meter, max_size=size, ttl_s=ttl_s
        )
        store.add_inline_projector(cached.invalidator)
        self._cached = cached
        self.reader = cached

    def _collect(self) -> None:
        self._meter.flush()
        supervisors = [self.system, self.collections, self.projections.supervisor]
        store = None if self._closed else self._store
        collect_gauges(self.monitoring, store, supervisors, self._handles)

    @property
    def read_cache(self) -> BoundedCache[tuple[str, str], Record | None] | None:
        """The cache in front of reads (None before :meth:`start`)."""
        return self._cached.cache if self._cached is not None else None

    async def serve_dashboard(
        self, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None
    ) -> DashboardServer:
        """Serve the live dashboard over this store and ``monitoring``.

        The server stops with :meth:`close` (or earlier with its ``stop``).

        Raises:
            DashboardError: If a non-loopback ``host`` has no token, or the
                port cannot be bound.
            ActorError: If a dashboard is already served.

        """
        from actors._dashboard import DashboardServer  # noqa: PLC0415 - optional

        if self._dashboard is not None:
            raise ActorError(
                f"the dashboard is already served at {self._dashboard.url}"
            )
        server = DashboardServer(
            self.store,
            host=host,
            port=port,
            token=token,
            metrics=self.monitoring.get_dashboard,
        )
        await server.start()
        self._dashboard = server
        return server

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # -- data sources -----------------------------------------------------

    def add_data_source(
        self,
        name: str,
        source: str | None = None,
        *,
        schema: type[msgspec.Struct] | None = None,
        transformers: Sequence[Transformer] = (),
        indexes: Sequence[str] = (),
        snapshot_every: int | None = None,
        conflict_strategy: ConflictStrategy | None = None,
    ) -> DataSource:
        """Add a data source; its actor starts at once and recovers its state.

        Args:
            name: The source's name (no ``/``).
            source: Its kind; ``"collection"`` (the default) is an
                event-sourced collection in this store.
            schema: The ``msgspec.Struct`` every record must fit.
            transformers: Callables applied before validation on every write.
            indexes: Fields the records view indexes for queries.
            snapshot_every: Snapshot the collection after this many events.
            conflict_strategy: How concurrent writes from other replicas are
                resolved: ``"lww"`` (the default), ``"merge"``,
                ``"siblings"`` (kept for :meth:`conflicts`), or a callable.

        Raises:
            ActorError: If the name is taken or malformed, an index field
                is malformed, or the kind is not supported (yet).

        """
        kind = "collection" if source is None else source
        if kind != "collection":
            raise ActorError(
                f"data source {name!r}: kind {kind!r} is not supported yet "
                f"(supported: {', '.join(SOURCE_KINDS)}; planned: "
                f"{', '.join(_LATER_KINDS)}); see docs/limitations.md"
            )
        if not isinstance(name, str) or not name or "/" in name:
            raise ActorError(f"data source names are non-empty, without '/': {name!r}")
        if name in self._sources:
            raise ActorError(f"data source {name!r} exists")
        if schema is not None and not (
            isinstance(schema, type) and issubclass(schema, msgspec.Struct)
        ):
            raise ActorError(f"data source {name!r}: schema must be a msgspec.Struct")
        data_source = DataSource(
            name=name,
            schema=schema,
            transformers=tuple(transformers),
            indexes=tuple(indexes),
        )
        config = CollectionConfig(
            name=name,
            schema=schema,
            transformers=data_source.transformers,
            snapshot_every=snapshot_every or self.snapshot_every,
        )
        self.replica.set_strategy(name, conflict_strategy)
        shared = CollectionShared()
        shared.on_commit = self._meter.append

        def factory(handle: ChildHandle, on_failure: FailureHook) -> Any:
            shared.clock = self.replica.clock
            shared.origin = self.replica.replica_id
            return CollectionActor.start(
                handle, on_failure, store=self.store, config=config, shared=shared
            )

        worker = Worker(name, factory)
        self._views.declare_indexes(name, data_source.indexes)
        self.collections.add_child(worker)
        self._sources[name] = data_source
        self._handles[name] = worker.handle
        self.shared_states[name] = shared
        return data_source

    async def remove_data_source(self, name: str) -> None:
        """Stop a data source's actor and forget it; its events stay in the log."""
        self._handle(name)
        del self._sources[name]
        del self._handles[name]
        self.shared_states.pop(name, None)
        await asyncio.to_thread(self.collections.remove_child, name)

    def get_data_source(self, name: str) -> DataSource:
        """The data source ``name``.

        Raises:
            UnknownDataSourceError: If there is none.

        """
        try:
            return self._sources[name]
        except KeyError:
            raise UnknownDataSourceError(name, list(self._sources)) from None

    def list_data_sources(self) -> list[str]:
        """The names of the data sources, in the order they were added."""
        return list(self._sources)

    # -- middleware and asking --------------------------------------------

    def use(self, middleware: Middleware) -> None:
        """Run ``middleware`` around every later command (outermost first added)."""
        self._middleware.append(middleware)

    async def run(
        self, command: Command, handler: Callable[[Command], Awaitable[Any]]
    ) -> Any:
        """Run ``handler`` for ``command`` through the middleware chain."""
        chain = handler
        for middleware in reversed(self._middleware):
            chain = _bind(middleware, chain)
        return await chain(command)

    def _handle(self, name: str) -> ChildHandle:
        try:
            return self._handles[name]
        except KeyError:
            raise UnknownDataSourceError(name, list(self._handles)) from None

    async def ask(
        self,
        name: str,
        build: Callable[[LoopReply], Any],
        command: str,
        *,
        timeout_s: float | None = None,
    ) -> Any:
        """Send the message ``build(reply)`` to actor ``name``; await the reply.

        Raises:
            CommandTimeoutError: If no reply came within the timeout.

        """
        handle = self._handle(name)
        loop = asyncio.get_running_loop()
        reply = LoopReply(loop)
        future = reply.future
        if timeout_s is None or timeout_s == self.command_timeout_s:
            deadlines = self._deadlines.get(loop)
            if deadlines is None or deadlines.timeout_s != self.command_timeout_s:
                deadlines = self._deadlines[loop] = Deadlines(
                    loop, self.command_timeout_s
                )
            deadlines.watch(future, name, command)
            handle.send(build(reply))
            return await future
        timer = loop.call_later(timeout_s, _expire, future, name, command, timeout_s)
        try:
            handle.send(build(reply))
            return await future
        finally:
            timer.cancel()

    async def _simple(self, command: Command, handler: Callable[[], Awaitable[T]]) -> T:
        if not self._middleware:
            return await handler()
        result: T = await self.run(command, lambda _command: handler())
        return result

    # -- CRUD -------------------------------------------------------------

    async def create(
        self,
        name: str,
        data: dict[str, Any],
        *,
        id: str | None = None,  # noqa: A002 - the specification's name
        command_id: str | None = None,
    ) -> Record:
        """Create a record; a repeated ``command_id`` returns the first one.

        Raises:
            ValidationError: If ``data`` does not fit the schema.
            ConcurrencyError: If a record with ``id`` exists.

        """
        ops = (Op("create", id, data),)
        command = None
        if self._middleware:
            args = {"id": id, "data": data, "command_id": command_id}
            command = Command("create", name, args)
        result: Record = await self._write(
            command, "create", name, ops, command_id, single=True
        )
        return result

    async def read(
        self,
        name: str,
        id: str,  # noqa: A002
        *,
        as_of_version: int | None = None,
    ) -> Record | None:
        """The record ``id`` now, or at ``as_of_version``; None if absent."""
        if not self._middleware:
            return await self.reader.read(name, id, as_of_version=as_of_version)
        command = Command("read", name, {"id": id, "as_of_version": as_of_version})
        return await self._simple(
            command, lambda: self.reader.read(name, id, as_of_version=as_of_version)
        )

    async def query(
        self,
        name: str,
        *,
        where: dict[str, Any] | None = None,
        order_by: str | Sequence[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Record]:
        """The records matching ``where`` (see ``projections.compile_where``)."""
        args = {"where": where, "order_by": order_by, "limit": limit, "offset": offset}
        return await self._simple(
            Command("query", name, args),
            lambda: self.reader.query(
                name, where=where, order_by=order_by, limit=limit, offset=offset
            ),
        )

    async def update(
        self,
        name: str,
        id: str,  # noqa: A002
        patch: dict[str, Any],
        *,
        expected_version: int | None = None,
        replace: bool = False,
    ) -> Record:
        """Merge ``patch`` into a record (RFC 7396), or replace its data.

        Raises:
            NotFoundError: If there is no such record.
            ConcurrencyError: If it is not at ``expected_version``.
            ValidationError: If the result does not fit the schema.

        """
        ops = (Op("update", id, patch, expected_version, replace),)
        command = None
        if self._middleware:
            args = {"id": id, "patch": patch, "expected_version": expected_version}
            command = Command("update", name, args)
        result: Record = await self._write(
            command, "update", name, ops, None, single=True
        )
        return result

    async def delete(
        self,
        name: str,
        id: str,  # noqa: A002
        *,
        expected_version: int | None = None,
    ) -> None:
        """Delete a record (its history stays).

        Raises:
            NotFoundError: If there is no such record.
            ConcurrencyError: If it is not at ``expected_version``.

        """
        ops = (Op("delete", id, None, expected_version),)
        args = {"id": id, "expected_version": expected_version}
        await self._write(
            Command("delete", name, args), "delete", name, ops, None, single=True
        )

    async def history(self, name: str, id: str) -> list[Record]:  # noqa: A002
        """Every version of a record, oldest first (deletions are left out)."""
        return await self._simple(
            Command("history", name, {"id": id}),
            lambda: self.ask(name, lambda r: History(r, id), f"history {name}/{id}"),
        )

    # -- batches ----------------------------------------------------------

    async def batch_create(
        self,
        name: str,
        items: Iterable[dict[str, Any]],
        *,
        command_id: str | None = None,
    ) -> list[Record]:
        """Create records in one atomic append: all of them, or none."""
        ops = tuple(Op("create", None, data) for data in items)
        command = Command(
            "batch_create", name, {"items": ops, "command_id": command_id}
        )
        result: list[Record] = await self._write(
            command, "batch_create", name, ops, command_id, single=False
        )
        return result

    async def batch_read(self, name: str, ids: Iterable[str]) -> list[Record | None]:
        """Records by id, None where absent, in the order asked."""
        wanted = tuple(ids)
        return await self._simple(
            Command("batch_read", name, {"ids": wanted}),
            lambda: self.reader.batch_read(name, wanted),
        )

    async def batch_update(
        self,
        name: str,
        items: Iterable[tuple[str, dict[str, Any]] | tuple[str, dict[str, Any], int]],
        *,
        replace: bool = False,
    ) -> list[Record]:
        """Update records in one atomic append: ``(id, patch[, expected_version])``."""
        ops = tuple(
            Op("update", item[0], item[1], item[2] if len(item) > 2 else None, replace)  # noqa: PLR2004
            for item in items
        )
        command = Command("batch_update", name, {"items": ops})
        result: list[Record] = await self._write(
            command, "batch_update", name, ops, None, single=False
        )
        return result

    async def batch_delete(self, name: str, ids: Iterable[str]) -> None:
        """Delete records in one atomic append."""
        ops = tuple(Op("delete", record_id) for record_id in ids)
        await self._write(
            Command("batch_delete", name, {"ids": ops}),
            "batch_delete",
            name,
            ops,
            None,
            single=False,
        )

    async def _write(
        self,
        command: Command | None,
        kind: str,
        name: str,
        ops: tuple[Op, ...],
        command_id: str | None,
        *,
        single: bool,
    ) -> Any:
        if not ops:
            return []
        record_id = ops[0].id if single else None
        description = f"{kind} {name}"
        if record_id is not None:
            description = f"{kind} {name}/{record_id}"
        started = time.perf_counter()
        with command_span(
            kind, name, record_id=record_id, command_id=command_id
        ) as span:
            carrier = inject() if span.is_recording() else None

            async def handler() -> Any:
                await self.replica.wait_writable(
                    name, (op.id for op in ops), self.command_timeout_s
                )
                return await self.ask(
                    name,
                    lambda reply: Write(reply, ops, command_id, single, carrier),
                    description,
                )

            try:
                if command is None or not self._middleware:
                    result = await handler()
                else:
                    result = await self._simple(command, handler)
            except Exception as error:
                self._meter.failed(kind, name, time.perf_counter() - started, error)
                raise
        self._meter.command(kind, name, time.perf_counter() - started)
        return result

    # -- transactions -----------------------------------------------------

    def transaction(self, *, timeout_s: float | None = None) -> Transaction:
        """Stage writes over several collections; commit them in one append."""
        return Transaction(self, timeout_s=timeout_s)

    # -- replication ------------------------------------------------------

    @property
    def replica_id(self) -> str:
        """The replica id of this DataManager's store (fixed once it has written)."""
        return self.replica.replica_id

    async def sync(
        self,
        peer: Any,
        *,
        collections: Collection[str] | None = None,
        batch_size: int = 1000,
        timeout_s: float = 30.0,
    ) -> SyncReport:
        """Exchange with ``peer`` what each side lacks; resolve what conflicts.

        Args:
            peer: Another DataManager of this process, a ``ws://`` URL of a
                sync server, or a ``SyncEndpoint``.
            collections: Accept records of these collections only; a batch
                holding another is refused (sync is not partial: see
                ``docs/limitations.md``). All by default.
            batch_size: Events per batch at most.
            timeout_s: How long to wait for the peer's next message.

        Returns:
            Events sent and received, and conflicts found and resolved here.

        Raises:
            SyncConnectionError: If the peer cannot be reached or goes away.
            SyncRefusedError: If either side refused a batch.

        """
        return await self.replica.sync(
            peer, collections=collections, batch_size=batch_size, timeout_s=timeout_s
        )

    def replicate(
        self,
        peer: Any,
        *,
        interval_s: float = 5.0,
        on_status: Callable[[bool, Exception | None], None] | None = None,
        **options: Any,
    ) -> Replicator:
        """Sync with ``peer`` in the background until the DataManager closes.

        Local writes go on while the peer is offline; the replicator
        reconnects with backoff and reports the peer online or offline
        through ``on_status`` and its ``online`` attribute.
        """
        return self.replica.replicate(
            peer, interval_s=interval_s, on_status=on_status, **options
        )

    def sync_server(self, *, host: str = "127.0.0.1", port: int = 0) -> SyncServer:
        """A WebSocket sync server for this replica: ``async with`` it."""
        return self.replica.server(host=host, port=port)

    async def conflicts(self, name: str) -> list[Conflict]:
        """The records of ``name`` whose concurrent versions differ."""
        self._handle(name)
        return await self.replica.conflicts(name)

    async def resolve_conflicts(
        self, conflicts: Iterable[Conflict], strategy: ConflictStrategy = "lww"
    ) -> list[Resolution]:
        """Resolve conflicts by ``strategy`` and write each resolution."""
        return await self.replica.resolve(conflicts, strategy)

    @staticmethod
    def merge_data(
        a: Version, b: Version, *, strategy: ConflictStrategy = "merge"
    ) -> Resolution:
        """Merge two versions of a record (see :func:`actors.merge_data`)."""
        return merge_data(a, b, strategy=strategy)

    def lock(
        self,
        name: str,
        id: str,  # noqa: A002 - the specification's name
        *,
        ttl_s: float = 30.0,
        timeout_s: float = 10.0,
    ) -> contextlib.AbstractAsyncContextManager[Lease]:
        """An exclusive lease on a record for an ``async with`` block.

        Other ``lock`` callers wait (then ``LockTimeoutError`` names the
        record); writes from other tasks of this DataManager wait too. An
        unreleased lease expires after ``ttl_s``, recorded as an event.
        """
        self._handle(name)
        return self.replica.lock(name, id, ttl_s=ttl_s, timeout_s=timeout_s)

    # -- subscriptions ----------------------------------------------------

    def subscribe(
        self,
        pattern: str,
        handler: EventHandler,
        *,
        types: Collection[str] | None = None,
        from_position: int | None = None,
        max_attempts: int = 3,
    ) -> Subscriber:
        """Call ``handler`` with every committed event whose stream matches.

        Args:
            pattern: A stream prefix (``"records/users/"``) or a glob
                (``"workflows/*"``).
            handler: A function, called on the subscriber's thread, or an
                ``async def``, run on this event loop; one event at a time,
                in position order.
            types: Only events of these types, if given.
            from_position: The first position wanted; new events if omitted.
            max_attempts: Calls per event before a failure is logged and
                the event skipped.

        Returns:
            The running subscriber (``position`` is the last event handled);
            stop it with :meth:`unsubscribe`, or it stops with the
            DataManager.

        """
        return self._subscriptions.subscribe(
            self.store,
            pattern,
            handler,
            types=types,
            from_position=from_position,
            max_attempts=max_attempts,
        )

    async def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop a subscriber from :meth:`subscribe`."""
        await self._subscriptions.unsubscribe(subscriber)

    def subscribe_events(
        self,
        pattern: str,
        *,
        types: Collection[str] | None = None,
        from_position: int | None = None,
        timeout_s: float | None = None,
    ) -> AsyncIterator[StoredEvent]:
        """Committed events whose stream matches ``pattern``, for ``async for``.

        Iteration waits without blocking the loop, and ends after
        ``timeout_s`` with nothing new (``None``: never; break out instead).
        """
        return events(
            self.store,
            pattern,
            types=types,
            from_position=from_position,
            timeout_s=timeout_s,
        )

    # -- data -------------------------------------------------------------

    @staticmethod
    def validate(data: Any, schema: type[msgspec.Struct] | None) -> dict[str, Any]:
        """See :func:`actors.validate`."""
        return validate(data, schema)

    @staticmethod
    def transform(data: dict[str, Any], transformer: Transformer) -> dict[str, Any]:
        """See :func:`actors.transform`."""
        return transform(data, transformer)

    @staticmethod
    async def process_data(data: Any, pipeline: Sequence[Step]) -> Any:
        """See :func:`actors.process_data`."""
        return await process_data(data, pipeline)


def _bind(
    middleware: Middleware, call_next: Callable[[Command], Awaitable[Any]]
) -> Callable[[Command], Awaitable[Any]]:
    def call(command: Command) -> Awaitable[Any]:
        return middleware(command, call_next)

    return call


def _expire(
    future: asyncio.Future[Any], actor: str, command: str, timeout_s: float
) -> None:
    if not future.done():
        future.set_exception(CommandTimeoutError(actor, command, timeout_s))
