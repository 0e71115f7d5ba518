from typing import Any

import pytest

from projections import MISSING, QueryError, compile_where, get_path, query_rows

ROWS: list[dict[str, Any]] = [
    {"name": "Ada", "age": 36, "tags": ["math"], "address": {"city": "London"}},
    {"name": "Grace", "age": 45, "tags": ["navy", "cobol"], "address": {"city": "NYC"}},
    {"name": "Linus", "age": 17, "tags": [], "address": {"city": "Helsinki"}},
    {"name": "Anon"},
]


def names(rows: list[dict[str, Any]]) -> list[str]:
    return [row["name"] for row in rows]


def run(**clauses: Any) -> list[str]:
    return names(query_rows(ROWS, data=lambda row: row, **clauses))


def test_equality_and_operators_filter_rows() -> None:
    assert run(where={"name": "Ada"}) == ["Ada"]
    assert run(where={"age": {"gte": 18}}) == ["Ada", "Grace"]
    assert run(where={"age": {"gt": 17, "lt": 45}}) == ["Ada"]
    assert run(where={"age": {"lte": 17}}) == ["Linus"]
    assert run(where={"age": {"eq": 45}}) == ["Grace"]
    assert run(where={"name": {"in": ["Ada", "Linus"]}}) == ["Ada", "Linus"]
    assert run(where={"tags": {"contains": "navy"}}) == ["Grace"]
    assert run(where={"name": {"contains": "in"}}) == ["Linus"]


def test_ne_matches_missing_fields_and_ordering_tests_do_not() -> None:
    assert run(where={"age": {"ne": 36}}) == ["Grace", "Linus", "Anon"]
    assert run(where={"age": {"lt": 100}}) == ["Ada", "Grace", "Linus"]


def test_dotted_paths_reach_nested_fields() -> None:
    assert run(where={"address.city": "NYC"}) == ["Grace"]
    assert get_path(ROWS[0], "address.city") == "London"
    assert get_path(ROWS[0], "address.zip") is MISSING
    assert get_path(ROWS[0], "name.first") is MISSING


def test_a_whole_object_is_matched_with_eq() -> None:
    assert run(where={"address": {"eq": {"city": "Helsinki"}}}) == ["Linus"]


def test_an_object_value_without_operators_is_refused_with_a_hint() -> None:
    with pytest.raises(QueryError, match=r"'address\.city'"):
        run(where={"address": {"city": "Helsinki"}})


def test_comparing_values_of_different_kinds_is_false() -> None:
    assert run(where={"name": {"gt": 3}}) == []


def test_order_by_sorts_ascending_descending_and_missing_last() -> None:
    assert run(order_by="age") == ["Linus", "Ada", "Grace", "Anon"]
    assert run(order_by="-age") == ["Grace", "Ada", "Linus", "Anon"]
    assert run(order_by=["-address.city", "name"]) == ["Grace", "Ada", "Linus", "Anon"]
    assert run(order_by="tags") == ["Linus", "Ada", "Grace", "Anon"]


def test_limit_and_offset_page_results() -> None:
    assert run(order_by="name", limit=2) == ["Ada", "Anon"]
    assert run(order_by="name", limit=2, offset=2) == ["Grace", "Linus"]


@pytest.mark.parametrize(
    ("clauses", "message"),
    [
        ({"where": {"age": {"between": [1, 2]}}}, "unknown operator 'between'"),
        ({"where": {"age": {"in": 3}}}, "'in' on field 'age' takes a list"),
        ({"where": {"": 1}}, "non-empty strings"),
        ({"order_by": "-"}, "not a field name"),
        ({"limit": -1}, "limit must be >= 0"),
        ({"offset": -1}, "offset must be >= 0"),
    ],
)
def test_malformed_clauses_raise_naming_the_fault(
    clauses: dict[str, Any], message: str
) -> None:
    with pytest.raises(QueryError, match=message):
        run(**clauses)


def test_an_empty_where_matches_everything() -> None:
    assert compile_where(None)({}) is True
    assert compile_where({})({"x": 1}) is True
