"""What sync costs: two DataManager replicas converging over WebSocket.

Two durable replicas hold the same records (created on one, synced to the
other). Then each edits a fifth of them while apart, a tenth of all records
on both sides: concurrent edits that the collection's strategy ("lww")
resolves. The benchmark times the sync rounds that bring the replicas level
again (over a WebSocket on 127.0.0.1), and compares them with the baseline
measured in the same run: a full export of the edited log to NDJSON and its
import into an empty store (``export_ndjson``/``import_ndjson``), which is
what a replica would do without high-water marks.

Run: ``python benchmarks/bench_sync.py`` (100,000 records) or ``--quick``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from actors import DataManager, SyncReport
from eventstore import LmdbEventStore, export_ndjson, high_water_marks, import_ndjson

CHUNK = 1000


async def open_replica(path: Path, name: str) -> DataManager:
    dm = DataManager.open(path, replica_id=name)
    await dm.start()
    dm.add_data_source("users", conflict_strategy="lww")
    return dm


async def make_ids(dm: DataManager, count: int) -> None:
    # Records get stable ids: create them by id, a chunk per append.
    for start in range(0, count, CHUNK):
        async with dm.transaction() as tx:
            for i in range(start, min(count, start + CHUNK)):
                tx.create("users", {"name": f"user {i}", "n": i}, id=f"u{i}")


async def edit(dm: DataManager, ids: range, field: str) -> int:
    items = [(f"u{i}", {field: i}) for i in ids]
    for start in range(0, len(items), CHUNK):
        await dm.batch_update("users", items[start : start + CHUNK])
    return len(items)


async def converge(east: DataManager, west: DataManager) -> list[SyncReport]:
    reports = []
    async with west.sync_server() as server:
        while True:
            report = await east.sync(server.url)
            reports.append(report)
            if not (report.sent or report.received):
                return reports


async def run(records: int, root: Path) -> None:
    east = await open_replica(root / "east", "east")
    west = await open_replica(root / "west", "west")
    try:
        await make_ids(east, records)
        started = time.perf_counter()
        initial = await converge(east, west)
        initial_s = time.perf_counter() - started

        fifth, tenth = records // 5, records // 10
        edits = await edit(east, range(fifth), "a")
        edits += await edit(west, range(tenth, tenth + fifth), "b")

        started = time.perf_counter()
        rounds = await converge(east, west)
        converge_s = time.perf_counter() - started
        assert high_water_marks(east.store) == high_water_marks(west.store)
        assert await east.conflicts("users") == await west.conflicts("users") == []
        probe = f"u{tenth}"
        assert await east.read("users", probe) == await west.read("users", probe)

        started = time.perf_counter()
        exported = export_ndjson(east.store, root / "export.ndjson")
        with LmdbEventStore.open(root / "copy") as copy:
            imported = import_ndjson(copy, root / "export.ndjson", batch_size=CHUNK)
        copy_s = time.perf_counter() - started
    finally:
        await east.close()
        await west.close()

    first = sum(r.sent + r.received for r in initial)
    moved = sum(r.sent + r.received for r in rounds)
    wire = sum(r.bytes_sent + r.bytes_received for r in rounds)
    found = sum(r.conflicts_found for r in rounds)
    resolved = sum(r.conflicts_resolved for r in rounds)
    print(
        f"records per replica: {records:,}; edits: {edits:,} "
        f"({tenth:,} records edited on both replicas)"
    )
    print(
        f"initial sync: {first:,} events in {initial_s:.2f} s "
        f"({first / initial_s / 1e3:.1f}k events/s)"
    )
    print(
        f"converge after edits: {len(rounds)} rounds, {moved:,} events in "
        f"{converge_s:.2f} s ({moved / converge_s / 1e3:.1f}k events/s, "
        f"{wire / max(moved, 1):.0f} bytes/event on the wire); conflicts found "
        f"{found:,}, resolved {resolved:,}"
    )
    print(
        f"baseline export+import: {exported:,} events out, {imported.appended:,} "
        f"in, {copy_s:.2f} s ({exported / copy_s / 1e3:.1f}k events/s)"
    )
    print(
        f"converge time / export+import time: {converge_s / copy_s:.2f}x; "
        f"events moved / events copied: {moved / exported:.2f}x"
    )
    print(
        "initial sync rate / export+import rate: "
        f"{(first / initial_s) / (exported / copy_s):.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 records")
    parser.add_argument("--records", type=int, default=None)
    args = parser.parse_args()
    records = args.records or (10_000 if args.quick else 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(records, Path(tmp)))


if __name__ == "__main__":
    main()
