"""Three replicas write, sync, duplicate, reorder and restart; they converge."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from actors import StoreEndpoint, sync_in_process
from actors._sync_conflicts import find_conflicts, resolve_conflicts
from eventstore import (
    Dot,
    LmdbEventStore,
    NewEvent,
    OriginSequenceError,
    RecordCreated,
    RecordDeleted,
    RecordUpdated,
    RemoteEventError,
    apply_remote,
    events_since,
    high_water_marks,
    record_siblings,
    record_stream,
)

REPLICAS = 3
IDS = ("r0", "r1", "r2")
replicas = st.integers(0, REPLICAS - 1)
record_ids = st.sampled_from(IDS)


class Replicas(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="actorlog-sync-"))
        self.stores = [self._open(i) for i in range(REPLICAS)]
        self.acknowledged: list[tuple[str, Dot]] = []

    def _open(self, index: int) -> LmdbEventStore:
        return LmdbEventStore.open(self.root / f"r{index}", durability="fast")

    def _write(self, index: int, event: NewEvent) -> None:
        store = self.stores[index]
        position = store.append([event]).last_position
        collection, record_id = "users", event.stream.rsplit("/", 1)[1]
        written = [
            v.dot
            for v in record_siblings(store, collection, record_id)
            if v.position == position
        ]
        assert len(written) == 1  # a local write supersedes what it read
        self.acknowledged.append((record_id, written[0]))

    @rule(index=replicas, record_id=record_ids, n=st.integers(0, 9))
    def create(self, index: int, record_id: str, n: int) -> None:
        self._write(
            index,
            NewEvent(
                record_stream("users", record_id),
                "RecordCreated",
                RecordCreated("users", record_id, {"n": n}),
            ),
        )

    @rule(
        index=replicas,
        record_id=record_ids,
        field=st.sampled_from(("n", "m")),
        value=st.none() | st.integers(0, 9),
    )
    def update(self, index: int, record_id: str, field: str, value: int | None) -> None:
        self._write(
            index,
            NewEvent(
                record_stream("users", record_id),
                "RecordUpdated",
                RecordUpdated("users", record_id, {field: value}),
            ),
        )

    @rule(index=replicas, record_id=record_ids)
    def delete(self, index: int, record_id: str) -> None:
        self._write(
            index,
            NewEvent(
                record_stream("users", record_id),
                "RecordDeleted",
                RecordDeleted("users", record_id),
            ),
        )

    @rule(
        source=replicas,
        receiver=replicas,
        limit=st.integers(1, 6),
        twice=st.booleans(),
    )
    def deliver(self, source: int, receiver: int, limit: int, twice: bool) -> None:
        if source == receiver:
            return
        to = self.stores[receiver]
        batch = events_since(self.stores[source], high_water_marks(to), limit=limit)
        apply_remote(to, batch)
        if twice:
            assert apply_remote(to, batch).applied == 0

    @rule(source=replicas, receiver=replicas, skip=st.integers(1, 3))
    def deliver_out_of_order(self, source: int, receiver: int, skip: int) -> None:
        if source == receiver:
            return
        to = self.stores[receiver]
        batch = events_since(self.stores[source], high_water_marks(to), limit=6)
        # Refused whole, or applied: a gap in an origin or a break of causal
        # order is refused; events that skip nothing they depend on are fine.
        with contextlib.suppress(OriginSequenceError, RemoteEventError):
            apply_remote(to, batch[skip:])

    @rule(first=replicas, second=replicas)
    def session(self, first: int, second: int) -> None:
        if first == second:
            return
        a, b = StoreEndpoint(self.stores[first]), StoreEndpoint(self.stores[second])
        asyncio.run(asyncio.wait_for(sync_in_process(a, b, batch_size=3), 30))

    @rule(index=replicas)
    def resolve(self, index: int) -> None:
        store = self.stores[index]
        before = store.head_position()
        resolve_conflicts(store, find_conflicts(store), "merge")
        for position in range(before + 1, store.head_position() + 1):
            event = next(iter(store.read_all(from_position=position)))
            record_id = event.stream.rsplit("/", 1)[1]
            for version in record_siblings(store, "users", record_id):
                if version.position == position:
                    self.acknowledged.append((record_id, version.dot))

    @rule(index=replicas)
    def restart(self, index: int) -> None:
        self.stores[index].close()
        self.stores[index] = self._open(index)

    def converge(self) -> None:
        for _ in range(2):
            for first in range(REPLICAS):
                for second in range(first + 1, REPLICAS):
                    self.session(first, second)

    def teardown(self) -> None:
        try:
            self.converge()
            marks = [high_water_marks(s) for s in self.stores]
            assert marks[0] == marks[1] == marks[2]
            for record_id in IDS:
                seen = [
                    [(v.dot, v.data) for v in record_siblings(s, "users", record_id)]
                    for s in self.stores
                ]
                assert seen[0] == seen[1] == seen[2], record_id
            for record_id, dot in self.acknowledged:
                for store in self.stores:
                    siblings = record_siblings(store, "users", record_id)
                    assert any(v.clock.covers(dot) for v in siblings), (record_id, dot)
        finally:
            for store in self.stores:
                store.close()
            shutil.rmtree(self.root, ignore_errors=True)


TestReplicas = Replicas.TestCase
TestReplicas.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
