from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
from _workflow_helpers import ManualClock

from actors import StepContext, WorkflowBuilder, WorkflowEngine, WorkflowFailedError
from actors._workflows._actions import Action
from eventstore import MemoryEventStore, NewEvent


@pytest.fixture
async def engine() -> AsyncIterator[WorkflowEngine]:
    async with WorkflowEngine(MemoryEventStore(), clock=ManualClock()) as engine:
        yield engine


def context(step: str = "s") -> StepContext:
    return StepContext("e", "w", step, 1, "e:s", {"x": 1}, {}, threading.Event())


def test_a_first_parameter_of_any_name_receives_the_context() -> None:
    def positional(c: StepContext, /, flag: int = 3) -> str:
        return f"{c.step} {flag}"

    def named(step_context: StepContext, *, flag: int = 4) -> str:
        return f"{step_context.step} {flag}"

    for fn, expected in ((positional, "s 3"), (named, "s 4")):
        args, kwargs = Action("a", fn).arguments(context(), {})
        assert fn(*args, **kwargs) == expected


def test_callables_that_cannot_be_actions_are_refused() -> None:
    def two_positional(a: int, b: int, /) -> int:
        return a + b

    with pytest.raises(TypeError, match="must be callable"):
        Action("a", 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="positional-only parameter 'b'"):
        Action("a", two_positional)
    with pytest.raises(TypeError, match="no readable signature"):
        Action("a", max)


def test_the_context_says_when_it_was_cancelled() -> None:
    ctx = context()

    before = ctx.cancelled
    ctx.cancel.set()

    assert not before
    assert ctx.cancelled


async def test_async_callable_objects_run_on_the_loop(engine: WorkflowEngine) -> None:
    class Greeter:
        async def __call__(self, input: str) -> str:  # noqa: A002 - injected by name
            await asyncio.sleep(0)
            return f"hello {input}"

    engine.register_action("greet", Greeter())
    await engine.create_workflow("g", WorkflowBuilder("g").step("s", "greet").build())

    output = await engine.execute_workflow("g", "ann", wait=True, timeout_s=5)
    definition = await engine.get_workflow("g")

    assert output == {"s": "hello ann"}
    assert definition["version"] == 1
    assert definition["steps"][0]["action"] == "greet"


async def test_a_step_within_its_timeout_succeeds(engine: WorkflowEngine) -> None:
    engine.register_action("quick", lambda: "quick")
    await engine.create_workflow(
        "q", WorkflowBuilder("q").step("s", "quick", timeout_s=5).build()
    )

    output = await engine.execute_workflow("q", wait=True, timeout_s=5)

    assert output == {"s": "quick"}


async def test_an_action_raising_cancelled_error_fails_its_step(
    engine: WorkflowEngine,
) -> None:
    async def cancels() -> None:
        raise asyncio.CancelledError

    engine.register_action("cancels", cancels)
    await engine.create_workflow("c", WorkflowBuilder("c").step("s", "cancels").build())

    with pytest.raises(WorkflowFailedError, match="CancelledError"):
        await engine.execute_workflow("c", wait=True, timeout_s=5)


async def test_an_action_missing_at_run_time_fails_its_step(
    engine: WorkflowEngine,
) -> None:
    engine.register_action("gone", lambda: 1)
    await engine.create_workflow("g", WorkflowBuilder("g").step("s", "gone").build())
    del engine._actions["gone"]

    with pytest.raises(WorkflowFailedError, match="'gone' is not registered"):
        await engine.execute_workflow("g", wait=True, timeout_s=5)


async def test_metrics_count_only_the_workflows_own_executions(
    engine: WorkflowEngine,
) -> None:
    def maybe(input: bool) -> str:  # noqa: A002 - injected by name
        if not input:
            raise ValueError("no")
        return "yes"

    engine.register_action("maybe", maybe)
    await engine.create_workflow("m", WorkflowBuilder("m").step("s", "maybe").build())
    await engine.create_workflow(
        "other", WorkflowBuilder("other").step("s", "maybe").build()
    )
    engine.store.append([NewEvent("workflows/junk", "Note", {"not": "started"})])
    empty = await engine.get_workflow_metrics("m")
    await engine.execute_workflow("m", True, wait=True, timeout_s=5)  # noqa: FBT003 - the input
    single = await engine.get_workflow_metrics("m")
    with pytest.raises(WorkflowFailedError):
        await engine.execute_workflow("m", False, wait=True, timeout_s=5)  # noqa: FBT003 - the input
    await engine.execute_workflow("other", True, wait=True, timeout_s=5)  # noqa: FBT003 - the input
    await engine.start()
    recovered = await engine.recover_all()

    metrics = await engine.get_workflow_metrics("m")

    assert empty.executions == 0
    assert empty.step_duration_p50_s is None
    assert single.step_duration_p50_s == single.step_duration_p95_s
    assert metrics.executions == 2
    assert metrics.by_state == {"completed": 1, "failed": 1}
    assert metrics.failure_rate == 0.5
    assert metrics.steps_succeeded == 1
    assert metrics.steps_failed == 1
    assert metrics.step_duration_p50_s is not None
    assert recovered == []
