import actors

WORKFLOW_SURFACE = {
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
}


def test_the_workflow_surface_is_pinned() -> None:
    assert set(actors.__all__) >= WORKFLOW_SURFACE


def test_every_workflow_error_shares_one_root() -> None:
    errors = [name for name in WORKFLOW_SURFACE if name.endswith("Error")]

    assert all(issubclass(getattr(actors, n), actors.WorkflowError) for n in errors)
