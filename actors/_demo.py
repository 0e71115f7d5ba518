"""``make demo``: the specification's scenario on a fresh store, then the CLI.

Three data sources (``users``, ``products``, ``files``) are loaded from the
sample data in ``actors/_demo_data``: users from a JSON file; products from
a JSON document standing for an HTTP API that fails its first request; files
from a folder on disk. The specification's two workflows run over them:
``user-registration`` signs up new users (one signup is refused by its
validation step) and ``data-sync`` copies products and files into their
collections (its ``fetch`` step fails once and is retried). The demo then
closes the DataManager and shows what ``actorlog`` reads from the store.

Run it as ``python -m actors._demo [PATH]`` (``./demo-data`` by default);
each run starts from a fresh store at PATH.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from actors import DataManager, StepContext, WorkflowFailedError
from eventstore import LmdbEventStore
from projections import projection_named, rebuild

DATA = Path(__file__).with_name("_demo_data")
DEFAULT_PATH = "./demo-data"
MARKER = ".actorlog-demo"
_STORE_FILES = {"data.mdb", "lock.mdb", "actorlog.lock", MARKER}

USER_REGISTRATION = {
    "steps": [
        {"name": "validate", "action": "validateUser"},
        {
            "name": "create",
            "action": "createUser",
            "retry": {"max_attempts": 3, "backoff_s": 0.05},
        },
        {"name": "notify", "action": "sendWelcomeEmail"},
    ]
}
DATA_SYNC = {
    "steps": [
        {
            "name": "fetch",
            "action": "fetchData",
            "parallel": True,
            "retry": {
                "max_attempts": 3,
                "backoff_s": 0.05,
                "retry_on": ["ConnectionError"],
            },
        },
        {"name": "transform", "action": "transformData"},
        {"name": "save", "action": "saveData"},
    ]
}


class User(msgspec.Struct):
    """The schema of the ``users`` collection."""

    name: str
    email: str
    age: int = 0


def fresh_store(path: Path) -> None:
    """Remove the demo's previous store at ``path``; refuse anything else.

    Raises:
        SystemExit: If ``path`` holds files the demo did not write.

    """
    if path.exists():
        found = {child.name for child in path.iterdir()}
        # ./demo-data belongs to `make demo` (and `make clean`), even when
        # an older demo wrote it without the marker.
        ours = MARKER in found or path.resolve() == Path(DEFAULT_PATH).resolve()
        if found and (not ours or not found <= _STORE_FILES):
            raise SystemExit(
                f"{path} holds other files ({', '.join(sorted(found))}); "
                "give the demo an empty or new directory "
                "(make clean removes ./demo-data)"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / MARKER).write_text("a store written by python -m actors._demo\n")


class Actions:
    """The six actions of the two workflows, over one DataManager."""

    def __init__(self, dm: DataManager) -> None:
        self.dm = dm

    def register(self) -> None:
        """Register every action on ``dm.workflows`` by the specification's name."""
        engine = self.dm.workflows
        engine.register_action("validateUser", self.validate_user)
        engine.register_action("createUser", self.create_user)
        engine.register_action("sendWelcomeEmail", self.send_welcome_email)
        engine.register_action("fetchData", self.fetch_data)
        engine.register_action("transformData", self.transform_data)
        engine.register_action("saveData", self.save_data)

    async def validate_user(self, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002 - injected by name
        """Check the signup's email, and that nobody registered it already."""
        email = str(input.get("email", "")).strip().lower()
        local, _, domain = email.partition("@")
        if not local or "." not in domain:
            raise ValueError(f"not an email address: {input.get('email')!r}")
        if await self.dm.query("users", where={"email": email}, limit=1):
            raise ValueError(f"{email} is registered already")
        return {**input, "email": email}

    async def create_user(self, results: dict[str, Any], idempotency_key: str) -> str:
        """Create the user; the key makes a second run create it once."""
        user = results["validate"]
        record = await self.dm.create("users", user, command_id=idempotency_key)
        return record.id

    async def send_welcome_email(self, ctx: StepContext) -> str:
        """Queue a welcome mail in the ``outbox`` collection."""
        mail = {"to": ctx.input["email"], "template": "welcome"}
        mail["user"] = ctx.results["create"]
        await self.dm.create("outbox", mail, command_id=ctx.idempotency_key)
        return f"welcome mail queued for {ctx.input['email']}"

    async def fetch_data(self, ctx: StepContext) -> list[dict[str, Any]]:
        """Read the source: the products API, or the files folder."""
        if ctx.input["source"] == "products":
            if ctx.attempt == 1:
                # The sample API answers its first request with an outage.
                raise ConnectionError("products API: 503 Service Unavailable")
            body = json.loads((DATA / "products.json").read_text())
            items: list[dict[str, Any]] = body["items"]
            return items
        return [
            {"name": f.name, "text": f.read_text()}
            for f in sorted((DATA / "files").iterdir())
        ]

    def transform_data(self, input: dict[str, Any], results: dict[str, Any]) -> Any:  # noqa: A002
        """Shape what was fetched into records (a sync action: a thread runs it)."""
        if input["source"] == "products":
            return [
                {
                    "id": item["sku"],
                    "name": item["title"].title(),
                    "price": item["price_cents"] / 100,
                    "in_stock": item["quantity"] > 0,
                }
                for item in results["fetch"]
            ]
        return [
            {
                "id": item["name"],
                "kind": item["name"].rpartition(".")[2],
                "size_bytes": len(item["text"].encode()),
                "lines": item["text"].count("\n"),
            }
            for item in results["fetch"]
        ]

    async def save_data(self, ctx: StepContext) -> int:
        """Create one record per item, once even if the step runs again."""
        source = ctx.input["source"]
        for item in ctx.results["transform"]:
            data = {k: v for k, v in item.items() if k != "id"}
            key = f"{ctx.idempotency_key}:{item['id']}"
            await self.dm.create(source, data, id=item["id"], command_id=key)
        return len(ctx.results["transform"])


async def run(path: Path) -> None:
    """Load the sample data and run both workflows on the store at ``path``."""
    async with DataManager.open(path) as dm:
        dm.add_data_source("users", schema=User, indexes=["email"])
        dm.add_data_source("products", indexes=["in_stock"])
        dm.add_data_source("files")
        dm.add_data_source("outbox")
        users = json.loads((DATA / "users.json").read_text())
        await dm.batch_create("users", users)
        print(f"loaded {len(users)} users from {DATA.name}/users.json")

        Actions(dm).register()
        await dm.workflows.start()
        await dm.workflows.create_workflow("user-registration", USER_REGISTRATION)
        await dm.workflows.create_workflow("data-sync", DATA_SYNC)

        for signup in json.loads((DATA / "signups.json").read_text()):
            try:
                output = await dm.workflows.execute_workflow(
                    "user-registration", signup, wait=True, timeout_s=30
                )
                print(f"user-registration {signup['name']}: {output['notify']}")
            except WorkflowFailedError as error:
                print(f"user-registration {signup['name']}: failed at {error.step}")
                print(f"  {error.error_type}: {error.error}")

        ids = [
            await dm.workflows.execute_workflow("data-sync", {"source": source})
            for source in ("products", "files")
        ]
        for execution_id in ids:
            output = await dm.workflows.wait(execution_id, timeout_s=30)
            status = await dm.workflows.get_execution_status(execution_id)
            print(
                f"data-sync {status.input['source']}: saved {output['save']} "
                f"records; fetch took {status.steps['fetch'].attempts} attempt(s)"
            )
            for event in await dm.workflows.get_execution_history(execution_id):
                if event.type == "WorkflowStepFailed":
                    data = event.data
                    print(
                        f"  attempt {data.attempt} of {data.step} failed "
                        f"({data.error_type}: {data.error}), retried: {data.will_retry}"
                    )

        cheap = await dm.query(
            "products",
            where={"in_stock": True, "price": {"lt": 50}},
            order_by="price",
        )
        print("in stock under 50:", ", ".join(r.data["name"] for r in cheap))
        every = await dm.query("users", order_by="name")
        print("users:", ", ".join(r.data["name"] for r in every))


def actorlog(path: Path, *args: str) -> str:
    """Run the ``actorlog`` CLI on the store at ``path``; return its output."""
    done = subprocess.run(  # noqa: S603 - our own CLI, with fixed arguments
        [sys.executable, "-m", "actors._cli", "--store", str(path), *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "120"},
    )
    return done.stdout


def main(argv: list[str]) -> int:
    """Run the demo on the store at ``argv[0]`` and print what the CLI shows."""
    path = Path(argv[0] if argv else DEFAULT_PATH)
    started = time.perf_counter()
    fresh_store(path)
    asyncio.run(run(path))

    # The application is closed: fold the views the CLI shows from the log.
    with LmdbEventStore.open(path) as store:
        for view in ("records", "workflows"):
            rebuild(store, projection_named(view))
    for command in (
        ("workflows", "list"),
        ("projections", "show", "records", "--collection", "users"),
    ):
        print(f"\n$ actorlog --store {path} {' '.join(command)}")
        print(actorlog(path, "-o", "table", *command), end="")
    print(f"\ndemo finished in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
