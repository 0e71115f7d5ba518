"""How the DataManager reads records: the seam for the records view.

The DataManager sends every ``read``, ``batch_read`` and ``query`` through
its ``reader``. :class:`ActorReader` asks the collection's actor, which
answers from its in-memory state once its last write has committed; a
reader over a projected view can replace it without touching the
DataManager's API.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from actors._collection import Query, Read
from actors._records import Record

if TYPE_CHECKING:
    from actors._datamanager import DataManager

__all__ = ["ActorReader", "RecordReader"]


class RecordReader(Protocol):
    """Reads of current (or past) records of a collection."""

    async def read(
        self, name: str, record_id: str, *, as_of_version: int | None = None
    ) -> Record | None:
        """One record, or None."""

    async def batch_read(self, name: str, ids: Sequence[str]) -> list[Record | None]:
        """Records by id, None where absent."""

    async def query(
        self,
        name: str,
        *,
        where: dict[str, Any] | None = None,
        order_by: str | Sequence[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Record]:
        """Records matching ``where``, ordered and paged."""


class ActorReader:
    """Reads served by the collection actors' state."""

    def __init__(self, manager: DataManager) -> None:
        self._manager = manager

    async def read(
        self, name: str, record_id: str, *, as_of_version: int | None = None
    ) -> Record | None:
        """One record, or None."""
        result: Record | None = await self._manager.ask(
            name,
            lambda reply: Read(reply, (record_id,), as_of_version, single=True),
            f"read {name}/{record_id}",
        )
        return result

    async def batch_read(self, name: str, ids: Sequence[str]) -> list[Record | None]:
        """Records by id, None where absent."""
        wanted = tuple(ids)
        result: list[Record | None] = await self._manager.ask(
            name,
            lambda reply: Read(reply, wanted, None, single=False),
            f"batch_read {name} ({len(wanted)} ids)",
        )
        return result

    async def query(
        self,
        name: str,
        *,
        where: dict[str, Any] | None = None,
        order_by: str | Sequence[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Record]:
        """Records matching ``where``, ordered and paged."""
        order = (
            order_by
            if order_by is None or isinstance(order_by, str)
            else tuple(order_by)
        )
        result: list[Record] = await self._manager.ask(
            name,
            lambda reply: Query(reply, where, order, limit, offset),
            f"query {name}",
        )
        return result
