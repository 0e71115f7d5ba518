"""Supervision for pykka actors: restart strategies, backoff, intensity limits.

Design note. pykka has no supervision, so this module adds it in three parts.

* A :class:`ChildHandle` is the stable address of a worker. Callers send to
  the handle, never to an actor ref, because refs die with each incarnation.
  While the worker is down the handle queues messages; when the next
  incarnation is up, the queue is flushed into its inbox first, in order.
  A failing worker drains its own inbox into the handle's queue while holding
  the handle's lock, after pykka marked it stopped: a sender holds the same
  lock around ``tell``, so each message lands either in the old inbox before
  the drain or in the queue after it. Nothing sent is lost by a restart.
* A :class:`Supervisor` is a persistent description (name, strategy, policy,
  children in start order) that outlives its actor. Its actor reacts to
  failures; if the actor itself is replaced (after an escalation) the new one
  starts the same children again, and the same handles keep their messages.
* Failure reports carry the incarnation they come from; a report about an
  incarnation that was already replaced is stale and ignored, so a child is
  never restarted twice for one failure.

A supervisor counts restarts in a sliding window of ``within_s`` seconds
(an injected clock). The restart that would exceed ``max_restarts`` is not
made: the supervisor gives up, stops its children and escalates to its
parent, which treats it as a failed child. A supervisor with no parent
reports to ``on_give_up``, and its handles fail every queued message. The
delay before a restart grows exponentially with the restarts in the window,
with jitter, and is waited through an injected scheduler so that no thread
sleeps and tests need no wall clock.
"""

from __future__ import annotations

import collections
import enum
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeAlias

import msgspec
import pykka

from actors._errors import ActorError

__all__ = [
    "ChildHandle",
    "Failable",
    "RestartPolicy",
    "Scheduler",
    "Strategy",
    "SupervisedActor",
    "Supervisor",
    "SupervisorGaveUpError",
    "ThreadScheduler",
    "Worker",
]

logger = logging.getLogger(__name__)

_STOP_TIMEOUT_S = 10.0


class Strategy(enum.Enum):
    """Which children a supervisor restarts when one fails."""

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class SupervisorGaveUpError(ActorError):
    """Raised when a supervisor exceeded its restart intensity and gave up."""

    def __init__(self, supervisor: str, child: str, cause: BaseException) -> None:
        self.supervisor = supervisor
        self.child = child
        super().__init__(
            f"supervisor {supervisor!r} gave up restarting {child!r} "
            f"after too many restarts (last failure: {cause!r})"
        )


class RestartPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How often and how fast a supervisor restarts its children.

    Attributes:
        max_restarts: Restarts allowed within ``within_s``; one more gives up.
        within_s: The sliding window of the intensity limit.
        backoff_initial_s: The delay before the first restart in a window.
        backoff_max_s: The longest delay.
        backoff_multiplier: The growth of the delay per restart in the window.
        jitter: The delay is scaled by a random factor in ``1 +- jitter``.

    """

    max_restarts: int = 5
    within_s: float = 10.0
    backoff_initial_s: float = 0.005
    backoff_max_s: float = 1.0
    backoff_multiplier: float = 2.0
    jitter: float = 0.2

    def delay_s(self, restarts_in_window: int, rand: Callable[[], float]) -> float:
        """The delay before a restart, given the restarts already in the window."""
        base = self.backoff_initial_s * self.backoff_multiplier**restarts_in_window
        base = min(base, self.backoff_max_s)
        return max(0.0, base * (1.0 + self.jitter * (2.0 * rand() - 1.0)))


class Scheduler(Protocol):
    """Runs a callable after a delay, off the caller's thread."""

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` after ``delay_s`` seconds."""

    def cancel_all(self) -> None:
        """Forget every call not yet made."""


class ThreadScheduler:
    """A :class:`Scheduler` on daemon ``threading.Timer`` threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._timers: set[threading.Timer] = set()

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` on a timer thread after ``delay_s`` seconds."""
        timer = threading.Timer(delay_s, fn)
        timer.daemon = True
        with self._lock:
            # Fired timers stay until they end, so cancel_all can join them.
            self._timers = {t for t in self._timers if t.is_alive()}
            self._timers.add(timer)
        timer.start()

    def cancel_all(self) -> None:
        """Cancel the timers not yet fired and wait for every timer thread."""
        with self._lock:
            timers = list(self._timers)
            self._timers.clear()
        for timer in timers:
            timer.cancel()
            if timer is not threading.current_thread():
                timer.join(_STOP_TIMEOUT_S)


class Failable(Protocol):
    """A message that can be answered with an error."""

    def fail(self, error: BaseException) -> None:
        """Answer the message's sender with ``error``."""


FailureHook = Callable[[BaseException], None]


class _State(enum.Enum):
    STARTING = "starting"
    UP = "up"
    FAILED = "failed"
    STOPPED = "stopped"


class ChildHandle:
    """The stable address of a supervised worker; see the design note."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._ref: pykka.ActorRef[Any] | None = None
        self._pending: list[object] = []
        self._state = _State.STARTING
        self._error: BaseException | None = None

    @property
    def is_up(self) -> bool:
        """True while an incarnation is running and accepting messages."""
        return self._state is _State.UP

    def send(self, message: object) -> None:
        """Deliver ``message`` now, or queue it until the worker is up.

        Raises:
            ActorError: If the worker was stopped or its supervisor gave up.

        """
        with self._lock:
            if self._ref is not None:
                try:
                    self._ref.tell(message)
                except pykka.ActorDeadError:
                    self._pending.append(message)
                return
            if self._state is _State.STARTING:
                self._pending.append(message)
                return
            error = self._error
        raise ActorError(f"actor {self.name!r} is {self._state.value}") from error

    def up(self, ref: pykka.ActorRef[Any]) -> None:
        """Point the handle at a new incarnation and flush the queue into it."""
        with self._lock:
            for index, message in enumerate(self._pending):
                try:
                    ref.tell(message)
                except pykka.ActorDeadError:
                    # It died already; it drains what it got and reports.
                    del self._pending[:index]
                    return
            self._pending.clear()
            self._ref = ref
            self._state = _State.UP

    def down(self, leftovers: list[object] | None = None) -> pykka.ActorRef[Any] | None:
        """Queue messages until the next incarnation; return the old ref."""
        with self._lock:
            ref, self._ref = self._ref, None
            if self._state is _State.UP:
                self._state = _State.STARTING
            if leftovers:
                self._pending[:0] = leftovers
            return ref

    def drain_into_queue(self, inbox: Any) -> None:
        """Move a dead incarnation's unread messages to the front of the queue."""
        with self._lock:
            self._ref = None
            if self._state is _State.UP:
                self._state = _State.STARTING
            leftovers = []
            while not inbox.empty():
                envelope = inbox.get_nowait()
                if envelope.reply_to is None:
                    leftovers.append(envelope.message)
            self._pending[:0] = leftovers

    def fail(self, error: BaseException, *, stopped: bool = False) -> None:
        """Refuse new messages and answer every queued one with ``error``."""
        with self._lock:
            self._state = _State.STOPPED if stopped else _State.FAILED
            self._error = error
            pending, self._pending = self._pending, []
        for message in pending:
            fail = getattr(message, "fail", None)
            if fail is not None:
                fail(error)


class SupervisedActor(pykka.ThreadingActor):
    """A pykka actor that reports its failures to its supervisor.

    Subclasses put their recovery in :meth:`recover` (run on the actor's
    thread before the first message) and let unexpected errors escape
    ``on_receive``: the actor stops and its supervisor restarts it.
    """

    def __init__(self, handle: ChildHandle, on_failure: FailureHook) -> None:
        super().__init__()
        self.handle = handle
        self._report = on_failure

    def recover(self) -> None:
        """Rebuild the actor's state; called on its thread before any message."""

    def on_start(self) -> None:
        """Recover, reporting a failure to recover like any other failure."""
        try:
            self.recover()
        except Exception as error:
            # Refuse messages before draining, as pykka does before on_failure.
            self.actor_stopped.set()
            self._failed(error)
            raise

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: Any,
    ) -> None:
        """Hand unread messages back to the handle and tell the supervisor."""
        del exception_type, traceback
        self._failed(exception_value or ActorError("unknown failure"))

    def _failed(self, error: BaseException) -> None:
        self.handle.drain_into_queue(self.actor_inbox)
        self._report(error)


class Worker:
    """A supervised child: a handle and the factory of its incarnations."""

    def __init__(
        self,
        name: str,
        factory: Callable[[ChildHandle, FailureHook], pykka.ActorRef[Any]],
    ) -> None:
        self.name = name
        self.handle = ChildHandle(name)
        self._factory = factory

    def start(self, on_failure: FailureHook) -> None:
        """Start an incarnation; messages flow to it once it is up."""
        self.handle.up(self._factory(self.handle, on_failure))

    def stop(self) -> None:
        """Stop the running incarnation; messages queue for the next one."""
        ref = self.handle.down()
        if ref is not None:
            with _suppress_dead():
                ref.stop(block=True, timeout=_STOP_TIMEOUT_S)

    def fail(self, error: BaseException, *, stopped: bool = False) -> None:
        """Stop for good and fail every queued message."""
        self.handle.fail(error, stopped=stopped)


class _suppress_dead:  # noqa: N801 - used like contextlib.suppress
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, pykka.ActorDeadError)


Child: TypeAlias = "Worker | Supervisor"


class _Failed(msgspec.Struct, frozen=True):
    name: str
    incarnation: int
    error: Any


class _Restart(msgspec.Struct, frozen=True):
    names: tuple[str, ...]
    incarnation: int


class _StartChild(msgspec.Struct, frozen=True):
    name: str


class Supervisor:
    """A supervisor: its children, its strategy and its restart policy.

    Counters (``restarts``, ``escalations``, ``give_ups``) count what this
    supervisor did; each is also logged.
    """

    def __init__(
        self,
        name: str,
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        policy: RestartPolicy | None = None,
        scheduler: Scheduler | None = None,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        on_give_up: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.name = name
        self.strategy = strategy
        self.policy = policy or RestartPolicy()
        self.scheduler = scheduler or ThreadScheduler()
        self.clock = clock
        self.rand = rand
        self.on_give_up = on_give_up
        self.restarts = 0
        self.escalations = 0
        self.give_ups = 0
        self._lock = threading.RLock()
        self._children: dict[str, Child] = {}
        self._incarnations: dict[str, int] = {}
        self._window: collections.deque[float] = collections.deque()
        self._ref: pykka.ActorRef[Any] | None = None
        self._parent_hook: FailureHook | None = None
        self._stopped = False

    # -- the tree ---------------------------------------------------------

    def add_child(self, child: Child) -> None:
        """Add a child; it starts now if the supervisor runs.

        Raises:
            ActorError: If a child of that name exists.

        """
        with self._lock:
            if child.name in self._children:
                raise ActorError(f"supervisor {self.name!r} has a child {child.name!r}")
            self._children[child.name] = child
            self._incarnations[child.name] = 0
            ref = self._ref
        if ref is not None:
            ref.tell(_StartChild(child.name))

    def remove_child(self, name: str) -> None:
        """Stop a child for good and forget it."""
        with self._lock:
            child = self._children.pop(name, None)
            self._incarnations.pop(name, None)
        if child is not None:
            child.stop()
            child.fail(ActorError(f"actor {name!r} was removed"), stopped=True)

    def child(self, name: str) -> Child:
        """The child named ``name``."""
        return self._children[name]

    @property
    def children(self) -> list[str]:
        """The children's names in start order."""
        return list(self._children)

    # -- life cycle -------------------------------------------------------

    def start(self, on_failure: FailureHook | None = None) -> None:
        """Start the supervisor's actor and every child, in order."""
        with self._lock:
            self._parent_hook = on_failure
            self._stopped = False
            self._window.clear()
            self._ref = _SupervisorActor.start(self)
            names = list(self._children)
        for name in names:
            self._ref.tell(_StartChild(name))

    def stop(self) -> None:
        """Stop the children (last first), then the supervisor's actor."""
        with self._lock:
            self._stopped = True
            ref, self._ref = self._ref, None
            children = list(self._children.values())
        self.scheduler.cancel_all()
        if ref is not None:
            with _suppress_dead():
                ref.stop(block=True, timeout=_STOP_TIMEOUT_S)
        for child in reversed(children):
            child.stop()

    def fail(self, error: BaseException, *, stopped: bool = False) -> None:
        """Fail every child's queued messages (the tree gave up or closed)."""
        for child in list(self._children.values()):
            child.fail(error, stopped=stopped)

    # -- run on the supervisor's actor ------------------------------------

    def _hook(self, name: str) -> FailureHook:
        with self._lock:
            incarnation = self._incarnations[name] = self._incarnations[name] + 1
            ref = self._ref

        def report(error: BaseException) -> None:
            if ref is not None:
                with _suppress_dead():
                    ref.tell(_Failed(name, incarnation, error))

        return report

    def _start_child(self, name: str) -> None:
        child = self._children.get(name)
        if child is None or self._stopped:
            return
        hook = self._hook(name)
        try:
            child.start(hook)
        except Exception as error:  # noqa: BLE001 - a failed start is a failure
            logger.warning(
                "supervisor %r: starting %r failed: %r", self.name, name, error
            )
            hook(error)

    def _on_failed(self, message: _Failed) -> None:
        if self._incarnations.get(message.name) != message.incarnation:
            logger.debug("supervisor %r: stale failure of %r", self.name, message.name)
            return
        now = self.clock()
        while self._window and now - self._window[0] > self.policy.within_s:
            self._window.popleft()
        if len(self._window) >= self.policy.max_restarts:
            self._give_up(message.name, message.error)
            return
        affected = self._affected(message.name)
        for name in affected:
            self._children[name].stop()
        delay_s = self.policy.delay_s(len(self._window), self.rand)
        self._window.append(now)
        self.restarts += 1
        logger.warning(
            "supervisor %r: %r failed (%r); restarting %s in %.3f s (%d in window)",
            self.name,
            message.name,
            message.error,
            ", ".join(affected),
            delay_s,
            len(self._window),
        )
        ref = self._ref
        incarnation = message.incarnation

        def restart() -> None:
            if ref is not None:
                with _suppress_dead():
                    ref.tell(_Restart(tuple(affected), incarnation))

        self.scheduler.call_later(delay_s, restart)

    def _affected(self, name: str) -> list[str]:
        names = list(self._children)
        if self.strategy is Strategy.ONE_FOR_ALL:
            return names
        if self.strategy is Strategy.REST_FOR_ONE:
            return names[names.index(name) :]
        return [name]

    def _give_up(self, name: str, cause: BaseException) -> None:
        # Counters move last, so whoever watches them sees the outcome done.
        error = SupervisorGaveUpError(self.name, name, cause)
        logger.error("%s", error)
        for child in reversed(list(self._children.values())):
            child.stop()
        if self._parent_hook is not None:
            logger.error("supervisor %r: escalating to its parent", self.name)
            self.escalations += 1
            self.give_ups += 1
            self._parent_hook(error)
            return
        self.fail(error)
        self.give_ups += 1
        if self.on_give_up is not None:
            self.on_give_up(error)

    def _on_restart(self, message: _Restart) -> None:
        for name in message.names:
            if name in self._children and not self._stopped:
                self._start_child(name)


class _SupervisorActor(pykka.ThreadingActor):
    def __init__(self, supervisor: Supervisor) -> None:
        super().__init__()
        self._supervisor = supervisor

    def on_receive(self, message: Any) -> Any:
        supervisor = self._supervisor
        if isinstance(message, _Failed):
            supervisor._on_failed(message)  # noqa: SLF001 - the actor is its hands
        elif isinstance(message, _Restart):
            supervisor._on_restart(message)  # noqa: SLF001
        elif isinstance(message, _StartChild):
            supervisor._start_child(message.name)  # noqa: SLF001
        else:
            logger.error("supervisor %r: unknown message %r", supervisor.name, message)
