"""Three DataManagers write, sync, redeliver and restart; they converge."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from actors import ActorError, DataManager
from eventstore import (
    Dot,
    OriginSequenceError,
    RemoteEventError,
    events_since,
    high_water_marks,
    record_siblings,
    record_stream,
)

NAMES = ("east", "north", "west")
IDS = ("a", "b")
_MAX_ROUNDS = 8
replicas = st.integers(0, len(NAMES) - 1)
record_ids = st.sampled_from(IDS)


class DataManagers(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.root = Path(tempfile.mkdtemp(prefix="actorlog-dm-sync-"))
        self.dms = [self.run(self._open(i)) for i in range(len(NAMES))]
        self.acknowledged: list[tuple[str, Dot]] = []

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 60))

    async def _open(self, index: int) -> DataManager:
        dm = DataManager.open(
            self.root / NAMES[index], durability="fast", replica_id=NAMES[index]
        )
        await dm.start()
        dm.add_data_source("users", conflict_strategy="merge")
        return dm

    def _acknowledge(self, dm: DataManager, record_id: str, version: int) -> None:
        stream = record_stream("users", record_id)
        event = next(iter(dm.store.read_stream(stream, from_version=version)))
        for sibling in record_siblings(dm.store, "users", record_id):
            if sibling.position == event.position:
                self.acknowledged.append((record_id, sibling.dot))
                return
        raise AssertionError(f"write {record_id}@{version} is not a sibling")

    @rule(index=replicas, record_id=record_ids, n=st.integers(0, 9))
    def create(self, index: int, record_id: str, n: int) -> None:
        dm = self.dms[index]
        try:
            record = self.run(dm.create("users", {"n": n}, id=record_id))
        except ActorError:
            return  # it exists here
        self._acknowledge(dm, record_id, record.version)

    @rule(
        index=replicas,
        record_id=record_ids,
        field=st.sampled_from(("n", "m")),
        value=st.integers(0, 9),
    )
    def update(self, index: int, record_id: str, field: str, value: int) -> None:
        dm = self.dms[index]
        try:
            record = self.run(dm.update("users", record_id, {field: value}))
        except ActorError:
            return  # absent here
        self._acknowledge(dm, record_id, record.version)

    @rule(index=replicas, record_id=record_ids)
    def delete(self, index: int, record_id: str) -> None:
        dm = self.dms[index]
        try:
            self.run(dm.delete("users", record_id))
        except ActorError:
            return
        version = dm.store.stream_version(record_stream("users", record_id))
        self._acknowledge(dm, record_id, version)

    @rule(first=replicas, second=replicas)
    def sync(self, first: int, second: int) -> None:
        if first != second:
            self.run(self.dms[first].sync(self.dms[second], batch_size=2))

    @rule(
        source=replicas,
        receiver=replicas,
        skip=st.integers(0, 2),
        twice=st.booleans(),
    )
    def redeliver(self, source: int, receiver: int, skip: int, twice: bool) -> None:
        if source == receiver:
            return
        to = self.dms[receiver]
        batch = events_since(
            self.dms[source].store, high_water_marks(to.store), limit=4
        )[skip:]
        endpoint = to.replica.endpoint()
        for _ in range(2 if twice else 1):
            try:
                self.run(endpoint.apply(batch))
            except (OriginSequenceError, RemoteEventError):
                return  # out of order: refused whole

    def round(self) -> int:
        moved = 0
        for first in range(len(NAMES)):
            for second in range(first + 1, len(NAMES)):
                report = self.run(self.dms[first].sync(self.dms[second]))
                moved += report.sent + report.received
        return moved

    @rule(index=replicas)
    def restart(self, index: int) -> None:
        self.run(self.dms[index].close())
        self.dms[index] = self.run(self._open(index))

    def teardown(self) -> None:
        try:
            # Resolutions written during a round travel in the next one:
            # sync every pair until a whole round moves nothing.
            for _ in range(_MAX_ROUNDS):
                if not self.round():
                    break
            else:
                raise AssertionError(f"still moving after {_MAX_ROUNDS} rounds")
            for record_id in IDS:
                records = [self.run(dm.read("users", record_id)) for dm in self.dms]
                datas = [None if r is None else r.data for r in records]
                assert datas[0] == datas[1] == datas[2], (record_id, datas)
                siblings = [
                    [
                        (v.dot, v.data)
                        for v in record_siblings(dm.store, "users", record_id)
                    ]
                    for dm in self.dms
                ]
                assert siblings[0] == siblings[1] == siblings[2], record_id
            for record_id, dot in self.acknowledged:
                for dm in self.dms:
                    kept = record_siblings(dm.store, "users", record_id)
                    assert any(v.clock.covers(dot) for v in kept), (record_id, dot)
        finally:
            for dm in self.dms:
                self.run(dm.close())
            self.loop.close()
            shutil.rmtree(self.root, ignore_errors=True)


TestDataManagers = DataManagers.TestCase
TestDataManagers.settings = settings(
    max_examples=15,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
