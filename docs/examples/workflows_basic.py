"""The specification's two sample workflows on an embedded, durable store.

python docs/examples/workflows_basic.py
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from actors import StepContext, WorkflowEngine
from eventstore import LmdbEventStore

USERS: dict[str, dict[str, Any]] = {}


async def validate_user(input: dict[str, str]) -> dict[str, str]:  # noqa: A002 - injected by name
    if "@" not in input["email"]:
        raise ValueError(f"not an email address: {input['email']!r}")
    return {"email": input["email"].lower()}


def create_user(results: dict[str, Any], idempotency_key: str) -> str:
    # The key makes a run again after a crash create the user once.
    USERS.setdefault(idempotency_key, results["validate"])
    return idempotency_key


async def send_welcome_email(ctx: StepContext) -> str:
    return f"welcome mail for user {ctx.results['create']}"


async def fetch_data() -> list[int]:
    await asyncio.sleep(0.01)
    return [3, 1, 2]


def transform_data(results: dict[str, Any]) -> list[int]:
    return sorted(results["fetch"])


def save_data(results: dict[str, Any]) -> int:
    return len(results["transform"])


async def main(path: Path) -> None:
    with LmdbEventStore.open(path) as store:
        engine = WorkflowEngine(store)
        for name, fn in {
            "validateUser": validate_user,
            "createUser": create_user,
            "sendWelcomeEmail": send_welcome_email,
            "fetchData": fetch_data,
            "transformData": transform_data,
            "saveData": save_data,
        }.items():
            engine.register_action(name, fn)
        async with engine:
            await engine.create_workflow(
                "user-registration",
                {
                    "steps": [
                        {"name": "validate", "action": "validateUser"},
                        {"name": "create", "action": "createUser"},
                        {"name": "notify", "action": "sendWelcomeEmail"},
                    ]
                },
            )
            await engine.create_workflow(
                "data-sync",
                {
                    "steps": [
                        {"name": "fetch", "action": "fetchData", "parallel": True},
                        {"name": "transform", "action": "transformData"},
                        {"name": "save", "action": "saveData"},
                    ]
                },
            )
            output = await engine.execute_workflow(
                "user-registration", {"email": "Ann@Example.com"}, wait=True
            )
            print("user-registration:", output["notify"])
            execution_id = await engine.execute_workflow("data-sync")
            print("data-sync:", await engine.wait(execution_id, timeout_s=10))
            status = await engine.get_execution_status(execution_id)
            for step in status.steps.values():
                print(f"  {step.name}: {step.state} in {step.duration_s:.6f} s")
            metrics = await engine.get_workflow_metrics("data-sync")
            print("data-sync executions by state:", metrics.by_state)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(Path(tmp) / "store"))
