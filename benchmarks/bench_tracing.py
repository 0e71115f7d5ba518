"""The cost of tracing the ``concurrent-users`` scenario through a DataManager.

1,000 asyncio clients each read and update their own user record for R
rounds, through a real ``DataManager`` on a durable LMDB store (the
scenario of ``bench_datamanager.py``). Every command goes through the
traced path: a command span, the context injected into the actor's
message, a ``process`` span in the actor, the ``traceparent`` in the
event's metadata, an append span ending at the commit. Modes run in turns
in one process, on one DataManager, so their ratios compare like with like:

- off: inside ``suppress_tracing()`` (a context-variable read per helper);
- api: the OpenTelemetry API only, no SDK configured (the no-op path every
  application without an SDK takes);
- sdk: the SDK with a batch span processor and an in-memory exporter;
- sdk10: the same, sampling 10% of traces (parent-based).

Usage: python benchmarks/bench_tracing.py [--clients N] [--rounds-per-run N]
[--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from actors import DataManager
from actors._tracing import suppress_tracing, use_tracer_provider


async def run(dm: DataManager, ids: list[str], rounds: int) -> tuple[float, float]:
    """Operations per second (wall clock) and CPU microseconds per operation."""

    async def client(record_id: str) -> None:
        for n in range(rounds):
            await dm.read("users", record_id)
            await dm.update("users", record_id, {"visits": n})

    started = time.perf_counter()
    cpu_started = time.process_time()
    await asyncio.gather(*(client(record_id) for record_id in ids))
    cpu_s = time.process_time() - cpu_started
    wall_s = time.perf_counter() - started
    total = len(ids) * rounds * 2
    return total / wall_s, cpu_s / total * 1e6


@contextlib.contextmanager
def mode_context(mode: str, provider: TracerProvider | None) -> Iterator[None]:
    use_tracer_provider(provider)
    try:
        if mode == "off":
            with suppress_tracing():
                yield
        else:
            yield
    finally:
        use_tracer_provider(None)


async def measure(
    path: Path, clients: int, rounds: int, runs: int
) -> tuple[dict[str, list[float]], dict[str, list[float]], int]:
    exporter = InMemorySpanExporter()
    sdk = TracerProvider()
    sdk.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=200_000))
    sampled = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.1)))
    sampled.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    modes: dict[str, TracerProvider | None] = {
        "off": None,
        "api": None,
        "sdk": sdk,
        "sdk10": sampled,
    }
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    cpu: dict[str, list[float]] = {mode: [] for mode in modes}
    async with DataManager.open(path, durability="durable") as dm:
        dm.add_data_source("users")
        created = await dm.batch_create(
            "users", [{"name": f"user{n}", "visits": 0} for n in range(clients)]
        )
        ids = [record.id for record in created]
        await run(dm, ids, 1)  # warm up
        order = list(modes)
        for number in range(runs):
            # Rotate the order so that no mode always follows another; flush
            # and collect outside the timed region.
            shift = number % len(order)
            for mode in order[shift:] + order[:shift]:
                provider = modes[mode]
                with mode_context(mode, provider):
                    rate, cpu_us = await run(dm, ids, rounds)
                if provider is not None:
                    provider.force_flush()
                gc.collect()
                rates[mode].append(rate)
                cpu[mode].append(cpu_us)
    spans = len(exporter.get_finished_spans())
    sdk.shutdown()
    sampled.shutdown()
    return rates, cpu, spans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rounds-per-run", type=int, default=3)
    parser.add_argument("--runs", type=int, default=8)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        rates, cpu, spans = asyncio.run(
            measure(
                Path(tmp) / "store",
                options.clients,
                options.rounds_per_run,
                options.runs,
            )
        )

    per_run = options.clients * options.rounds_per_run * 2
    print(
        f"tracing cost, concurrent-users through a DataManager: {options.clients} "
        f"clients, read+update x {options.rounds_per_run} ({per_run:,} operations "
        f"per run), durable LMDB, {options.runs} runs per mode, medians"
    )
    off_rate = statistics.median(rates["off"])
    off_cpu = statistics.median(cpu["off"])
    for mode in rates:
        rate = statistics.median(rates[mode])
        cpu_us = statistics.median(cpu[mode])
        print(
            f"  {mode:5} {rate:9,.0f} ops/s (x{off_rate / rate:4.2f} the time of off)"
            f"   {cpu_us:6.1f} CPU us/op (x{cpu_us / off_cpu:4.2f})"
        )
    print(f"  spans exported by the sdk mode: {spans:,}")


if __name__ == "__main__":
    main()
