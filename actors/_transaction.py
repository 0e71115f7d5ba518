"""Transactions: writes over several collections, committed in one append.

A commit asks each collection actor to prepare its part (validate it,
compute its events and lock its records), appends every event in one
atomic append with each record's expected version, then tells each actor
to apply its part, or to drop it if anything failed. A record locked by one
transaction cannot be prepared by another, which fails at once rather than
waiting (so two transactions never wait on each other).
"""

from __future__ import annotations

import asyncio
import uuid
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from actors._collection import Finish, Op, Prepare
from actors._errors import ActorError, CommandTimeoutError
from actors._records import Record
from eventstore import AppendResult, Expected, NewEvent

if TYPE_CHECKING:
    from actors._datamanager import DataManager

__all__ = ["Transaction"]


class Transaction:
    """Writes staged over several collections; see ``DataManager.transaction``."""

    def __init__(self, manager: DataManager, *, timeout_s: float | None = None) -> None:
        self._manager = manager
        self._timeout_s = timeout_s
        self.id = uuid.uuid4().hex
        self._ops: dict[str, list[Op]] = {}
        self._done = False

    def _stage(self, name: str, op: Op) -> None:
        if self._done:
            raise ActorError(f"transaction {self.id} is already finished")
        self._manager.get_data_source(name)
        self._ops.setdefault(name, []).append(op)

    def create(
        self,
        name: str,
        data: dict[str, Any],
        *,
        id: str | None = None,  # noqa: A002
    ) -> str:
        """Stage a create; return the new record's id."""
        record_id = id if id is not None else uuid.uuid4().hex
        self._stage(name, Op("create", record_id, data))
        return record_id

    def update(
        self,
        name: str,
        id: str,  # noqa: A002
        patch: dict[str, Any],
        *,
        expected_version: int | None = None,
        replace: bool = False,
    ) -> None:
        """Stage an update (a merge patch, or the whole data with ``replace``)."""
        self._stage(name, Op("update", id, patch, expected_version, replace))

    def delete(
        self,
        name: str,
        id: str,  # noqa: A002
        *,
        expected_version: int | None = None,
    ) -> None:
        """Stage a delete."""
        self._stage(name, Op("delete", id, None, expected_version))

    async def commit(self) -> list[Record | None]:
        """Commit every staged write in one atomic append, or none of them.

        Returns:
            The records after the writes, in the order staged per collection
            (collections in the order first written).

        Raises:
            ConcurrencyError: If a record is not at its expected version or
                is locked by another transaction; nothing is written.
            NotFoundError, ValidationError: As for single writes; nothing
                is written.

        """
        if self._done:
            raise ActorError(f"transaction {self.id} is already finished")
        self._done = True
        manager = self._manager
        from actors._datamanager import Command  # noqa: PLC0415 - a cycle

        command = Command("transaction", None, {"id": self.id, "ops": self._ops})
        result: list[Record | None] = await manager.run(
            command, lambda _c: self._commit()
        )
        return result

    async def _commit(self) -> list[Record | None]:
        manager = self._manager
        names = list(self._ops)
        prepared = await asyncio.gather(
            *(self._prepare(name) for name in names), return_exceptions=True
        )
        failures = [p for p in prepared if isinstance(p, BaseException)]
        ready = [
            name
            for name, p in zip(names, prepared, strict=True)
            if not isinstance(p, BaseException)
        ]
        if failures:
            await self._finish(ready, None)
            raise failures[0]
        events: list[NewEvent] = []
        expected: dict[str, Expected] = {}
        records: list[Record | None] = []
        for part in prepared:
            assert not isinstance(part, BaseException)  # noqa: S101 - checked above
            part_events, part_expected, part_records = part
            events.extend(part_events)
            expected.update(part_expected)
            records.extend(part_records)
        timeout_s = self._timeout_s or manager.command_timeout_s
        try:
            future = manager.store.append_future(
                events, expected_versions=expected, command_id=f"tx-{self.id}"
            )
            result = await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
        except TimeoutError:
            await self._finish(names, None)
            raise CommandTimeoutError(
                "store", f"transaction {self.id}", timeout_s
            ) from None
        except Exception as error:
            await self._finish(names, None)
            from actors._collection import _store_error  # noqa: PLC0415

            raise _store_error(names[0], error) from error
        await self._finish(names, result)
        return records

    async def _prepare(self, name: str) -> Any:
        ops = tuple(self._ops[name])
        return await self._manager.ask(
            name,
            lambda reply: Prepare(reply, self.id, ops),
            f"prepare transaction {self.id} on {name}",
            timeout_s=self._timeout_s,
        )

    async def _finish(self, names: list[str], result: AppendResult | None) -> None:
        await asyncio.gather(*(self._finish_one(name, result) for name in names))

    async def _finish_one(self, name: str, result: AppendResult | None) -> None:
        ids = tuple(op.id for op in self._ops[name] if op.id is not None)
        await self._manager.ask(
            name,
            lambda reply: Finish(reply, self.id, ids, result),
            f"finish transaction {self.id} on {name}",
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is not None:
            self._done = True
            return
        if not self._done:
            await self.commit()
