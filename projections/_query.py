"""Filtering and ordering records by ``where`` and ``order_by`` clauses.

A ``where`` clause maps a field (a dotted path into nested objects) to either
a value, which must be equal, or to an object of operators:
``eq ne gt gte lt lte in contains`` (so an object value is always read as
operators; match a whole object with ``{"eq": {...}}``). ``contains`` is a
substring test on a string and a membership test on a list. A missing field
matches only ``ne``; an ordering test between values of different kinds is
false, never an error.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from projections._errors import QueryError

__all__ = [
    "MISSING",
    "OPERATORS",
    "Predicate",
    "compile_where",
    "get_path",
    "query_rows",
    "sort_rows",
]

T = TypeVar("T")
Predicate = Callable[[Mapping[str, Any]], bool]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def _ordered(test: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(value: Any, operand: Any) -> bool:
        try:
            return value is not MISSING and bool(test(value, operand))
        except TypeError:
            return False

    return compare


_COLLECTIONS = (list, tuple, set, frozenset)


def _in(value: Any, operand: Any) -> bool:
    return value is not MISSING and value in operand


def _contains(value: Any, operand: Any) -> bool:
    if isinstance(value, str):
        return isinstance(operand, str) and operand in value
    if isinstance(value, _COLLECTIONS):
        return operand in value
    return False


OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda value, operand: value is not MISSING and value == operand,
    "ne": lambda value, operand: value is MISSING or value != operand,
    "gt": _ordered(operator.gt),
    "gte": _ordered(operator.ge),
    "lt": _ordered(operator.lt),
    "lte": _ordered(operator.le),
    "in": _in,
    "contains": _contains,
}


def get_path(data: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` in nested mappings, or :data:`MISSING`."""
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return MISSING
        value = value[part]
    return value


def compile_where(where: Mapping[str, Any] | None) -> Predicate:
    """A predicate over a record's data for a ``where`` clause.

    Raises:
        QueryError: If a field is not a non-empty string, an operator is
            unknown, or ``in`` is not given a list.

    """
    if not where:
        return lambda _data: True
    tests: list[tuple[str, Callable[[Any, Any], bool], Any]] = []
    for field, condition in where.items():
        if not isinstance(field, str) or not field:
            raise QueryError(
                f"where: field names must be non-empty strings, not {field!r}"
            )
        if not isinstance(condition, Mapping):
            tests.append((field, OPERATORS["eq"], condition))
            continue
        for name, operand in condition.items():
            if name not in OPERATORS:
                raise QueryError(
                    f"where: unknown operator {name!r} on field {field!r} "
                    f"(known: {', '.join(OPERATORS)}; to match a nested field "
                    f"use a dotted path such as '{field}.{name}', to match a "
                    "whole object use {'eq': {...}})"
                )
            if name == "in" and not isinstance(operand, _COLLECTIONS):
                raise QueryError(
                    f"where: 'in' on field {field!r} takes a list, not {operand!r}"
                )
            tests.append((field, OPERATORS[name], operand))

    def predicate(data: Mapping[str, Any]) -> bool:
        return all(
            test(get_path(data, field), operand) for field, test, operand in tests
        )

    return predicate


def _kind(value: Any) -> int:
    if value is MISSING or value is None:
        return 9
    if isinstance(value, bool):
        return 0
    if isinstance(value, int | float):
        return 1
    if isinstance(value, str):
        return 2
    if isinstance(value, list | tuple):
        return 3
    return 4


class _Descending:
    __slots__ = ("key",)

    def __init__(self, key: Any) -> None:
        self.key = key

    def __lt__(self, other: _Descending) -> bool:
        return bool(other.key < self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)


def _sort_value(value: Any) -> tuple[int, Any]:
    kind = _kind(value)
    if kind == 3:  # noqa: PLR2004 - lists sort by their items
        return kind, tuple(_sort_value(item) for item in value)
    if kind == 4:  # noqa: PLR2004 - objects sort by their repr
        return kind, repr(value)
    return kind, None if kind == 9 else value  # noqa: PLR2004 - missing last


def sort_rows(
    rows: Iterable[T],
    order_by: str | Sequence[str],
    *,
    data: Callable[[T], Mapping[str, Any]],
) -> list[T]:
    """Rows sorted by fields; ``-field`` sorts descending; missing sort last."""
    fields = [order_by] if isinstance(order_by, str) else list(order_by)
    for field in fields:
        if not isinstance(field, str) or not field.lstrip("-"):
            raise QueryError(f"order_by: not a field name: {field!r}")

    def key(row: T) -> tuple[Any, ...]:
        parts: list[Any] = []
        source = data(row)
        for field in fields:
            value = _sort_value(get_path(source, field.lstrip("-")))
            if field.startswith("-"):
                kind, inner = value
                # Missing values stay last in either direction.
                parts.append((kind == 9, _Descending(inner) if kind != 9 else 0))  # noqa: PLR2004
            else:
                parts.append(value)
        return tuple(parts)

    return sorted(rows, key=key)


def query_rows(
    rows: Iterable[T],
    *,
    where: Mapping[str, Any] | None = None,
    order_by: str | Sequence[str] | None = None,
    limit: int | None = None,
    offset: int = 0,
    data: Callable[[T], Mapping[str, Any]],
) -> list[T]:
    """Filter, order and page ``rows``; ``data`` gives each row's fields.

    Raises:
        QueryError: If a clause is malformed or ``limit``/``offset`` negative.

    """
    if limit is not None and limit < 0:
        raise QueryError(f"limit must be >= 0, not {limit}")
    if offset < 0:
        raise QueryError(f"offset must be >= 0, not {offset}")
    predicate = compile_where(where)
    matched = [row for row in rows if predicate(data(row))]
    if order_by:
        matched = sort_rows(matched, order_by, data=data)
    end = None if limit is None else offset + limit
    return matched[offset:end]
