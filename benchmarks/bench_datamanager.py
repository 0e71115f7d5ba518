"""The original specification's DataManager scenarios, against eventsourcing.

Scenarios, each run on a durable store in a fresh directory:

* ``large-dataset``: create, read and update N records (100,000; 5,000 with
  ``--quick``), 200 asyncio clients at a time.
* ``concurrent-users``: 1,000 asyncio clients, each reading and updating its
  own user record for R rounds (10; 3 with ``--quick``).

Our side is a DataManager on LMDB (``durability="durable"``). The peer is the
``eventsourcing`` library on SQLite in a file, one aggregate per record,
driven through ``asyncio.to_thread``. Each side of each scenario runs in its
own process so that its peak RSS is its own. Prints operations/s, p50/p99
latency, peak RSS and our throughput as a multiple of the peer's.

    python benchmarks/bench_datamanager.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

# As in PERF-NOTES.md's measurement of the peer (200 asyncio clients).
CLIENTS_LARGE = 200
USERS = 1_000


class Timings:
    """Latencies of one phase."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.elapsed_s = 0.0

    async def run(
        self, count: int, clients: int, op: Callable[[int], Awaitable[Any]]
    ) -> None:
        samples = self.samples
        next_index = iter(range(count))

        async def client() -> None:
            for index in next_index:
                start = time.perf_counter()
                await op(index)
                samples.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        self.elapsed_s += time.perf_counter() - start

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.samples)
        count = len(ordered)
        return {
            "ops": count,
            "ops_per_s": count / self.elapsed_s if self.elapsed_s else 0.0,
            "p50_ms": ordered[count // 2] * 1000 if count else 0.0,
            "p99_ms": ordered[min(count - 1, int(count * 0.99))] * 1000
            if count
            else 0.0,
        }


# -- our side --------------------------------------------------------------


async def ours_large(path: Path, count: int) -> dict[str, Any]:
    from actors import DataManager  # noqa: PLC0415

    phases: dict[str, Timings] = {p: Timings() for p in ("create", "read", "update")}
    async with DataManager.open(path, durability="durable") as dm:
        dm.add_data_source("records")
        ids: list[str] = [""] * count

        async def create(i: int) -> None:
            ids[i] = (await dm.create("records", {"n": i, "name": f"r{i}"})).id

        async def read(i: int) -> None:
            assert await dm.read("records", ids[i]) is not None

        async def update(i: int) -> None:
            await dm.update("records", ids[i], {"n": -i})

        await phases["create"].run(count, CLIENTS_LARGE, create)
        await phases["read"].run(count, CLIENTS_LARGE, read)
        await phases["update"].run(count, CLIENTS_LARGE, update)
    return {name: t.summary() for name, t in phases.items()}


async def ours_users(path: Path, rounds: int) -> dict[str, Any]:
    from actors import DataManager  # noqa: PLC0415

    timings = Timings()
    async with DataManager.open(path, durability="durable") as dm:
        dm.add_data_source("users")
        users = await dm.batch_create(
            "users", [{"name": f"u{i}", "visits": 0} for i in range(USERS)]
        )

        async def user(i: int) -> None:
            record_id = users[i].id
            for _ in range(rounds):
                start = time.perf_counter()
                rec = await dm.read("users", record_id)
                assert rec is not None
                middle = time.perf_counter()
                await dm.update("users", record_id, {"visits": rec.data["visits"] + 1})
                timings.samples += [middle - start, time.perf_counter() - middle]

        start = time.perf_counter()
        await asyncio.gather(*(user(i) for i in range(USERS)))
        timings.elapsed_s = time.perf_counter() - start
    return {"read+update": timings.summary()}


# -- the peer: eventsourcing on SQLite -------------------------------------


def peer_app(path: Path) -> Any:
    from eventsourcing.application import Application  # noqa: PLC0415
    from eventsourcing.domain import Aggregate, event  # noqa: PLC0415

    class Rec(Aggregate):  # type: ignore[misc]
        @event("Created")  # type: ignore[misc]
        def __init__(self, data: dict[str, Any]) -> None:
            self.data = data

        @event("Updated")  # type: ignore[misc]
        def update(self, changes: dict[str, Any]) -> None:
            self.data = {**self.data, **changes}

    class Records(Application):  # type: ignore[misc]
        def create(self, data: dict[str, Any]) -> Any:
            record = Rec(data)
            self.save(record)
            return record.id

        def read(self, record_id: Any) -> dict[str, Any]:
            data: dict[str, Any] = self.repository.get(record_id).data
            return data

        def change(self, record_id: Any, changes: dict[str, Any]) -> None:
            record = self.repository.get(record_id)
            record.update(changes)
            self.save(record)

    path.mkdir(parents=True, exist_ok=True)
    return Records(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(path / "peer.sqlite"),
            "SQLITE_LOCK_TIMEOUT": "60",
        }
    )


async def peer_large(path: Path, count: int) -> dict[str, Any]:
    app = peer_app(path)
    phases: dict[str, Timings] = {p: Timings() for p in ("create", "read", "update")}
    ids: list[Any] = [None] * count

    async def create(i: int) -> None:
        ids[i] = await asyncio.to_thread(app.create, {"n": i, "name": f"r{i}"})

    async def read(i: int) -> None:
        await asyncio.to_thread(app.read, ids[i])

    async def update(i: int) -> None:
        await asyncio.to_thread(app.change, ids[i], {"n": -i})

    await phases["create"].run(count, CLIENTS_LARGE, create)
    await phases["read"].run(count, CLIENTS_LARGE, read)
    await phases["update"].run(count, CLIENTS_LARGE, update)
    return {name: t.summary() for name, t in phases.items()}


async def peer_users(path: Path, rounds: int) -> dict[str, Any]:
    app = peer_app(path)
    ids = [app.create({"name": f"u{i}", "visits": 0}) for i in range(USERS)]
    timings = Timings()

    async def user(i: int) -> None:
        for _ in range(rounds):
            start = time.perf_counter()
            data = await asyncio.to_thread(app.read, ids[i])
            middle = time.perf_counter()
            await asyncio.to_thread(app.change, ids[i], {"visits": data["visits"] + 1})
            timings.samples += [middle - start, time.perf_counter() - middle]

    start = time.perf_counter()
    await asyncio.gather(*(user(i) for i in range(USERS)))
    timings.elapsed_s = time.perf_counter() - start
    return {"read+update": timings.summary()}


WORKERS: dict[tuple[str, str], Callable[[Path, int], Awaitable[dict[str, Any]]]] = {
    ("ours", "large-dataset"): ours_large,
    ("ours", "concurrent-users"): ours_users,
    ("peer", "large-dataset"): peer_large,
    ("peer", "concurrent-users"): peer_users,
}


def worker(side: str, scenario: str, size: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-dm-") as directory:
        result = asyncio.run(WORKERS[side, scenario](Path(directory) / "store", size))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"phases": result, "peak_rss_mb": peak_kib / 1024}))


def measure(side: str, scenario: str, size: int) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, __file__, "--worker", side, scenario, str(size)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    result: dict[str, Any] = json.loads(output.stdout.strip().splitlines()[-1])
    return result


def total_rate(result: dict[str, Any]) -> float:
    phases = result["phases"].values()
    ops = sum(p["ops"] for p in phases)
    seconds = sum(p["ops"] / p["ops_per_s"] for p in phases if p["ops_per_s"])
    return ops / seconds if seconds else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        side, scenario, size = args.worker
        worker(side, scenario, int(size))
        return 0
    sizes = {
        "large-dataset": 5_000 if args.quick else 100_000,
        "concurrent-users": 3 if args.quick else 10,
    }
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, durable stores")
    for scenario, size in sizes.items():
        ours = measure("ours", scenario, size)
        peer = measure("peer", scenario, size)
        unit = "records" if scenario == "large-dataset" else "rounds per user"
        print(f"\n{scenario} ({size:,} {unit})")
        print(f"  {'':10} {'phase':12} {'ops/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
        for label, result in (("actorlog", ours), ("peer", peer)):
            for phase, row in result["phases"].items():
                print(
                    f"  {label:10} {phase:12} {row['ops_per_s']:>10,.0f} "
                    f"{row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f}"
                )
            print(f"  {label:10} {'peak RSS':12} {result['peak_rss_mb']:>9.0f}M")
        ratio = total_rate(ours) / total_rate(peer)
        print(f"  throughput, actorlog / eventsourcing: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
