"""Advanced workflows on ``dm.workflows``: a diamond, retries, pause, skip.

python docs/examples/advanced_workflows.py [./data]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

from actors import DataManager, StepContext, WorkflowBuilder, WorkflowFailedError

# A diamond: `split` feeds two branches that run at once; `join` waits for both.
DIAMOND = (
    WorkflowBuilder("diamond")
    .step("split", "split")
    .step("left", "double", depends_on=["split"])
    .step("right", "square", depends_on=["split"])
    .step("join", "add", depends_on=["left", "right"])
    .build()
)

ANSWERS_ON_ATTEMPT = 3


async def split(input: dict[str, int]) -> int:  # noqa: A002 - injected by name
    return input["n"]


async def double(results: dict[str, int]) -> int:
    await asyncio.sleep(0.01)
    return results["split"] * 2


def square(results: dict[str, int]) -> int:  # sync: runs in the step pool
    return results["split"] ** 2


async def add(results: dict[str, int]) -> int:
    return results["left"] + results["right"]


async def flaky(ctx: StepContext) -> str:
    if ctx.attempt < ANSWERS_ON_ATTEMPT:
        raise TimeoutError(f"upstream timed out (attempt {ctx.attempt})")
    return "answered"


async def charge(input: dict[str, Any]) -> str:  # noqa: A002
    raise RuntimeError(f"card declined for order {input['order']}")


async def ship(results: dict[str, Any]) -> str:
    return f"shipped ({results['charge']})"


async def main(path: Path) -> None:
    gate = asyncio.Event()

    async def wait_for_gate() -> str:
        await asyncio.wait_for(gate.wait(), 10)
        return "opened"

    async with DataManager.open(path) as dm:
        engine = dm.workflows
        for name, fn in {
            "split": split,
            "double": double,
            "square": square,
            "add": add,
            "flaky": flaky,
            "charge": charge,
            "ship": ship,
            "gate": wait_for_gate,
        }.items():
            engine.register_action(name, fn)
        await engine.start()  # after registering: it resumes unfinished runs

        # 1. A diamond DAG: the branches run in parallel.
        await engine.create_workflow("diamond", DIAMOND)
        output = await engine.execute_workflow("diamond", {"n": 7}, wait=True)
        print("diamond:", output)

        # 2. Retries with backoff, only for the errors named in retry_on.
        await engine.create_workflow(
            "retrying",
            {
                "steps": [
                    {
                        "name": "call",
                        "action": "flaky",
                        "retry": {
                            "max_attempts": 5,
                            "backoff_s": 0.01,
                            "retry_on": ["TimeoutError"],
                        },
                    }
                ]
            },
        )
        execution_id = await engine.execute_workflow("retrying")
        await engine.wait(execution_id, timeout_s=10)
        status = await engine.get_execution_status(execution_id)
        call = status.steps["call"]
        print(f"retrying: {call.output} after {call.attempts} attempts")

        # 3. Pause and resume: the running step finishes, the next waits.
        await engine.create_workflow(
            "two-stage",
            {
                "steps": [
                    {"name": "first", "action": "gate"},
                    {"name": "second", "action": "split"},
                ]
            },
        )
        execution_id = await engine.execute_workflow("two-stage", {"n": 1})
        print("paused:", await engine.pause_workflow(execution_id))
        gate.set()
        status = await engine.get_execution_status(execution_id)
        for _ in range(500):  # the first step ends; the second does not start
            if status.steps["first"].state == "succeeded":
                break
            await asyncio.sleep(0.01)
            status = await engine.get_execution_status(execution_id)
        print(
            "while paused:",
            {name: step.state for name, step in status.steps.items()},
        )
        print("resumed:", await engine.resume_workflow(execution_id))
        print("two-stage:", await engine.wait(execution_id, timeout_s=10))

        # 4. A failed step, skipped by hand with an output: the run goes on.
        await engine.create_workflow(
            "order",
            {
                "steps": [
                    {"name": "charge", "action": "charge"},
                    {"name": "ship", "action": "ship"},
                ]
            },
        )
        execution_id = await engine.execute_workflow("order", {"order": "A-17"})
        try:
            await engine.wait(execution_id, timeout_s=10)
        except WorkflowFailedError as error:
            print(f"order failed at {error.step}: {error.error}")
        await engine.skip_failed_step(execution_id, "charge", output="paid by hand")
        print("order:", await engine.wait(execution_id, timeout_s=10))

        history = await engine.get_execution_history(execution_id)
        print("order events:", " ".join(event.type[8:] for event in history))
        metrics = await engine.get_workflow_metrics("retrying")
        print("retrying metrics: retries", metrics.retries)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(Path(sys.argv[1])))
    else:
        with tempfile.TemporaryDirectory() as directory:
            asyncio.run(main(Path(directory) / "data"))
