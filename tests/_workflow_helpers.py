"""Shared helpers of the workflow tests: a hand-driven clock, polling."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class ManualClock:
    """A clock that moves only when a test advances it."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, delay_s: float) -> None:
        if delay_s <= 0:
            await asyncio.sleep(0)
            return
        entry = (self.now + delay_s, asyncio.get_running_loop().create_future())
        self._sleepers.append(entry)
        try:
            await entry[1]
        finally:
            self._sleepers.remove(entry)

    @property
    def sleeping(self) -> int:
        return sum(1 for _, fut in self._sleepers if not fut.done())

    def advance(self, delay_s: float) -> None:
        self.now += delay_s
        for deadline, fut in self._sleepers:
            if deadline <= self.now and not fut.done():
                fut.set_result(None)


async def until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait (polling the loop) until ``predicate()`` holds."""

    async def poll() -> None:
        while not predicate():  # noqa: ASYNC110 - polls state that has no event
            await asyncio.sleep(0.002)

    await asyncio.wait_for(poll(), timeout_s)
