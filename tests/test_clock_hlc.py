import threading

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventstore import (
    ClockDriftError,
    EventStoreError,
    HLCTimestamp,
    HybridLogicalClock,
    system_time_ms,
)

START_MS = 1_700_000_000_000
MAX_DRIFT_MS = 5_000


class WallClock:
    """A wall clock that tests move by hand, backwards as well as forwards."""

    def __init__(self, now_ms: int = START_MS) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def make_clock(wall: WallClock, **kwargs: object) -> HybridLogicalClock:
    return HybridLogicalClock(
        "r1",
        wall_clock_ms=wall,
        max_drift_ms=MAX_DRIFT_MS,
        **kwargs,  # type: ignore[arg-type]
    )


operations = st.lists(
    st.one_of(
        st.tuples(st.just("now"), st.just(0), st.just(0)),
        st.tuples(
            st.just("update"),
            st.integers(-20_000, MAX_DRIFT_MS),
            st.integers(0, 5),
        ),
        st.tuples(st.just("wall"), st.integers(-30_000, 30_000), st.just(0)),
    ),
    max_size=60,
)


@given(operations)
def test_the_clock_never_goes_backwards_whatever_the_wall_clock_does(
    ops: list[tuple[str, int, int]],
) -> None:
    wall = WallClock()
    clock = make_clock(wall)
    previous = clock.current

    for kind, offset_ms, logical in ops:
        if kind == "wall":
            wall.now_ms = START_MS + offset_ms
            continue
        if kind == "now":
            stamp = clock.now()
        else:
            remote = HLCTimestamp(wall.now_ms + offset_ms, logical)
            stamp = clock.update(remote)
            assert stamp > remote
        assert stamp > previous
        assert stamp.physical_ms >= wall.now_ms
        assert clock.current == stamp
        previous = stamp


def test_now_follows_the_wall_clock_while_it_moves_forwards() -> None:
    wall = WallClock()
    clock = make_clock(wall)

    first = clock.now()
    wall.now_ms += 7
    second = clock.now()

    assert first == HLCTimestamp(START_MS, 0)
    assert second == HLCTimestamp(START_MS + 7, 0)


def test_now_counts_logically_while_the_wall_clock_stands_or_goes_back() -> None:
    wall = WallClock()
    clock = make_clock(wall)

    clock.now()
    same = clock.now()
    wall.now_ms -= 1_000
    back = clock.now()

    assert same == HLCTimestamp(START_MS, 1)
    assert back == HLCTimestamp(START_MS, 2)


def test_update_with_a_remote_ahead_takes_the_remote_time() -> None:
    wall = WallClock()
    clock = make_clock(wall)

    stamp = clock.update(HLCTimestamp(START_MS + 100, 4))

    assert stamp == HLCTimestamp(START_MS + 100, 5)
    assert clock.now() == HLCTimestamp(START_MS + 100, 6)


def test_update_with_equal_physical_times_counts_past_both() -> None:
    wall = WallClock()
    clock = make_clock(wall)
    clock.now()
    clock.now()

    stamp = clock.update(HLCTimestamp(START_MS, 9))

    assert stamp == HLCTimestamp(START_MS, 10)


def test_update_with_a_remote_behind_keeps_counting_locally() -> None:
    wall = WallClock()
    clock = make_clock(wall)
    clock.now()

    stamp = clock.update(HLCTimestamp(START_MS - 50, 99))

    assert stamp == HLCTimestamp(START_MS, 1)


def test_update_when_the_wall_clock_is_ahead_of_both_takes_the_wall_time() -> None:
    wall = WallClock()
    clock = make_clock(wall)
    clock.now()
    wall.now_ms += 10

    stamp = clock.update(HLCTimestamp(START_MS + 3, 8))

    assert stamp == HLCTimestamp(START_MS + 10, 0)


def test_update_refuses_a_remote_too_far_ahead_and_keeps_its_time() -> None:
    wall = WallClock()
    clock = make_clock(wall)
    before = clock.now()
    remote = HLCTimestamp(START_MS + MAX_DRIFT_MS + 1, 3)

    with pytest.raises(ClockDriftError) as caught:
        clock.update(remote)

    message = str(caught.value)
    assert f"{START_MS + MAX_DRIFT_MS + 1} ms (logical 3)" in message
    assert f"allowed drift of {MAX_DRIFT_MS} ms" in message
    assert "'r1'" in message
    assert isinstance(caught.value, EventStoreError)
    assert clock.current == before


def test_update_accepts_a_remote_exactly_at_the_allowed_drift() -> None:
    wall = WallClock()
    clock = make_clock(wall)

    stamp = clock.update(HLCTimestamp(START_MS + MAX_DRIFT_MS, 0))

    assert stamp == HLCTimestamp(START_MS + MAX_DRIFT_MS, 1)


@given(st.integers(1, 10**6))
def test_drift_refusal_is_measured_from_the_wall_clock(excess_ms: int) -> None:
    wall = WallClock()
    clock = make_clock(wall)

    with pytest.raises(ClockDriftError, match=f"{MAX_DRIFT_MS + excess_ms} ms ahead"):
        clock.update(HLCTimestamp(START_MS + MAX_DRIFT_MS + excess_ms))


def test_a_restarted_clock_continues_after_its_initial_timestamp() -> None:
    wall = WallClock(START_MS - 60_000)
    clock = make_clock(wall, initial=HLCTimestamp(START_MS, 4))

    assert clock.current == HLCTimestamp(START_MS, 4)
    assert clock.now() == HLCTimestamp(START_MS, 5)


def test_a_new_clock_starts_at_zero_and_repr_names_its_replica() -> None:
    clock = HybridLogicalClock("east")

    assert clock.current == HLCTimestamp(0, 0)
    assert clock.replica_id == "east"
    assert "'east'" in repr(clock)


def test_the_default_wall_clock_is_the_system_clock_in_milliseconds() -> None:
    before = system_time_ms()

    stamp = HybridLogicalClock("r1").now()

    assert before <= stamp.physical_ms <= system_time_ms()


def test_an_empty_replica_id_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty replica_id"):
        HybridLogicalClock("")


def test_a_negative_max_drift_is_refused() -> None:
    with pytest.raises(ValueError, match="max_drift_ms must be >= 0, got -1"):
        HybridLogicalClock("r1", max_drift_ms=-1)


def test_timestamps_from_many_threads_are_all_distinct_and_ordered() -> None:
    clock = HybridLogicalClock("r1", wall_clock_ms=WallClock())
    results: list[list[HLCTimestamp]] = [[] for _ in range(4)]

    def work(out: list[HLCTimestamp]) -> None:
        out.extend(clock.now() for _ in range(2_000))

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    every = [stamp for out in results for stamp in out]
    assert len(set(every)) == 8_000
    for out in results:
        assert out == sorted(out)
    assert clock.current == max(every)


def test_timestamps_order_by_physical_time_then_logical_counter() -> None:
    stamps = [HLCTimestamp(2, 0), HLCTimestamp(1, 5), HLCTimestamp(1, 0)]

    assert sorted(stamps) == [
        HLCTimestamp(1, 0),
        HLCTimestamp(1, 5),
        HLCTimestamp(2, 0),
    ]
    assert msgspec.msgpack.encode(HLCTimestamp(1, 5)) == msgspec.msgpack.encode([1, 5])
