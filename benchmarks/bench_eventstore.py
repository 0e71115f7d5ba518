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
import tempfile
import threading
import time
from collections.abc import Callable
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


def store_batched(root: Path, count: int, batch: int = 1000) -> float:
    with open_store(root, "batched") as store:
        batches = [
            [
                NewEvent(f"acct-{i % 1000:04}", "Payment", payment(i))
                for i in range(first, first + batch)
            ]
            for first in range(0, count, batch)
        ]
        started = time.perf_counter()
        for events in batches:
            store.append(events)
        elapsed = time.perf_counter() - started
    return count / elapsed


def store_replay(root: Path) -> tuple[float, int]:
    with LmdbEventStore.open(root / "batched", registry=REGISTRY) as store:
        started = time.perf_counter()
        count = sum(1 for _ in store.read_all())
        elapsed = time.perf_counter() - started
    return count / elapsed, count


def best(runs: int, measure: Callable[[], float]) -> float:
    return max(measure() for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    quick = parser.parse_args().quick
    single = 300 if quick else 1000
    batched = 20_000 if quick else 200_000
    per_thread = {1: single, 16: 100 if quick else 400, 256: 20 if quick else 60}

    with tempfile.TemporaryDirectory(prefix="bench-eventstore-") as tmp:
        root = Path(tmp)
        raw1 = raw_one_commit_per_event(root, single)
        raw_b = raw_batched(root, batched)
        raw_scan = raw_scan_decode(root, batched)
        threads = {n: store_threads(root, n, count) for n, count in per_thread.items()}
        batched_rate = store_batched(root, batched)
        replay, replayed = store_replay(root)

    print(f"{'measure':<52} {'events/s':>12} {'ratio':>8}")
    print(f"{'raw py-lmdb, one durable commit per event':<52} {raw1:>12,.0f}")
    print(f"{'raw py-lmdb, 1,000 per durable commit (putmulti)':<52} {raw_b:>12,.0f}")
    print(f"{'raw cursor scan + typed msgspec decode':<52} {raw_scan:>12,.0f}")
    for n, (rate, per_commit) in threads.items():
        label = f"append, {n} thread{'s' if n > 1 else ''}, 1 event each"
        extra = f"  (x raw one-commit; {per_commit:.1f} events/commit)"
        print(f"{label:<52} {rate:>12,.0f} {rate / raw1:>7.1f}x{extra}")
    print(
        f"{'append, 1,000 events per append':<52} {batched_rate:>12,.0f} "
        f"{batched_rate / raw_b:>7.2f}x  (x raw batched)"
    )
    print(
        f"{f'read_all replay with decode ({replayed:,} events)':<52} "
        f"{replay:>12,.0f} {replay / raw_scan:>7.2f}x  (x raw scan + decode)"
    )
    aims = [
        ("256 appenders >= 20x one commit per event", threads[256][0] / raw1 >= 20),
        ("1,000 per append >= 0.5x raw batched", batched_rate / raw_b >= 0.5),
        ("replay >= 0.5x raw scan + decode", replay / raw_scan >= 0.5),
    ]
    for name, met in aims:
        print(f"aim {name}: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
