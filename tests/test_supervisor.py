from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pykka
import pytest
from _scheduler_helpers import HeldScheduler

from actors import (
    ActorError,
    ChildHandle,
    FutureReply,
    RestartPolicy,
    Strategy,
    SupervisedActor,
    Supervisor,
    SupervisorGaveUpError,
    ThreadScheduler,
    Worker,
)

WAIT_S = 5.0


class Msg(msgspec.Struct, frozen=True):
    reply: Any
    kind: str
    value: int = 0

    def fail(self, error: BaseException) -> None:
        self.reply.fail(error)


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.starts: dict[str, int] = {}

    def started(self, name: str) -> int:
        with self.lock:
            self.starts[name] = self.starts.get(name, 0) + 1
            return self.starts[name]


class Echo(SupervisedActor):
    def __init__(
        self, handle: ChildHandle, on_failure: Any, *, counter: Counter
    ) -> None:
        super().__init__(handle, on_failure)
        self.counter = counter
        self.incarnation = 0

    def recover(self) -> None:
        self.incarnation = self.counter.started(self.handle.name)

    def on_receive(self, message: Any) -> Any:
        if message.kind == "crash":
            message.reply.fail(RuntimeError("poison"))
            raise RuntimeError("poison")
        message.reply.ok((self.incarnation, message.value))


def echo_worker(name: str, counter: Counter) -> Worker:
    def factory(handle: ChildHandle, on_failure: Any) -> pykka.ActorRef[Any]:
        return Echo.start(handle, on_failure, counter=counter)

    return Worker(name, factory)


def ask(handle: ChildHandle, kind: str, value: int = 0) -> Any:
    reply = FutureReply()
    handle.send(Msg(reply, kind, value))
    return reply.future.result(WAIT_S)


def crash(handle: ChildHandle, *supervisors: Supervisor) -> None:
    """Crash the worker and wait until its supervisor reacted."""
    before = [s.restarts + s.give_ups for s in supervisors]
    with pytest.raises(RuntimeError, match="poison"):
        ask(handle, "crash")
    for supervisor, count in zip(supervisors, before, strict=True):
        wait_until(reacted(supervisor, count))


def reacted(supervisor: Supervisor, count: int) -> Callable[[], bool]:
    return lambda: supervisor.restarts + supervisor.give_ups > count


def wait_until(test: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not test():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.001)


@pytest.fixture
def scheduler() -> HeldScheduler:
    return HeldScheduler()


@pytest.fixture
def counter() -> Counter:
    return Counter()


@pytest.fixture
def stop_all() -> Iterator[list[Supervisor]]:
    started: list[Supervisor] = []
    yield started
    for supervisor in started:
        supervisor.stop()
    pykka.ActorRegistry.stop_all()


def make(
    strategy: Strategy,
    scheduler: HeldScheduler,
    counter: Counter,
    stop_all: list[Supervisor],
    *,
    names: tuple[str, ...] = ("a", "b", "c"),
    policy: RestartPolicy | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Supervisor:
    supervisor = Supervisor(
        "test",
        strategy=strategy,
        policy=policy or RestartPolicy(max_restarts=10, jitter=0.0),
        scheduler=scheduler,
        clock=clock,
    )
    for name in names:
        supervisor.add_child(echo_worker(name, counter))
    supervisor.start()
    stop_all.append(supervisor)
    return supervisor


def handle_of(supervisor: Supervisor, name: str) -> ChildHandle:
    child = supervisor.child(name)
    assert isinstance(child, Worker)
    return child.handle


def test_one_for_one_restarts_only_the_failed_child(
    scheduler: HeldScheduler, counter: Counter, stop_all: list[Supervisor]
) -> None:
    supervisor = make(Strategy.ONE_FOR_ONE, scheduler, counter, stop_all)
    a, b = handle_of(supervisor, "a"), handle_of(supervisor, "b")
    assert ask(a, "echo", 1) == (1, 1)

    crash(b, supervisor)

    assert ask(b, "echo", 2) == (2, 2)
    assert ask(a, "echo", 3) == (1, 3)
    assert counter.starts == {"a": 1, "b": 2, "c": 1}
    assert supervisor.restarts == 1


def test_one_for_all_restarts_every_child(
    scheduler: HeldScheduler, counter: Counter, stop_all: list[Supervisor]
) -> None:
    supervisor = make(Strategy.ONE_FOR_ALL, scheduler, counter, stop_all)

    crash(handle_of(supervisor, "b"), supervisor)

    for name in ("a", "b", "c"):
        assert ask(handle_of(supervisor, name), "echo")[0] == 2


def test_rest_for_one_restarts_the_failed_child_and_those_after_it(
    scheduler: HeldScheduler, counter: Counter, stop_all: list[Supervisor]
) -> None:
    supervisor = make(Strategy.REST_FOR_ONE, scheduler, counter, stop_all)

    crash(handle_of(supervisor, "b"), supervisor)

    assert [ask(handle_of(supervisor, n), "echo")[0] for n in "abc"] == [1, 2, 2]


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RestartPolicy(
        backoff_initial_s=0.1, backoff_max_s=0.5, backoff_multiplier=2.0, jitter=0.0
    )

    delays = [policy.delay_s(n, lambda: 0.5) for n in range(5)]

    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


def test_jitter_spreads_the_delay_within_its_bounds() -> None:
    policy = RestartPolicy(backoff_initial_s=1.0, jitter=0.25, backoff_max_s=9.0)

    assert policy.delay_s(0, lambda: 0.0) == pytest.approx(0.75)
    assert policy.delay_s(0, lambda: 1.0) == pytest.approx(1.25)


def test_restarts_wait_for_the_backoff_and_queue_messages_meanwhile(
    scheduler: HeldScheduler, counter: Counter, stop_all: list[Supervisor]
) -> None:
    supervisor = make(Strategy.ONE_FOR_ONE, scheduler, counter, stop_all, names=("a",))
    a = handle_of(supervisor, "a")
    scheduler.hold = True
    crash(a)
    wait_until(lambda: bool(scheduler.held))
    replies = [FutureReply() for _ in range(3)]

    for value, reply in enumerate(replies):
        a.send(Msg(reply, "echo", value))
    assert not any(reply.future.done() for reply in replies)
    scheduler.release()

    assert [reply.future.result(WAIT_S) for reply in replies] == [
        (2, 0),
        (2, 1),
        (2, 2),
    ]
    assert scheduler.delays == [pytest.approx(0.005)]


def test_the_intensity_limit_gives_up_and_fails_queued_messages(
    scheduler: HeldScheduler, counter: Counter, stop_all: list[Supervisor]
) -> None:
    gave_up: list[BaseException] = []
    supervisor = Supervisor(
        "top",
        policy=RestartPolicy(max_restarts=2, within_s=60, jitter=0.0),
        scheduler=scheduler,
        on_give_up=gave_up.append,
    )
    supervisor.add_child(echo_worker("a", counter))
    supervisor.start()
    stop_all.append(supervisor)
    a = handle_of(supervisor, "a")

    crash(a, supervisor)
    crash(a, supervisor)
    crash(a, supervisor)
    wait_until(lambda: bool(gave_up))

    assert isinstance(gave_up[0], SupervisorGaveUpError)
    assert "'top' gave up restarting 'a'" in str(gave_up[0])
    assert supervisor.restarts == 2
    assert supervisor.give_ups == 1
    with pytest.raises(ActorError, match="actor 'a' is failed"):
        ask(a, "echo")


def test_restarts_outside_the_window_do_not_count(
    scheduler: HeldScheduler, counter: Counter, stop_all: list[Supervisor]
) -> None:
    now = [0.0]
    supervisor = make(
        Strategy.ONE_FOR_ONE,
        scheduler,
        counter,
        stop_all,
        names=("a",),
        policy=RestartPolicy(max_restarts=1, within_s=10, jitter=0.0),
        clock=lambda: now[0],
    )
    a = handle_of(supervisor, "a")

    for _ in range(4):
        crash(a, supervisor)
        now[0] += 11
        assert ask(a, "echo")[0] >= 2

    assert supervisor.restarts == 4
    assert supervisor.give_ups == 0
    assert scheduler.delays == [pytest.approx(0.005)] * 4


def test_a_supervisor_that_gives_up_escalates_to_its_parent(
    scheduler: HeldScheduler,
    counter: Counter,
    stop_all: list[Supervisor],
    caplog: pytest.LogCaptureFixture,
) -> None:
    parent = Supervisor("system", scheduler=scheduler)
    child = Supervisor(
        "collections",
        policy=RestartPolicy(max_restarts=1, within_s=60, jitter=0.0),
        scheduler=scheduler,
    )
    child.add_child(echo_worker("a", counter))
    parent.add_child(child)
    parent.start()
    stop_all.append(parent)
    a = handle_of(child, "a")
    caplog.set_level(logging.WARNING, logger="actors._supervisor")

    crash(a, child)
    crash(a, child)
    wait_until(lambda: parent.restarts == 1)

    assert ask(a, "echo", 7) == (3, 7)
    assert child.give_ups == 1
    assert child.escalations == 1
    assert parent.restarts == 1
    messages = [record.getMessage() for record in caplog.records]
    assert any("escalating to its parent" in m for m in messages)
    assert any("restarting collections" in m for m in messages)


def test_removed_children_refuse_messages(
    scheduler: HeldScheduler, counter: Counter, stop_all: list[Supervisor]
) -> None:
    supervisor = make(Strategy.ONE_FOR_ONE, scheduler, counter, stop_all)
    b = handle_of(supervisor, "b")

    supervisor.remove_child("b")

    assert supervisor.children == ["a", "c"]
    with pytest.raises(ActorError, match="actor 'b' is stopped"):
        ask(b, "echo")


def test_a_child_name_is_unique(
    scheduler: HeldScheduler, counter: Counter, stop_all: list[Supervisor]
) -> None:
    supervisor = make(Strategy.ONE_FOR_ONE, scheduler, counter, stop_all)

    with pytest.raises(ActorError, match="has a child 'a'"):
        supervisor.add_child(echo_worker("a", counter))


def test_a_child_added_to_a_running_supervisor_starts(
    scheduler: HeldScheduler, counter: Counter, stop_all: list[Supervisor]
) -> None:
    supervisor = make(Strategy.ONE_FOR_ONE, scheduler, counter, stop_all, names=())

    supervisor.add_child(echo_worker("late", counter))

    assert ask(handle_of(supervisor, "late"), "echo", 5) == (1, 5)


def test_a_child_that_fails_to_start_is_restarted(
    scheduler: HeldScheduler, stop_all: list[Supervisor]
) -> None:
    attempts: list[int] = []
    counter = Counter()

    def factory(handle: ChildHandle, on_failure: Any) -> pykka.ActorRef[Any]:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("disk not ready")
        return Echo.start(handle, on_failure, counter=counter)

    supervisor = Supervisor("s", scheduler=scheduler)
    supervisor.add_child(Worker("flaky", factory))
    supervisor.start()
    stop_all.append(supervisor)

    assert ask(handle_of(supervisor, "flaky"), "echo", 1) == (1, 1)
    assert len(attempts) == 2


def test_a_failed_recovery_is_a_failure_like_any_other(
    scheduler: HeldScheduler, stop_all: list[Supervisor]
) -> None:
    recoveries: list[int] = []

    class Fragile(Echo):
        def recover(self) -> None:
            recoveries.append(1)
            if len(recoveries) == 1:
                raise OSError("snapshot unreadable")
            super().recover()

    counter = Counter()

    def factory(handle: ChildHandle, on_failure: Any) -> pykka.ActorRef[Any]:
        return Fragile.start(handle, on_failure, counter=counter)

    supervisor = Supervisor("s", scheduler=scheduler)
    supervisor.add_child(Worker("fragile", factory))
    supervisor.start()
    stop_all.append(supervisor)

    assert ask(handle_of(supervisor, "fragile"), "echo", 2) == (1, 2)
    assert supervisor.restarts == 1


def test_the_thread_scheduler_runs_and_cancels_calls() -> None:
    scheduler = ThreadScheduler()
    ran = threading.Event()
    late = threading.Event()

    scheduler.call_later(0.0, ran.set)
    scheduler.call_later(60.0, late.set)
    assert ran.wait(WAIT_S)
    scheduler.cancel_all()

    assert not late.is_set()
