"""The durable workflow engine: each execution an actor, every transition an event."""

from actors._workflows._actions import StepContext
from actors._workflows._definition import WorkflowBuilder
from actors._workflows._engine import WorkflowEngine
from actors._workflows._errors import (
    CircuitOpenError,
    ExecutionNotFoundError,
    InvalidWorkflowError,
    StepTimeoutError,
    WorkflowCancelledError,
    WorkflowError,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowStateError,
)
from actors._workflows._metrics import WorkflowMetrics
from actors._workflows._policy import BreakerPolicy, Clock, RetryPolicy, SystemClock
from actors._workflows._state import ExecutionStatus, StepStatus
from actors._workflows._statemachine import StateMachine, StateTransitioned, Transition

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
