"""What clocks, vectors and sibling sets cost on the hot paths.

Every ratio compares with a baseline measured in the same run:
- decoding event metadata whose vector checks its counters, against the same
  shape without the check (the cost of refusing bad vectors on read);
- ``HybridLogicalClock.now()`` against reading the wall clock alone;
- vector merge and compare, a sibling-set write and sync, and resolve, against
  a plain dict copy of the same size.
"""

from __future__ import annotations

import time
import timeit
from collections.abc import Callable
from typing import Any

import msgspec

from actors import Version, resolve
from eventstore import (
    DottedVersionVector,
    EventMetadata,
    HLCTimestamp,
    HybridLogicalClock,
    SiblingSet,
    VersionVector,
    system_time_ms,
)


class PlainVector(msgspec.Struct, frozen=True, array_like=True):
    counters: dict[str, int] = msgspec.field(default_factory=dict)


class PlainMetadata(msgspec.Struct, frozen=True, omit_defaults=True):
    hlc: HLCTimestamp | None = None
    origin: str | None = None
    origin_seq: int | None = None
    vector: PlainVector | None = None
    causation_id: str | None = None
    correlation_id: str | None = None
    traceparent: str | None = None
    extra: dict[str, Any] = msgspec.field(default_factory=dict)


def rate(fn: Callable[[], object], number: int = 50_000) -> float:
    best = min(timeit.repeat(fn, number=number, repeat=5))
    return number / best


def row(name: str, ops: float, baseline: float) -> None:
    print(f"{name:<44} {ops / 1e3:>10.0f}k/s  {ops / baseline:>6.2f}x baseline")


def main() -> None:
    counters = {"east": 120, "west": 77, "north": 3}
    meta = EventMetadata(
        hlc=HLCTimestamp(1_700_000_000_000, 2),
        origin="east",
        origin_seq=991,
        vector=VersionVector(counters),
        correlation_id="c0ffee",
    )
    raw = msgspec.msgpack.encode(meta)
    typed = msgspec.msgpack.Decoder(EventMetadata)
    plain = msgspec.msgpack.Decoder(PlainMetadata)
    print("decode metadata with a 3-replica vector (baseline: no counter check)")
    base = rate(lambda: plain.decode(raw))
    row("  PlainMetadata (baseline)", base, base)
    row("  EventMetadata", rate(lambda: typed.decode(raw)), base)

    print("clock (baseline: system_time_ms)")
    base = rate(system_time_ms)
    clock = HybridLogicalClock("east")
    remote = HLCTimestamp(system_time_ms(), 5)
    row("  system_time_ms (baseline)", base, base)
    row("  HybridLogicalClock.now", rate(clock.now), base)
    row("  HybridLogicalClock.update", rate(lambda: clock.update(remote)), base)

    print("vectors and siblings (baseline: copy a 3-entry dict)")
    a = VersionVector(counters)
    b = VersionVector({"east": 119, "west": 80, "south": 1})
    base = rate(lambda: dict(counters))
    row("  dict copy (baseline)", base, base)
    row("  VersionVector.merge", rate(lambda: a.merge(b)), base)
    row("  VersionVector.compare", rate(lambda: a.compare(b)), base)
    state = SiblingSet[int]().write("east", 1).write("west", 2)
    other = state.write("north", 3, context=state.context)
    row(
        "  SiblingSet.write (2 siblings, full context)",
        rate(lambda: state.write("east", 4, context=state.context)),
        base,
    )
    row("  SiblingSet.sync", rate(lambda: state.sync(other)), base)
    stamp = HLCTimestamp(time.time_ns() // 1_000_000)
    versions = [
        Version(data={"n": i, "k": "v"}, clock=clock_, hlc=stamp)
        for i, clock_ in enumerate(state.clocks)
    ]
    row("  resolve 2 siblings by lww", rate(lambda: resolve(versions, "lww")), base)
    row("  resolve 2 siblings by merge", rate(lambda: resolve(versions, "merge")), base)
    assert all(isinstance(c, DottedVersionVector) for c in state.clocks)


if __name__ == "__main__":
    main()
