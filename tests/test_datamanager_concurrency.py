"""Many asyncio clients writing the same records lose nothing."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from actors import ConcurrencyError, DataManager

CLIENTS = 1_000
RECORDS = 10
# Compare-and-set retries grow with the clients per record; keep them few.
CAS_RECORDS = 100


async def test_a_thousand_clients_patching_the_same_records_lose_no_update(
    tmp_path: Path,
) -> None:
    async with DataManager.open(tmp_path / "d") as dm:
        dm.add_data_source("counters")
        records = await dm.batch_create("counters", [{} for _ in range(RECORDS)])

        async def client(number: int) -> int:
            rec = records[number % RECORDS]
            updated = await dm.update("counters", rec.id, {f"c{number}": number})
            return updated.version

        versions = await asyncio.wait_for(
            asyncio.gather(*(client(n) for n in range(CLIENTS))), 60
        )
        finals = await dm.batch_read("counters", [r.id for r in records])
        histories = [await dm.history("counters", r.id) for r in records]

    per_record = CLIENTS // RECORDS
    for index, final in enumerate(finals):
        assert final is not None
        assert final.version == 1 + per_record
        assert sorted(final.data) == sorted(
            f"c{n}" for n in range(index, CLIENTS, RECORDS)
        )
    for history in histories:
        assert [r.version for r in history] == list(range(1, per_record + 2))
    assert len(set(versions)) == per_record


async def test_a_thousand_clients_incrementing_with_expected_versions_count_right(
    tmp_path: Path,
) -> None:
    async with DataManager.open(tmp_path / "d", durability="fast") as dm:
        dm.add_data_source("counters")
        records = await dm.batch_create(
            "counters", [{"n": 0} for _ in range(CAS_RECORDS)]
        )
        conflicts = 0
        first_reads = 0
        all_read = asyncio.Event()

        async def client(number: int) -> None:
            nonlocal conflicts, first_reads
            record_id = records[number % CAS_RECORDS].id
            first = True
            while True:
                current = await dm.read("counters", record_id)
                assert current is not None
                if first:
                    # Every client reads before any writes: reads come from
                    # the committed view, so without this wait a slow loop
                    # could read each update's result and never conflict.
                    first = False
                    first_reads += 1
                    if first_reads == CLIENTS:
                        all_read.set()
                    await all_read.wait()
                try:
                    await dm.update(
                        "counters",
                        record_id,
                        {"n": current.data["n"] + 1},
                        expected_version=current.version,
                    )
                except ConcurrencyError:
                    conflicts += 1
                    # A compare-and-set client backs off before it retries,
                    # as real ones do: without it a thousand clients spin
                    # on reads of a version whose successor is committing.
                    await asyncio.sleep(random.uniform(0, 0.01))
                    continue
                return

        await asyncio.wait_for(
            asyncio.gather(*(client(n) for n in range(CLIENTS))), 100
        )
        finals = await dm.batch_read("counters", [r.id for r in records])

    for final in finals:
        assert final is not None
        assert final.data["n"] == CLIENTS // CAS_RECORDS
        assert final.version == 1 + CLIENTS // CAS_RECORDS
    assert conflicts > 0
