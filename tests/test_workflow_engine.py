from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pykka
import pytest
from _workflow_helpers import ManualClock, until

from actors import (
    ExecutionNotFoundError,
    StepContext,
    WorkflowBuilder,
    WorkflowCancelledError,
    WorkflowEngine,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowStateError,
)
from actors._workflows._actor import ExecutionActor
from actors._workflows._state import fold_execution
from eventstore import (
    LmdbEventStore,
    MemoryEventStore,
    WorkflowStepFailed,
    workflow_stream,
)

USER_REGISTRATION = json.loads(
    """
    {"name": "user-registration", "steps": [
        {"name": "validate", "action": "validateUser"},
        {"name": "create", "action": "createUser"},
        {"name": "notify", "action": "sendWelcomeEmail"}
    ]}
    """
)
DATA_SYNC = json.loads(
    """
    {"name": "data-sync", "steps": [
        {"name": "fetch", "action": "fetchData", "parallel": true},
        {"name": "transform", "action": "transformData"},
        {"name": "save", "action": "saveData"}
    ]}
    """
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def engine(clock: ManualClock) -> AsyncIterator[WorkflowEngine]:
    async with WorkflowEngine(MemoryEventStore(), clock=clock) as engine:
        yield engine


def types_of(events: list[Any]) -> list[str]:
    return [event.type for event in events]


async def test_user_registration_sample_runs_its_steps_in_order(
    engine: WorkflowEngine,
) -> None:
    calls: list[str] = []

    async def validate_user(
        input: dict[str, str],  # noqa: A002 - injected by name
    ) -> dict[str, Any]:
        calls.append("validate")
        return {"email": input["email"], "valid": True}

    def create_user(results: dict[str, Any]) -> dict[str, Any]:
        calls.append("create")
        return {"id": 7, "email": results["validate"]["email"]}

    async def send_welcome_email(ctx: StepContext) -> str:
        calls.append("notify")
        return f"sent to {ctx.results['create']['email']}"

    engine.register_action("validateUser", validate_user)
    engine.register_action("createUser", create_user)
    engine.register_action("sendWelcomeEmail", send_welcome_email)
    await engine.create_workflow("user-registration", USER_REGISTRATION)

    output = await engine.execute_workflow(
        "user-registration", {"email": "a@b.c"}, wait=True, timeout_s=5
    )

    assert calls == ["validate", "create", "notify"]
    assert output["notify"] == "sent to a@b.c"
    assert output["create"] == {"id": 7, "email": "a@b.c"}


async def test_data_sync_sample_passes_data_along(engine: WorkflowEngine) -> None:
    engine.register_action("fetchData", lambda: [3, 1, 2])
    engine.register_action("transformData", lambda results: sorted(results["fetch"]))
    saved: list[Any] = []

    def save_data(results: dict[str, Any]) -> str:
        saved.append(results)
        return "ok"

    engine.register_action("saveData", save_data)
    await engine.create_workflow("data-sync", DATA_SYNC)

    execution_id = await engine.execute_workflow("data-sync")
    output = await engine.wait(execution_id, timeout_s=5)

    assert output == {"fetch": [3, 1, 2], "transform": [1, 2, 3], "save": "ok"}
    assert saved == [{"transform": [1, 2, 3]}]
    history = await engine.get_execution_history(execution_id)
    assert types_of(history) == [
        "WorkflowStarted",
        "WorkflowStepStarted",
        "WorkflowStepSucceeded",
        "WorkflowStepStarted",
        "WorkflowStepSucceeded",
        "WorkflowStepStarted",
        "WorkflowStepSucceeded",
        "WorkflowCompleted",
    ]


async def test_diamond_branches_run_at_the_same_time(engine: WorkflowEngine) -> None:
    started = {"left": asyncio.Event(), "right": asyncio.Event()}
    order: list[str] = []

    async def branch(ctx: StepContext) -> str:
        other = "right" if ctx.step == "left" else "left"
        started[ctx.step].set()
        # Each branch finishes only once the other has started: they overlap.
        await asyncio.wait_for(started[other].wait(), 5)
        order.append(ctx.step)
        return ctx.step

    engine.register_action("top", lambda: "top")
    engine.register_action("branch", branch)
    engine.register_action("join", lambda results: sorted(results.values()))
    definition = (
        WorkflowBuilder("diamond")
        .step("top", "top")
        .step("left", "branch", parallel=True)
        .step("right", "branch", parallel=True)
        .step("bottom", "join")
        .build()
    )
    stored = await engine.create_workflow("diamond", definition)

    output = await engine.execute_workflow("diamond", wait=True, timeout_s=5)

    steps = {step["name"]: step["depends_on"] for step in stored["steps"]}
    assert steps == {
        "top": [],
        "left": ["top"],
        "right": ["top"],
        "bottom": ["left", "right"],
    }
    assert sorted(order) == ["left", "right"]
    assert output["bottom"] == ["left", "right"]


async def test_max_concurrency_bounds_steps_across_executions(
    clock: ManualClock,
) -> None:
    running = 0
    peak = 0

    async def work() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    builder = WorkflowBuilder("wide")
    for index in range(4):
        builder.step(f"s{index}", "work", parallel=True)
    async with WorkflowEngine(
        MemoryEventStore(), clock=clock, max_concurrency=2
    ) as engine:
        engine.register_action("work", work)
        await engine.create_workflow("wide", builder.build())
        ids = [await engine.execute_workflow("wide") for _ in range(3)]
        for execution_id in ids:
            await engine.wait(execution_id, timeout_s=5)

    assert peak == 2


async def test_a_step_is_retried_with_backoff_until_it_succeeds(
    engine: WorkflowEngine, clock: ManualClock
) -> None:
    attempts: list[int] = []

    def flaky(ctx: StepContext) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError(f"down on attempt {ctx.attempt}")
        return "up"

    engine.register_action("flaky", flaky)
    retry = {"max_attempts": 3, "backoff_s": 1.0, "multiplier": 2.0, "jitter": 0}
    await engine.create_workflow(
        "flaky", WorkflowBuilder("flaky").step("call", "flaky", retry=retry).build()
    )

    execution_id = await engine.execute_workflow("flaky")
    await until(lambda: clock.sleeping == 1)
    clock.advance(0.5)
    await asyncio.sleep(0.01)
    assert attempts == [1]
    clock.advance(0.5)
    await until(lambda: len(attempts) == 2 and clock.sleeping == 1)
    clock.advance(2.0)
    output = await engine.wait(execution_id, timeout_s=5)

    assert output == {"call": "up"}
    assert attempts == [1, 2, 3]
    history = await engine.get_execution_history(execution_id)
    retried = [e.data for e in history if e.type == "WorkflowStepRetried"]
    assert [(r.attempt, r.delay_s) for r in retried] == [(2, 1.0), (3, 2.0)]
    status = await engine.get_execution_status(execution_id)
    assert status.steps["call"].attempts == 3
    assert status.steps["call"].retries == 2
    metrics = await engine.get_workflow_metrics("flaky")
    assert metrics.retries == 2
    assert metrics.steps_failed == 2
    assert metrics.by_state == {"completed": 1}


async def test_errors_outside_retry_on_fail_at_once(engine: WorkflowEngine) -> None:
    def broken() -> None:
        raise KeyError("missing")

    engine.register_action("broken", broken)
    retry = {"max_attempts": 5, "retry_on": ["ConnectionError"]}
    await engine.create_workflow(
        "strict", WorkflowBuilder("strict").step("s", "broken", retry=retry).build()
    )

    with pytest.raises(WorkflowFailedError) as caught:
        await engine.execute_workflow("strict", wait=True, timeout_s=5)

    assert caught.value.step == "s"
    assert caught.value.error_type == "KeyError"
    status = await engine.get_execution_status(caught.value.execution_id)
    assert status.state == "failed"
    assert status.steps["s"].attempts == 1


async def build_failing(engine: WorkflowEngine, healthy: list[bool]) -> str:
    def charge(idempotency_key: str) -> str:
        if not healthy[0]:
            raise RuntimeError("card declined")
        return f"charged {idempotency_key}"

    engine.register_action("prepare", lambda: "prepared")
    engine.register_action("charge", charge)
    engine.register_action("ship", lambda results: f"shipped after {results['pay']}")
    await engine.create_workflow(
        "order",
        WorkflowBuilder("order")
        .step("prep", "prepare")
        .step("pay", "charge", retry={"max_attempts": 2, "backoff_s": 0})
        .step("ship", "ship")
        .build(),
    )
    execution_id = await engine.execute_workflow("order")
    with pytest.raises(WorkflowFailedError, match="card declined"):
        await engine.wait(execution_id, timeout_s=5)
    return execution_id


async def test_retry_failed_step_after_retries_run_out_completes(
    engine: WorkflowEngine,
) -> None:
    healthy = [False]
    execution_id = await build_failing(engine, healthy)
    failed = await engine.get_execution_status(execution_id)

    healthy[0] = True
    state = await engine.retry_failed_step(execution_id, "pay")
    output = await engine.wait(execution_id, timeout_s=5)

    assert failed.state == "failed"
    assert failed.failed_step == "pay"
    assert failed.steps["pay"].attempts == 2
    assert failed.steps["ship"].state == "pending"
    assert state == "running"
    assert output["pay"] == f"charged {execution_id}:pay"
    status = await engine.get_execution_status(execution_id)
    assert status.state == "completed"
    assert status.steps["pay"].attempts == 3
    assert status.steps["prep"].attempts == 1
    history = types_of(await engine.get_execution_history(execution_id))
    failed_at = history.index("WorkflowFailed")
    assert history[failed_at + 1 : failed_at + 3] == [
        "WorkflowResumed",
        "WorkflowStepRetried",
    ]


async def test_skip_failed_step_goes_on_with_the_given_output(
    engine: WorkflowEngine,
) -> None:
    execution_id = await build_failing(engine, [False])

    await engine.skip_failed_step(execution_id, "pay", output="paid by hand")
    output = await engine.wait(execution_id, timeout_s=5)

    assert output["ship"] == "shipped after paid by hand"
    status = await engine.get_execution_status(execution_id)
    assert status.steps["pay"].state == "skipped"
    with pytest.raises(WorkflowStateError, match="has not failed"):
        await engine.skip_failed_step(execution_id, "pay")
    with pytest.raises(WorkflowStateError, match="no step 'nope'"):
        await engine.retry_failed_step(execution_id, "nope")


async def test_pause_lets_the_running_step_finish_and_starts_no_other(
    engine: WorkflowEngine,
) -> None:
    release = asyncio.Event()
    calls: list[str] = []

    async def slow(ctx: StepContext) -> str:
        calls.append(ctx.step)
        if ctx.step == "one":
            await asyncio.wait_for(release.wait(), 5)
        return ctx.step

    engine.register_action("slow", slow)
    await engine.create_workflow(
        "pausable",
        WorkflowBuilder("pausable").step("one", "slow").step("two", "slow").build(),
    )
    execution_id = await engine.execute_workflow("pausable")
    await until(lambda: calls == ["one"])

    assert await engine.pause_workflow(execution_id) == "paused"
    release.set()
    await until(lambda: engine_step_state(engine, execution_id, "one") == "succeeded")
    paused = await engine.get_execution_status(execution_id)
    with pytest.raises(WorkflowStateError, match="cannot pause"):
        await engine.pause_workflow(execution_id)
    assert await engine.resume_workflow(execution_id) == "running"
    output = await engine.wait(execution_id, timeout_s=5)

    assert paused.state == "paused"
    assert paused.steps["two"].state == "pending"
    assert output == {"one": "one", "two": "two"}
    assert calls == ["one", "two"]
    history = types_of(await engine.get_execution_history(execution_id))
    assert "WorkflowPaused" in history
    assert "WorkflowResumed" in history


def engine_step_state(engine: WorkflowEngine, execution_id: str, step: str) -> str:
    # A synchronous peek at the log for polling: the memory store reads fast.
    state = fold_execution(engine.store.read_stream(workflow_stream(execution_id)))
    assert state is not None
    return state.step(step).state


async def test_cancel_cancels_the_running_step_and_ends_cancelled(
    engine: WorkflowEngine,
) -> None:
    entered = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever() -> None:
        entered.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    engine.register_action("forever", forever)
    engine.register_action("after", lambda: "never")
    await engine.create_workflow(
        "stuck",
        WorkflowBuilder("stuck").step("wait", "forever").step("after", "after").build(),
    )
    execution_id = await engine.execute_workflow("stuck")
    await asyncio.wait_for(entered.wait(), 5)

    state = await engine.cancel_workflow(execution_id, reason="user asked")
    await asyncio.wait_for(cancelled.wait(), 5)

    assert state == "cancelled"
    with pytest.raises(WorkflowCancelledError):
        await engine.wait(execution_id, timeout_s=5)
    status = await engine.get_execution_status(execution_id)
    assert status.state == "cancelled"
    assert status.steps["after"].state == "pending"
    with pytest.raises(WorkflowStateError, match="cannot resume"):
        await engine.resume_workflow(execution_id)


async def test_a_step_past_its_timeout_fails_and_is_told_to_stop(
    engine: WorkflowEngine, clock: ManualClock
) -> None:
    seen: list[threading.Event] = []

    async def hang(cancel: threading.Event) -> None:
        seen.append(cancel)
        await asyncio.sleep(60)

    engine.register_action("hang", hang)
    await engine.create_workflow(
        "slow", WorkflowBuilder("slow").step("s", "hang", timeout_s=5).build()
    )
    execution_id = await engine.execute_workflow("slow")
    await until(lambda: clock.sleeping == 1 and len(seen) == 1)

    clock.advance(5)

    with pytest.raises(WorkflowFailedError, match="timeout_s=5"):
        await engine.wait(execution_id, timeout_s=5)
    assert seen[0].is_set()
    history = await engine.get_execution_history(execution_id)
    failed = [e.data for e in history if isinstance(e.data, WorkflowStepFailed)]
    assert failed[0].error_type == "StepTimeoutError"


async def test_a_false_when_skips_the_step(engine: WorkflowEngine) -> None:
    engine.register_action("isPremium", lambda ctx: ctx.input["premium"])
    engine.register_action("gift", lambda: "gift")
    await engine.create_workflow(
        "gifts", WorkflowBuilder("gifts").step("g", "gift", when="isPremium").build()
    )

    yes = await engine.execute_workflow("gifts", {"premium": True}, wait=True)
    no_id = await engine.execute_workflow("gifts", {"premium": False})
    no = await engine.wait(no_id, timeout_s=5)

    assert yes == {"g": "gift"}
    assert no == {"g": None}
    status = await engine.get_execution_status(no_id)
    assert status.steps["g"].state == "skipped"


async def test_services_are_injected_by_parameter_name(engine: WorkflowEngine) -> None:
    made: list[int] = []

    def make_db() -> dict[str, int]:
        made.append(1)
        return {"rows": 3}

    async def make_mailer() -> str:
        return "smtp"

    async def count(db: dict[str, int], mailer: str, input: int) -> str:  # noqa: A002 - injected by name
        return f"{db['rows'] + input} via {mailer}"

    engine.provide("db", make_db)
    engine.provide("mailer", make_mailer)
    engine.register_action("count", count)
    await engine.create_workflow(
        "di", WorkflowBuilder("di").step("a", "count").step("b", "count").build()
    )

    output = await engine.execute_workflow("di", 1, wait=True, timeout_s=5)

    assert output == {"a": "4 via smtp", "b": "4 via smtp"}
    assert made == [1]


async def test_unrecordable_output_and_missing_service_fail_the_step(
    engine: WorkflowEngine,
) -> None:
    engine.register_action("obj", object)

    def needs(ctx: StepContext, nope: str) -> str:
        return f"{ctx.step} {nope}"

    engine.register_action("needs", needs)
    await engine.create_workflow("o", WorkflowBuilder("o").step("s", "obj").build())
    await engine.create_workflow("n", WorkflowBuilder("n").step("s", "needs").build())

    with pytest.raises(WorkflowFailedError, match="cannot be recorded"):
        await engine.execute_workflow("o", wait=True, timeout_s=5)
    with pytest.raises(WorkflowFailedError, match="asks for 'nope'"):
        await engine.execute_workflow("n", wait=True, timeout_s=5)
    with pytest.raises(TypeError, match="input of workflow 'o'"):
        await engine.execute_workflow("o", object())


async def test_definitions_are_versioned_and_executions_keep_theirs(
    tmp_path: Path,
) -> None:
    gate = asyncio.Event()

    async def first() -> str:
        await asyncio.wait_for(gate.wait(), 5)
        return "v1"

    path = tmp_path / "store"
    with LmdbEventStore.open(path) as store:
        async with WorkflowEngine(store) as engine:
            engine.register_action("first", first)
            engine.register_action("second", lambda: "v2")
            v1 = await engine.create_workflow(
                "w", WorkflowBuilder("w").step("s", "first").build()
            )
            running = await engine.execute_workflow("w")
            v2 = await engine.update_workflow(
                "w", WorkflowBuilder("w").step("s", "second").build()
            )
            fresh = await engine.execute_workflow("w", wait=True, timeout_s=5)
            gate.set()
            old = await engine.wait(running, timeout_s=5)
            old_status = await engine.get_execution_status(running)
            with pytest.raises(WorkflowStateError, match="exists"):
                await engine.create_workflow("w", v1)
    with LmdbEventStore.open(path) as store:
        async with WorkflowEngine(store) as engine:
            engine.register_action("second", lambda: "v2")
            listed = await engine.list_workflows()
            await engine.delete_workflow("w")
            with pytest.raises(WorkflowNotFoundError):
                await engine.get_workflow("w")
            with pytest.raises(WorkflowNotFoundError):
                await engine.execute_workflow("w")
            again = await engine.create_workflow(
                "w", WorkflowBuilder("w").step("s", "second").build()
            )

    assert (v1["version"], v2["version"]) == (1, 2)
    assert old == {"s": "v1"}
    assert fresh == {"s": "v2"}
    assert old_status.definition_version == 1
    assert [(w["name"], w["version"]) for w in listed] == [("w", 2)]
    assert again["version"] == 4


async def test_unknown_names_and_a_stopped_engine_are_clear_errors(
    clock: ManualClock,
) -> None:
    engine = WorkflowEngine(MemoryEventStore(), clock=clock)
    with pytest.raises(WorkflowStateError, match="not started"):
        await engine.list_workflows()
    async with engine:
        with pytest.raises(ExecutionNotFoundError, match="'nope'"):
            await engine.get_execution_status("nope")
        with pytest.raises(ExecutionNotFoundError):
            await engine.get_execution_history("nope")
        with pytest.raises(ExecutionNotFoundError):
            await engine.pause_workflow("nope")
        with pytest.raises(ExecutionNotFoundError):
            await engine.wait("nope", timeout_s=1)
        with pytest.raises(WorkflowNotFoundError, match="'nope'"):
            await engine.update_workflow("nope", {"steps": []})
        with pytest.raises(WorkflowNotFoundError):
            await engine.delete_workflow("nope")
        with pytest.raises(ValueError, match="non-empty"):
            engine.register_action("", print)
        with pytest.raises(ValueError, match="identifier"):
            engine.provide("not a name", dict)
        with pytest.raises(ValueError, match="bad breaker"):
            engine.register_action("a", print, breaker={"failure_threshold": 0})
        with pytest.raises(ValueError, match="max_concurrency"):
            WorkflowEngine(MemoryEventStore(), max_concurrency=0)
    with pytest.raises(WorkflowStateError, match="closed"):
        await engine.execute_workflow("x")
    with pytest.raises(WorkflowStateError, match="closed"):
        await engine.start()


async def test_wait_times_out_and_close_fails_the_waiters(clock: ManualClock) -> None:
    async def hang() -> None:
        await asyncio.sleep(60)

    engine = WorkflowEngine(MemoryEventStore(), clock=clock)
    await engine.start()
    engine.register_action("hang", hang)
    await engine.create_workflow("h", WorkflowBuilder("h").step("s", "hang").build())
    execution_id = await engine.execute_workflow("h")
    with pytest.raises(TimeoutError):
        await engine.wait(execution_id, timeout_s=0.01)
    waiter = asyncio.ensure_future(engine.wait(execution_id, timeout_s=5))
    await asyncio.sleep(0.01)

    await engine.close()

    with pytest.raises(WorkflowStateError, match="closed"):
        await waiter
    await engine.close()
    assert pykka.ActorRegistry.get_by_class(ExecutionActor) == []
