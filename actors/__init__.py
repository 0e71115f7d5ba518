"""Supervised actors and the asyncio API of actorlog."""

import logging
from typing import TYPE_CHECKING

from actors._cache import (
    BoundedCache,
)
from actors._collection import (
    CollectionActor,
    CollectionConfig,
)
from actors._conflicts import (
    CONFLICT_STRATEGIES,
    ConflictStrategy,
    CustomStrategy,
    Resolution,
    Version,
    check_strategy,
    merge_data,
    resolve,
)
from actors._dashboard import (
    DashboardError,
    DashboardServer,
)
from actors._data import (
    process_data,
    transform,
    validate,
)
from actors._datamanager import (
    Command,
    DataManager,
    DataSource,
    Middleware,
)
from actors._errors import (
    ActorError,
    CommandTimeoutError,
    ConcurrencyError,
    NotFoundError,
    UnknownDataSourceError,
    ValidationError,
)
from actors._locks import (
    Lease,
    LeaseLostError,
    LeaseManager,
    LockError,
    LockTimeoutError,
)
from actors._monitoring import (
    MonitoringSystem,
)
from actors._observability_errors import (
    ObservabilityError,
    OperationNotSupportedError,
    PoolExhaustedError,
    TraceExportError,
    TracingNotAvailableError,
    UnknownAlertError,
    UnknownPoolError,
    UnknownProfileError,
)
from actors._optimizer import (
    PerformanceOptimizer,
)
from actors._pool import (
    ResourcePool,
)
from actors._projections import (
    Projections,
    SupervisedProjectionActor,
)
from actors._reader import (
    ActorReader,
    RecordReader,
)
from actors._records import (
    Record,
)
from actors._replies import (
    FutureReply,
    LoopReply,
    Reply,
)
from actors._supervisor import (
    ChildHandle,
    RestartPolicy,
    Strategy,
    SupervisedActor,
    Supervisor,
    SupervisorGaveUpError,
    ThreadScheduler,
    Worker,
)
from actors._sync import (
    StoreEndpoint,
    SyncConnectionError,
    SyncEndpoint,
    SyncError,
    SyncRefusedError,
    SyncReport,
    run_session,
    serve_sessions,
    sync_in_process,
)
from actors._sync_conflicts import Conflict
from actors._sync_live import Replicator
from actors._tracing_setup import (
    configure_tracing,
    export_trace,
)
from actors._transaction import (
    Transaction,
)
from actors._views import (
    RecordsViewReader,
)
from actors._workflows import (
    BreakerPolicy,
    CircuitOpenError,
    Clock,
    ExecutionNotFoundError,
    ExecutionStatus,
    InvalidWorkflowError,
    RetryPolicy,
    StateMachine,
    StateTransitioned,
    StepContext,
    StepStatus,
    StepTimeoutError,
    SystemClock,
    Transition,
    WorkflowBuilder,
    WorkflowCancelledError,
    WorkflowEngine,
    WorkflowError,
    WorkflowFailedError,
    WorkflowMetrics,
    WorkflowNotFoundError,
    WorkflowStateError,
)

if TYPE_CHECKING:
    from actors._sync_ws import (
        SyncServer,
        connect_websocket,
        mount_sync,
        sync_websocket,
    )

# Sync over WebSocket needs aiohttp (the `web` extra): import it on first use.
_WEBSOCKET_NAMES = frozenset(
    {"SyncServer", "connect_websocket", "mount_sync", "sync_websocket"}
)


def __getattr__(name: str) -> object:
    if name in _WEBSOCKET_NAMES:
        from actors import _sync_ws  # noqa: PLC0415 - aiohttp only when used

        return getattr(_sync_ws, name)
    raise AttributeError(f"module 'actors' has no attribute {name!r}")


__all__ = [
    "CONFLICT_STRATEGIES",
    "ActorError",
    "ActorReader",
    "BoundedCache",
    "BreakerPolicy",
    "ChildHandle",
    "CircuitOpenError",
    "Clock",
    "CollectionActor",
    "CollectionConfig",
    "Command",
    "CommandTimeoutError",
    "ConcurrencyError",
    "Conflict",
    "ConflictStrategy",
    "CustomStrategy",
    "DashboardError",
    "DashboardServer",
    "DataManager",
    "DataSource",
    "ExecutionNotFoundError",
    "ExecutionStatus",
    "FutureReply",
    "InvalidWorkflowError",
    "Lease",
    "LeaseLostError",
    "LeaseManager",
    "LockError",
    "LockTimeoutError",
    "LoopReply",
    "Middleware",
    "MonitoringSystem",
    "NotFoundError",
    "ObservabilityError",
    "OperationNotSupportedError",
    "PerformanceOptimizer",
    "PoolExhaustedError",
    "Projections",
    "Record",
    "RecordReader",
    "RecordsViewReader",
    "Replicator",
    "Reply",
    "Resolution",
    "ResourcePool",
    "RestartPolicy",
    "RetryPolicy",
    "StateMachine",
    "StateTransitioned",
    "StepContext",
    "StepStatus",
    "StepTimeoutError",
    "StoreEndpoint",
    "Strategy",
    "SupervisedActor",
    "SupervisedProjectionActor",
    "Supervisor",
    "SupervisorGaveUpError",
    "SyncConnectionError",
    "SyncEndpoint",
    "SyncError",
    "SyncRefusedError",
    "SyncReport",
    "SyncServer",
    "SystemClock",
    "ThreadScheduler",
    "TraceExportError",
    "TracingNotAvailableError",
    "Transaction",
    "Transition",
    "UnknownAlertError",
    "UnknownDataSourceError",
    "UnknownPoolError",
    "UnknownProfileError",
    "ValidationError",
    "Version",
    "Worker",
    "WorkflowBuilder",
    "WorkflowCancelledError",
    "WorkflowEngine",
    "WorkflowError",
    "WorkflowFailedError",
    "WorkflowMetrics",
    "WorkflowNotFoundError",
    "WorkflowStateError",
    "check_strategy",
    "configure_tracing",
    "connect_websocket",
    "export_trace",
    "merge_data",
    "mount_sync",
    "process_data",
    "resolve",
    "run_session",
    "serve_sessions",
    "sync_in_process",
    "sync_websocket",
    "transform",
    "validate",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
