"""The cost of tracing a command-like workload.

Each command encodes a small struct with msgspec and appends one event to a
durable LmdbEventStore with ``append_async``; 1,000 asyncio clients run
commands concurrently. Three modes run in turns in one process, so their
ratios compare like with like:

- off: no tracing code at all;
- api: ``command_span`` and ``current_traceparent`` with the OpenTelemetry
  API only (no SDK configured: the no-op path);
- sdk: the same with the SDK, a batch span processor and an in-memory
  exporter.

Usage: python benchmarks/bench_tracing.py [--clients N] [--commands N]
[--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from actors._tracing import command_span, current_traceparent, use_tracer_provider
from eventstore import EventMetadata, LmdbEventStore, NewEvent


class Order(msgspec.Struct, frozen=True):
    id: str
    customer: str
    items: list[str]
    total_cents: int


ENCODER = msgspec.msgpack.Encoder()
Command = Callable[[LmdbEventStore, int, int], Awaitable[None]]


async def plain(store: LmdbEventStore, client: int, n: int) -> None:
    payload = ENCODER.encode(Order(f"{client}-{n}", f"c{client}", ["a", "b"], 1250))
    event = NewEvent(f"orders/{client}", "OrderPlaced", {"raw": payload})
    await store.append_async([event])


async def traced(store: LmdbEventStore, client: int, n: int) -> None:
    with command_span("create", "orders", record_id=f"{client}-{n}"):
        payload = ENCODER.encode(Order(f"{client}-{n}", f"c{client}", ["a", "b"], 1250))
        metadata = EventMetadata(traceparent=current_traceparent())
        event = NewEvent(f"orders/{client}", "OrderPlaced", {"raw": payload}, metadata)
        await store.append_async([event])


async def run(
    store: LmdbEventStore, command: Command, clients: int, commands: int
) -> tuple[float, float]:
    """Commands per second (wall clock) and CPU microseconds per command."""

    async def client(number: int) -> None:
        for n in range(commands):
            await command(store, number, n)

    started = time.perf_counter()
    cpu_started = time.process_time()
    await asyncio.gather(*(client(number) for number in range(clients)))
    cpu_s = time.process_time() - cpu_started
    wall_s = time.perf_counter() - started
    total = clients * commands
    return total / wall_s, cpu_s / total * 1e6


def span_cost_us(provider: TracerProvider | None, count: int = 20_000) -> float:
    """CPU microseconds of one command span plus its traceparent."""
    use_tracer_provider(provider)
    started = time.process_time()
    for _ in range(count):
        with command_span("create", "orders", record_id="x"):
            current_traceparent()
    use_tracer_provider(None)
    return (time.process_time() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--commands", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=12)
    options = parser.parse_args()

    exporter = InMemorySpanExporter()
    sdk = TracerProvider()
    sdk.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=100_000))
    sampled = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.1)))
    sampled.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    modes: dict[str, tuple[Command, TracerProvider | None]] = {
        "off": (plain, None),
        "api": (traced, None),
        "sdk": (traced, sdk),
        "sdk10": (traced, sampled),
    }
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    cpu: dict[str, list[float]] = {mode: [] for mode in modes}
    with (
        tempfile.TemporaryDirectory() as tmp,
        LmdbEventStore.open(Path(tmp) / "store", durability="durable") as store,
    ):
        asyncio.run(run(store, plain, options.clients, 1))  # warm up
        order = list(modes)
        for round_number in range(options.rounds):
            # Rotate the order so that no mode always follows another, and
            # flush and collect outside the timed region so that one mode's
            # exporting and garbage are not billed to the next.
            shift = round_number % len(order)
            for mode in order[shift:] + order[:shift]:
                command, provider = modes[mode]
                use_tracer_provider(provider)
                rate, cpu_us = asyncio.run(
                    run(store, command, options.clients, options.commands)
                )
                use_tracer_provider(None)
                if provider is not None:
                    provider.force_flush()
                gc.collect()
                rates[mode].append(rate)
                cpu[mode].append(cpu_us)
    spans = len(exporter.get_finished_spans())
    alone = {
        "api": span_cost_us(None),
        "sdk": span_cost_us(sdk),
        "sdk10": span_cost_us(sampled),
    }
    sdk.shutdown()
    sampled.shutdown()

    per_round = options.clients * options.commands
    print(
        f"tracing cost: {options.clients} clients x {options.commands} commands "
        f"({per_round} per round), durable LMDB, {options.rounds} rounds, medians"
    )
    off_rate = statistics.median(rates["off"])
    off_cpu = statistics.median(cpu["off"])
    for mode in modes:
        rate = statistics.median(rates[mode])
        cpu_us = statistics.median(cpu[mode])
        print(
            f"  {mode:5} {rate:9,.0f} commands/s (overhead {off_rate / rate - 1:+6.1%})"
            f"   {cpu_us:6.1f} CPU us/command (overhead {cpu_us / off_cpu - 1:+6.1%})"
        )
    for mode, cost in alone.items():
        print(
            f"  {mode} span + traceparent alone: {cost:5.2f} CPU us, "
            f"{cost / off_cpu:5.1%} of an untraced command"
        )
    print(f"  spans exported by the sdk mode: {spans:,}")


if __name__ == "__main__":
    main()
