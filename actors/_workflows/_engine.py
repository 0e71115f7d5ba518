"""The workflow engine: definitions, executions and their control, on a store.

The engine lives on the asyncio loop that starts it. Definitions are events
in ``workflow-definitions/<name>``; each execution is an
:class:`~actors._workflows._actor.ExecutionActor` writing
``workflows/<execution id>``. Queries fold the execution's stream, so they
need no projection and see exactly what was recorded.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Literal, Self, overload

import msgspec
import pykka

from actors._workflows._actions import Action
from actors._workflows._actor import (
    Accepted,
    ActorGoneError,
    CancelSteps,
    Command,
    ExecutionActor,
    Finished,
    Launch,
    Op,
    Timer,
)
from actors._workflows._definition import WorkflowSpec, normalize_definition
from actors._workflows._errors import (
    ExecutionNotFoundError,
    WorkflowCancelledError,
    WorkflowError,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowStateError,
)
from actors._workflows._metrics import WorkflowMetrics, workflow_metrics
from actors._workflows._policy import BreakerPolicy, CircuitBreaker, Clock, SystemClock
from actors._workflows._runner import StepRunner
from actors._workflows._state import (
    TERMINAL,
    ExecutionState,
    ExecutionStatus,
    fold_execution,
)
from eventstore import (
    NO_STREAM,
    WORKFLOW_STREAM_PREFIX,
    EventStore,
    NewEvent,
    StoredEvent,
    WorkflowStarted,
    register_event,
    workflow_stream,
)

__all__ = [
    "DEFINITION_STREAM_PREFIX",
    "WorkflowDefined",
    "WorkflowDeleted",
    "WorkflowEngine",
]

logger = logging.getLogger(__name__)

DEFINITION_STREAM_PREFIX = "workflow-definitions/"


@register_event("WorkflowDefined")
class WorkflowDefined(msgspec.Struct, frozen=True):
    """A version of a workflow definition, normalised.

    Its version number is its version in ``workflow-definitions/<name>``.
    """

    name: str
    definition: dict[str, Any]


@register_event("WorkflowDeleted")
class WorkflowDeleted(msgspec.Struct, frozen=True):
    """The workflow can no longer be started; executions keep their copy."""

    name: str


class _Definition(msgspec.Struct, frozen=True):
    version: int
    spec: WorkflowSpec
    data: dict[str, Any]


def _definition_stream(name: str) -> str:
    return f"{DEFINITION_STREAM_PREFIX}{name}"


class WorkflowEngine:
    """Durable workflows on an event store; use it as an async context manager.

    Args:
        store: Where definitions and executions are recorded.
        max_concurrency: Steps running at once, across every execution.
        clock: Time for backoff, breakers and timeouts (tests inject one).
        recover_on_start: Resume every unfinished execution on ``start``;
            register the actions first.
        breaker: The circuit-breaker policy of actions registered without one.
        ask_timeout_s: How long a control command waits for its actor.
        rng: The source of backoff jitter.

    """

    def __init__(
        self,
        store: EventStore,
        *,
        max_concurrency: int = 10,
        clock: Clock | None = None,
        recover_on_start: bool = True,
        breaker: BreakerPolicy | None = None,
        ask_timeout_s: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.store = store
        self.max_concurrency = max_concurrency
        self.clock: Clock = clock or SystemClock()
        self._recover_on_start = recover_on_start
        self._default_breaker = breaker or BreakerPolicy()
        self._ask_timeout_s = ask_timeout_s
        self._rng = rng or random.Random()
        self._actions: dict[str, Action] = {}
        self._breaker_policies: dict[str, BreakerPolicy] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._providers: dict[str, Callable[[], Any]] = {}
        self._definitions: dict[str, _Definition] = {}
        self._versions: dict[str, int] = {}
        self._actors: dict[str, pykka.ActorRef[ExecutionActor]] = {}
        self._waiters: dict[str, list[asyncio.Future[Any]]] = {}
        self._accepting: dict[str, asyncio.Future[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: StepRunner | None = None
        self._closed = False

    # -- registration ------------------------------------------------------------

    def register_action(
        self,
        name: str,
        fn: Callable[..., Any],
        *,
        breaker: BreakerPolicy | Mapping[str, Any] | None = None,
    ) -> None:
        """Register (or replace) a sync or async callable as action ``name``.

        Raises:
            TypeError: If ``fn`` is not callable or asks for positional-only
                parameters after its first.
            ValueError: If the name is empty or the breaker policy is bad.

        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"an action name must be a non-empty str, got {name!r}")
        self._actions[name] = Action(name, fn)
        if breaker is not None:
            try:
                policy = (
                    breaker
                    if isinstance(breaker, BreakerPolicy)
                    else msgspec.convert(breaker, BreakerPolicy)
                )
            except msgspec.ValidationError as exc:
                raise ValueError(f"action {name!r}: bad breaker policy: {exc}") from exc
            self._breaker_policies[name] = policy
            self._breakers.pop(name, None)

    def provide(self, name: str, factory: Callable[[], Any]) -> None:
        """Make a service available to actions that ask for ``name``.

        The factory (sync, or returning an awaitable) is called once, when a
        step first needs it; every step then shares the instance.
        """
        if not name.isidentifier():
            raise ValueError(f"a service name must be an identifier, got {name!r}")
        self._providers[name] = factory

    def breaker_state(self, action: str) -> str:
        """The state of an action's circuit breaker: closed, open or half-open."""
        breaker = self._breakers.get(action)
        return "closed" if breaker is None else breaker.state

    # -- life ----------------------------------------------------------------------

    async def start(self) -> None:
        """Load the definitions and, by default, resume unfinished executions."""
        if self._closed:
            raise WorkflowStateError("the workflow engine is closed")
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._runner = StepRunner(
            self._loop,
            self.clock,
            max_concurrency=self.max_concurrency,
            actions=self._actions,
            breakers=self._breakers,
            breaker_policy=lambda a: self._breaker_policies.get(
                a, self._default_breaker
            ),
            providers=self._providers,
        )
        await asyncio.to_thread(self._load_definitions)
        if self._recover_on_start:
            await self.recover_all()

    async def close(self) -> None:
        """Stop every execution actor and cancel running steps.

        Unfinished executions stay unfinished in the log: the next engine on
        the store resumes them, running interrupted steps again.
        """
        if self._closed:
            return
        self._closed = True
        if self._runner is not None:
            tasks = self._runner.close()
            if tasks:
                await asyncio.wait(tasks, timeout=self._ask_timeout_s)
        refs = list(self._actors.values())
        self._actors.clear()
        if refs:
            await asyncio.to_thread(_stop_all, refs, self._ask_timeout_s)
        closed = WorkflowStateError("the workflow engine is closed")
        for fut in [*self._accepting.values()] + [
            f for group in self._waiters.values() for f in group
        ]:
            if not fut.done():
                fut.set_exception(closed)
        self._accepting.clear()
        self._waiters.clear()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _live(self) -> tuple[asyncio.AbstractEventLoop, StepRunner]:
        if self._closed:
            raise WorkflowStateError("the workflow engine is closed")
        if self._loop is None or self._runner is None:
            raise WorkflowStateError(
                "the workflow engine is not started: use 'async with engine' "
                "or 'await engine.start()'"
            )
        return self._loop, self._runner

    # -- definitions ---------------------------------------------------------------

    def _load_definitions(self) -> None:
        for info in self.store.streams(prefix=DEFINITION_STREAM_PREFIX):
            name = info.stream[len(DEFINITION_STREAM_PREFIX) :]
            self._versions[name] = info.version
            last = list(self.store.read_stream(info.stream, from_version=info.version))
            event = last[-1]
            if isinstance(event.data, WorkflowDefined):
                spec = WorkflowSpec.from_dict(event.data.definition)
                self._definitions[name] = _Definition(
                    event.version, spec, event.data.definition
                )

    async def _define(
        self, name: str, definition: Mapping[str, Any], *, new: bool
    ) -> dict[str, Any]:
        self._live()
        exists = name in self._definitions
        if new and exists:
            raise WorkflowStateError(
                f"workflow {name!r} exists; use update_workflow to change it"
            )
        if not new and not exists:
            raise WorkflowNotFoundError(f"no workflow is called {name!r}")
        spec = normalize_definition(name, definition, actions=self._actions)
        data = spec.to_dict()
        version = self._versions.get(name, 0)
        stream = _definition_stream(name)
        await self.store.append_async(
            [NewEvent(stream, "WorkflowDefined", WorkflowDefined(name, data))],
            expected_versions={stream: version or NO_STREAM},
        )
        self._versions[name] = version + 1
        self._definitions[name] = _Definition(version + 1, spec, data)
        logger.info("workflow %s defined at version %d", name, version + 1)
        return {**data, "version": version + 1}

    async def create_workflow(
        self, name: str, definition: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Check and store a new workflow; return it normalised, with its version.

        Raises:
            InvalidWorkflowError: If the definition is not valid (the message
                names the step and field).
            WorkflowStateError: If a workflow of that name exists.

        """
        return await self._define(name, definition, new=True)

    async def update_workflow(
        self, name: str, definition: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Store a new version of a workflow; running executions keep theirs.

        Raises:
            InvalidWorkflowError: If the definition is not valid.
            WorkflowNotFoundError: If there is no such workflow.

        """
        return await self._define(name, definition, new=False)

    async def delete_workflow(self, name: str) -> None:
        """Delete a workflow; its running executions go on.

        Raises:
            WorkflowNotFoundError: If there is no such workflow.

        """
        self._live()
        if name not in self._definitions:
            raise WorkflowNotFoundError(f"no workflow is called {name!r}")
        stream = _definition_stream(name)
        version = self._versions[name]
        await self.store.append_async(
            [NewEvent(stream, "WorkflowDeleted", WorkflowDeleted(name))],
            expected_versions={stream: version},
        )
        self._versions[name] = version + 1
        del self._definitions[name]

    async def get_workflow(self, name: str) -> dict[str, Any]:
        """A workflow's current definition (normalised) and ``version``.

        Raises:
            WorkflowNotFoundError: If there is no such workflow.

        """
        self._live()
        found = self._definitions.get(name)
        if found is None:
            raise WorkflowNotFoundError(f"no workflow is called {name!r}")
        return {**found.data, "version": found.version}

    async def list_workflows(self) -> list[dict[str, Any]]:
        """Every current workflow definition, by name."""
        self._live()
        return [
            {**found.data, "version": found.version}
            for _, found in sorted(self._definitions.items())
        ]

    # -- executions ------------------------------------------------------------------

    @overload
    async def execute_workflow(
        self,
        name: str,
        input: Any = None,
        *,
        wait: Literal[False] = False,
        timeout_s: float | None = None,
    ) -> str: ...

    @overload
    async def execute_workflow(
        self,
        name: str,
        input: Any = None,
        *,
        wait: Literal[True],
        timeout_s: float | None = None,
    ) -> Any: ...

    async def execute_workflow(
        self,
        name: str,
        input: Any = None,  # noqa: A002 - the specification's name
        *,
        wait: bool = False,
        timeout_s: float | None = None,
    ) -> Any:
        """Start an execution of the workflow's current version.

        Args:
            name: The workflow.
            input: The execution's input (MessagePack-able data).
            wait: Wait for the end and return the output instead of the id.
            timeout_s: With ``wait``, how long to wait.

        Returns:
            The execution id, once its start is durable; with ``wait``, the
            output: ``{step name: output}``.

        Raises:
            WorkflowNotFoundError: If there is no such workflow.
            TypeError: If the input cannot be recorded.
            WorkflowFailedError: With ``wait``, if the execution failed.
            WorkflowCancelledError: With ``wait``, if it was cancelled.
            TimeoutError: With ``wait``, if it did not end in time.

        """
        loop, _ = self._live()
        found = self._definitions.get(name)
        if found is None:
            raise WorkflowNotFoundError(f"no workflow is called {name!r}")
        try:
            msgspec.msgpack.encode(input)
        except (TypeError, msgspec.EncodeError) as exc:
            raise TypeError(
                f"the input of workflow {name!r} cannot be recorded: {exc}"
            ) from exc
        execution_id = uuid.uuid4().hex
        started = WorkflowStarted(execution_id, name, found.version, input, found.data)
        accepted: asyncio.Future[None] = loop.create_future()
        self._accepting[execution_id] = accepted
        self._spawn(execution_id, started)
        try:
            await asyncio.wait_for(accepted, self._ask_timeout_s)
        finally:
            self._accepting.pop(execution_id, None)
        if wait:
            return await self.wait(execution_id, timeout_s=timeout_s)
        return execution_id

    async def wait(self, execution_id: str, *, timeout_s: float | None = None) -> Any:
        """Wait for an execution to end and return its output.

        Raises:
            ExecutionNotFoundError: If there is no such execution.
            WorkflowFailedError: If it failed.
            WorkflowCancelledError: If it was cancelled.
            TimeoutError: If it did not end within ``timeout_s``.

        """
        loop, _ = self._live()
        fut: asyncio.Future[Any] = loop.create_future()
        waiters = self._waiters.setdefault(execution_id, [])
        waiters.append(fut)
        try:
            if execution_id not in self._actors:
                state = await self._fold(execution_id)
                if state.state in TERMINAL:
                    status = state.status
                    _settle(
                        fut,
                        execution_id,
                        Finished(
                            status.state,
                            status.output,
                            status.failed_step,
                            status.error_type,
                            status.error,
                        ),
                    )
            return await asyncio.wait_for(fut, timeout_s)
        finally:
            if fut in waiters:
                waiters.remove(fut)
            if not waiters and self._waiters.get(execution_id) is waiters:
                del self._waiters[execution_id]

    # -- control -----------------------------------------------------------------

    async def pause_workflow(self, execution_id: str) -> str:
        """Let running steps finish and start no new one; return the state."""
        return await self._command(execution_id, "pause")

    async def resume_workflow(self, execution_id: str) -> str:
        """Go on after ``pause_workflow``; return the state."""
        return await self._command(execution_id, "resume")

    async def cancel_workflow(self, execution_id: str, *, reason: str = "") -> str:
        """Cancel running steps and end the execution cancelled."""
        return await self._command(execution_id, "cancel", reason=reason)

    async def retry_failed_step(self, execution_id: str, step: str) -> str:
        """Run a failed step again (a new attempt); the execution goes on."""
        return await self._command(execution_id, "retry", step=step)

    async def skip_failed_step(
        self, execution_id: str, step: str, output: Any = None
    ) -> str:
        """Mark a failed step skipped, with ``output``; the execution goes on."""
        return await self._command(execution_id, "skip", step=step, output=output)

    async def recover_workflow(self, execution_id: str) -> str:
        """Make sure an unfinished execution has an actor driving it."""
        return await self._command(execution_id, "recover")

    async def recover_all(self) -> list[str]:
        """Resume every unfinished execution; return their ids."""
        self._live()
        unfinished = await asyncio.to_thread(self._unfinished)
        resumed = []
        for execution_id in unfinished:
            if execution_id not in self._actors:
                self._spawn(execution_id)
                resumed.append(execution_id)
        if resumed:
            logger.info("resumed %d unfinished execution(s)", len(resumed))
        return resumed

    def _unfinished(self) -> list[str]:
        found = []
        for info in self.store.streams(prefix=WORKFLOW_STREAM_PREFIX):
            state = fold_execution(self.store.read_stream(info.stream))
            if state is not None and state.state not in TERMINAL:
                found.append(state.status.execution_id)
        return found

    async def _command(self, execution_id: str, kind: str, **fields: Any) -> str:
        loop, _ = self._live()
        for _ in range(3):
            ref = self._actors.get(execution_id)
            if ref is None:
                await self._fold(execution_id)
                ref = self._actors.get(execution_id)
                if ref is None:
                    ref = self._spawn(execution_id)
            fut: asyncio.Future[str] = loop.create_future()
            try:
                ref.tell(Command(kind, _replier(loop, fut), **fields))  # type: ignore[arg-type]
                return await asyncio.wait_for(fut, self._ask_timeout_s)
            except (ActorGoneError, pykka.ActorDeadError):
                if self._actors.get(execution_id) is ref:
                    del self._actors[execution_id]
        raise WorkflowStateError(f"execution {execution_id!r} did not take {kind!r}")

    def _spawn(
        self, execution_id: str, started: WorkflowStarted | None = None
    ) -> pykka.ActorRef[ExecutionActor]:
        # The one place execution actors are started: a new execution when
        # ``started`` is given, else rebuilt from its stream.
        ref = ExecutionActor.start(
            self.store, execution_id, self._send_ops, started=started, rng=self._rng
        )
        self._actors[execution_id] = ref
        return ref

    # -- from the actors -------------------------------------------------------------

    def _send_ops(
        self, execution_id: str, ref: pykka.ActorRef[ExecutionActor], ops: list[Op]
    ) -> None:
        # Called on actor threads: one hand-off to the loop per decision.
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._on_ops, execution_id, ref, ops)
        except RuntimeError:
            logger.warning("execution %s: the engine's loop is closed", execution_id)

    def _on_ops(
        self, execution_id: str, ref: pykka.ActorRef[ExecutionActor], ops: list[Op]
    ) -> None:
        runner = self._runner
        for op in ops:
            if isinstance(op, Launch):
                if not self._closed and runner is not None:
                    runner.launch(execution_id, ref, op)
            elif isinstance(op, Timer):
                if not self._closed and runner is not None:
                    runner.timer(execution_id, ref, op.step, op.delay_s)
            elif isinstance(op, CancelSteps):
                if runner is not None:
                    runner.cancel(execution_id)
            elif isinstance(op, Accepted):
                accepted = self._accepting.get(execution_id)
                if accepted is not None and not accepted.done():
                    accepted.set_result(None)
            else:
                self._on_finished(execution_id, ref, op)

    def _on_finished(
        self, execution_id: str, ref: pykka.ActorRef[ExecutionActor], op: Finished
    ) -> None:
        accepted = self._accepting.get(execution_id)
        if accepted is not None and not accepted.done() and op.crash is not None:
            accepted.set_exception(
                WorkflowError(
                    f"execution {execution_id!r} could not start: {op.crash!r}"
                )
            )
        for fut in self._waiters.get(execution_id, []):
            _settle(fut, execution_id, op)
        if self._actors.get(execution_id) is ref:
            del self._actors[execution_id]
        ref.stop(block=False)

    # -- monitoring ------------------------------------------------------------------

    async def _fold(self, execution_id: str) -> ExecutionState:
        state = await asyncio.to_thread(
            lambda: fold_execution(
                self.store.read_stream(workflow_stream(execution_id))
            )
        )
        if state is None:
            raise ExecutionNotFoundError(f"no execution has id {execution_id!r}")
        return state

    async def get_execution_status(self, execution_id: str) -> ExecutionStatus:
        """The execution's state, each step's state, attempts, errors and timings.

        Raises:
            ExecutionNotFoundError: If there is no such execution.

        """
        self._live()
        return (await self._fold(execution_id)).status

    async def get_execution_history(self, execution_id: str) -> list[StoredEvent]:
        """The execution's events, in order.

        Raises:
            ExecutionNotFoundError: If there is no such execution.

        """
        self._live()
        stream = workflow_stream(execution_id)
        events = await asyncio.to_thread(lambda: list(self.store.read_stream(stream)))
        if not events:
            raise ExecutionNotFoundError(f"no execution has id {execution_id!r}")
        return events

    async def get_workflow_metrics(self, name: str) -> WorkflowMetrics:
        """Counts by state, step durations, failure rate and retries of a workflow."""
        self._live()
        return await asyncio.to_thread(workflow_metrics, self.store, name)


def _replier(
    loop: asyncio.AbstractEventLoop, fut: asyncio.Future[str]
) -> Callable[[BaseException | None, Any], None]:
    def settle(error: BaseException | None, value: Any) -> None:
        if fut.done():
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(value)

    def reply(error: BaseException | None, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(settle, error, value)
        except RuntimeError:
            logger.debug("a reply arrived after the engine's loop closed")

    return reply


def _settle(fut: asyncio.Future[Any], execution_id: str, op: Finished) -> None:
    if fut.done():
        return
    if op.state == "completed":
        fut.set_result(op.output)
    elif op.state == "failed":
        fut.set_exception(
            WorkflowFailedError(
                execution_id, op.step or "", op.error_type or "", op.error or ""
            )
        )
    elif op.state == "cancelled":
        fut.set_exception(
            WorkflowCancelledError(f"execution {execution_id!r} was cancelled")
        )
    else:
        error = WorkflowError(f"execution {execution_id!r} stopped: {op.crash!r}")
        error.__cause__ = op.crash
        fut.set_exception(error)


def _stop_all(refs: list[pykka.ActorRef[ExecutionActor]], timeout_s: float) -> None:
    for ref in refs:
        ref.stop(block=False)
    for ref in refs:
        try:
            ref.actor_stopped.wait(timeout_s)
        except pykka.ActorDeadError:
            continue
