"""The durable event log: append, read, subscribe; LMDB or memory."""

import logging

from eventstore._clock import (
    DEFAULT_MAX_DRIFT_MS,
    HLCTimestamp,
    HybridLogicalClock,
    Ordering,
    VersionVector,
    system_time_ms,
)
from eventstore._codec import (
    EventRegistry,
    default_registry,
    register_event,
)
from eventstore._core import (
    InlineProjector,
)
from eventstore._dots import (
    Dot,
    DottedVersionVector,
    Sibling,
    SiblingSet,
)
from eventstore._errors import (
    ClockDriftError,
    ConcurrencyError,
    DamagedRecordError,
    EventStoreError,
    ForkedProcessError,
    NotAStoreError,
    ReadOnlyStoreError,
    StoreClosedError,
    StoreNotFoundError,
    UnknownSchemaVersionError,
    WriterBusyError,
)
from eventstore._lmdb import (
    Durability,
    LmdbEventStore,
    StoreInUseError,
)
from eventstore._memory import (
    MemoryEventStore,
)
from eventstore._protocol import (
    EventStore,
)
from eventstore._subscription import (
    Subscription,
)
from eventstore._tables import (
    ViewReader,
    ViewTxn,
    view_table,
)
from eventstore._tools import (
    ImportReport,
    NdjsonLineError,
    VerifyReport,
    export_ndjson,
    import_ndjson,
    verify,
)
from eventstore._types import (
    ANY,
    NO_STREAM,
    AppendedEvent,
    AppendResult,
    EventMetadata,
    Expected,
    ExpectedVersion,
    NewEvent,
    StoredEvent,
    StreamInfo,
)
from eventstore._vocabulary import (
    RECORD_STREAM_PREFIX,
    WORKFLOW_STREAM_PREFIX,
    RecordCreated,
    RecordDeleted,
    RecordUpdated,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowPaused,
    WorkflowResumed,
    WorkflowStarted,
    WorkflowStepFailed,
    WorkflowStepRetried,
    WorkflowStepSkipped,
    WorkflowStepStarted,
    WorkflowStepSucceeded,
    merge_patch,
    parse_record_stream,
    record_stream,
    workflow_stream,
)

__all__ = [
    "ANY",
    "DEFAULT_MAX_DRIFT_MS",
    "NO_STREAM",
    "RECORD_STREAM_PREFIX",
    "WORKFLOW_STREAM_PREFIX",
    "AppendResult",
    "AppendedEvent",
    "ClockDriftError",
    "ConcurrencyError",
    "DamagedRecordError",
    "Dot",
    "DottedVersionVector",
    "Durability",
    "EventMetadata",
    "EventRegistry",
    "EventStore",
    "EventStoreError",
    "Expected",
    "ExpectedVersion",
    "ForkedProcessError",
    "HLCTimestamp",
    "HybridLogicalClock",
    "ImportReport",
    "InlineProjector",
    "LmdbEventStore",
    "MemoryEventStore",
    "NdjsonLineError",
    "NewEvent",
    "NotAStoreError",
    "Ordering",
    "ReadOnlyStoreError",
    "RecordCreated",
    "RecordDeleted",
    "RecordUpdated",
    "Sibling",
    "SiblingSet",
    "StoreClosedError",
    "StoreInUseError",
    "StoreNotFoundError",
    "StoredEvent",
    "StreamInfo",
    "Subscription",
    "UnknownSchemaVersionError",
    "VerifyReport",
    "VersionVector",
    "ViewReader",
    "ViewTxn",
    "WorkflowCancelled",
    "WorkflowCompleted",
    "WorkflowFailed",
    "WorkflowPaused",
    "WorkflowResumed",
    "WorkflowStarted",
    "WorkflowStepFailed",
    "WorkflowStepRetried",
    "WorkflowStepSkipped",
    "WorkflowStepStarted",
    "WorkflowStepSucceeded",
    "WriterBusyError",
    "default_registry",
    "export_ndjson",
    "import_ndjson",
    "merge_patch",
    "parse_record_stream",
    "record_stream",
    "register_event",
    "system_time_ms",
    "verify",
    "view_table",
    "workflow_stream",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
