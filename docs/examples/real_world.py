"""A real-world scenario: order fulfilment over collections, with a workflow.

Products and orders are collections; each order runs the ``fulfil-order``
workflow: ``reserve`` takes stock and marks the order in one transaction
(retried when another order moved the same product first), ``charge``
calls a payment service injected with ``provide`` (idempotent by key),
``ship`` records a shipment. Then queries report the outcome.

python docs/examples/real_world.py [./data]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from actors import ConcurrencyError, DataManager, StepContext, WorkflowFailedError


class Product(msgspec.Struct):
    name: str
    price: float
    stock: int


class OutOfStockError(Exception):
    """The order asks for more than is left."""


class PaymentService:
    """Stands for a payment API: one charge per idempotency key."""

    def __init__(self) -> None:
        self.charges: dict[str, float] = {}

    async def charge(self, key: str, amount: float) -> str:
        await asyncio.sleep(0.005)
        self.charges.setdefault(key, amount)
        return f"ch_{len(self.charges)}"


class Fulfilment:
    """The workflow's actions over one DataManager."""

    def __init__(self, dm: DataManager) -> None:
        self.dm = dm

    async def reserve(self, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
        product = await self.dm.read("products", input["product"])
        if product is None:
            raise LookupError(f"no product {input['product']!r}")
        stock = product.data["stock"]
        if stock < input["quantity"]:
            raise OutOfStockError(f"{product.data['name']}: {stock} left")
        async with self.dm.transaction() as tx:
            tx.update(
                "products",
                product.id,
                {"stock": stock - input["quantity"]},
                expected_version=product.version,
            )
            tx.update("orders", input["order"], {"status": "reserved"})
        return {"amount": product.data["price"] * input["quantity"]}

    async def charge(
        self, results: dict[str, Any], idempotency_key: str, payments: PaymentService
    ) -> str:
        return await payments.charge(idempotency_key, results["reserve"]["amount"])

    async def ship(self, ctx: StepContext) -> str:
        order = ctx.input["order"]
        await self.dm.create("shipments", {"order": order, "carrier": "post"})
        await self.dm.update("orders", order, {"status": "shipped"})
        return f"order {order} shipped"


FULFIL_ORDER = {
    "steps": [
        {
            "name": "reserve",
            "action": "reserve",
            "retry": {
                "max_attempts": 10,
                "backoff_s": 0.005,
                "retry_on": ["ConcurrencyError"],
            },
        },
        {"name": "charge", "action": "charge"},
        {"name": "ship", "action": "ship"},
    ]
}


async def main(path: Path) -> None:
    payments = PaymentService()
    async with DataManager.open(path) as dm:
        dm.add_data_source("products", schema=Product)
        dm.add_data_source("orders", indexes=["status"])
        dm.add_data_source("shipments")
        await dm.create(
            "products", {"name": "Lamp", "price": 40.0, "stock": 3}, id="lamp"
        )
        await dm.create(
            "products", {"name": "Desk", "price": 250.0, "stock": 9}, id="desk"
        )

        actions = Fulfilment(dm)
        dm.workflows.register_action("reserve", actions.reserve)
        dm.workflows.register_action("charge", actions.charge)
        dm.workflows.register_action("ship", actions.ship)
        dm.workflows.provide("payments", lambda: payments)
        await dm.workflows.start()
        await dm.workflows.create_workflow("fulfil-order", FULFIL_ORDER)

        wanted = [("lamp", 1), ("lamp", 1), ("desk", 2), ("lamp", 1), ("lamp", 1)]
        runs = []
        for number, (product, quantity) in enumerate(wanted, 1):
            order = f"o-{number}"
            await dm.create(
                "orders",
                {"product": product, "quantity": quantity, "status": "new"},
                id=order,
            )
            runs.append(
                await dm.workflows.execute_workflow(
                    "fulfil-order",
                    {"order": order, "product": product, "quantity": quantity},
                )
            )

        # Every order runs at once; lamps run out for one of them.
        for execution_id in runs:
            try:
                await dm.workflows.wait(execution_id, timeout_s=30)
            except WorkflowFailedError as error:
                print(f"refused: {error.error_type}: {error.error}")
                order = (await dm.workflows.get_execution_status(execution_id)).input
                await dm.update("orders", order["order"], {"status": "refused"})

        shipped = await dm.query(
            "orders", where={"status": "shipped"}, order_by="product"
        )
        print("shipped:", [(r.id, r.data["product"]) for r in shipped])
        refused = await dm.query("orders", where={"status": "refused"})
        print("refused:", [r.id for r in refused])
        stock = await dm.query("products", order_by="name")
        print("stock:", {r.data["name"]: r.data["stock"] for r in stock})
        print("charged:", sum(payments.charges.values()))
        retried = 0
        for execution_id in runs:
            status = await dm.workflows.get_execution_status(execution_id)
            retried += status.steps["reserve"].retries
        print("reserve retries after concurrent updates:", retried)
        try:
            await dm.update("products", "lamp", {"stock": 99}, expected_version=1)
        except ConcurrencyError as error:
            print("a stale write is refused:", error)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(Path(sys.argv[1])))
    else:
        with tempfile.TemporaryDirectory() as directory:
            asyncio.run(main(Path(directory) / "data"))
