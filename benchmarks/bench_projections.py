"""Projections: rebuild rate against a raw scan, and catch-up lag under load.

Run: ``.venv/bin/python benchmarks/bench_projections.py [--quick]``.
Builds a log of record events (creates, merge-patch updates, deletes) in a
temporary LMDB store, then measures in the same run:

- a raw cursor scan of the log with every record decoded (the baseline);
  rates are events per CPU second of the process (all threads), so that
  other load on a shared machine does not skew the ratio;
- ``rebuild("records")`` over the whole log, as events/s and as a ratio of
  the baseline (the aim is at least 0.40);
- the lag of an asynchronous ``records`` projection actor while a thread
  appends at a steady rate.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

from eventstore import (
    LmdbEventStore,
    NewEvent,
    RecordCreated,
    RecordDeleted,
    RecordUpdated,
    record_stream,
)
from eventstore._codec import decode_record
from eventstore._tables import EVENTS
from projections import (
    ProjectionActor,
    RecordsProjection,
    declare_index,
    rebuild,
    status,
)


def build_log(store: LmdbEventStore, count: int, *, seed: int = 7) -> None:
    rng = random.Random(seed)
    records = max(1, count // 5)
    alive: list[bool] = [False] * records
    batch: list[NewEvent] = []
    for n in range(count):
        index = n % records if n < records else rng.randrange(records)
        record_id = f"r{index:07}"
        stream = record_stream("things", record_id)
        if not alive[index]:
            data = {"n": n, "group": n % 50, "name": f"thing {n}", "tags": ["a"]}
            event = NewEvent(
                stream, "RecordCreated", RecordCreated("things", record_id, data)
            )
            alive[index] = True
        elif rng.random() < 0.05:
            event = NewEvent(
                stream, "RecordDeleted", RecordDeleted("things", record_id)
            )
            alive[index] = False
        else:
            changes = {"n": n, "group": n % 50}
            event = NewEvent(
                stream, "RecordUpdated", RecordUpdated("things", record_id, changes)
            )
        batch.append(event)
        if len(batch) == 5000:
            store.append(batch)
            batch = []
    if batch:
        store.append(batch)


def raw_scan(store: LmdbEventStore) -> float:
    """Events per CPU second of a cursor scan decoding every record."""
    started = time.process_time()
    count = 0
    registry = store.registry
    with store._reading() as tables:  # noqa: SLF001 - the baseline reads raw
        for key, record in tables.scan(EVENTS):
            decode_record(record, int.from_bytes(key, "big"), registry)
            count += 1
    return count / (time.process_time() - started)


def rebuild_rate(store: LmdbEventStore) -> float:
    """Events per CPU second (all threads) of ``rebuild("records")``."""
    started = time.process_time()
    done = rebuild(store, RecordsProjection())
    return done / (time.process_time() - started)


def catch_up_lag(
    store: LmdbEventStore, *, rate_per_s: int, seconds: float
) -> dict[str, float]:
    """Lag of a records actor while a thread appends ``rate_per_s`` events/s."""
    stop = threading.Event()
    batch_size = 100
    interval_s = batch_size / rate_per_s
    appended = [0]

    def load() -> None:
        n = 10_000_000
        next_at = time.perf_counter()
        while not stop.is_set():
            events = []
            for _ in range(batch_size):
                record_id = f"load{n}"
                data = RecordCreated("load", record_id, {"n": n})
                events.append(
                    NewEvent(record_stream("load", record_id), "RecordCreated", data)
                )
                n += 1
            store.append(events)
            appended[0] += len(events)
            next_at += interval_s
            time.sleep(max(0.0, next_at - time.perf_counter()))

    ref = ProjectionActor.start(
        store, RecordsProjection(), poll_s=0.05, batch_size=2000
    )
    lags: list[int] = []
    lag_s: list[float] = []
    thread = threading.Thread(target=load)
    thread.start()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.1)
            found = status(store, "records")
            lags.append(found.lag_events)
            lag_s.append(found.lag_s)
    finally:
        stop.set()
        thread.join()
        ref.stop()
    elapsed = seconds
    return {
        "append_rate": appended[0] / elapsed,
        "lag_events_median": statistics.median(lags),
        "lag_events_max": max(lags),
        "lag_s_median": statistics.median(lag_s),
        "lag_s_max": max(lag_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100k events, short load")
    args = parser.parse_args()
    count = 100_000 if args.quick else 1_000_000
    with tempfile.TemporaryDirectory() as where:
        path = Path(where) / "store"
        with LmdbEventStore.open(
            path, durability="fast", map_size_bytes=2 << 30
        ) as store:
            started = time.perf_counter()
            build_log(store, count)
            print(
                f"log: {count:,} events built in {time.perf_counter() - started:.1f} s"
            )
            # The machine is shared: alternate the baseline and the rebuild
            # and compare each rebuild with the scan just before it.
            rounds = []
            for _ in range(3):
                baseline = raw_scan(store)
                rounds.append((baseline, rebuild_rate(store)))
            for baseline, rate in rounds:
                print(
                    f"raw cursor scan + decode: {baseline:,.0f} events/s; "
                    f"rebuild records: {rate:,.0f} events/s = {rate / baseline:.2f} x"
                )
            ratio = statistics.median(rate / baseline for baseline, rate in rounds)
            print(f"rebuild / raw scan, median of 3: {ratio:.2f} (aim >= 0.40)")
            declare_index(store, "things", "group")
            baseline = raw_scan(store)
            indexed = rebuild_rate(store)
            print(
                f"rebuild records with 1 index: {indexed:,.0f} events/s "
                f"= {indexed / baseline:.2f} x the raw scan ({baseline:,.0f}/s)"
            )
            seconds = 3.0 if args.quick else 10.0
            for rate in (5_000, 20_000):
                lag = catch_up_lag(store, rate_per_s=rate, seconds=seconds)
                median = f"{lag['lag_events_median']:,.0f} events"
                most = f"{lag['lag_events_max']:,.0f} events"
                print(
                    f"catch-up under {lag['append_rate']:,.0f} appends/s: lag median "
                    f"{median} / {lag['lag_s_median']:.3f} s, "
                    f"max {most} / {lag['lag_s_max']:.3f} s"
                )


if __name__ == "__main__":
    main()
