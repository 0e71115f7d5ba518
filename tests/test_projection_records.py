from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from _projection_helpers import create, delete, update

from eventstore import LmdbEventStore, MemoryEventStore, NewEvent, ViewReader
from projections import (
    InlineRunner,
    ProjectionError,
    QueryError,
    RecordsProjection,
    RecordsView,
    catch_up,
    declare_index,
    parked_events,
    status,
)
from projections._records import encode_index_value


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LmdbEventStore]:
    with LmdbEventStore.open(tmp_path / "store", durability="fast") as opened:
        yield opened


@pytest.fixture
def inline(store: LmdbEventStore) -> Iterator[InlineRunner]:
    runner = InlineRunner(store, RecordsProjection()).attach()
    yield runner
    runner.detach()


def _people(store: LmdbEventStore) -> None:
    create(store, "people", "p1", {"name": "Ann", "age": 31, "city": "Oslo"})
    create(store, "people", "p2", {"name": "Bob", "age": 25, "city": "Rome"})
    create(store, "people", "p3", {"name": "Cy", "age": 40, "city": "Oslo"})
    create(store, "people", "p4", {"name": "Di", "age": 25.0, "tags": ["x"]})


@pytest.mark.usefixtures("inline")
def test_a_read_right_after_an_append_sees_the_inline_fold(
    store: LmdbEventStore,
) -> None:
    create(store, "users", "u1", {"name": "Ann", "address": {"city": "Oslo"}})

    update(store, "users", "u1", {"address": {"zip": "0150"}, "name": None})

    record = RecordsView(store).get("users", "u1")
    assert record is not None
    assert record.version == 2
    assert record.data == {"address": {"city": "Oslo", "zip": "0150"}}
    assert record.created_at < record.updated_at


@pytest.mark.usefixtures("inline")
def test_replace_update_swaps_the_whole_data(store: LmdbEventStore) -> None:
    create(store, "users", "u1", {"name": "Ann", "age": 3})

    update(store, "users", "u1", {"nick": "A"}, replace=True)

    record = RecordsView(store).get("users", "u1")
    assert record is not None
    assert record.data == {"nick": "A"}


@pytest.mark.usefixtures("inline")
def test_deleted_records_are_gone_and_counted_out(store: LmdbEventStore) -> None:
    _people(store)
    view = RecordsView(store)

    delete(store, "people", "p2")
    delete(store, "people", "missing")

    assert view.get("people", "p2") is None
    assert view.count("people") == 3
    assert view.collections() == {"people": 3}
    assert view.count("nobody") == 0


@pytest.mark.usefixtures("inline")
def test_recreating_a_deleted_record_counts_it_again(store: LmdbEventStore) -> None:
    create(store, "users", "u1", {"a": 1})
    delete(store, "users", "u1")

    create(store, "users", "u1", {"a": 2})

    record = RecordsView(store).get("users", "u1")
    assert record is not None
    assert record.version == 3
    assert record.data == {"a": 2}
    assert RecordsView(store).count("users") == 1


@pytest.mark.usefixtures("inline")
def test_queries_give_the_same_answer_with_and_without_an_index(
    store: LmdbEventStore,
) -> None:
    _people(store)
    view = RecordsView(store)
    clauses: list[dict[str, object]] = [
        {"age": 25},
        {"age": {"eq": 25}},
        {"age": {"in": [25, 40]}},
        {"age": {"gt": 25}},
        {"age": {"gte": 25, "lt": 40}},
        {"age": {"lte": 31}},
        {"city": "Oslo"},
        {"city": {"gte": "P"}},
        {"city": {"lt": "P", "gt": "A"}},
        {"city": {"in": ["Rome", "Oslo"]}},
        {"age": {"ne": 25}},
        {"age": {"gt": "x"}},
    ]
    before = [[r.id for r in view.query("people", where=w)] for w in clauses]

    declare_index(store, "people", "age")
    declare_index(store, "people", "city")
    create(store, "people", "p5", {"name": "Ed", "age": 31, "city": "Rome"})
    update(store, "people", "p5", {"age": 52})
    after = [[r.id for r in view.query("people", where=w)] for w in clauses]

    assert view.indexes("people") == ("age", "city")
    assert view.uses_index("people", {"age": 25})
    assert view.uses_index("people", {"city": {"lt": "P"}})
    assert not view.uses_index("people", {"age": {"ne": 25}})
    assert not view.uses_index("people", {"age": {"gt": 1, "lt": "z"}})
    assert before[0] == ["p2", "p4"]
    assert before[3] == ["p1", "p3"]
    assert before[7] == ["p2"]
    assert after[0] == before[0]
    assert after[3] == ["p1", "p3", "p5"]
    assert after[6] == ["p1", "p3"]
    assert after[7] == ["p2", "p5"]
    assert after[9] == ["p1", "p2", "p3", "p5"]
    assert after[11] == []


@pytest.mark.usefixtures("inline")
def test_an_index_follows_updates_and_deletes(store: LmdbEventStore) -> None:
    declare_index(store, "people", "age")
    _people(store)
    view = RecordsView(store)

    update(store, "people", "p2", {"age": 60})
    delete(store, "people", "p4")

    assert [r.id for r in view.query("people", where={"age": 25})] == []
    assert [r.id for r in view.query("people", where={"age": {"gte": 60}})] == ["p2"]


@pytest.mark.usefixtures("inline")
def test_order_limit_and_offset_page_the_results(store: LmdbEventStore) -> None:
    _people(store)
    view = RecordsView(store)

    ordered = view.query("people", order_by=["-age", "name"], limit=2, offset=1)
    first_two = view.query("people", where={"age": {"gte": 25}}, limit=2, offset=1)

    assert [r.id for r in ordered] == ["p1", "p2"]
    assert [r.id for r in first_two] == ["p2", "p3"]


@pytest.mark.usefixtures("inline")
def test_bad_query_clauses_are_refused(store: LmdbEventStore) -> None:
    view = RecordsView(store)

    with pytest.raises(QueryError, match="unknown operator"):
        view.query("people", where={"age": {"like": 1}})
    with pytest.raises(QueryError, match="limit"):
        view.query("people", limit=-1)
    with pytest.raises(QueryError, match="offset"):
        view.query("people", offset=-1)
    with pytest.raises(QueryError, match="declare_index"):
        declare_index(store, "", "age")


def test_declaring_an_index_builds_it_for_existing_records(
    store: LmdbEventStore,
) -> None:
    _people(store)
    catch_up(store, RecordsProjection())

    declare_index(store, "people", "city")
    declare_index(store, "people", "city")

    view = RecordsView(store)
    assert view.uses_index("people", {"city": "Oslo"})
    assert [r.id for r in view.query("people", where={"city": "Oslo"})] == ["p1", "p3"]


def test_index_values_sort_as_the_values_do() -> None:
    numbers: list[object] = [-1e300, -2.5, -1, 0, 0.5, 1, True, 3, 1e300]
    words = ["", "a", "a\x00b", "ab", "b"]

    encoded = [encode_index_value(n) for n in numbers]
    encoded_words = [encode_index_value(w) for w in words]

    assert encoded == sorted(encoded)  # type: ignore[type-var]
    assert encoded_words == sorted(encoded_words)  # type: ignore[type-var]
    assert encode_index_value(value=True) == encode_index_value(1)
    assert encode_index_value([1]) is None
    assert encode_index_value(10**400) is None
    assert encode_index_value(None) == b"\x01"


def test_the_memory_store_holds_the_records_view_too() -> None:
    store = MemoryEventStore()
    runner = InlineRunner(store, RecordsProjection()).attach()
    long_id = "x" * 300
    declare_index(store, "c", "k")

    create(store, "c", long_id, {"k": "v"})

    view = RecordsView(store)
    assert [r.id for r in view.query("c", where={"k": "v"})] == [long_id]
    runner.detach()


@pytest.mark.usefixtures("inline")
def test_an_update_of_a_missing_record_is_parked_not_folded(
    store: LmdbEventStore,
) -> None:
    update(store, "users", "ghost", {"a": 1})
    create(store, "users", "u1", {"a": 1})

    with store.read_views() as reader:
        parked = parked_events(reader, "records")
    assert [p.position for p in parked] == [1]
    assert "does not exist" in parked[0].error
    assert status(store, "records").parked == 1
    assert RecordsView(store).count("users") == 1


@pytest.mark.usefixtures("inline")
def test_events_of_other_types_only_move_the_checkpoint(
    store: LmdbEventStore,
) -> None:
    store.append([NewEvent("other/1", "Noted", {"x": 1})])

    assert status(store, "records").checkpoint == 1


@pytest.mark.usefixtures("inline")
def test_the_view_declares_indexes_on_a_writable_store(store: LmdbEventStore) -> None:
    _people(store)
    view = RecordsView(store)

    view.declare_index("people", "name")

    assert view.indexes("people") == ("name",)
    assert [r.id for r in view.query("people", where={"name": "Cy"})] == ["p3"]


def test_a_view_over_a_read_only_source_cannot_declare_indexes(
    store: LmdbEventStore,
) -> None:
    class Reader:
        def read_views(self) -> contextlib.AbstractContextManager[ViewReader]:
            return store.read_views()

    with pytest.raises(ProjectionError, match="cannot write"):
        RecordsView(Reader()).declare_index("people", "name")
