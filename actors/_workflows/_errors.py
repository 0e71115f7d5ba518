"""The errors of the workflow engine: one root, a few precise kinds."""

from __future__ import annotations

__all__ = [
    "CircuitOpenError",
    "ExecutionNotFoundError",
    "InvalidWorkflowError",
    "StepTimeoutError",
    "WorkflowCancelledError",
    "WorkflowError",
    "WorkflowFailedError",
    "WorkflowNotFoundError",
    "WorkflowStateError",
]


class WorkflowError(Exception):
    """The root of every error the workflow engine raises."""


class InvalidWorkflowError(WorkflowError, ValueError):
    """Raised when a definition has a cycle, an unknown name or a bad field."""


class WorkflowNotFoundError(WorkflowError, KeyError):
    """Raised when no workflow definition has the given name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ExecutionNotFoundError(WorkflowError, KeyError):
    """Raised when no execution has the given id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class WorkflowStateError(WorkflowError):
    """Raised when a command does not fit the execution's or engine's state."""


class WorkflowFailedError(WorkflowError):
    """Raised when an awaited execution ended failed."""

    def __init__(
        self, execution_id: str, step: str, error_type: str, error: str
    ) -> None:
        super().__init__(
            f"execution {execution_id!r} failed at step {step!r}: {error_type}: {error}"
        )
        self.execution_id = execution_id
        self.step = step
        self.error_type = error_type
        self.error = error


class WorkflowCancelledError(WorkflowError):
    """Raised when an awaited execution ended cancelled."""


class StepTimeoutError(WorkflowError, TimeoutError):
    """Raised in a step's place when it ran longer than its ``timeout_s``."""


class CircuitOpenError(WorkflowError):
    """Raised in a step's place when its action's circuit breaker is open."""
