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
so readers hold a shared gate that the writer takes exclusively to resize
(to grow the map, or to adopt a size another process set). Table handles
and the gate live in ``_lmdb_tables``.

LMDB holds its write lock only during a transaction, so it cannot tell
whether another process has the store open for writing. Each writable
opener therefore holds an ``fcntl`` lock on ``actorlog.lock`` in the store
directory: shared normally, exclusive for a job that must run alone (a
projection rebuild from the CLI). The kernel drops it when the process
dies, so a crash never leaves the store locked.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
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
    WriterBusyError,
)
from eventstore._lmdb_tables import Gate, Handles, LmdbTables
from eventstore._tables import CORE_TABLES, META

__all__ = ["Durability", "LmdbEventStore", "StoreInUseError"]

logger = logging.getLogger(__name__)

Durability = Literal["durable", "fast"]
# 2: a record is one MessagePack array ending in its CRC-32 (was: CRC first).
FORMAT = b"actorlog-2"
_DEFAULT_MAP_SIZE = 256 * 1024 * 1024
LOCK_FILE = "actorlog.lock"
_MAX_BATCH_EVENTS = 20_000
_STOP = object()

_open_paths: dict[str, LmdbEventStore] = {}
_open_paths_lock = threading.Lock()


# Bumped in every child of fork(): comparing it is cheaper than getpid().
_forks = [0]


def _forget_parent_stores() -> None:
    # A child of fork() owns none of its parent's environments: it may open
    # any path afresh, and the lock may have been held by a parent thread.
    global _open_paths_lock  # noqa: PLW0603 - reset in the child only
    _open_paths_lock = threading.Lock()
    _open_paths.clear()
    _forks[0] += 1


os.register_at_fork(after_in_child=_forget_parent_stores)


class StoreInUseError(EventStoreError):
    """Raised when a path is opened twice in one process."""


class LmdbEventStore(BaseStore):
    """The event log in an LMDB environment on local disk.

    Open it with :meth:`open`; one instance per path per process. It is
    thread-safe: one writer thread of its own group-commits every append.

    Attributes:
        path: The store's directory, resolved.
        readonly: True when opened for reading only.
        durability: ``"durable"`` or ``"fast"``.
        registry: The event types used to encode and decode data.
        notifier: Wakes subscriptions after each commit of this process.
        commits: Write transactions committed by this instance.
        map_resizes: Times this instance grew the map.

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
        self._handles = Handles(env)
        self._pid = os.getpid()
        self._fork = _forks[0]
        self._gate = Gate()
        self._submit_lock = threading.Lock()
        self._closed = False
        self._closing = False
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self.map_resizes = 0
        self.commits = 0
        self._lock_fd: int | None = None

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
        exclusive: bool = False,
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
            exclusive: Refuse to open (and keep others from opening) while
                another process has the store open for writing.

        Raises:
            StoreNotFoundError: If ``readonly`` and there is no store.
            NotAStoreError: If the path holds something else.
            StoreInUseError: If this process has the path open already.
            WriterBusyError: If ``exclusive`` and another process has the
                store open for writing, or another process holds it
                exclusively.

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
                if not readonly:
                    store._lock_fd = _lock_writer(where, exclusive=exclusive)
                store._initialise()
            except BaseException:
                store._unlock()
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
            for table in _table_names(self._env):
                self._handles.open_existing(table)
            return
        opened: dict[str, Any] = {}
        with self._env.begin(write=True) as txn:
            try:
                meta = self._env.open_db(META.encode(), txn=txn, create=True)
            except lmdb.IncompatibleError:
                raise NotAStoreError(
                    f"{self.path} holds an LMDB store of another kind"
                ) from None
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
                opened[table] = self._env.open_db(table.encode(), txn=txn, create=True)
            for table in _table_names(self._env, txn):
                with contextlib.suppress(lmdb.IncompatibleError):
                    opened[table] = self._env.open_db(
                        table.encode(), txn=txn, create=False
                    )
        self._handles.publish(opened)
        self._writer = threading.Thread(
            target=self._run_writer,
            name=f"actorlog-writer:{self.path.name}",
            daemon=True,
        )
        self._writer.start()

    def _check_format(self) -> None:
        found = self._handles.open_existing(META)
        if found is None:
            raise NotAStoreError(f"{self.path} is not an actorlog store")
        with self._env.begin() as txn:
            stored = txn.get(b"format", db=found[0])
        if stored != FORMAT:
            raise NotAStoreError(f"{self.path} is not an actorlog store ({stored!r})")

    # -- the backend ------------------------------------------------------

    def _check_usable(self) -> None:
        if _forks[0] != self._fork:
            raise ForkedProcessError(
                f"the store at {self.path} was opened in process {self._pid} "
                f"before fork(); open it again in process {os.getpid()}"
            )
        if self._closed:
            raise StoreClosedError(f"the store at {self.path} is closed")

    def _submit(self, job: AppendJob | ViewJob) -> None:
        self._check_usable()
        if self.readonly:
            raise ReadOnlyStoreError(f"the store at {self.path} is open read-only")
        # The lock orders this put before close()'s stop marker, so that no
        # job is queued behind the marker and left waiting forever.
        with self._submit_lock:
            if self._closing:
                raise StoreClosedError(f"the store at {self.path} is closed")
            self._queue.put(job)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[LmdbTables]:
        self._check_usable()
        with self._gate.shared():
            epoch = self._handles.epoch
            txn = self._begin_read()
            try:
                yield LmdbTables(self._handles, txn, epoch, write=False)
            finally:
                txn.abort()

    def _begin_read(self) -> lmdb.Transaction:
        try:
            return self._env.begin()
        except lmdb.MapResizedError:
            pass
        except lmdb.ReadersFullError:
            # Slots of readers that died (a killed process) are taken until
            # someone checks: check, then try once more.
            cleared = self._env.reader_check()
            logger.info("cleared %d stale reader slots in %s", cleared, self.path)
            try:
                return self._env.begin()
            except lmdb.ReadersFullError:
                slots = self._env.info()["max_readers"]
                raise EventStoreError(
                    f"every one of the {slots} reader slots of {self.path} is "
                    "taken by a live reader; open the store with a larger "
                    "max_readers (the first process to open it sets it)"
                ) from None
        # Another process grew the map. Adopting its size needs every
        # transaction of this process closed: step out of the shared gate.
        if self._gate.depth() > 1:
            raise EventStoreError(
                f"another process grew the map of {self.path} while this "
                "thread holds a read snapshot (read_views); read again after "
                "it ends"
            )
        self._gate.release_shared()
        try:
            self._adopt_map_size()
        finally:
            self._gate.acquire_shared()
        return self._env.begin()

    def _adopt_map_size(self) -> None:
        with self._gate.exclusive():
            try:
                self._env.begin().abort()
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)
                logger.info(
                    "adopted the map size %d bytes of %s set by another process",
                    self._env.info()["map_size"],
                    self.path,
                )

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
        """Finish queued appends, stop the writer and close the environment.

        Appends queued before the call complete; later ones raise
        :class:`StoreClosedError`. In a child process after ``fork()`` this
        only forgets the store: the environment belongs to the parent.
        """
        if self._closed:
            return
        forked = _forks[0] != self._fork
        if self._writer is not None and not forked:
            with self._submit_lock:
                self._closing = True
                self._queue.put(_STOP)
            self._writer.join()
        self._closed = True
        with _open_paths_lock:
            if _open_paths.get(str(self.path)) is self:
                del _open_paths[str(self.path)]
        if not forked:
            if not self.readonly:
                self._env.sync(force=True)
            self._env.close()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the writer thread ------------------------------------------------

    def _run_writer(self) -> None:
        stopping = False
        while not stopping:
            batch: list[Job] = []
            size = 0
            item = self._queue.get()
            while True:
                if item is _STOP:
                    stopping = True
                    break
                job: Job = item  # type: ignore[assignment]
                # A future cancelled while queued is dropped; one taken
                # here can no longer be cancelled.
                if job.future.set_running_or_notify_cancel():
                    batch.append(job)
                    size += _job_size(job)
                if size >= _MAX_BATCH_EVENTS:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._commit(batch)

    def _commit(self, batch: Sequence[Job]) -> None:
        try:
            outcomes = self._transact(batch)
        except Exception as exc:  # noqa: BLE001 - the waiting caller gets it
            if len(batch) > 1:
                logger.debug(
                    "a batch of %d jobs failed (%r); retrying them one by one",
                    len(batch),
                    exc,
                )
                for job in batch:
                    self._commit([job])
                return
            logger.warning("a write job failed in %s: %r", self.path, exc)
            batch[0].future.set_exception(exc)
            return
        for job, outcome in outcomes:
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)  # type: ignore[arg-type]
        self.notifier.committed()

    def _transact(self, batch: Sequence[Job]) -> list[tuple[Job, object]]:
        while True:
            with self._handles.lock:
                txn = self._begin_write()
                tables = LmdbTables(self._handles, txn, self._handles.epoch, write=True)
                try:
                    outcomes = run_jobs(tables, batch, self.registry, self._projectors)
                    txn.commit()
                except lmdb.MapFullError:
                    txn.abort()
                    full = True
                except BaseException:
                    txn.abort()
                    raise
                else:
                    full = False
                    self._handles.publish(tables.opened)
            if full:
                self._grow()
                continue
            self.commits += 1
            return outcomes

    def _begin_write(self) -> lmdb.Transaction:
        try:
            return self._env.begin(write=True)
        except lmdb.MapResizedError:
            self._adopt_map_size()
        return self._env.begin(write=True)

    def _grow(self) -> None:
        with self._gate.exclusive():
            size = self._env.info()["map_size"] * 2
            self._env.set_mapsize(size)
        self.map_resizes += 1
        logger.info("grew the map of %s to %d bytes", self.path, size)


def _job_size(job: Job) -> int:
    return len(job.events) if isinstance(job, AppendJob) else 1


def _table_names(
    env: lmdb.Environment, txn: lmdb.Transaction | None = None
) -> list[str]:
    """The names in the main table: every named table, and foreign keys."""
    if txn is None:
        with env.begin() as own:
            return _table_names(env, own)
    names = txn.cursor().iternext(values=False)
    return [bytes(name).decode(errors="replace") for name in names]


def _has_foreign_data(txn: lmdb.Transaction) -> bool:
    cursor = txn.cursor()
    return any(key != META.encode() for key in cursor.iternext(values=False))


def _lock_writer(where: Path, *, exclusive: bool) -> int:
    """Take the writer lock of the store at ``where``; return its descriptor."""
    fd = os.open(where / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        if exclusive:
            raise WriterBusyError(
                f"another process has the store at {where} open for writing "
                "(is the application running?); stop it and try again"
            ) from None
        raise WriterBusyError(
            f"another process holds the store at {where} exclusively "
            "(a rebuild from the CLI?); wait for it to finish"
        ) from None
    return fd


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
    except lmdb.Error as exc:
        if "already open" not in str(exc):
            raise
        # py-lmdb remembers environments across fork(): a child cannot open
        # a path its parent had open.
        raise StoreInUseError(
            f"{where} was open in the parent of this forked process; open it "
            "in a process started with the 'spawn' method instead"
        ) from exc
