"""A projection actor killed at random folds every event exactly once."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from _projection_helpers import run_workflow

from eventstore import (
    LmdbEventStore,
    NewEvent,
    RecordCreated,
    RecordDeleted,
    RecordUpdated,
    ViewReader,
    record_stream,
)
from projections import (
    builtin_projections,
    declare_index,
    rebuild,
    replay,
)
from projections._state import read_state, slot_table

CHILD = """
import sys, time
from eventstore import LmdbEventStore
from projections import ProjectionActor, builtin_projections
store = LmdbEventStore.open(sys.argv[1], durability="durable")
refs = [
    ProjectionActor.start(store, projection, poll_s=0.02, batch_size=40)
    for projection in builtin_projections().values()
]
print("ready", flush=True)
time.sleep(120)
"""


def _fill(
    store: LmdbEventStore,
    start: int,
    count: int,
    rng: random.Random,
    alive: set[str],
) -> None:
    events = []
    for n in range(start, start + count):
        record_id = f"r{n % 300}"
        stream = record_stream("things", record_id)
        if record_id not in alive or rng.random() < 0.05:
            data = RecordCreated("things", record_id, {"n": n, "k": n % 7})
            events.append(NewEvent(stream, "RecordCreated", data))
            alive.add(record_id)
        elif rng.random() < 0.1:
            events.append(
                NewEvent(stream, "RecordDeleted", RecordDeleted("things", record_id))
            )
            alive.discard(record_id)
        else:
            changes = {"n": n, "k": (n * 3) % 7, "tag": None if n % 2 else "odd"}
            update = RecordUpdated("things", record_id, changes)
            events.append(NewEvent(stream, "RecordUpdated", update))
        if len(events) == 50:
            store.append(events)
            events = []
    if events:
        store.append(events)


def _tables(reader: ViewReader, name: str) -> list[tuple[bytes, bytes]]:
    table = slot_table(name, read_state(reader, name).slot)
    return list(reader.scan(table))


def _midway(store: LmdbEventStore) -> int:
    head = store.head_position()
    with store.read_views() as reader:
        records = read_state(reader, "records").checkpoint
    return int(0 < records < head)


def _caught_up(store: LmdbEventStore) -> bool:
    head = store.head_position()
    with store.read_views() as reader:
        return all(
            read_state(reader, name).checkpoint == head
            for name in builtin_projections()
        )


def test_a_killed_projection_actor_ends_equal_to_a_full_rebuild(
    tmp_path: Path,
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    path = tmp_path / "store"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    kills = midway = 0
    alive: set[str] = set()
    with LmdbEventStore.open(path, durability="fast") as store:
        declare_index(store, "things", "k")
        _fill(store, 0, 6000, rng, alive)
        for n in range(20):
            run_workflow(store, f"e{n}", fail=n % 3 == 0)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            child = subprocess.Popen(
                [sys.executable, str(script), str(path)], stdout=subprocess.PIPE
            )
            # Kill at a random moment after the actors started, however long
            # the interpreter took to start on a loaded machine.
            assert child.stdout is not None
            ready, _, _ = select.select([child.stdout], [], [], 30)
            assert ready, f"seed {seed}: the child did not start"
            assert child.stdout.readline().strip() == b"ready"
            time.sleep(rng.uniform(0.02, 0.5))
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)
            kills += 1
            midway += _midway(store)
            if kills < 4:
                _fill(store, 6000 + kills * 500, 500, rng, alive)
            elif _caught_up(store):
                break
        assert _caught_up(store), f"seed {seed}: not caught up after {kills} kills"

        head = store.head_position()
        fresh = replay(store, builtin_projections().values(), to_position=head)
        with store.read_views() as live, fresh.read_views() as rebuilt:
            for name in builtin_projections():
                assert _tables(live, name) == _tables(rebuilt, name), (seed, name)
        before = {}
        with store.read_views() as live:
            before = {name: _tables(live, name) for name in builtin_projections()}
        for projection in builtin_projections().values():
            rebuild(store, projection)
        with store.read_views() as live:
            for name in builtin_projections():
                assert _tables(live, name) == before[name], (seed, name)
    assert kills >= 4
    assert midway >= 1, f"seed {seed}: no kill landed while folding"
