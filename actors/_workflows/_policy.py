"""Clocks, retry policies and circuit breakers: the engine's sense of time.

Everything that waits or measures (backoff, breaker cool-downs, step
timeouts, durations) goes through a :class:`Clock`, so tests drive time by
hand instead of sleeping.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from typing import Annotated, Literal, Protocol

import msgspec

__all__ = [
    "BreakerPolicy",
    "CircuitBreaker",
    "Clock",
    "RetryPolicy",
    "SystemClock",
]


class Clock(Protocol):
    """Where the engine reads time and waits."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""

    async def sleep(self, delay_s: float) -> None:
        """Wait ``delay_s`` seconds of this clock."""


class SystemClock:
    """The real clock: ``time.monotonic`` and ``asyncio.sleep``."""

    def monotonic(self) -> float:
        """Seconds on the system's monotonic clock."""
        return time.monotonic()

    async def sleep(self, delay_s: float) -> None:
        """Wait on the running loop."""
        await asyncio.sleep(delay_s)


class RetryPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How a failed step is tried again.

    Attributes:
        max_attempts: Attempts in all, the first one included.
        backoff_s: The delay before the first retry.
        multiplier: Each later delay is this many times the one before.
        max_backoff_s: No delay is longer than this.
        jitter: A random fraction of the delay added or taken away (0 to 1).
        retry_on: Exception type names that are retried (the name of the
            raised type or of any base class); empty retries every error.

    """

    max_attempts: Annotated[int, msgspec.Meta(ge=1)] = 1
    backoff_s: Annotated[float, msgspec.Meta(ge=0)] = 0.1
    multiplier: Annotated[float, msgspec.Meta(ge=1)] = 2.0
    max_backoff_s: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    jitter: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.1
    retry_on: tuple[str, ...] = ()

    def delay_s(self, failed_attempt: int, rng: random.Random) -> float:
        """The delay before the attempt after ``failed_attempt`` (from 1)."""
        base = self.backoff_s * self.multiplier ** (failed_attempt - 1)
        base = min(base, self.max_backoff_s)
        spread = base * self.jitter
        return max(0.0, base + rng.uniform(-spread, spread))

    def retries(self, error_type_names: tuple[str, ...]) -> bool:
        """Whether an error whose type (and bases) have these names retries."""
        if not self.retry_on:
            return True
        return any(name in self.retry_on for name in error_type_names)


class BreakerPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """When an action's circuit breaker opens and when it tries again.

    Attributes:
        failure_threshold: Failures within ``window_s`` that open it.
        window_s: How far back failures count.
        cooldown_s: How long it stays open before letting one trial through.

    """

    failure_threshold: Annotated[int, msgspec.Meta(ge=1)] = 5
    window_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    cooldown_s: Annotated[float, msgspec.Meta(ge=0)] = 30.0


BreakerState = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """One action's breaker: closed, open, or half-open with one trial.

    Used only on the engine's event loop, so it needs no lock.
    """

    def __init__(self, action: str, policy: BreakerPolicy, clock: Clock) -> None:
        self.action = action
        self.policy = policy
        self._clock = clock
        self._failures: collections.deque[float] = collections.deque()
        self._opened_at = 0.0
        self._trial_running = False
        self.state: BreakerState = "closed"

    def allow(self) -> bool:
        """Whether a call may go through now (claims the trial when half-open)."""
        if self.state == "closed":
            return True
        if self.state == "open":
            if self.retry_after_s() > 0:
                return False
            self.state = "half-open"
        if self._trial_running:
            return False
        self._trial_running = True
        return True

    def retry_after_s(self) -> float:
        """How long until an open breaker lets a trial through."""
        if self.state != "open":
            return 0.0 if not self._trial_running else self.policy.cooldown_s
        elapsed = self._clock.monotonic() - self._opened_at
        return max(0.0, self.policy.cooldown_s - elapsed)

    def abandon(self) -> None:
        """A call that was let through never ran (it was cancelled)."""
        self._trial_running = False

    def record_success(self) -> None:
        """A call succeeded: a half-open breaker closes."""
        self._trial_running = False
        if self.state != "closed":
            self.state = "closed"
            self._failures.clear()

    def record_failure(self) -> None:
        """A call failed: count it, and open when there are too many."""
        now = self._clock.monotonic()
        self._trial_running = False
        if self.state == "half-open":
            self._open(now)
            return
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self.policy.window_s:
            self._failures.popleft()
        if len(self._failures) >= self.policy.failure_threshold:
            self._open(now)

    def _open(self, now: float) -> None:
        self.state = "open"
        self._opened_at = now
        self._failures.clear()
