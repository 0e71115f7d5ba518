"""Issue 7's leak test: a long run leaves memory flat and nothing running.

100,000 commands and 1,000 workflow executions, in a warm-up and two equal
phases. Memory is traced (tracemalloc) from the end of the warm-up; the
second phase may not hold much more than the first did. ``batch_update``
counts each of its items as a command: 100,000 single commands under
tracemalloc would take minutes on two cores.
"""

import asyncio
import gc
import threading
import tracemalloc
from pathlib import Path

import pykka
import pytest

from actors import DataManager, WorkflowEngine

RECORDS = 1_000
CLIENTS = 100
# (single updates, batch updates of BATCH items, reads, workflow executions)
WARM_UP = (6_000, 100, 4_000, 200)
PHASE = (12_000, 200, 8_000, 400)
BATCH = 100
# A leak of one small object per command (~100 bytes) over a phase's 40,000
# commands is 4 MB; what a phase legitimately adds is well under it (the
# workflow metrics' sample windows, bounded at 1,024, are still filling:
# about 340 KB measured).
BOUND_BYTES = 1_500_000


async def double(input: dict[str, int]) -> int:  # noqa: A002 - by name
    return input["n"] * 2


async def add(results: dict[str, int]) -> int:
    return results["a"] + 1


def commands(phase: tuple[int, int, int, int]) -> int:
    singles, batches, reads, _ = phase
    return singles + batches * BATCH + reads


def test_the_phases_add_up_to_the_issues_counts() -> None:
    assert commands(WARM_UP) + 2 * commands(PHASE) == 100_000
    assert WARM_UP[3] + 2 * PHASE[3] == 1_000


async def run_phase(
    dm: DataManager,
    engine: WorkflowEngine,
    ids: list[str],
    phase: tuple[int, int, int, int],
) -> None:
    singles, batches, reads, executions = phase
    work = iter(range(singles + reads))

    async def client() -> None:
        for n in work:
            record_id = ids[n % RECORDS]
            if n < singles:
                await dm.update("users", record_id, {"n": n})
            else:
                await dm.read("users", record_id)

    async def batcher() -> None:
        for b in range(batches):
            start = (b * BATCH) % RECORDS
            items = [(record_id, {"b": b}) for record_id in ids[start : start + BATCH]]
            await dm.batch_update("users", items)

    starts = iter(range(executions))

    async def runner() -> None:
        for n in starts:
            await engine.execute_workflow("pair", {"n": n}, wait=True, timeout_s=30)

    await asyncio.gather(
        *(client() for _ in range(CLIENTS)),
        batcher(),
        *(runner() for _ in range(10)),
    )


@pytest.mark.timeout(240)
async def test_a_long_run_leaves_memory_flat_and_nothing_running_after_close(
    tmp_path: Path,
) -> None:
    threads_before = set(threading.enumerate())
    dm = DataManager.open(tmp_path / "store", durability="fast")
    await dm.start()
    engine = WorkflowEngine(dm.store, monitoring=dm.monitoring)
    engine.register_action("double", double)
    engine.register_action("add", add)
    dm.add_data_source("users")
    sizes: list[int] = []
    try:
        async with engine:
            await engine.create_workflow(
                "pair",
                {
                    "steps": [
                        {"name": "a", "action": "double"},
                        {"name": "b", "action": "add", "depends_on": ["a"]},
                    ]
                },
            )
            created = await dm.batch_create("users", [{"n": 0}] * RECORDS)
            ids = [record.id for record in created]

            await run_phase(dm, engine, ids, WARM_UP)
            dm.monitoring.get_metrics()
            gc.collect()
            tracemalloc.start()
            try:
                for _ in range(2):
                    await run_phase(dm, engine, ids, PHASE)
                    dm.monitoring.get_metrics()
                    gc.collect()
                    sizes.append(tracemalloc.get_traced_memory()[0])
            finally:
                tracemalloc.stop()
    finally:
        await dm.close()

    growth = sizes[1] - sizes[0]
    assert growth < BOUND_BYTES, f"the second phase kept {growth:,} bytes more"
    count = dm.monitoring.get_metric("command.count")["sum"]
    assert count >= 2 * (PHASE[0] + PHASE[1] + PHASE[2])
    executions = dm.monitoring.get_metric("workflow.executions", {"state": "completed"})
    assert executions["sum"] == WARM_UP[3] + 2 * PHASE[3]
    assert pykka.ActorRegistry.get_all() == []
    for thread in extra_threads(threads_before):
        thread.join(timeout=10)  # one ending just now (a pool's last worker)
    assert extra_threads(threads_before) == set()


def extra_threads(before: set[threading.Thread]) -> set[threading.Thread]:
    # The loop's default executor (asyncio.to_thread) belongs to the test's
    # loop and ends with it.
    return {
        thread
        for thread in set(threading.enumerate()) - before
        if not thread.name.startswith("asyncio_")
    }
