"""Supervised actors and the asyncio API of actorlog."""

import logging

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

__all__ = [
    "CONFLICT_STRATEGIES",
    "BreakerPolicy",
    "CircuitOpenError",
    "Clock",
    "ConflictStrategy",
    "CustomStrategy",
    "DashboardError",
    "DashboardServer",
    "ExecutionNotFoundError",
    "ExecutionStatus",
    "InvalidWorkflowError",
    "Resolution",
    "RetryPolicy",
    "StateMachine",
    "StateTransitioned",
    "StepContext",
    "StepStatus",
    "StepTimeoutError",
    "SystemClock",
    "Transition",
    "Version",
    "WorkflowBuilder",
    "WorkflowCancelledError",
    "WorkflowEngine",
    "WorkflowError",
    "WorkflowFailedError",
    "WorkflowMetrics",
    "WorkflowNotFoundError",
    "WorkflowStateError",
    "check_strategy",
    "merge_data",
    "resolve",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
