"""Basic usage of the DataManager: sources, CRUD, queries, batches, transactions.

Run it with a directory for the store (a temporary one by default):

    python docs/examples/basic_usage.py [./data]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from actors import Command, ConcurrencyError, DataManager, ValidationError


class User(msgspec.Struct):
    name: str
    email: str
    age: int = 0


def lower_email(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "email": str(data.get("email", "")).lower()}


async def log_commands(command: Command, call_next: Any) -> Any:
    result = await call_next(command)
    print(f"  [middleware] {command.name} {command.collection or ''}")
    return result


async def main(path: Path) -> None:
    async with DataManager.open(path) as dm:
        dm.add_data_source("users", schema=User, transformers=[lower_email])
        dm.add_data_source("audit")
        dm.use(log_commands)

        rec = await dm.create("users", {"name": "Ada", "email": "ADA@example.com"})
        print("created", rec.id, rec.data)

        rec = await dm.update("users", rec.id, {"age": 36}, expected_version=1)
        print("updated to version", rec.version, rec.data)

        try:
            await dm.update("users", rec.id, {"age": 37}, expected_version=1)
        except ConcurrencyError as error:
            print("refused:", error)

        try:
            await dm.create("users", {"name": "Bob", "email": "b@x", "age": "old"})
        except ValidationError as error:
            print("invalid:", error)

        people = [
            {"name": "Grace", "email": "grace@example.com", "age": 45},
            {"name": "Alan", "email": "alan@example.com", "age": 41},
            {"name": "Kid", "email": "kid@example.com", "age": 9},
        ]
        await dm.batch_create("users", people)
        adults = await dm.query(
            "users", where={"age": {"gte": 18}}, order_by="name", limit=10
        )
        print("adults:", [r.data["name"] for r in adults])

        async with dm.transaction() as tx:
            tx.update("users", rec.id, {"age": 37}, expected_version=2)
            tx.create("audit", {"what": "birthday", "user": rec.id})

        history = await dm.history("users", rec.id)
        print("ages over time:", [r.data["age"] for r in history])
        first = await dm.read("users", rec.id, as_of_version=1)
        assert first is not None
        print("as first created:", first.data)

        await dm.delete("users", rec.id)
        print("after delete:", await dm.read("users", rec.id))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(Path(sys.argv[1])))
    else:
        with tempfile.TemporaryDirectory() as directory:
            asyncio.run(main(Path(directory) / "data"))
