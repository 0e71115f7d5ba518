"""Running steps on the engine's event loop.

Async actions run on the loop itself; sync actions in a thread pool. One
semaphore bounds the steps running at once across every execution; each
action has a circuit breaker. Outcomes go back to the execution actor with
one ``tell`` per attempt.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import msgspec
import pykka

from actors._workflows._actions import Action, StepContext
from actors._workflows._actor import Launch, RetryDue, StepDone
from actors._workflows._definition import StepSpec
from actors._workflows._errors import CircuitOpenError, StepTimeoutError
from actors._workflows._policy import BreakerPolicy, CircuitBreaker, Clock

__all__ = ["StepRunner"]

logger = logging.getLogger(__name__)

_encoder = msgspec.msgpack.Encoder()


class StepRunner:
    """Runs step attempts and retry timers for the engine, on its loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        clock: Clock,
        *,
        max_concurrency: int,
        actions: Mapping[str, Action],
        breakers: dict[str, CircuitBreaker],
        breaker_policy: Callable[[str], BreakerPolicy],
        providers: Mapping[str, Callable[[], Any]],
    ) -> None:
        self._loop = loop
        self._clock = clock
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_concurrency, thread_name_prefix="workflow-step"
        )
        self._actions = actions
        self._breakers = breakers
        self._breaker_policy = breaker_policy
        self._providers = providers
        self._services: dict[str, Any] = {}
        self._service_locks: dict[str, asyncio.Lock] = {}
        self.tasks: dict[str, set[asyncio.Task[None]]] = {}

    # -- tasks -----------------------------------------------------------------

    def _spawn(self, execution_id: str, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        tasks = self.tasks.setdefault(execution_id, set())
        tasks.add(task)

        def forget(done: asyncio.Task[None]) -> None:
            tasks.discard(done)
            if not tasks and self.tasks.get(execution_id) is tasks:
                del self.tasks[execution_id]

        task.add_done_callback(forget)

    def launch(
        self, execution_id: str, ref: pykka.ActorRef[Any], launch: Launch
    ) -> None:
        """Start one attempt of a step."""
        self._spawn(execution_id, self._run(execution_id, ref, launch))

    def timer(
        self, execution_id: str, ref: pykka.ActorRef[Any], step: str, delay_s: float
    ) -> None:
        """Tell the actor ``RetryDue`` after ``delay_s``."""
        self._spawn(execution_id, self._retry_after(ref, step, delay_s))

    def cancel(self, execution_id: str) -> list[asyncio.Task[None]]:
        """Cancel an execution's running steps and timers; return their tasks."""
        tasks = list(self.tasks.get(execution_id, ()))
        for task in tasks:
            task.cancel()
        return tasks

    def close(self) -> list[asyncio.Task[None]]:
        """Cancel everything; the pool stops taking work."""
        tasks = [task for group in self.tasks.values() for task in group]
        for task in tasks:
            task.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
        return tasks

    async def _retry_after(
        self, ref: pykka.ActorRef[Any], step: str, delay_s: float
    ) -> None:
        await self._clock.sleep(delay_s)
        _tell(ref, RetryDue(step))

    # -- one attempt -------------------------------------------------------------

    async def _run(
        self, execution_id: str, ref: pykka.ActorRef[Any], launch: Launch
    ) -> None:
        spec = launch.step
        ctx = StepContext(
            execution_id=execution_id,
            workflow=launch.workflow,
            step=spec.name,
            attempt=launch.attempt,
            idempotency_key=launch.idempotency_key,
            input=launch.input,
            results=launch.results,
            cancel=threading.Event(),
        )
        started = self._clock.monotonic()
        try:
            if spec.when is not None and not await self._call(spec.when, ctx):
                done = StepDone(spec.name, launch.attempt, "skipped")
            else:
                output, duration_s = await self._guarded(spec, ctx)
                try:
                    _encoder.encode(output)
                except (TypeError, msgspec.EncodeError) as exc:
                    raise TypeError(
                        f"the output of step {spec.name!r} cannot be recorded: {exc}"
                    ) from exc
                done = StepDone(
                    spec.name,
                    launch.attempt,
                    "succeeded",
                    output,
                    duration_s=duration_s,
                )
        except asyncio.CancelledError as exc:
            ctx.cancel.set()
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            done = _failed(spec.name, launch.attempt, exc, self._since(started))
        except Exception as exc:  # noqa: BLE001 - the step's failure is an event
            ctx.cancel.set()
            done = _failed(spec.name, launch.attempt, exc, self._since(started))
        _tell(ref, done)

    def _since(self, started: float) -> float:
        return max(0.0, self._clock.monotonic() - started)

    def breaker(self, action: str) -> CircuitBreaker:
        """The breaker of ``action``, made on first use."""
        breaker = self._breakers.get(action)
        if breaker is None:
            breaker = CircuitBreaker(action, self._breaker_policy(action), self._clock)
            self._breakers[action] = breaker
        return breaker

    async def _guarded(self, spec: StepSpec, ctx: StepContext) -> tuple[Any, float]:
        breaker = self.breaker(spec.action)
        while not breaker.allow():
            wait_s = breaker.retry_after_s()
            if spec.on_circuit_open == "fail":
                raise CircuitOpenError(
                    f"the circuit breaker of action {spec.action!r} is {breaker.state}"
                    f" (step {spec.name!r}); it lets a trial through in {wait_s:.3g} s"
                )
            await self._clock.sleep(wait_s)
        try:
            async with self._semaphore:
                started = self._clock.monotonic()
                output = await self._timed(spec, ctx)
                duration_s = self._since(started)
        except asyncio.CancelledError:
            breaker.abandon()
            raise
        except Exception:
            breaker.record_failure()
            raise
        breaker.record_success()
        return output, duration_s

    async def _timed(self, spec: StepSpec, ctx: StepContext) -> Any:
        if spec.timeout_s is None:
            return await self._call(spec.action, ctx)
        work = self._loop.create_task(self._call(spec.action, ctx))
        timer = self._loop.create_task(self._clock.sleep(spec.timeout_s))
        try:
            await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not work.done():
                ctx.cancel.set()
                work.cancel()
                work.add_done_callback(_consume)
        if not work.done() or work.cancelled():
            raise StepTimeoutError(
                f"step {spec.name!r} ran longer than its timeout_s={spec.timeout_s}"
            )
        return work.result()

    async def _call(self, name: str, ctx: StepContext) -> Any:
        action = self._actions.get(name)
        if action is None:
            raise LookupError(f"action {name!r} is not registered in this engine")
        for service in action.wanted_services(self._providers):
            await self._ensure_service(service)
        args, kwargs = action.arguments(ctx, self._services)
        if action.is_async:
            result = action.fn(*args, **kwargs)
        else:
            call = functools.partial(action.fn, *args, **kwargs)
            result = await self._loop.run_in_executor(self._pool, call)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _ensure_service(self, name: str) -> None:
        if name in self._services:
            return
        lock = self._service_locks.setdefault(name, asyncio.Lock())
        async with lock:
            if name not in self._services:
                value = self._providers[name]()
                if inspect.isawaitable(value):
                    value = await value
                self._services[name] = value


def _failed(step: str, attempt: int, exc: BaseException, duration_s: float) -> StepDone:
    return StepDone(
        step,
        attempt,
        "failed",
        error_type=type(exc).__name__,
        error=str(exc),
        error_types=tuple(cls.__name__ for cls in type(exc).__mro__),
        duration_s=duration_s,
    )


def _tell(ref: pykka.ActorRef[Any], message: object) -> None:
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        logger.debug("%r arrived after its execution actor stopped", message)


def _consume(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("a timed-out step raised later: %r", task.exception())
