"""Read models folded from the log."""

import logging

from projections._actor import ProjectionActor
from projections._errors import (
    HandlerError,
    ProjectionError,
    QueryError,
    UnknownPositionError,
    UnknownProjectionError,
)
from projections._fold import Folder, FoldOutcome, Projection, fold
from projections._pubsub import Subscriber, stream_matches, subscribe, subscribe_async
from projections._query import (
    MISSING,
    OPERATORS,
    Predicate,
    compile_where,
    get_path,
    query_rows,
    sort_rows,
)
from projections._records import (
    Record,
    RecordsProjection,
    RecordsView,
    ViewSource,
    declare_index,
)
from projections._runner import (
    InlineRunner,
    ProjectionStatus,
    builtin_projections,
    catch_up,
    fold_batch,
    fold_log,
    projection_named,
    rebuild,
    replay,
    reset,
    retry_parked,
    status,
    wait_for_checkpoint,
)
from projections._state import ParkedEvent, ProjectionState, parked_events
from projections._streams import StreamsProjection, StreamStats, StreamsView
from projections._workflows import (
    Execution,
    StepState,
    WorkflowsProjection,
    WorkflowsView,
)

__all__ = [
    "MISSING",
    "OPERATORS",
    "Execution",
    "FoldOutcome",
    "Folder",
    "HandlerError",
    "InlineRunner",
    "ParkedEvent",
    "Predicate",
    "Projection",
    "ProjectionActor",
    "ProjectionError",
    "ProjectionState",
    "ProjectionStatus",
    "QueryError",
    "Record",
    "RecordsProjection",
    "RecordsView",
    "StepState",
    "StreamStats",
    "StreamsProjection",
    "StreamsView",
    "Subscriber",
    "UnknownPositionError",
    "UnknownProjectionError",
    "ViewSource",
    "WorkflowsProjection",
    "WorkflowsView",
    "builtin_projections",
    "catch_up",
    "compile_where",
    "declare_index",
    "fold",
    "fold_batch",
    "fold_log",
    "get_path",
    "parked_events",
    "projection_named",
    "query_rows",
    "rebuild",
    "replay",
    "reset",
    "retry_parked",
    "sort_rows",
    "status",
    "stream_matches",
    "subscribe",
    "subscribe_async",
    "wait_for_checkpoint",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
