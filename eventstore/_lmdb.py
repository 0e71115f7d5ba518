"""The embedded store: one LMDB environment and one writer thread.

Design note. LMDB allows one write transaction at a time per environment,
across processes, and an fsync per commit costs more than encoding a
thousand events. So a single writer thread owns every write transaction of
this process: it takes one job off its queue, drains whatever else is
waiting, runs them all in one transaction and commits once. Each job is
checked before it writes (``_core``), so one job's failure cannot leave
another half-written; an error that escapes the checks aborts the batch,
which is then retried one job per transaction so that only the culprit
fails. A full map aborts the transaction, doubles the map and retries it:
nothing of the aborted attempt was written, so nothing lands twice.
Futures complete only after the commit returned, so an acknowledged
append is durable (in ``durable`` mode).

Resizing the map requires that no transaction of this process is open,
so readers hold a shared gate that the writer takes exclusively to resize.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import queue
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Self

import lmdb

from eventstore._base import BaseStore
from eventstore._codec import EventRegistry
from eventstore._core import AppendJob, Job, ViewJob, run_jobs
from eventstore._errors import (
    EventStoreError,
    ForkedProcessError,
    NotAStoreError,
    ReadOnlyStoreError,
    StoreClosedError,
    StoreNotFoundError,
)
from eventstore._tables import CORE_TABLES, META

__all__ = ["Durability", "LmdbEventStore", "StoreInUseError"]

logger = logging.getLogger(__name__)

Durability = Literal["durable", "fast"]
FORMAT = b"actorlog-1"
_DEFAULT_MAP_SIZE = 256 * 1024 * 1024
_MAX_BATCH_EVENTS = 20_000
_STOP = object()

_open_paths: dict[str, LmdbEventStore] = {}
_open_paths_lock = threading.Lock()


class StoreInUseError(EventStoreError):
    """Raised when a path is opened twice in one process."""


class _Gate:
    """Many readers at once, or the writer alone (to resize the map)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._readers = 0
        self._exclusive = False

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: not self._exclusive)
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                if not self._readers:
                    self._condition.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: not self._exclusive)
            self._exclusive = True
            self._condition.wait_for(lambda: not self._readers)
        try:
            yield
        finally:
            with self._condition:
                self._exclusive = False
                self._condition.notify_all()


class _LmdbTables:
    """The tables of one LMDB transaction."""

    __slots__ = ("_created", "_dbs", "_env", "_txn", "_write")

    def __init__(
        self,
        env: lmdb.Environment,
        txn: lmdb.Transaction,
        dbs: dict[str, Any],
        *,
        write: bool,
    ) -> None:
        self._env = env
        self._txn = txn
        self._dbs = dbs
        self._write = write
        self._created: list[str] = []

    def _db(self, table: str) -> Any:
        db = self._dbs.get(table)
        if db is not None:
            return db
        if not self._write:
            try:
                db = self._env.open_db(table.encode(), txn=self._txn, create=False)
            except lmdb.NotFoundError:
                return None
            # A handle opened in a read transaction dies with it (py-lmdb
            # ends read transactions by aborting them): keep it for this one.
            return db
        db = self._env.open_db(table.encode(), txn=self._txn, create=True)
        self._created.append(table)
        self._dbs[table] = db
        return db

    def forget_created(self) -> None:
        """Drop handles made in an aborted transaction: LMDB voids them."""
        for table in self._created:
            self._dbs.pop(table, None)

    def get(self, table: str, key: bytes) -> bytes | None:
        db = self._db(table)
        # Buffers are off, so LMDB hands out bytes.
        return None if db is None else self._txn.get(key, db=db)  # type: ignore[return-value]

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self._txn.put(key, value, db=self._db(table))

    def append_put(self, table: str, key: bytes, value: bytes) -> None:
        self._txn.put(key, value, db=self._db(table), append=True)

    def delete(self, table: str, key: bytes) -> bool:
        return bool(self._txn.delete(key, db=self._db(table)))

    def drop(self, table: str) -> None:
        self._txn.drop(self._db(table), delete=False)

    def last_key(self, table: str) -> bytes | None:
        db = self._db(table)
        if db is None:
            return None
        cursor = self._txn.cursor(db=db)
        return bytes(cursor.key()) if cursor.last() else None

    def scan(
        self, table: str, start: bytes = b"", stop: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        db = self._db(table)
        if db is None:
            return
        cursor = self._txn.cursor(db=db)
        if not cursor.set_range(start):
            return
        for key, value in cursor.iternext():
            if stop is not None and key >= stop:  # type: ignore[operator]
                return
            yield key, value  # type: ignore[misc]


class LmdbEventStore(BaseStore):
    """The event log in an LMDB environment on local disk.

    Open it with :meth:`open`; one instance per path per process.
    """

    def __init__(
        self,
        path: Path,
        env: lmdb.Environment,
        *,
        readonly: bool,
        durability: Durability,
        registry: EventRegistry | None,
    ) -> None:
        super().__init__(registry)
        self.path = path
        self.readonly = readonly
        self.durability: Durability = durability
        self._env = env
        self._dbs: dict[str, Any] = {}
        self._pid = os.getpid()
        self._gate = _Gate()
        self._closed = False
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self.map_resizes = 0
        self.commits = 0

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "durable",
        readonly: bool = False,
        map_size_bytes: int = _DEFAULT_MAP_SIZE,
        max_readers: int = 126,
        registry: EventRegistry | None = None,
    ) -> LmdbEventStore:
        """Open the store at ``path``, creating it unless ``readonly``.

        Args:
            path: A directory; created if missing (not when ``readonly``).
            durability: ``"durable"``: an append returns once fsynced.
                ``"fast"``: no fsync per commit; a power loss may lose the
                last commits, a process crash loses nothing.
            readonly: Open for reading only; the store must exist.
            map_size_bytes: The initial map size; it grows when full.
            max_readers: LMDB reader slots (concurrent read transactions).
            registry: The event types to decode with; the default registry
                if omitted.

        Raises:
            StoreNotFoundError: If ``readonly`` and there is no store.
            NotAStoreError: If the path holds something else.
            StoreInUseError: If this process has the path open already.

        """
        if durability not in ("durable", "fast"):
            raise ValueError(
                f"durability must be 'durable' or 'fast', not {durability!r}"
            )
        where = Path(path).resolve()
        key = str(where)
        with _open_paths_lock:
            if key in _open_paths:
                raise StoreInUseError(
                    f"{where} is already open in this process; share that instance"
                )
            env = _open_env(where, readonly, durability, map_size_bytes, max_readers)
            store = cls(
                where, env, readonly=readonly, durability=durability, registry=registry
            )
            try:
                store._initialise()
            except BaseException:
                env.close()
                raise
            _open_paths[key] = store
        return store

    def _initialise(self) -> None:
        cleared = self._env.reader_check()
        if cleared:
            logger.info("cleared %d stale reader slots in %s", cleared, self.path)
        if self.readonly:
            self._check_format()
            return
        with self._env.begin(write=True) as txn:
            meta = self._env.open_db(META.encode(), txn=txn, create=True)
            found = txn.get(b"format", db=meta)
            if found is None:
                if _has_foreign_data(txn):
                    raise NotAStoreError(
                        f"{self.path} holds an LMDB store of another kind"
                    )
                txn.put(b"format", FORMAT, db=meta)
                txn.put(b"replica_id", uuid.uuid4().hex.encode(), db=meta)
                created = dt.datetime.now(dt.UTC).isoformat()
                txn.put(b"created_at", created.encode(), db=meta)
            elif found != FORMAT:
                raise NotAStoreError(f"{self.path} has store format {found!r}")
            txn.put(b"durability", self.durability.encode(), db=meta)
            for table in CORE_TABLES:
                self._dbs[table] = self._env.open_db(
                    table.encode(), txn=txn, create=True
                )
        self._writer = threading.Thread(
            target=self._run_writer,
            name=f"actorlog-writer:{self.path.name}",
            daemon=True,
        )
        self._writer.start()

    def _check_format(self) -> None:
        with self._env.begin() as txn:
            try:
                meta = self._env.open_db(META.encode(), txn=txn, create=False)
            except lmdb.NotFoundError:
                raise NotAStoreError(f"{self.path} is not an actorlog store") from None
            found = txn.get(b"format", db=meta)
        if found != FORMAT:
            raise NotAStoreError(f"{self.path} is not an actorlog store ({found!r})")

    # -- the backend ------------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the store at {self.path} is closed")
        if os.getpid() != self._pid:
            raise ForkedProcessError(
                f"the store at {self.path} was opened in process {self._pid} "
                f"before fork(); open it again in process {os.getpid()}"
            )

    def _submit(self, job: AppendJob | ViewJob) -> None:
        self._check_usable()
        if self.readonly:
            raise ReadOnlyStoreError(f"the store at {self.path} is open read-only")
        self._queue.put(job)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[_LmdbTables]:
        self._check_usable()
        with self._gate.shared():
            txn = self._begin(write=False)
            try:
                yield _LmdbTables(self._env, txn, self._dbs, write=False)
            finally:
                txn.abort()

    def _begin(self, *, write: bool) -> lmdb.Transaction:
        try:
            return self._env.begin(write=write)
        except lmdb.MapResizedError:
            # Another process grew the map: adopt its size.
            self._env.set_mapsize(0)
            return self._env.begin(write=write)

    def meta(self) -> dict[str, str]:
        """The store's metadata: format, replica id, creation time, durability."""
        with self._reading() as tables:
            return {k.decode(): v.decode() for k, v in tables.scan(META)}

    def info(self) -> dict[str, Any]:
        """Sizes and counters of the environment (for ``actorlog info``)."""
        self._check_usable()
        stat = self._env.stat()
        info = self._env.info()
        readers = self._env.readers()
        return {
            "path": str(self.path),
            "size_bytes": sum(p.stat().st_size for p in self.path.iterdir()),
            "map_size_bytes": info["map_size"],
            "page_size_bytes": stat["psize"],
            "last_txn_id": info["last_txnid"],
            "max_readers": info["max_readers"],
            "reader_slots_used": info["num_readers"],
            "readers": readers.strip(),
        }

    def backup(self, dest: str | os.PathLike[str]) -> Path:
        """Write a consistent, compacted copy of the store to ``dest``.

        Writers may go on meanwhile: the copy is one read snapshot.

        Raises:
            FileExistsError: If ``dest`` exists and is not an empty directory.

        """
        self._check_usable()
        target = Path(dest)
        if target.exists() and any(target.iterdir()):
            raise FileExistsError(f"backup destination {target} is not empty")
        target.mkdir(parents=True, exist_ok=True)
        with self._gate.shared():
            self._env.copy(str(target), compact=True)
        return target

    def sync(self) -> None:
        """Flush to disk now (useful in ``fast`` mode)."""
        self._check_usable()
        self._env.sync(force=True)

    def close(self) -> None:
        """Finish queued appends, stop the writer and close the environment."""
        if self._closed:
            return
        if self._writer is not None and os.getpid() == self._pid:
            self._queue.put(_STOP)
            self._writer.join()
        self._closed = True
        with _open_paths_lock:
            if _open_paths.get(str(self.path)) is self:
                del _open_paths[str(self.path)]
        if os.getpid() == self._pid:
            if not self.readonly:
                self._env.sync(force=True)
            self._env.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the writer thread ------------------------------------------------

    def _run_writer(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            batch: list[Job] = [first]  # type: ignore[list-item]
            size = _job_size(first)  # type: ignore[arg-type]
            while size < _MAX_BATCH_EVENTS:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stopping = True
                    break
                batch.append(more)  # type: ignore[arg-type]
                size += _job_size(more)  # type: ignore[arg-type]
            self._commit(batch)

    def _commit(self, batch: Sequence[Job]) -> None:
        try:
            outcomes = self._transact(batch)
        except Exception as exc:  # noqa: BLE001 - the waiting caller gets it
            if len(batch) > 1:
                logger.debug(
                    "batch of %d failed (%r); retrying one by one", len(batch), exc
                )
                for job in batch:
                    self._commit([job])
                return
            logger.warning("write job failed in %s: %r", self.path, exc)
            _complete(batch[0], exc)
            return
        for job, outcome in outcomes:
            _complete(job, outcome)
        self.notifier.committed()

    def _transact(self, batch: Sequence[Job]) -> list[tuple[Job, object]]:
        while True:
            txn = self._begin(write=True)
            tables = _LmdbTables(self._env, txn, self._dbs, write=True)
            try:
                outcomes = run_jobs(tables, batch, self.registry, self._projectors)
                txn.commit()
            except lmdb.MapFullError:
                txn.abort()
                tables.forget_created()
                self._grow()
                continue
            except BaseException:
                txn.abort()
                tables.forget_created()
                raise
            self.commits += 1
            return outcomes

    def _grow(self) -> None:
        with self._gate.exclusive():
            size = self._env.info()["map_size"] * 2
            self._env.set_mapsize(size)
        self.map_resizes += 1
        logger.info("grew the map of %s to %d bytes", self.path, size)


def _job_size(job: Job) -> int:
    return len(job.events) if isinstance(job, AppendJob) else 1


def _complete(job: Job, outcome: object) -> None:
    if isinstance(outcome, BaseException):
        job.future.set_exception(outcome)
    else:
        job.future.set_result(outcome)  # type: ignore[arg-type]


def _has_foreign_data(txn: lmdb.Transaction) -> bool:
    cursor = txn.cursor()
    return any(key != META.encode() for key in cursor.iternext(values=False))


def _open_env(
    where: Path,
    readonly: bool,
    durability: Durability,
    map_size_bytes: int,
    max_readers: int,
) -> lmdb.Environment:
    if readonly:
        if not (where / "data.mdb").is_file():
            raise StoreNotFoundError(f"no actorlog store at {where}")
    elif where.exists() and not where.is_dir():
        raise NotAStoreError(f"{where} is a file, not a store directory")
    else:
        where.mkdir(parents=True, exist_ok=True)
    durable = durability == "durable"
    try:
        return lmdb.open(
            str(where),
            map_size=map_size_bytes,
            max_dbs=128,
            max_readers=max_readers,
            readonly=readonly,
            sync=durable,
            metasync=durable,
            create=not readonly,
        )
    except lmdb.InvalidError as exc:
        raise NotAStoreError(f"{where} is not an LMDB store: {exc}") from exc
