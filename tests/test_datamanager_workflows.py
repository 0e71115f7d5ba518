"""``dm.workflows``: the engine on the DataManager's store, under ``dm.system``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pykka
import pytest
from _workflow_helpers import until

from actors import (
    ActorError,
    DataManager,
    RestartPolicy,
    StepContext,
    WorkflowBuilder,
    WorkflowError,
    WorkflowStateError,
)
from eventstore import (
    AppendResult,
    Expected,
    MemoryEventStore,
    NewEvent,
    WorkflowStarted,
    WorkflowStepSucceeded,
    workflow_stream,
)

CHAIN = WorkflowBuilder("chain").step("one", "step").step("two", "step").build()


class FailingDisk(MemoryEventStore):
    """A store whose appends of a chosen step's success fail, like a full disk.

    With ``step=None`` the appends of a new execution's start fail instead.
    """

    def __init__(self, step: str | None, *, failures: int) -> None:
        super().__init__()
        self.step = step
        self.failures = failures

    def _doomed(self, event: NewEvent) -> bool:
        if self.step is None:
            return isinstance(event.data, WorkflowStarted)
        return (
            isinstance(event.data, WorkflowStepSucceeded)
            and event.data.step == self.step
        )

    def append(
        self,
        events: Sequence[NewEvent],
        *,
        expected_versions: Mapping[str, Expected] | None = None,
        command_id: str | None = None,
    ) -> AppendResult:
        if self.failures and any(self._doomed(e) for e in events):
            self.failures -= 1
            raise OSError(28, "No space left on device")
        return super().append(
            events, expected_versions=expected_versions, command_id=command_id
        )


async def test_dm_workflows_runs_executions_under_the_system_supervisor() -> None:
    gate = asyncio.Event()

    async def step(ctx: StepContext) -> str:
        if ctx.step == "two":
            await asyncio.wait_for(gate.wait(), 5)
        return ctx.step

    async with DataManager.in_memory() as dm:
        dm.workflows.register_action("step", step)
        await dm.workflows.start()
        await dm.workflows.create_workflow("chain", CHAIN)
        execution_id = await dm.workflows.execute_workflow("chain")
        await until(lambda: dm.workflow_supervisor.children == [execution_id])

        assert dm.system.children == ["collections", "projections", "workflows"]
        assert dm.workflows.store is dm.store
        gate.set()
        output = await dm.workflows.wait(execution_id, timeout_s=5)
        await until(lambda: dm.workflow_supervisor.children == [])

    assert output == {"one": "one", "two": "two"}


async def test_dm_workflows_report_to_the_data_managers_monitoring() -> None:
    async def step(ctx: StepContext) -> str:
        return ctx.step

    async with DataManager.in_memory() as dm:
        dm.workflows.register_action("step", step)
        await dm.workflows.start()
        await dm.workflows.create_workflow("chain", CHAIN)
        await dm.workflows.execute_workflow("chain", wait=True)

        executions = dm.monitoring.get_metric(
            "workflow.executions", {"workflow": "chain", "state": "completed"}
        )

    assert executions["sum"] == 1


async def test_a_crashed_execution_actor_is_restarted_and_resumes_from_its_events() -> (
    None
):
    runs: list[tuple[str, int]] = []

    def step(ctx: StepContext) -> str:
        runs.append((ctx.step, ctx.attempt))
        return ctx.step.upper()

    store = FailingDisk("two", failures=1)
    async with DataManager(store=store) as dm:
        dm.workflows.register_action("step", step)
        await dm.workflows.start()
        await dm.workflows.create_workflow("chain", CHAIN)

        output = await dm.workflows.execute_workflow("chain", wait=True, timeout_s=5)

    assert output == {"one": "ONE", "two": "TWO"}
    assert dm.workflow_supervisor.restarts == 1
    # Step one is not run again; step two, interrupted, runs again as attempt 1.
    assert runs == [("one", 1), ("two", 1), ("two", 1)]
    (info,) = store.streams(prefix="workflows/")
    types = [e.type for e in store.read_stream(info.stream)]
    assert types.count("WorkflowStepSucceeded") == 2
    assert "WorkflowResumed" in types
    assert types[-1] == "WorkflowCompleted"


async def test_an_execution_whose_start_cannot_be_recorded_is_not_restarted() -> None:
    def step() -> str:
        return "done"

    store = FailingDisk(None, failures=1)
    async with DataManager(store=store) as dm:
        dm.workflows.register_action("step", step)
        await dm.workflows.start()
        await dm.workflows.create_workflow("chain", CHAIN)

        with pytest.raises(WorkflowError, match="could not start"):
            await dm.workflows.execute_workflow("chain")
        output = await dm.workflows.execute_workflow("chain", wait=True, timeout_s=5)
        await until(lambda: dm.workflow_supervisor.children == [])

    assert output == {"one": "done", "two": "done"}
    assert dm.workflow_supervisor.restarts == 0
    assert len(list(store.streams(prefix="workflows/"))) == 1


async def test_an_execution_whose_actor_keeps_failing_ends_its_waiters() -> None:
    def step() -> str:
        return "done"

    policy = RestartPolicy(max_restarts=1, backoff_initial_s=0.001)
    store = FailingDisk("one", failures=1_000)
    async with DataManager(store=store, restart_policy=policy) as dm:
        dm.workflows.register_action("step", step)
        await dm.workflows.start()
        await dm.workflows.create_workflow("chain", CHAIN)
        execution_id = await dm.workflows.execute_workflow("chain")

        with pytest.raises(WorkflowError, match="stopped") as caught:
            await dm.workflows.wait(execution_id, timeout_s=10)
        await until(lambda: dm.system.give_ups == 1)

    assert isinstance(caught.value, ActorError)
    assert dm.workflow_supervisor.escalations >= 1


async def test_unfinished_executions_resume_only_when_the_engine_starts(
    tmp_path: Path,
) -> None:
    blocked = asyncio.Event()

    async def hang(ctx: StepContext) -> str:
        if ctx.step == "two":
            blocked.set()
            await asyncio.sleep(60)
        return ctx.step

    async with DataManager.open(tmp_path / "d") as dm:
        dm.workflows.register_action("step", hang)
        await dm.workflows.start()
        await dm.workflows.create_workflow("chain", CHAIN)
        execution_id = await dm.workflows.execute_workflow("chain")
        await asyncio.wait_for(blocked.wait(), 5)
    stream = workflow_stream(execution_id)

    async def step(ctx: StepContext) -> str:
        return ctx.step

    async with DataManager.open(tmp_path / "d") as dm:
        version = dm.store.stream_version(stream)
        await asyncio.sleep(0.05)
        assert dm.store.stream_version(stream) == version
        assert dm.workflow_supervisor.children == []
        with pytest.raises(WorkflowStateError, match=r"dm\.workflows\.start"):
            await dm.workflows.list_workflows()

        dm.workflows.register_action("step", step)
        await dm.workflows.start()
        output = await dm.workflows.wait(execution_id, timeout_s=5)

    assert output == {"one": "one", "two": "two"}


async def test_no_thread_or_actor_outlives_close_with_workflows(
    tmp_path: Path,
) -> None:
    def ours() -> set[threading.Thread]:
        return {
            t
            for t in threading.enumerate()
            if not t.name.startswith("asyncio_") and t is not threading.main_thread()
        }

    before = ours()
    actors_before = set(pykka.ActorRegistry.get_all())
    started = threading.Event()

    def slow(cancel: threading.Event) -> str:
        started.set()
        cancel.wait(5)
        return "late"

    async with DataManager.open(tmp_path / "d") as dm:
        dm.workflows.register_action("step", slow)
        await dm.workflows.start()
        await dm.workflows.create_workflow("chain", CHAIN)
        await dm.workflows.execute_workflow("chain")
        await asyncio.to_thread(started.wait, 5)
        assert len(ours() - before) >= 4

    assert ours() - before == set()
    assert set(pykka.ActorRegistry.get_all()) <= actors_before
    with pytest.raises(WorkflowStateError, match="closed"):
        await dm.workflows.start()


async def test_the_engine_needs_a_started_data_manager() -> None:
    dm = DataManager.in_memory()

    with pytest.raises(ActorError, match="not started"):
        dm.workflows.register_action("x", print)

    async with dm:
        assert dm.workflows.max_concurrency == 10
    options = {"max_concurrency": 3}
    async with DataManager.in_memory(workflow_options=options) as dm:
        assert dm.workflows.max_concurrency == 3


def test_workflow_errors_derive_from_the_actors_root() -> None:
    assert issubclass(WorkflowError, ActorError)
    assert issubclass(WorkflowStateError, ActorError)


class HeldRestarts:
    """A scheduler that holds every restart until the test releases it."""

    def __init__(self) -> None:
        self.held: list[Callable[[], None]] = []
        self.lock = threading.Lock()

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        del delay_s
        with self.lock:
            self.held.append(fn)

    def release(self) -> None:
        with self.lock:
            held, self.held = self.held, []
        for fn in held:
            fn()

    def cancel_all(self) -> None:
        with self.lock:
            self.held.clear()


async def test_a_command_sent_while_the_actor_restarts_reaches_the_next_one() -> None:
    def step(ctx: StepContext) -> str:
        return ctx.step

    scheduler = HeldRestarts()
    store = FailingDisk("one", failures=1)
    async with DataManager(store=store, scheduler=scheduler) as dm:
        dm.workflows.register_action("step", step)
        await dm.workflows.start()
        await dm.workflows.create_workflow("chain", CHAIN)
        execution_id = await dm.workflows.execute_workflow("chain")
        await until(lambda: len(scheduler.held) == 1)

        pause = asyncio.ensure_future(dm.workflows.pause_workflow(execution_id))
        await asyncio.sleep(0.01)
        assert not pause.done()
        scheduler.release()
        state = await asyncio.wait_for(pause, 5)
        status = await dm.workflows.get_execution_status(execution_id)
        await dm.workflows.resume_workflow(execution_id)
        output = await dm.workflows.wait(execution_id, timeout_s=5)

    assert state == "paused"
    assert status.steps["two"].state == "pending"
    assert output == {"one": "one", "two": "two"}
