"""The tables of an LMDB environment, as the store's transactions see them.

LMDB lets one transaction at a time open table handles, frees a handle
opened in a transaction that aborts (a freed handle may later name another
table), and refuses a handle in a transaction begun before it was opened.
:class:`Handles` keeps the rules; :class:`LmdbTables` is one transaction's
view of the tables; :class:`Gate` keeps readers out while the map is
resized.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator
from typing import Any

import lmdb

from eventstore._errors import EventStoreError

__all__ = ["Gate", "Handles", "LmdbTables"]


class Gate:
    """Many readers at once, or the writer alone (to resize the map).

    Shared holds nest within a thread (a read inside ``read_views()``):
    a nested hold never waits, or it would wait for a writer that waits
    for the outer hold.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._readers = 0
        self._exclusive = False
        self._local = threading.local()

    def depth(self) -> int:
        """How many shared holds the calling thread has."""
        return getattr(self._local, "depth", 0)

    def acquire_shared(self) -> None:
        depth = self.depth()
        self._local.depth = depth + 1
        if depth:
            return
        with self._condition:
            if self._exclusive:
                self._condition.wait_for(lambda: not self._exclusive)
            self._readers += 1

    def release_shared(self) -> None:
        depth = self._local.depth - 1
        self._local.depth = depth
        if depth:
            return
        with self._condition:
            self._readers -= 1
            if not self._readers and self._exclusive:
                self._condition.notify_all()

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        self.acquire_shared()
        try:
            yield
        finally:
            self.release_shared()

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


class Handles:
    """The table handles of one environment, shared by its transactions.

    LMDB lets one transaction at a time open handles, frees a handle opened
    in a transaction that aborts (a freed handle may later name another
    table), and refuses a handle in a transaction begun before it was
    opened. So the writer holds :attr:`lock` for its whole transaction and
    publishes the handles it opened after the commit; a reader opens a
    missing handle outside any transaction, under the same lock. Each handle
    carries the epoch it was published in, so that a reader whose
    transaction is older reads that table in a fresh transaction instead.
    """

    def __init__(self, env: lmdb.Environment) -> None:
        self.env = env
        self.lock = threading.Lock()
        self.epoch = 0
        self._dbs: dict[str, tuple[Any, int]] = {}

    def get(self, table: str) -> tuple[Any, int] | None:
        return self._dbs.get(table)

    def open_existing(self, table: str) -> tuple[Any, int] | None:
        """Open ``table`` if it exists; call without a transaction open."""
        with self.lock:
            found = self._dbs.get(table)
            if found is not None:
                return found
            try:
                db = self.env.open_db(table.encode(), create=False)
            except (lmdb.NotFoundError, lmdb.IncompatibleError):
                return None
            self.epoch += 1
            found = self._dbs[table] = (db, self.epoch)
            return found

    def publish(self, opened: dict[str, Any]) -> None:
        """Share handles a committed write transaction opened (lock held)."""
        if opened:
            self.epoch += 1
            for table, db in opened.items():
                self._dbs.setdefault(table, (db, self.epoch))


class LmdbTables:
    """The tables of one LMDB transaction."""

    __slots__ = ("_env", "_epoch", "_handles", "_txn", "_write", "opened")

    def __init__(
        self,
        handles: Handles,
        txn: lmdb.Transaction,
        epoch: int,
        *,
        write: bool,
    ) -> None:
        self._handles = handles
        self._env = handles.env
        self._txn = txn
        self._epoch = epoch
        self._write = write
        self.opened: dict[str, Any] = {}

    def _db(self, table: str) -> Any:
        """The handle of ``table`` for this transaction (None: no table)."""
        found = self._handles.get(table)
        if found is not None:
            return found[0]
        if self._write:
            db = self.opened.get(table)
            if db is None:
                db = self._env.open_db(table.encode(), txn=self._txn, create=True)
                self.opened[table] = db
            return db
        found = self._handles.open_existing(table)
        return None if found is None else found[0]

    def _young(self, table: str) -> bool:
        """True if this reader began before the handle of ``table`` opened."""
        found = self._handles.get(table)
        return not self._write and found is not None and found[1] > self._epoch

    def get(self, table: str, key: bytes) -> bytes | None:
        db = self._db(table)
        if db is None:
            return None
        if self._young(table):
            with self._env.begin() as txn:
                return txn.get(key, db=db)
        # Buffers are off, so LMDB hands out bytes.
        return self._txn.get(key, db=db)  # type: ignore[return-value]

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self._txn.put(key, value, db=self._db(table))

    def append_put(self, table: str, key: bytes, value: bytes) -> None:
        self.append_many(table, [(key, value)])

    def get_many(self, table: str, keys: list[bytes]) -> list[bytes | None]:
        db = self._db(table)
        if db is None:
            return [None] * len(keys)
        # One call into LMDB: each call lets other threads take the GIL.
        found = dict(self._txn.cursor(db=db).getmulti(keys))
        return [found.get(key) for key in keys]  # type: ignore[misc]

    def append_many(self, table: str, items: list[tuple[bytes, bytes]]) -> None:
        cursor = self._txn.cursor(db=self._db(table))
        _, added = cursor.putmulti(items, append=True)
        if added != len(items):
            raise EventStoreError(
                f"table {table!r}: {len(items) - added} keys were not greater "
                "than the last key"
            )

    def put_many(self, table: str, items: list[tuple[bytes, bytes]]) -> None:
        self._txn.cursor(db=self._db(table)).putmulti(items)

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
            return iter(())
        if self._young(table):
            with self._env.begin() as txn:
                return iter(list(_scan(txn, db, start, stop)))
        return _scan(self._txn, db, start, stop)


def _scan(
    txn: lmdb.Transaction, db: Any, start: bytes, stop: bytes | None
) -> Iterator[tuple[bytes, bytes]]:
    cursor = txn.cursor(db=db)
    if not cursor.set_range(start):
        return iter(())
    items: Iterator[tuple[bytes, bytes]] = cursor.iternext()  # type: ignore[assignment]
    if stop is None:
        return items
    return itertools.takewhile(lambda item: item[0] < stop, items)
