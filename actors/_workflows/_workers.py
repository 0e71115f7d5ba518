"""Execution actors as supervised workers.

Each live execution is a :class:`~actors._supervisor.Worker` of the
engine's workflows supervisor. Its first incarnation may start a new
execution; every later one (after a failure) rebuilds it from its stream.

Design note. An execution can end, and the engine remove its worker, before
the supervisor's thread has pointed the handle at the incarnation it just
started (a short execution runs all of it in ``on_start``). Stopping through
the handle alone would then miss that actor. So the worker remembers the
latest incarnation it started, under a lock, and whichever comes second,
the removal or the end of the start, stops it.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import Any

import pykka

from actors._supervisor import ChildHandle, FailureHook, Worker
from actors._workflows._actor import ExecutionActor, Op
from eventstore import EventStore, WorkflowStarted

__all__ = ["ExecutionWorker", "WorkerOps"]

logger = logging.getLogger(__name__)

_STOP_TIMEOUT_S = 10.0

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
        traceparent: The execution's trace, stamped on its events.

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
        traceparent: str | None = None,
    ) -> None:
        super().__init__(name, self._incarnation)
        self.execution_id = execution_id
        self._store = store
        self._send_ops = send_ops
        self._on_gone = on_gone
        self._started = started
        self._rng = rng
        self._traceparent = traceparent
        self._lock = threading.Lock()
        self._latest: pykka.ActorRef[Any] | None = None
        self._removed = False
        self.forgotten = False

    def _incarnation(
        self, handle: ChildHandle, on_failure: FailureHook
    ) -> pykka.ActorRef[Any]:
        # Only the first incarnation starts the execution; a restart resumes it.
        started, self._started = self._started, None

        def send(
            execution_id: str, ref: pykka.ActorRef[ExecutionActor], ops: list[Op]
        ) -> None:
            self._send_ops(self, execution_id, ref, ops)

        ref = ExecutionActor.start(
            handle,
            on_failure,
            self._store,
            self.execution_id,
            send,
            started=started,
            rng=self._rng,
            traceparent=self._traceparent,
        )
        with self._lock:
            self._latest = ref
        return ref

    def start(self, on_failure: FailureHook) -> None:
        """Start an incarnation, unless the worker was removed meanwhile."""
        with self._lock:
            if self._removed:
                return
        super().start(on_failure)
        with self._lock:
            late = self._latest if self._removed else None
        _stop(late)

    def stop(self) -> None:
        """Stop the running incarnation, even one the handle does not know yet."""
        super().stop()
        with self._lock:
            latest = self._latest
        _stop(latest)

    def fail(self, error: BaseException, *, stopped: bool = False) -> None:
        """Stop for good; tell the engine unless the stop was asked for."""
        super().fail(error, stopped=stopped)
        if stopped:
            with self._lock:
                self._removed = True
                latest = self._latest
            _stop(latest)
        else:
            logger.error("execution %s: its actor is gone: %r", self.name, error)
            self._on_gone(self, error)


def _stop(ref: pykka.ActorRef[Any] | None) -> None:
    if ref is None:
        return
    try:
        ref.stop(block=True, timeout=_STOP_TIMEOUT_S)
    except pykka.ActorDeadError:
        logger.debug("%r had stopped already", ref)
