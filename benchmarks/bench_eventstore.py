"""Event store throughput against raw py-lmdb, measured in the same run.

Usage: .venv/bin/python benchmarks/bench_eventstore.py [--quick]

Events carry about 200 bytes of data. The baselines are raw py-lmdb
writes (one durable commit per event; 1,000 events per durable commit with
``putmulti(append=True)``) and a raw cursor scan with a typed msgspec
decode. The aims: 256 concurrent appenders at least 20x the one-commit
baseline, 1,000 events per append at least 0.5x the batched baseline, and a
full ``read_all`` replay at least 0.5x the raw scan and decode.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path

import lmdb
import msgspec

from eventstore import EventRegistry, LmdbEventStore, NewEvent


class Payment(msgspec.Struct, frozen=True):
    account: str
    amount: int
    currency: str
    note: str


def payment(index: int) -> Payment:
    return Payment(f"acct-{index % 1000:04}", index, "EUR", "n" * 160)


REGISTRY = EventRegistry()
REGISTRY.register(Payment)
ENCODER = msgspec.msgpack.Encoder()


def raw_env(path: Path) -> lmdb.Environment:
    return lmdb.open(str(path), map_size=1 << 30, sync=True, metasync=True)


def raw_one_commit_per_event(root: Path, count: int) -> float:
    env = raw_env(root / "raw1")
    value = ENCODER.encode(payment(1))
    started = time.perf_counter()
    for index in range(count):
        with env.begin(write=True) as txn:
            txn.put(index.to_bytes(8, "big"), value, append=True)
    elapsed = time.perf_counter() - started
    env.close()
    return count / elapsed


def raw_batched(root: Path, count: int, batch: int = 1000) -> float:
    env = raw_env(root / "raw_batched")
    values = [ENCODER.encode(payment(i)) for i in range(batch)]
    started = time.perf_counter()
    for first in range(0, count, batch):
        items = [((first + i).to_bytes(8, "big"), values[i]) for i in range(batch)]
        with env.begin(write=True) as txn:
            txn.cursor().putmulti(items, append=True)
    elapsed = time.perf_counter() - started
    env.close()
    return count / elapsed


def raw_scan_decode(root: Path, count: int) -> float:
    env = raw_env(root / "raw_scan")
    with env.begin(write=True) as txn:
        txn.cursor().putmulti(
            ((i.to_bytes(8, "big"), ENCODER.encode(payment(i))) for i in range(count)),
            append=True,
        )
    decoder = msgspec.msgpack.Decoder(Payment)
    started = time.perf_counter()
    with env.begin() as txn:
        decoded = [decoder.decode(value) for _, value in txn.cursor()]
    elapsed = time.perf_counter() - started
    env.close()
    assert len(decoded) == count
    return count / elapsed


def open_store(root: Path, name: str) -> LmdbEventStore:
    return LmdbEventStore.open(
        root / name, durability="durable", registry=REGISTRY, map_size_bytes=1 << 30
    )


def store_threads(root: Path, threads: int, per_thread: int) -> tuple[float, float]:
    with open_store(root, f"threads{threads}") as store:
        barrier = threading.Barrier(threads + 1)

        def work(worker: int) -> None:
            events = [
                [NewEvent(f"acct-{worker}", "Payment", payment(i))]
                for i in range(per_thread)
            ]
            barrier.wait()
            for one in events:
                store.append(one)

        pool = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
        for thread in pool:
            thread.start()
        barrier.wait()
        started = time.perf_counter()
        for thread in pool:
            thread.join()
        elapsed = time.perf_counter() - started
        commits = store.commits
        assert store.head_position() == threads * per_thread
    total = threads * per_thread
    return total / elapsed, total / commits


def store_tasks(root: Path, tasks: int, per_task: int) -> tuple[float, float]:
    with open_store(root, f"tasks{tasks}") as store:

        async def work(worker: int) -> None:
            for i in range(per_task):
                await store.append_async(
                    [NewEvent(f"acct-{worker}", "Payment", payment(i))]
                )

        async def run_all() -> float:
            started = time.perf_counter()
            await asyncio.gather(*(work(w) for w in range(tasks)))
            return time.perf_counter() - started

        elapsed = asyncio.run(run_all())
        commits = store.commits
    total = tasks * per_task
    return total / elapsed, total / commits


def store_batched(
    root: Path, name: str, count: int, streams: int, batch: int = 1000
) -> float:
    with open_store(root, name) as store:
        batches = [
            [
                NewEvent(f"acct-{i % streams:04}", "Payment", payment(i))
                for i in range(first, first + batch)
            ]
            for first in range(0, count, batch)
        ]
        started = time.perf_counter()
        for events in batches:
            store.append(events)
        elapsed = time.perf_counter() - started
    return count / elapsed


def store_replay(root: Path, name: str) -> tuple[float, int]:
    with LmdbEventStore.open(root / name, registry=REGISTRY) as store:
        started = time.perf_counter()
        count = sum(1 for _ in store.read_all())
        elapsed = time.perf_counter() - started
    return count / elapsed, count


def one_round(root: Path, quick: bool) -> dict[str, float]:
    """Every measure once, baselines beside the rows they are compared with."""
    single = 300 if quick else 1000
    batched = 20_000 if quick else 100_000
    per_thread = {1: single, 16: 60 if quick else 200, 256: 12 if quick else 40}
    root.mkdir()
    rates: dict[str, float] = {}
    rates["raw1"] = raw_one_commit_per_event(root, single)
    for n, count in per_thread.items():
        rates[f"t{n}"], rates[f"t{n}/commit"] = store_threads(root, n, count)
    rates["a256"], rates["a256/commit"] = store_tasks(root, 256, per_thread[256])
    rates["rawb"] = raw_batched(root, batched)
    rates["b10"] = store_batched(root, "b10", batched, 10)
    rates["b1000"] = store_batched(root, "b1000", batched, 1000)
    rates["scan"] = raw_scan_decode(root, batched)
    rates["replay"], rates["replayed"] = store_replay(root, "b10")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument("--rounds", type=int, default=0, help="rounds (median)")
    options = parser.parse_args()
    rounds = options.rounds or (3 if options.quick else 5)

    with tempfile.TemporaryDirectory(prefix="bench-eventstore-") as tmp:
        runs = [one_round(Path(tmp) / str(r), options.quick) for r in range(rounds)]

    def median(name: str, base: str | None = None) -> float:
        # The machine is shared: each round's ratio is taken within the
        # round, and the median of the rounds is reported.
        values = [run[name] / (run[base] if base else 1.0) for run in runs]
        return statistics.median(values)

    rows = [
        ("raw py-lmdb, one durable commit per event", "raw1", None, ""),
        ("raw py-lmdb, 1,000 per durable commit (putmulti)", "rawb", None, ""),
        ("raw cursor scan + typed msgspec decode", "scan", None, ""),
        ("append, 1 thread, 1 event each", "t1", "raw1", "t1/commit"),
        ("append, 16 threads, 1 event each", "t16", "raw1", "t16/commit"),
        ("append, 256 threads, 1 event each", "t256", "raw1", "t256/commit"),
        (
            "append_async, 256 tasks, one loop, 1 event each",
            "a256",
            "raw1",
            "a256/commit",
        ),
        ("append, 1,000 events per append, 10 streams", "b10", "rawb", ""),
        ("append, 1,000 events per append, 1,000 streams", "b1000", "rawb", ""),
        ("read_all replay with decode", "replay", "scan", ""),
    ]
    print(f"median of {rounds} rounds; ratios against the baseline of the same round")
    print(f"{'measure':<52} {'events/s':>10} {'ratio':>7}  events/commit")
    for label, name, base, per_commit in rows:
        ratio = f"{median(name, base):>6.2f}x" if base else ""
        commits = f"  {median(per_commit):.0f}" if per_commit else ""
        print(f"{label:<52} {median(name):>10,.0f} {ratio:>7}{commits}")
    aims: list[tuple[str, float, float]] = [
        ("256 appenders >= 20x one commit per event", median("t256", "raw1"), 20),
        (
            "1,000 per append (10 streams) >= 0.5x raw batched",
            median("b10", "rawb"),
            0.5,
        ),
        ("replay >= 0.5x raw scan + decode", median("replay", "scan"), 0.5),
    ]
    for name, ratio, aim in aims:
        print(f"aim {name}: {'met' if ratio >= aim else 'NOT met'} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
