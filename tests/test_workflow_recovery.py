from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _workflow_helpers import ManualClock, until

from actors import (
    BreakerPolicy,
    StepContext,
    WorkflowBuilder,
    WorkflowEngine,
    WorkflowError,
    WorkflowFailedError,
)
from actors._workflows._state import ExecutionState, fold_execution
from eventstore import (
    LmdbEventStore,
    MemoryEventStore,
    NewEvent,
    WorkflowPaused,
    WorkflowStepSucceeded,
    workflow_stream,
)

CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    from actors import WorkflowBuilder, WorkflowEngine
    from eventstore import LmdbEventStore

    store_path, effects_path, count = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def record(ctx):
        with open(effects_path, "a") as f:
            f.write(f"1 {ctx.idempotency_key}\\n")
            f.flush()
            os.fsync(f.fileno())

    async def step(ctx):
        record(ctx)
        if ctx.step == "three":
            await asyncio.sleep(600)
        return ctx.step

    async def main():
        with LmdbEventStore.open(store_path) as store:
            async with WorkflowEngine(store) as engine:
                engine.register_action("step", step)
                builder = WorkflowBuilder("chain")
                for name in ("one", "two", "three", "four"):
                    builder.step(name, "step")
                await engine.create_workflow("chain", builder.build())
                for _ in range(count):
                    await engine.execute_workflow("chain")
                await asyncio.sleep(600)

    asyncio.run(main())
    """
)


def effect_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def test_a_killed_process_resumes_without_rerunning_completed_steps(
    tmp_path: Path,
) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    store_path = tmp_path / "store"
    effects = tmp_path / "effects.txt"
    count = 4
    child = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the child runs beside
        [sys.executable, str(script), str(store_path), str(effects), str(count)],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while sum(":three" in line for line in effect_lines(effects)) < count:
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        if child.stderr:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    phase_two: list[str] = []

    async def step(ctx: StepContext) -> str:
        phase_two.append(ctx.idempotency_key)
        return ctx.step

    with LmdbEventStore.open(store_path) as store:
        completed_before = {
            f"{e.data.execution_id}:{e.data.step}"
            for e in store.read_all()
            if isinstance(e.data, WorkflowStepSucceeded)
        }
        async with WorkflowEngine(store, recover_on_start=False) as engine:
            engine.register_action("step", step)
            resumed = await engine.recover_all()
            outputs = [await engine.wait(i, timeout_s=10) for i in resumed]
            statuses = [await engine.get_execution_status(i) for i in resumed]

    phase_one = [line.split()[1] for line in effect_lines(effects)]
    assert len(resumed) == count
    assert len(completed_before) == 2 * count
    assert not completed_before & set(phase_two)
    assert sorted(k for k in phase_two if k.endswith(":three")) == sorted(
        k for k in phase_one if k.endswith(":three")
    )
    assert all(s.state == "completed" for s in statuses)
    assert all(s.steps["three"].attempts == 1 for s in statuses)
    assert outputs[0] == {"one": "one", "two": "two", "three": "three", "four": "four"}


async def test_closing_mid_step_and_reopening_reruns_only_that_step(
    tmp_path: Path,
) -> None:
    runs: list[str] = []
    hang = asyncio.Event()

    async def step(ctx: StepContext) -> str:
        runs.append(ctx.step)
        if ctx.step == "b" and not hang.is_set():
            await asyncio.sleep(60)
        return ctx.step

    chain = WorkflowBuilder("c").step("a", "step").step("b", "step").step("c", "step")
    with LmdbEventStore.open(tmp_path / "s") as store:
        async with WorkflowEngine(store) as engine:
            engine.register_action("step", step)
            await engine.create_workflow("c", chain.build())
            execution_id = await engine.execute_workflow("c")
            await until(lambda: runs == ["a", "b"])
    hang.set()
    with LmdbEventStore.open(tmp_path / "s") as store:
        async with WorkflowEngine(store) as engine:
            engine.register_action("step", step)
            output = await engine.wait(execution_id, timeout_s=5)
            history = await engine.get_execution_history(execution_id)

    assert runs == ["a", "b", "b", "c"]
    assert output == {"a": "a", "b": "b", "c": "c"}
    started_b = [
        e for e in history if e.type == "WorkflowStepStarted" and e.data.step == "b"
    ]
    assert len(started_b) == 2
    assert "WorkflowResumed" in [e.type for e in history]


async def test_a_paused_execution_stays_paused_after_reopen(tmp_path: Path) -> None:
    gate = asyncio.Event()

    async def step(ctx: StepContext) -> str:
        if ctx.step == "a":
            await asyncio.wait_for(gate.wait(), 5)
        return ctx.step

    flow = WorkflowBuilder("p").step("a", "step").step("b", "step")
    with LmdbEventStore.open(tmp_path / "s") as store:
        async with WorkflowEngine(store) as engine:
            engine.register_action("step", step)
            await engine.create_workflow("p", flow.build())
            execution_id = await engine.execute_workflow("p")
            await engine.pause_workflow(execution_id)
            gate.set()
            await until(
                lambda: fold_state(store, execution_id).step("a").state == "succeeded"
            )
    with LmdbEventStore.open(tmp_path / "s") as store:
        async with WorkflowEngine(store) as engine:
            engine.register_action("step", step)
            paused = await engine.get_execution_status(execution_id)
            recovered = await engine.recover_workflow(execution_id)
            await engine.resume_workflow(execution_id)
            output = await engine.wait(execution_id, timeout_s=5)
            ended = await engine.recover_workflow(execution_id)

    assert paused.state == "paused"
    assert recovered == "paused"
    assert output == {"a": "a", "b": "b"}
    assert ended == "completed"


def fold_state(
    store: LmdbEventStore | MemoryEventStore, execution_id: str
) -> ExecutionState:
    state = fold_execution(store.read_stream(workflow_stream(execution_id)))
    assert state is not None
    return state


async def test_a_retry_waiting_at_close_is_scheduled_again_on_reopen(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    calls: list[int] = []

    def flaky(ctx: StepContext) -> str:
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ConnectionError("down")
        return "up"

    flow = WorkflowBuilder("r").step(
        "s", "flaky", retry={"max_attempts": 2, "backoff_s": 5, "jitter": 0}
    )
    with LmdbEventStore.open(tmp_path / "s") as store:
        async with WorkflowEngine(store, clock=clock) as engine:
            engine.register_action("flaky", flaky)
            await engine.create_workflow("r", flow.build())
            execution_id = await engine.execute_workflow("r")
            await until(lambda: clock.sleeping == 1)
    with LmdbEventStore.open(tmp_path / "s") as store:
        async with WorkflowEngine(store, clock=clock) as engine:
            engine.register_action("flaky", flaky)
            await until(lambda: clock.sleeping == 1)
            clock.advance(5)
            output = await engine.wait(execution_id, timeout_s=5)

    assert calls == [1, 2]
    assert output == {"s": "up"}


async def test_the_breaker_opens_fails_fast_and_closes_after_its_cooldown() -> None:
    clock = ManualClock()
    healthy = [False]
    calls = 0

    def pay() -> str:
        nonlocal calls
        calls += 1
        if not healthy[0]:
            raise ConnectionError("gateway down")
        return "paid"

    async with WorkflowEngine(MemoryEventStore(), clock=clock) as engine:
        engine.register_action(
            "pay", pay, breaker={"failure_threshold": 2, "cooldown_s": 30}
        )
        await engine.create_workflow("p", WorkflowBuilder("p").step("s", "pay").build())
        for _ in range(2):
            with pytest.raises(WorkflowFailedError, match="gateway down"):
                await engine.execute_workflow("p", wait=True, timeout_s=5)
        opened = engine.breaker_state("pay")
        with pytest.raises(WorkflowFailedError, match="CircuitOpenError"):
            await engine.execute_workflow("p", wait=True, timeout_s=5)
        calls_while_open = calls
        clock.advance(30)
        healthy[0] = True
        output = await engine.execute_workflow("p", wait=True, timeout_s=5)
        closed = engine.breaker_state("pay")

    assert opened == "open"
    assert calls_while_open == 2
    assert output == {"s": "paid"}
    assert closed == "closed"
    assert calls == 3


async def test_a_step_that_waits_on_an_open_breaker_runs_after_the_cooldown() -> None:
    clock = ManualClock()
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("down")
        return "ok"

    async with WorkflowEngine(
        MemoryEventStore(),
        clock=clock,
        breaker=BreakerPolicy(failure_threshold=1, cooldown_s=10),
    ) as engine:
        engine.register_action("flaky", flaky)
        await engine.create_workflow(
            "w", WorkflowBuilder("w").step("s", "flaky").build()
        )
        await engine.create_workflow(
            "patient",
            WorkflowBuilder("patient")
            .step("s", "flaky", on_circuit_open="wait")
            .build(),
        )
        with pytest.raises(WorkflowFailedError):
            await engine.execute_workflow("w", wait=True, timeout_s=5)
        execution_id = await engine.execute_workflow("patient")
        await until(lambda: clock.sleeping == 1)
        waiting_calls = calls
        clock.advance(10)
        output = await engine.wait(execution_id, timeout_s=5)

    assert waiting_calls == 1
    assert output == {"s": "ok"}


async def test_a_second_writer_on_the_stream_stops_the_actor_loudly() -> None:
    gate = asyncio.Event()

    async def step() -> str:
        await asyncio.wait_for(gate.wait(), 5)
        return "done"

    store = MemoryEventStore()
    async with WorkflowEngine(store) as engine:
        engine.register_action("step", step)
        await engine.create_workflow(
            "w", WorkflowBuilder("w").step("s", "step").build()
        )
        execution_id = await engine.execute_workflow("w")
        stream = workflow_stream(execution_id)
        await until(lambda: store.stream_version(stream) == 2)
        store.append([NewEvent(stream, "WorkflowPaused", WorkflowPaused(execution_id))])
        gate.set()

        with pytest.raises(WorkflowError, match="stopped"):
            await engine.wait(execution_id, timeout_s=5)
