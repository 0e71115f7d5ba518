"""What sync costs: two replicas converging over WebSocket, against a full copy.

Two LMDB replicas start with the same records (made on one, synced to the
other). Then each edits a fifth of them while apart, and a tenth of all
records is edited on both sides concurrently. The benchmark times the sync
that brings them level again (both ways, over a WebSocket on 127.0.0.1), and
compares it with the baseline measured in the same run: a full copy of the
edited log into an empty store (read every event, append in batches of
1,000), which is what a replica would do without high-water marks.

Run: ``python benchmarks/bench_sync.py`` (100,000 records) or ``--quick``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from actors import StoreEndpoint, SyncReport, SyncServer, sync_websocket
from eventstore import (
    LmdbEventStore,
    NewEvent,
    RecordCreated,
    RecordUpdated,
    high_water_marks,
    record_stream,
)

CHUNK = 1000


def chunks(events: list[NewEvent]) -> Iterator[list[NewEvent]]:
    for start in range(0, len(events), CHUNK):
        yield events[start : start + CHUNK]


def create(store: LmdbEventStore, count: int) -> None:
    events = [
        NewEvent(
            record_stream("users", f"u{i}"),
            "RecordCreated",
            RecordCreated("users", f"u{i}", {"name": f"user {i}", "n": i}),
        )
        for i in range(count)
    ]
    for chunk in chunks(events):
        store.append(chunk)


def edit(store: LmdbEventStore, ids: range, field: str) -> int:
    events = [
        NewEvent(
            record_stream("users", f"u{i}"),
            "RecordUpdated",
            RecordUpdated("users", f"u{i}", {field: i}),
        )
        for i in ids
    ]
    for chunk in chunks(events):
        store.append(chunk)
    return len(events)


async def sync(a: LmdbEventStore, b: LmdbEventStore, batch_size: int) -> SyncReport:
    async with SyncServer(StoreEndpoint(b), batch_size=batch_size) as server:
        return await sync_websocket(StoreEndpoint(a), server.url, batch_size=batch_size)


def copy_log(source: LmdbEventStore, target: LmdbEventStore) -> int:
    batch: list[NewEvent] = []
    copied = 0
    for event in source.read_all():
        batch.append(NewEvent(event.stream, event.type, event.data, event.metadata))
        if len(batch) == CHUNK:
            target.append(batch)
            copied += len(batch)
            batch = []
    if batch:
        target.append(batch)
        copied += len(batch)
    return copied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 records")
    parser.add_argument("--records", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    records = args.records or (10_000 if args.quick else 100_000)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        a = LmdbEventStore.open(root / "a")
        b = LmdbEventStore.open(root / "b")
        copy = LmdbEventStore.open(root / "copy")
        try:
            create(a, records)
            started = time.perf_counter()
            initial = asyncio.run(sync(a, b, args.batch_size))
            initial_s = time.perf_counter() - started

            fifth, tenth = records // 5, records // 10
            edits = edit(a, range(fifth), "a")
            edits += edit(b, range(tenth, tenth + fifth), "b")

            started = time.perf_counter()
            report = asyncio.run(sync(a, b, args.batch_size))
            converge_s = time.perf_counter() - started
            assert high_water_marks(a) == high_water_marks(b)

            started = time.perf_counter()
            copied = copy_log(a, copy)
            copy_s = time.perf_counter() - started
        finally:
            for store in (a, b, copy):
                store.close()

    moved = report.sent + report.received
    wire = report.bytes_sent + report.bytes_received
    print(
        f"records per replica: {records:,}; edits: {edits:,} "
        f"({tenth:,} records edited on both replicas)"
    )
    print(
        f"initial sync: {initial.sent:,} events in {initial_s:.2f} s "
        f"({initial.sent / initial_s / 1e3:.1f}k events/s, "
        f"{initial.bytes_sent / max(initial.sent, 1):.0f} bytes/event)"
    )
    print(
        f"converge after edits: {moved:,} events in {converge_s:.2f} s "
        f"({moved / converge_s / 1e3:.1f}k events/s, "
        f"{wire / max(moved, 1):.0f} bytes/event on the wire)"
    )
    print(
        f"baseline full copy: {copied:,} events in {copy_s:.2f} s "
        f"({copied / copy_s / 1e3:.1f}k events/s)"
    )
    print(
        f"converge time / full copy time: {converge_s / copy_s:.2f}x; "
        f"events moved / events copied: {moved / copied:.2f}x"
    )
    print(
        f"initial sync rate / full copy rate: "
        f"{(initial.sent / initial_s) / (copied / copy_s):.2f}x"
    )


if __name__ == "__main__":
    main()
