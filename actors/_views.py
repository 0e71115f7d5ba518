"""Reads served by the ``records`` view, folded inline with every append.

Design note. The DataManager attaches the ``records`` projection as an
inline projector when it opens (after catching the view up with the log),
so the view moves in the same transaction as the events. A write is
acknowledged only after its commit, so a read issued after the
acknowledgement opens a snapshot that holds it; a snapshot never holds
what has not committed. The collection actors keep their own state for
validation (they decide the next write while the last one commits); reads
no longer go through them.

A ``read`` or a small ``batch_read`` is one B-tree lookup per id and runs
on the event loop; a larger ``batch_read`` and every ``query`` run on a
worker thread. ``read(..., as_of_version=N)`` goes to the collection's actor,
which folds the record's stream from the log once the writes sent before
it have committed (as ``history`` does).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from actors._errors import ActorError
from actors._reader import ActorReader
from actors._records import Record
from eventstore import EventStore
from projections import InlineRunner, RecordsProjection, RecordsView
from projections import Record as ViewRecord

if TYPE_CHECKING:
    from actors._datamanager import DataManager

__all__ = ["RecordsViewReader"]

logger = logging.getLogger(__name__)

# Above this many ids a batch read leaves the event loop.
_ON_LOOP_IDS = 64


class RecordsViewReader:
    """Reads of a DataManager's records from the ``records`` view.

    It also owns the inline runner of the view and the declarations of the
    data sources' secondary indexes.
    """

    def __init__(self, manager: DataManager) -> None:
        self._manager = manager
        self._runner: InlineRunner | None = None
        self._view: RecordsView | None = None
        self._wanted: dict[str, tuple[str, ...]] = {}
        self._declaring: dict[str, concurrent.futures.Future[None]] = {}
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._actor = ActorReader(manager)

    # -- life cycle -------------------------------------------------------

    def attach(self, store: EventStore) -> None:
        """Catch the view up with the log, then fold every append inline.

        Blocking: call it off the event loop.
        """
        self._runner = InlineRunner(store, RecordsProjection()).attach()
        self._view = RecordsView(store)
        for name, fields in self._wanted.items():
            self._declare(name, fields)
        logger.info("records view attached at position %d", store.head_position())

    def detach(self) -> None:
        """Stop folding appends and finish pending index declarations."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._runner is not None:
            self._runner.detach()
            self._runner = None

    @property
    def view(self) -> RecordsView:
        """The records view (once the DataManager has started)."""
        if self._view is None:
            raise RuntimeError(
                "the records view is attached when the DataManager starts"
            )
        return self._view

    # -- indexes ----------------------------------------------------------

    def declare_indexes(self, name: str, fields: Sequence[str]) -> None:
        """Declare indexes on ``fields`` of collection ``name``, in the background.

        Queries of ``name`` wait for the declaration to finish.
        """
        for field in fields:
            if not isinstance(field, str) or not field or "\x00" in field:
                raise ActorError(
                    f"data source {name!r}: index fields are non-empty strings "
                    f"without NUL, not {field!r}"
                )
        if not fields:
            return
        self._wanted[name] = tuple(fields)
        if self._view is not None:
            self._declare(name, tuple(fields))

    def _declare(self, name: str, fields: tuple[str, ...]) -> None:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="actorlog-indexes"
            )
        view = self.view

        def declare() -> None:
            for field in fields:
                view.declare_index(name, field)

        self._declaring[name] = self._executor.submit(declare)

    async def _indexes_ready(self, name: str) -> None:
        pending = self._declaring.get(name)
        if pending is None:
            return
        if not pending.done():
            await asyncio.wrap_future(pending)
        pending.result()
        self._declaring.pop(name, None)

    # -- reads ------------------------------------------------------------

    async def read(
        self, name: str, record_id: str, *, as_of_version: int | None = None
    ) -> Record | None:
        """One record, or None."""
        self._manager.get_data_source(name)
        if as_of_version is not None:
            return await self._actor.read(name, record_id, as_of_version=as_of_version)
        return _record(self.view.get(name, record_id))

    async def batch_read(self, name: str, ids: Sequence[str]) -> list[Record | None]:
        """Records by id from one snapshot, None where absent."""
        self._manager.get_data_source(name)
        view = self.view
        if len(ids) <= _ON_LOOP_IDS:
            found = view.get_many(name, ids)
        else:
            found = await asyncio.to_thread(view.get_many, name, ids)
        return [_record(record) for record in found]

    async def query(
        self,
        name: str,
        *,
        where: dict[str, Any] | None = None,
        order_by: str | Sequence[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Record]:
        """Records matching ``where``, ordered and paged; an index if one fits."""
        self._manager.get_data_source(name)
        await self._indexes_ready(name)
        view = self.view
        rows = await asyncio.to_thread(
            lambda: view.query(
                name, where=where, order_by=order_by, limit=limit, offset=offset
            )
        )
        return [
            Record(r.id, r.version, r.data, r.created_at, r.updated_at) for r in rows
        ]


def _record(found: ViewRecord | None) -> Record | None:
    if found is None:
        return None
    return Record(
        found.id, found.version, found.data, found.created_at, found.updated_at
    )
