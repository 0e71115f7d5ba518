"""A small async state machine whose transitions are events.

A transition is recorded before its effect runs: the event is the fact, the
effect its consequence. Replaying the recorded events (without guards or
effects) gives back the same state, which is how an execution's lifecycle
is rebuilt after a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import msgspec

from actors._workflows._errors import WorkflowStateError
from eventstore import EventStore, NewEvent, StoredEvent, register_event

__all__ = ["StateMachine", "StateTransitioned", "Transition"]

Guard = Callable[[Any], bool]
Effect = Callable[["StateTransitioned"], Awaitable[None]]


@register_event("StateTransitioned")
class StateTransitioned(msgspec.Struct, frozen=True):
    """A state machine moved from ``source`` to ``target`` on ``trigger``."""

    machine: str
    trigger: str
    source: str
    target: str
    data: Any = None


@dataclasses.dataclass(frozen=True)
class Transition:
    """A move on ``trigger`` from any of ``sources`` to ``target``.

    Attributes:
        trigger: The name that fires it.
        sources: The states it leaves from.
        target: The state it leads to.
        guard: Given the fired data, whether the move is allowed now.
        effect: Awaited after the move is recorded.

    """

    trigger: str
    sources: tuple[str, ...]
    target: str
    guard: Guard | None = None
    effect: Effect | None = None


class StateMachine:
    """States and guarded transitions, each recorded as an event.

    Args:
        name: The machine's name, written in every event.
        initial: The state before any transition.
        transitions: The allowed moves.
        store: Where transitions are appended (``StateTransitioned`` events);
            ``None`` keeps them in memory only (``history``).
        stream: The stream to append to; required with ``store``.

    """

    def __init__(
        self,
        name: str,
        initial: str,
        transitions: Sequence[Transition],
        *,
        store: EventStore | None = None,
        stream: str | None = None,
    ) -> None:
        if store is not None and not stream:
            raise ValueError(f"state machine {name!r}: a store needs a stream")
        self.name = name
        self.state = initial
        self.history: list[StateTransitioned] = []
        self._transitions: dict[str, list[Transition]] = {}
        for transition in transitions:
            self._transitions.setdefault(transition.trigger, []).append(transition)
        self._store = store
        self._stream = stream or ""
        self._version = 0
        self._lock = asyncio.Lock()

    def _find(self, trigger: str) -> Transition:
        for transition in self._transitions.get(trigger, ()):
            if self.state in transition.sources:
                return transition
        raise WorkflowStateError(
            f"state machine {self.name!r}: no transition {trigger!r} "
            f"from state {self.state!r}"
        )

    def can(self, trigger: str, data: Any = None) -> bool:
        """Whether ``trigger`` would move the machine now."""
        try:
            transition = self._find(trigger)
        except WorkflowStateError:
            return False
        return transition.guard is None or transition.guard(data)

    def apply(self, trigger: str, data: Any = None) -> StateTransitioned:
        """Move on ``trigger`` now, without guard, effect or store.

        Raises:
            WorkflowStateError: If no transition leaves the current state on
                ``trigger``.

        """
        transition = self._find(trigger)
        record = StateTransitioned(
            self.name, trigger, self.state, transition.target, data
        )
        self.state = transition.target
        self.history.append(record)
        return record

    async def fire(self, trigger: str, data: Any = None) -> StateTransitioned:
        """Check the guard, record the move, then await its effect.

        Raises:
            WorkflowStateError: If there is no such transition from the
                current state, or its guard refuses.

        """
        async with self._lock:
            transition = self._find(trigger)
            if transition.guard is not None and not transition.guard(data):
                raise WorkflowStateError(
                    f"state machine {self.name!r}: the guard of {trigger!r} "
                    f"refused in state {self.state!r}"
                )
            record = StateTransitioned(
                self.name, trigger, self.state, transition.target, data
            )
            if self._store is not None:
                await self._store.append_async(
                    [NewEvent(self._stream, "StateTransitioned", record)],
                    expected_versions={self._stream: self._version},
                )
                self._version += 1
            self.state = transition.target
            self.history.append(record)
        if transition.effect is not None:
            await transition.effect(record)
        return record

    def replay(self, records: Iterable[StateTransitioned | StoredEvent]) -> None:
        """Apply recorded transitions again, without guards or effects.

        Raises:
            WorkflowStateError: If a record does not fit the machine.

        """
        for item in records:
            record = item.data if isinstance(item, StoredEvent) else item
            if isinstance(item, StoredEvent):
                self._version = item.version
            if not isinstance(record, StateTransitioned):
                continue
            if record.source != self.state:
                raise WorkflowStateError(
                    f"state machine {self.name!r}: recorded move {record.trigger!r} "
                    f"leaves {record.source!r}, but the machine is in {self.state!r}"
                )
            self.apply(record.trigger, record.data)

    def load(self) -> None:
        """Replay this machine's stream from its store."""
        if self._store is not None:
            self.replay(self._store.read_stream(self._stream))
