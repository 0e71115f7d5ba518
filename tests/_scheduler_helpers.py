"""A restart scheduler for supervisor tests: no real timers."""

from __future__ import annotations

from collections.abc import Callable


class HeldScheduler:
    """Runs restarts at once, or holds them until released; records delays."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.held: list[Callable[[], None]] = []
        self.hold = False

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        self.delays.append(delay_s)
        if self.hold:
            self.held.append(fn)
        else:
            fn()

    def release(self) -> None:
        held, self.held = self.held, []
        for fn in held:
            fn()

    def cancel_all(self) -> None:
        self.held.clear()
