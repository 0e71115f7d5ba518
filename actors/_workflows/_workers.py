"""Execution actors as supervised workers.

Each live execution is a :class:`~actors._supervisor.Worker` of the
engine's workflows supervisor. Its first incarnation may start a new
execution; every later one (after a failure) rebuilds it from its stream.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

import pykka

from actors._supervisor import ChildHandle, FailureHook, Worker
from actors._workflows._actor import ExecutionActor, Op
from eventstore import EventStore, WorkflowStarted

__all__ = ["ExecutionWorker", "WorkerOps"]

logger = logging.getLogger(__name__)

WorkerOps = Callable[
    ["ExecutionWorker", str, "pykka.ActorRef[ExecutionActor]", list[Op]], None
]


class ExecutionWorker(Worker):
    """The supervised worker of one execution.

    Args:
        name: Its name among the supervisor's children.
        execution_id: The execution it drives.
        store: Where the execution's stream is.
        send_ops: Receives the actor's operations, with this worker.
        on_gone: Called (on the failing thread) when the worker fails for
            good because its supervisor gave up; not called on a stop.
        started: The ``WorkflowStarted`` of a new execution, or None to
            rebuild one from its stream.
        rng: The source of backoff jitter.

    """

    def __init__(
        self,
        name: str,
        execution_id: str,
        store: EventStore,
        send_ops: WorkerOps,
        on_gone: Callable[[ExecutionWorker, BaseException], None],
        *,
        started: WorkflowStarted | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(name, self._incarnation)
        self.execution_id = execution_id
        self._store = store
        self._send_ops = send_ops
        self._on_gone = on_gone
        self._started = started
        self._rng = rng

    def _incarnation(
        self, handle: ChildHandle, on_failure: FailureHook
    ) -> pykka.ActorRef[Any]:
        # Only the first incarnation starts the execution; a restart resumes it.
        started, self._started = self._started, None

        def send(
            execution_id: str, ref: pykka.ActorRef[ExecutionActor], ops: list[Op]
        ) -> None:
            self._send_ops(self, execution_id, ref, ops)

        return ExecutionActor.start(
            handle,
            on_failure,
            self._store,
            self.execution_id,
            send,
            started=started,
            rng=self._rng,
        )

    def fail(self, error: BaseException, *, stopped: bool = False) -> None:
        """Stop for good; tell the engine unless the stop was asked for."""
        super().fail(error, stopped=stopped)
        if not stopped:
            logger.error("execution %s: its actor is gone: %r", self.name, error)
            self._on_gone(self, error)
