"""The ``workflow-execution`` scenario: executions of a 10-step workflow.

Runs N executions of a workflow of 10 trivial async steps on a durable LMDB
store, all started at once, and the same step functions with plain
``asyncio.gather`` (each execution's steps in order) as the baseline, in the
same run. A second baseline is the floor of any durable engine: each
execution appending one event per step (``append_async``, group-committed)
to the same kind of store. Prints executions/s, steps/s and the cost per
step against both baselines.

    python benchmarks/bench_workflows.py [--executions 100 1000] [--durability durable]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from actors import WorkflowBuilder, WorkflowEngine
from eventstore import LmdbEventStore, NewEvent

STEPS = 10


async def trivial(ctx: Any) -> int:
    return ctx.attempt


class _Ctx:
    attempt = 1


async def baseline(executions: int) -> float:
    async def one() -> None:
        ctx = _Ctx()
        for _ in range(STEPS):
            await trivial(ctx)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(executions)))
    return time.perf_counter() - started


async def append_floor(store: LmdbEventStore, executions: int) -> float:
    async def one(index: int) -> None:
        for step in range(STEPS):
            await store.append_async([NewEvent(f"floor/{index}", "Tick", {"s": step})])

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(executions)))
    return time.perf_counter() - started


async def engine_run(
    executions: int, durability: str, max_concurrency: int
) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = LmdbEventStore.open(Path(tmp) / "store", durability=durability)  # type: ignore[arg-type]
        try:
            floor = await append_floor(store, executions)
            async with WorkflowEngine(store, max_concurrency=max_concurrency) as engine:
                engine.register_action("trivial", trivial)
                builder = WorkflowBuilder("ten")
                for index in range(STEPS):
                    builder.step(f"s{index}", "trivial")
                await engine.create_workflow("ten", builder.build())
                started = time.perf_counter()
                ids = await asyncio.gather(
                    *(engine.execute_workflow("ten") for _ in range(executions))
                )
                accepted = time.perf_counter() - started
                for execution_id in ids:
                    await engine.wait(execution_id, timeout_s=600)
                elapsed = time.perf_counter() - started
        finally:
            store.close()
    return elapsed, accepted, floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--executions", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--durability", default="durable", choices=["durable", "fast"])
    parser.add_argument("--max-concurrency", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"workflow-execution: {STEPS}-step workflow, trivial async steps, "
        f"{args.durability} LMDB, max_concurrency={args.max_concurrency}, "
        f"median of {args.repeat}"
    )
    header = (
        f"{'executions':>10} {'exec/s':>8} {'steps/s':>8} {'start/s':>8} "
        f"{'us/step':>8} {'gather us/step':>14} {'x gather':>9} "
        f"{'append us/step':>14} {'x append':>9}"
    )
    print(header)
    for count in args.executions:
        runs = [
            asyncio.run(engine_run(count, args.durability, args.max_concurrency))
            for _ in range(args.repeat)
        ]
        elapsed = statistics.median(run[0] for run in runs)
        accepted = statistics.median(run[1] for run in runs)
        floor = statistics.median(run[2] for run in runs)
        base = statistics.median(
            asyncio.run(baseline(count)) for _ in range(args.repeat)
        )
        steps = count * STEPS
        print(
            f"{count:>10} {count / elapsed:>8.0f} {steps / elapsed:>8.0f} "
            f"{count / accepted:>8.0f} {elapsed / steps * 1e6:>8.0f} "
            f"{base / steps * 1e6:>14.2f} {elapsed / base:>8.0f}x "
            f"{floor / steps * 1e6:>14.0f} {elapsed / floor:>8.1f}x"
        )


if __name__ == "__main__":
    main()
