"""Supervised actors and the asyncio API of actorlog."""

import logging

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
    "BreakerPolicy",
    "CircuitOpenError",
    "Clock",
    "ExecutionNotFoundError",
    "ExecutionStatus",
    "InvalidWorkflowError",
    "RetryPolicy",
    "StateMachine",
    "StateTransitioned",
    "StepContext",
    "StepStatus",
    "StepTimeoutError",
    "SystemClock",
    "Transition",
    "WorkflowBuilder",
    "WorkflowCancelledError",
    "WorkflowEngine",
    "WorkflowError",
    "WorkflowFailedError",
    "WorkflowMetrics",
    "WorkflowNotFoundError",
    "WorkflowStateError",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
