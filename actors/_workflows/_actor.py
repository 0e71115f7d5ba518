"""The execution actor: one per live execution, the only writer of its stream.

Design note. The actor owns every decision (which step starts, whether a
failure retries, when the execution ends) and every append; the engine's
event loop owns every step's running. Per step there are few hand-offs: the
actor appends ``WorkflowStepStarted`` (together with whatever else the same
decision produced) and hands the launch to the loop in one
``call_soon_threadsafe``; the loop tells the outcome back with one ``tell``.

Invariants, and why they hold:

* A step's action starts only after its ``WorkflowStepStarted`` is durable,
  and a step's dependents start only after its ``WorkflowStepSucceeded`` is
  durable: the actor flushes (a blocking, group-committed append on its own
  thread) before it sends launches to the loop.
* One writer per stream: every append names the version the actor expects,
  so a second actor for the same execution fails loudly instead of
  interleaving.
* The actor's state is the fold of its stream: it applies each event it
  emits with the same ``ExecutionState.apply_data`` a query uses.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Callable
from typing import Any, Literal

import msgspec
import pykka

from actors._workflows._definition import StepSpec
from actors._workflows._errors import WorkflowError, WorkflowStateError
from actors._workflows._state import TERMINAL, ExecutionState, fold_execution
from eventstore import (
    EventStore,
    NewEvent,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowPaused,
    WorkflowResumed,
    WorkflowStarted,
    WorkflowStepFailed,
    WorkflowStepRetried,
    WorkflowStepSkipped,
    WorkflowStepStarted,
    WorkflowStepSucceeded,
    workflow_stream,
)

__all__ = [
    "ActorGoneError",
    "Command",
    "ExecutionActor",
    "Finished",
    "Launch",
    "RetryDue",
    "StepDone",
    "Timer",
]

logger = logging.getLogger(__name__)

Reply = Callable[[BaseException | None, Any], None]


class ActorGoneError(WorkflowError):
    """Raised when a command reaches an actor that has already finished."""


# -- messages from the loop to the actor ------------------------------------


class StepDone(msgspec.Struct, frozen=True):
    """A step's attempt ended on the loop."""

    step: str
    attempt: int
    outcome: Literal["succeeded", "failed", "skipped"]
    output: Any = None
    error_type: str = ""
    error: str = ""
    error_types: tuple[str, ...] = ()
    duration_s: float = 0.0


class RetryDue(msgspec.Struct, frozen=True):
    """A retry's backoff has elapsed."""

    step: str


class Command(msgspec.Struct, frozen=True):
    """A control command; ``reply`` resolves the caller's future."""

    kind: Literal["pause", "resume", "cancel", "retry", "skip", "recover"]
    reply: Reply
    step: str = ""
    output: Any = None
    reason: str = ""


# -- operations from the actor to the loop ----------------------------------


class Launch(msgspec.Struct, frozen=True):
    """Run one attempt of a step."""

    workflow: str
    step: StepSpec
    attempt: int
    idempotency_key: str
    input: Any
    results: dict[str, Any]


class Timer(msgspec.Struct, frozen=True):
    """Tell ``RetryDue`` after ``delay_s`` of the engine's clock."""

    step: str
    delay_s: float


class CancelSteps(msgspec.Struct, frozen=True):
    """Cancel the execution's running steps and timers."""


class Accepted(msgspec.Struct, frozen=True):
    """The execution's start is durable."""


class Finished(msgspec.Struct, frozen=True):
    """The execution ended, or the actor cannot go on (``crash``)."""

    state: str
    output: Any = None
    step: str | None = None
    error_type: str | None = None
    error: str | None = None
    crash: BaseException | None = None


Op = Launch | Timer | CancelSteps | Accepted | Finished
SendOps = Callable[[str, "pykka.ActorRef[ExecutionActor]", list[Op]], None]


class ExecutionActor(pykka.ThreadingActor):
    """Drives one execution from its events; see the module's design note."""

    def __init__(
        self,
        store: EventStore,
        execution_id: str,
        send_ops: SendOps,
        *,
        started: WorkflowStarted | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__()
        self._store = store
        self._id = execution_id
        self._stream = workflow_stream(execution_id)
        self._send_ops = send_ops
        self._started = started
        self._rng = rng or random.Random()
        self._version = 0
        self._batch: list[NewEvent] = []
        self._ops: list[Op] = []
        self._running: set[str] = set()
        self._timers: set[str] = set()
        self._rerun: dict[str, int] = {}
        self._gone = False
        self.state: ExecutionState

    # -- life --------------------------------------------------------------

    def on_start(self) -> None:
        """Start a new execution, or rebuild an existing one from its stream."""
        try:
            if self._started is not None:
                self.state = ExecutionState(self._started, _now(), 1)
                self._batch.append(
                    NewEvent(self._stream, "WorkflowStarted", self._started)
                )
                self._ops.append(Accepted())
            elif self._recover() in TERMINAL:
                # Spawned to take a command (retry, skip) on an ended execution.
                return
            self._advance()
            self._flush()
        except Exception as exc:  # noqa: BLE001 - reported to the waiters
            self._crash(exc)

    def _recover(self) -> str:
        events = list(self._store.read_stream(self._stream))
        state = fold_execution(events)
        if state is None:
            raise WorkflowStateError(f"execution {self._id!r} has no WorkflowStarted")
        self.state = state
        self._version = events[-1].version
        if state.state in TERMINAL:
            return state.state
        for status in state.status.steps.values():
            if status.state == "running":
                self._rerun[status.name] = status.attempts
            elif status.state == "retrying":
                self._timers.add(status.name)
                self._ops.append(Timer(status.name, status.retry_delay_s))
        if state.state == "running":
            self._emit(WorkflowResumed(self._id))
        logger.info(
            "recovering execution %s (%s) with %d step(s) to run again",
            self._id,
            state.state,
            len(self._rerun),
        )
        return state.state

    def on_receive(self, message: Any) -> Any:
        """Handle one message from the loop."""
        try:
            if isinstance(message, StepDone):
                self._on_step_done(message)
            elif isinstance(message, RetryDue):
                self._timers.discard(message.step)
                if not self._gone:
                    self._advance()
            elif isinstance(message, Command):
                self._on_command(message)
            self._flush()
        except Exception as exc:  # noqa: BLE001 - reported to the waiters
            self._crash(exc)
        return None

    def _crash(self, exc: Exception) -> None:
        logger.error("execution %s stopped: %r", self._id, exc, exc_info=exc)
        self._batch.clear()
        self._gone = True
        self._send_ops(self._id, self.actor_ref, [Finished("crashed", crash=exc)])

    # -- decisions -----------------------------------------------------------

    def _on_step_done(self, done: StepDone) -> None:
        self._running.discard(done.step)
        if self._gone or self.state.state in TERMINAL:
            logger.debug("execution %s: late result of %s", self._id, done.step)
            return
        spec = self.state.spec.step(done.step)
        if done.outcome == "succeeded":
            self._emit(
                WorkflowStepSucceeded(
                    self._id, done.step, done.attempt, done.output, done.duration_s
                )
            )
        elif done.outcome == "skipped":
            self._emit(
                WorkflowStepSkipped(
                    self._id, done.step, f"'when' {spec.when} was false"
                )
            )
        else:
            policy = spec.retry
            retry = done.attempt < policy.max_attempts and policy.retries(
                done.error_types
            )
            self._emit(
                WorkflowStepFailed(
                    self._id,
                    done.step,
                    done.attempt,
                    done.error_type,
                    done.error,
                    done.duration_s,
                    retry,
                )
            )
            if retry:
                delay_s = policy.delay_s(done.attempt, self._rng)
                self._emit(
                    WorkflowStepRetried(self._id, done.step, done.attempt + 1, delay_s)
                )
                self._timers.add(done.step)
                self._ops.append(Timer(done.step, delay_s))
        self._advance()

    def _on_command(self, command: Command) -> None:
        if self._gone:
            command.reply(ActorGoneError(self._id), None)
            return
        lifecycle = self.state.lifecycle
        kind = command.kind
        if kind in ("pause", "resume", "cancel") and not lifecycle.can(kind):
            raise_state = WorkflowStateError(
                f"cannot {kind} execution {self._id!r}: it is {lifecycle.state}"
            )
            command.reply(raise_state, None)
            self._report_if_terminal()
            return
        if kind == "pause":
            self._emit(WorkflowPaused(self._id))
        elif kind == "resume":
            self._emit(WorkflowResumed(self._id))
        elif kind == "cancel":
            self._emit(WorkflowCancelled(self._id, command.reason))
            self._ops.append(CancelSteps())
        elif kind in ("retry", "skip"):
            error = self._check_failed_step(command.step)
            if error is not None:
                command.reply(error, None)
                self._report_if_terminal()
                return
            if self.state.state == "failed":
                # Readers that know only the lifecycle events see it go on.
                self._emit(WorkflowResumed(self._id))
            status = self.state.step(command.step)
            if kind == "retry":
                self._emit(
                    WorkflowStepRetried(
                        self._id, command.step, status.attempts + 1, 0.0, manual=True
                    )
                )
            else:
                self._emit(
                    WorkflowStepSkipped(
                        self._id, command.step, "skipped by hand", command.output
                    )
                )
        self._advance()
        self._flush()
        command.reply(None, self.state.state)

    def _check_failed_step(self, step: str) -> WorkflowError | None:
        steps = self.state.status.steps
        if step not in steps:
            return WorkflowStateError(f"execution {self._id!r} has no step {step!r}")
        status = steps[step]
        if status.state != "failed" or self.state.state == "cancelled":
            return WorkflowStateError(
                f"step {step!r} of execution {self._id!r} has not failed: "
                f"it is {status.state} (execution {self.state.state})"
            )
        return None

    def _advance(self) -> None:
        state = self.state
        if state.state in TERMINAL:
            self._report_if_terminal()
            return
        for name, attempt in list(self._rerun.items()):
            # Started before a crash: run again, even when paused or failing.
            self._emit(WorkflowStepStarted(self._id, name, attempt, self._key(name)))
            self._launch(state.spec.step(name), attempt)
        self._rerun.clear()
        steps = state.status.steps
        busy = bool(self._running or self._timers)
        failed = [name for name, s in steps.items() if s.state == "failed"]
        if failed:
            if not busy:
                first = steps[failed[0]]
                self._emit(
                    WorkflowFailed(
                        self._id,
                        first.name,
                        first.error_type or "",
                        first.error or "",
                    )
                )
                self._report_if_terminal()
            return
        if state.state == "paused":
            return
        self._start_ready()
        done = ("succeeded", "skipped")
        if (
            not self._running
            and not self._timers
            and all(s.state in done for s in steps.values())
        ):
            output = {name: s.output for name, s in steps.items()}
            self._emit(WorkflowCompleted(self._id, output))
            self._report_if_terminal()

    def _start_ready(self) -> None:
        steps = self.state.status.steps
        done = ("succeeded", "skipped")
        for spec in self.state.spec.steps:
            status = steps[spec.name]
            if spec.name in self._running or spec.name in self._timers:
                continue
            if status.state not in ("pending", "retrying"):
                continue
            if all(steps[dep].state in done for dep in spec.depends_on):
                attempt = status.attempts + 1
                self._emit(
                    WorkflowStepStarted(
                        self._id, spec.name, attempt, self._key(spec.name)
                    )
                )
                self._launch(spec, attempt)

    def _launch(self, spec: StepSpec, attempt: int) -> None:
        steps = self.state.status.steps
        results = {dep: steps[dep].output for dep in spec.depends_on}
        self._running.add(spec.name)
        self._ops.append(
            Launch(
                self.state.spec.name,
                spec,
                attempt,
                self._key(spec.name),
                self.state.status.input,
                results,
            )
        )

    def _key(self, step: str) -> str:
        return f"{self._id}:{step}"

    def _report_if_terminal(self) -> None:
        status = self.state.status
        if self._gone or status.state not in TERMINAL:
            return
        self._gone = True
        self._ops.append(
            Finished(
                status.state,
                status.output,
                status.failed_step,
                status.error_type,
                status.error,
            )
        )

    # -- writing -------------------------------------------------------------

    def _emit(self, data: msgspec.Struct) -> None:
        self._batch.append(NewEvent(self._stream, type(data).__name__, data))
        self.state.apply_data(data, _now(), self._version + len(self._batch))

    def _flush(self) -> None:
        if self._batch:
            batch, self._batch = self._batch, []
            self._store.append(batch, expected_versions={self._stream: self._version})
            self._version += len(batch)
        if self._ops:
            ops, self._ops = self._ops, []
            self._send_ops(self._id, self.actor_ref, ops)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
