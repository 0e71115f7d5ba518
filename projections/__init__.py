"""Read models folded from the log."""

import logging

from projections._errors import ProjectionError, QueryError
from projections._query import (
    MISSING,
    OPERATORS,
    Predicate,
    compile_where,
    get_path,
    query_rows,
    sort_rows,
)

__all__ = [
    "MISSING",
    "OPERATORS",
    "Predicate",
    "ProjectionError",
    "QueryError",
    "compile_where",
    "get_path",
    "query_rows",
    "sort_rows",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
