"""The store contract, run against every backend."""

import asyncio
import concurrent.futures
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from eventstore import (
    ANY,
    NO_STREAM,
    ConcurrencyError,
    EventMetadata,
    EventRegistry,
    HLCTimestamp,
    LmdbEventStore,
    MemoryEventStore,
    NewEvent,
    StoreClosedError,
    StoredEvent,
    UnknownSchemaVersionError,
    ViewTxn,
)
from eventstore._base import BaseStore


class Deposited(msgspec.Struct, frozen=True):
    account: str
    amount: int


class Renamed(msgspec.Struct, frozen=True):
    name: str
    reason: str = ""


@pytest.fixture
def registry() -> EventRegistry:
    registry = EventRegistry()
    registry.register(Deposited, version=1)
    return registry


@pytest.fixture(params=["memory", "lmdb"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, registry: EventRegistry
) -> Iterator[BaseStore]:
    opened: BaseStore
    if request.param == "memory":
        opened = MemoryEventStore(registry=registry)
    else:
        opened = LmdbEventStore.open(
            tmp_path / "store", durability="fast", registry=registry
        )
    yield opened
    opened.close()


def deposit(stream: str, amount: int = 1) -> NewEvent:
    return NewEvent(stream, "Deposited", Deposited(stream, amount))


def note(stream: str, text: str = "x") -> NewEvent:
    return NewEvent(stream, "Noted", {"text": text})


# -- appends and expected versions ------------------------------------------


def test_append_returns_gapless_positions_and_versions_from_one(
    store: BaseStore,
) -> None:
    first = store.append([deposit("a"), deposit("b"), deposit("a")])
    second = store.append([deposit("b")])

    assert [(e.stream, e.version, e.position) for e in first.events] == [
        ("a", 1, 1),
        ("b", 1, 2),
        ("a", 2, 3),
    ]
    assert [(e.stream, e.version, e.position) for e in second.events] == [("b", 2, 4)]
    assert (first.first_position, first.last_position) == (1, 3)
    assert store.head_position() == 4
    assert store.stream_version("a") == 2
    assert store.stream_version("missing") == 0


def test_an_empty_log_has_head_zero_and_an_empty_append_writes_nothing(
    store: BaseStore,
) -> None:
    result = store.append([])

    assert result.events == ()
    assert (result.first_position, result.last_position) == (0, 0)
    assert store.head_position() == 0
    assert list(store.read_all()) == []


def test_append_with_matching_expected_versions_succeeds(store: BaseStore) -> None:
    store.append([deposit("a")], expected_versions={"a": NO_STREAM})
    store.append([deposit("a")], expected_versions={"a": 1})
    store.append([deposit("a")], expected_versions={"a": ANY})
    store.append([deposit("b")], expected_versions={"b": 0})

    assert store.stream_version("a") == 3
    assert store.stream_version("b") == 1


@pytest.mark.parametrize(
    ("expected", "described"),
    [(5, "version 5"), (NO_STREAM, "no stream"), (0, "version 0")],
)
def test_append_with_stale_version_raises_and_writes_nothing(
    store: BaseStore, expected: Any, described: str
) -> None:
    store.append([deposit("a"), deposit("a")])

    with pytest.raises(ConcurrencyError) as caught:
        store.append(
            [deposit("b"), deposit("a")], expected_versions={"b": 0, "a": expected}
        )

    assert caught.value.stream == "a"
    assert caught.value.expected == expected
    assert caught.value.actual == 2
    assert "'a'" in str(caught.value)
    assert described in str(caught.value)
    assert store.head_position() == 2
    assert store.stream_version("b") == 0


def test_expected_version_of_a_stream_without_events_in_the_append_is_checked(
    store: BaseStore,
) -> None:
    store.append([deposit("guard")])

    with pytest.raises(ConcurrencyError):
        store.append([deposit("a")], expected_versions={"guard": 0})
    store.append([deposit("a")], expected_versions={"guard": 1})

    assert store.stream_version("a") == 1


def test_a_multi_stream_append_is_atomic(store: BaseStore) -> None:
    class Unencodable:
        pass

    with pytest.raises(TypeError):
        store.append([deposit("a"), note("b", text=Unencodable())])  # type: ignore[arg-type]

    assert store.head_position() == 0
    assert store.stream_version("a") == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"events": [NewEvent("", "T", {})]}, ValueError, "stream"),
        ({"events": [NewEvent("s", "", {})]}, ValueError, "type"),
        ({"events": [("s", "T", {})]}, TypeError, "NewEvent"),
        ({"expected_versions": {"s": -1}}, ValueError, ">= 0"),
        ({"expected_versions": {"s": True}}, TypeError, "int"),
        ({"expected_versions": {"s": "1"}}, TypeError, "int"),
        ({"expected_versions": {"": 1}}, ValueError, "stream"),
        ({"command_id": ""}, ValueError, "command_id"),
    ],
)
def test_bad_append_arguments_raise_naming_the_fault(
    store: BaseStore, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    kwargs = dict(kwargs)
    events = kwargs.pop("events", [deposit("s")])

    with pytest.raises(error, match=message):
        store.append(events, **kwargs)

    assert store.head_position() == 0


def test_data_of_a_registered_type_is_validated_and_converted(
    store: BaseStore,
) -> None:
    store.append([NewEvent("a", "Deposited", {"account": "a", "amount": 3})])

    with pytest.raises(msgspec.ValidationError):
        store.append([NewEvent("a", "Deposited", {"account": "a", "amount": "x"})])
    with pytest.raises(TypeError, match="Deposited"):
        store.append([NewEvent("a", "Deposited", Renamed("x"))])

    (event,) = store.read_all()
    assert event.data == Deposited("a", 3)
    assert store.head_position() == 1


# -- idempotency ---------------------------------------------------------------


def test_a_repeated_command_id_returns_the_first_result_and_writes_nothing(
    store: BaseStore,
) -> None:
    first = store.append([deposit("a"), deposit("b")], command_id="cmd-1")

    again = store.append([deposit("a")], command_id="cmd-1")

    assert not first.duplicate
    assert again.duplicate
    assert again.events == first.events
    assert again.command_id == "cmd-1"
    assert store.head_position() == 2
    assert store.command_result("cmd-1") == first
    assert store.command_result("cmd-2") is None


def test_a_duplicate_command_id_wins_over_a_stale_expected_version(
    store: BaseStore,
) -> None:
    first = store.append([deposit("a")], command_id="c", expected_versions={"a": 0})

    again = store.append([deposit("a")], command_id="c", expected_versions={"a": 0})

    assert again.duplicate
    assert again.events == first.events


def test_a_failed_append_does_not_consume_its_command_id(store: BaseStore) -> None:
    with pytest.raises(ConcurrencyError):
        store.append([deposit("a")], command_id="c", expected_versions={"a": 3})

    result = store.append([deposit("a")], command_id="c")

    assert not result.duplicate


def test_long_command_ids_are_kept_apart(store: BaseStore) -> None:
    base = "c" * 600

    one = store.append([deposit("a")], command_id=base + "1")
    two = store.append([deposit("a")], command_id=base + "2")

    assert not two.duplicate
    assert store.command_result(base + "1") == one


# -- reads -----------------------------------------------------------------


def test_read_stream_honours_its_version_range(store: BaseStore) -> None:
    for index in range(1, 8):
        store.append([deposit("a", index), deposit("ab", index)])

    def amounts(**kwargs: int) -> list[int]:
        return [e.data.amount for e in store.read_stream("a", **kwargs)]

    assert amounts() == [1, 2, 3, 4, 5, 6, 7]
    assert amounts(from_version=3) == [3, 4, 5, 6, 7]
    assert amounts(from_version=2, to_version=4) == [2, 3, 4]
    assert amounts(to_version=1) == [1]
    assert amounts(from_version=9) == []
    assert amounts(from_version=0, to_version=0) == []
    assert [e.version for e in store.read_stream("ab")] == list(range(1, 8))
    assert list(store.read_stream("nothing")) == []


def test_read_stream_crosses_read_chunks(store: BaseStore) -> None:
    store.append([deposit("a", i) for i in range(1, 1200)])
    store.append([deposit("a\x00b")])

    events = list(store.read_stream("a", from_version=5))

    assert [e.version for e in events] == list(range(5, 1200))


def test_read_all_honours_positions_and_types(store: BaseStore) -> None:
    store.append([deposit("a"), note("b"), deposit("c"), note("d")])

    def streams(**kwargs: Any) -> list[str]:
        return [e.stream for e in store.read_all(**kwargs)]

    assert streams() == ["a", "b", "c", "d"]
    assert streams(from_position=2) == ["b", "c", "d"]
    assert streams(from_position=2, to_position=3) == ["b", "c"]
    assert streams(types=["Noted"]) == ["b", "d"]
    assert streams(types={"Deposited"}, from_position=2) == ["c"]
    assert streams(from_position=5) == []


def test_read_all_crosses_read_chunks(store: BaseStore) -> None:
    store.append([note(f"s{i % 7}") for i in range(1300)])

    positions = [e.position for e in store.read_all(from_position=10)]

    assert positions == list(range(10, 1301))


def test_stored_events_carry_every_field(store: BaseStore) -> None:
    metadata = EventMetadata(
        hlc=HLCTimestamp(1000, 2),
        origin="r1",
        origin_seq=7,
        causation_id="cause",
        correlation_id="corr",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        extra={"user": "ann"},
    )
    store.append([NewEvent("a", "Noted", {"text": "hi"}, metadata)])

    (event,) = store.read_all()

    assert isinstance(event, StoredEvent)
    assert (event.position, event.stream, event.version) == (1, "a", 1)
    assert event.type == "Noted"
    assert event.data == {"text": "hi"}
    assert event.metadata == metadata
    assert event.recorded_at.tzinfo is not None


def test_streams_lists_by_prefix_including_long_names(store: BaseStore) -> None:
    long_a = "records/x/" + "a" * 600
    long_b = "records/x/" + "a" * 599 + "b"
    store.append([note("records/x/1"), note(long_a), note(long_b), note("other")])
    store.append([note(long_a)])

    found = {info.stream: info for info in store.streams(prefix="records/x/")}
    deep = [info.stream for info in store.streams(prefix="records/x/" + "a" * 599)]

    assert set(found) == {"records/x/1", long_a, long_b}
    assert found[long_a].version == 2
    assert (found[long_a].first_position, found[long_a].last_position) == (2, 5)
    assert sorted(deep) == sorted([long_a, long_b])
    assert [e.position for e in store.read_stream(long_a)] == [2, 5]
    assert store.stream_version(long_b) == 1
    assert len(list(store.streams())) == 4


def test_streams_pages_through_many_streams(store: BaseStore) -> None:
    store.append([note(f"s/{i:04}") for i in range(1100)])

    names = [info.stream for info in store.streams(prefix="s/")]

    assert names == [f"s/{i:04}" for i in range(1100)]


def test_stream_info_names_first_and_last_positions(store: BaseStore) -> None:
    store.append([note("a"), note("b"), note("a")])

    info = store.stream_info("a")

    assert info is not None
    assert (info.stream, info.version, info.first_position, info.last_position) == (
        "a",
        2,
        1,
        3,
    )
    assert store.stream_info("zzz") is None


def test_read_record_returns_raw_bytes(store: BaseStore) -> None:
    store.append([note("a")])

    assert isinstance(store.read_record(1), bytes)
    assert store.read_record(2) is None


# -- concurrency -----------------------------------------------------------------


def test_concurrent_appends_keep_positions_gapless(store: BaseStore) -> None:
    def work(worker: int) -> list[int]:
        return [
            store.append([note(f"w{worker}"), note("shared")]).first_position
            for _ in range(25)
        ]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        firsts = [p for ps in pool.map(work, range(8)) for p in ps]

    assert sorted(firsts) == list(range(1, 400, 2))
    assert [e.position for e in store.read_all()] == list(range(1, 401))
    assert [e.version for e in store.read_stream("shared")] == list(range(1, 201))


def test_concurrent_expected_versions_let_exactly_one_writer_win(
    store: BaseStore,
) -> None:
    barrier = threading.Barrier(6)

    def attempt(worker: int) -> bool:
        barrier.wait(timeout=10)
        try:
            store.append([note("race", str(worker))], expected_versions={"race": 0})
        except ConcurrencyError:
            return False
        return True

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        wins = list(pool.map(attempt, range(6)))

    assert wins.count(True) == 1
    assert store.stream_version("race") == 1


def test_append_future_and_append_async_complete_on_commit(
    store: BaseStore,
) -> None:
    future = store.append_future([note("a")])

    async def main() -> int:
        result = await asyncio.wait_for(store.append_async([note("a")]), 10)
        return result.last_position

    assert future.result(timeout=10).last_position == 1
    assert asyncio.run(main()) == 2


def test_a_closed_store_refuses_use(store: BaseStore) -> None:
    store.close()

    with pytest.raises(StoreClosedError):
        store.append([note("a")])
    with pytest.raises(StoreClosedError):
        store.head_position()
    store.close()


# -- subscriptions ---------------------------------------------------------------


def test_subscribe_yields_the_backlog_then_new_commits(store: BaseStore) -> None:
    store.append([note("a"), note("b")])
    subscription = store.subscribe(1, timeout_s=0.2)
    seen: list[int] = []

    def late_writer() -> None:
        store.append([note("c")])

    for event in subscription:
        seen.append(event.position)
        if event.position == 2:
            threading.Thread(target=late_writer).start()

    assert seen == [1, 2, 3]
    assert subscription.position == 3


def test_subscribe_by_default_starts_after_the_head(store: BaseStore) -> None:
    store.append([note("old")])
    subscription = store.subscribe(timeout_s=0)

    assert subscription.next_batch(0) == []
    store.append([note("new")])

    assert [e.stream for e in subscription.next_batch(1)] == ["new"]


def test_subscribe_filters_types(store: BaseStore) -> None:
    store.append([note("a"), deposit("b"), note("c")])

    subscription = store.subscribe(1, timeout_s=0, types=["Deposited"])

    assert [e.stream for e in subscription] == ["b"]
    assert subscription.position == 3


def test_a_blocking_subscription_ends_after_its_timeout(store: BaseStore) -> None:
    subscription = store.subscribe(1, timeout_s=0.05)

    assert list(subscription) == []


def test_a_closed_subscription_stops(store: BaseStore) -> None:
    subscription = store.subscribe(1)
    subscription.close()

    assert subscription.next_batch(5) == []


def test_subscription_rejects_positions_below_one(store: BaseStore) -> None:
    with pytest.raises(ValueError, match="from_position"):
        store.subscribe(0)


def test_async_subscription_wakes_on_commit(store: BaseStore) -> None:
    store.append([note("a")])

    async def main() -> list[int]:
        subscription = store.subscribe(1, timeout_s=0.5)
        seen: list[int] = []
        async for event in subscription:
            seen.append(event.position)
            if event.position == 1:
                await store.append_async([note("b")])
        assert await subscription.next_batch_async(0.01) == []
        return seen

    assert asyncio.run(asyncio.wait_for(main(), 10)) == [1, 2]


# -- views and inline projectors ------------------------------------------------


def test_write_views_commits_all_or_nothing(store: BaseStore) -> None:
    def good(txn: ViewTxn) -> int:
        txn.put("view:t", b"k1", b"v1")
        txn.put("view:t", b"k2", b"v2")
        return 42

    def bad(txn: ViewTxn) -> None:
        txn.put("view:t", b"k3", b"v3")
        txn.delete("view:t", b"k1")
        raise RuntimeError("boom")

    assert store.write_views(good) == 42
    with pytest.raises(RuntimeError, match="boom"):
        store.write_views(bad)

    with store.read_views() as views:
        assert list(views.scan("view:t")) == [(b"k1", b"v1"), (b"k2", b"v2")]
        assert list(views.scan("view:t", b"k2")) == [(b"k2", b"v2")]
        assert list(views.scan("view:t", b"", b"k2")) == [(b"k1", b"v1")]
        assert views.get("view:missing", b"k") is None
        assert list(views.scan("view:missing")) == []
    assert store.view_get("view:t", b"k2") == b"v2"


def test_view_delete_and_drop(store: BaseStore) -> None:
    def fill(txn: ViewTxn) -> tuple[bool, bool]:
        txn.put("view:t", b"a", b"1")
        txn.put("view:t", b"b", b"2")
        return txn.delete("view:t", b"a"), txn.delete("view:t", b"zz")

    assert store.write_views(fill) == (True, False)
    store.write_views(lambda txn: txn.drop("view:t"))

    with store.read_views() as views:
        assert list(views.scan("view:t")) == []


class Counter:
    def __init__(self, name: str, fail_on: str | None = None) -> None:
        self.name = name
        self.fail_on = fail_on

    def apply(self, txn: ViewTxn, events: Sequence[StoredEvent]) -> None:
        for event in events:
            if event.stream == self.fail_on:
                raise RuntimeError(f"cannot fold {event.stream}")
            key = event.stream.encode()
            count = int(txn.get("view:count", key) or b"0") + 1
            txn.put("view:count", key, str(count).encode())
            txn.put("view:last", b"position", str(event.position).encode())


def test_an_inline_projector_commits_with_the_append(store: BaseStore) -> None:
    projector = Counter("count")
    store.add_inline_projector(projector)

    store.append([deposit("a"), deposit("a"), note("b")])
    store.remove_inline_projector(projector)
    store.append([note("b")])

    assert store.view_get("view:count", b"a") == b"2"
    assert store.view_get("view:count", b"b") == b"1"
    assert store.view_get("view:last", b"position") == b"3"


def test_a_failing_inline_projector_fails_only_its_own_append(
    store: BaseStore,
) -> None:
    store.add_inline_projector(Counter("count", fail_on="poison"))
    futures = [store.append_future([note(name)]) for name in ("a", "poison", "b", "c")]

    outcomes = [f.exception(timeout=10) for f in futures]

    assert [o is None for o in outcomes] == [True, False, True, True]
    assert "cannot fold poison" in str(outcomes[1])
    assert [e.stream for e in store.read_all()] == ["a", "b", "c"]
    assert [e.position for e in store.read_all()] == [1, 2, 3]
    assert store.view_get("view:count", b"poison") is None
    assert store.view_get("view:count", b"c") == b"1"


def test_an_inline_projector_sees_typed_data(store: BaseStore) -> None:
    seen: list[Any] = []

    class Spy:
        name = "spy"

        def apply(self, _txn: ViewTxn, events: Sequence[StoredEvent]) -> None:
            seen.extend(e.data for e in events)

    store.add_inline_projector(Spy())
    store.append([NewEvent("a", "Deposited", {"account": "a", "amount": 1})])

    assert seen == [Deposited("a", 1)]


# -- event types and upcasters ------------------------------------------------


def test_unregistered_types_read_back_as_plain_data(store: BaseStore) -> None:
    store.append([NewEvent("a", "Custom", {"n": [1, 2], "s": "x"})])

    (event,) = store.read_all()

    assert event.data == {"n": [1, 2], "s": "x"}


def test_upcasters_lift_old_schema_versions(
    store: BaseStore, registry: EventRegistry
) -> None:
    store.append([NewEvent("a", "Renamed", {"title": "old"})])
    registry.register(Renamed, version=3)

    @registry.upcaster("Renamed", from_version=0)
    def to_1(data: dict[str, Any]) -> dict[str, Any]:
        return {"name": data["title"]}

    @registry.upcaster("Renamed", from_version=1)
    def to_2(data: dict[str, Any]) -> dict[str, Any]:
        return data

    @registry.upcaster("Renamed", from_version=2)
    def to_3(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "reason": "lifted"}

    (event,) = store.read_all()

    assert event.data == Renamed("old", "lifted")


def test_a_missing_upcaster_raises_a_clear_error(
    store: BaseStore, registry: EventRegistry
) -> None:
    store.append([NewEvent("a", "Renamed", {"name": "old"})])
    registry.register(Renamed, version=2)

    with pytest.raises(UnknownSchemaVersionError, match="position 1"):
        list(store.read_all())


def test_a_newer_schema_version_than_registered_raises(
    store: BaseStore, registry: EventRegistry
) -> None:
    other = EventRegistry()
    other.register(Renamed, version=4)
    registry.register(Renamed, version=2)
    store.registry = other
    store.append([NewEvent("a", "Renamed", Renamed("n"))])
    store.registry = registry

    with pytest.raises(UnknownSchemaVersionError, match="newer"):
        list(store.read_stream("a"))


# -- cancelled futures ---------------------------------------------------------


def test_a_future_cancelled_before_the_writer_takes_it_writes_nothing(
    tmp_path: Path,
) -> None:
    release = threading.Event()
    with LmdbEventStore.open(tmp_path / "s", durability="fast") as store:
        blocker = concurrent.futures.Future[None]()

        def hold(_txn: ViewTxn) -> bool:
            blocker.set_result(None)
            return release.wait(10)

        holding = threading.Thread(target=lambda: store.write_views(hold))
        holding.start()
        blocker.result(timeout=10)
        queued = store.append_future([note("a")])

        assert queued.cancel()
        release.set()
        holding.join(10)
        after = store.append([note("b")])

        assert after.last_position == 1
        assert [e.stream for e in store.read_all()] == ["b"]


def test_memory_store_append_futures_are_done_at_once() -> None:
    store = MemoryEventStore()

    future = store.append_future([note("a")])

    assert future.done()
    assert not future.cancel()


def test_a_view_scan_may_delete_as_it_goes(store: BaseStore) -> None:
    def fill(txn: ViewTxn) -> None:
        for index in range(600):
            txn.put("view:t", f"k{index:04}".encode(), b"v")

    def clear_evens(txn: ViewTxn) -> int:
        deleted = 0
        for key, _ in txn.scan("view:t"):
            if int(key[1:]) % 2 == 0:
                deleted += txn.delete("view:t", key)
        return deleted

    store.write_views(fill)

    assert store.write_views(clear_evens) == 300
    with store.read_views() as views:
        keys = [key for key, _ in views.scan("view:t")]
    assert keys == [f"k{index:04}".encode() for index in range(1, 600, 2)]


def test_a_type_filter_applies_to_records_that_need_lifting(
    store: BaseStore, registry: EventRegistry
) -> None:
    store.append([NewEvent("a", "Renamed", {"title": "t"}), note("b")])
    registry.register(Renamed, version=1)
    registry.upcaster("Renamed", from_version=0)(lambda d: {"name": d["title"]})

    renamed = [e.data for e in store.read_all(types=["Renamed"])]
    noted = [e.stream for e in store.read_all(types=["Noted"])]

    assert renamed == [Renamed("t")]
    assert noted == ["b"]
