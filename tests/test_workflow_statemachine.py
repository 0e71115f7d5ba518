from __future__ import annotations

from pathlib import Path

import pytest

from actors import StateMachine, StateTransitioned, Transition, WorkflowStateError
from eventstore import LmdbEventStore, MemoryEventStore


def door(
    store: MemoryEventStore | LmdbEventStore | None = None,
    effects: list[str] | None = None,
) -> StateMachine:
    seen = effects if effects is not None else []

    async def ring(record: StateTransitioned) -> None:
        seen.append(f"{record.source}->{record.target}")

    return StateMachine(
        "door",
        "closed",
        [
            Transition("open", ("closed",), "opened", effect=ring),
            Transition("close", ("opened",), "closed"),
            Transition(
                "lock", ("closed",), "locked", guard=lambda key: key == "secret"
            ),
            Transition("unlock", ("locked",), "closed"),
        ],
        store=store,
        stream="machines/door" if store is not None else None,
    )


async def test_fire_moves_runs_the_effect_and_keeps_history() -> None:
    effects: list[str] = []
    machine = door(effects=effects)

    await machine.fire("open")
    await machine.fire("close")

    assert machine.state == "closed"
    assert effects == ["closed->opened"]
    assert [r.trigger for r in machine.history] == ["open", "close"]


async def test_a_guard_refuses_and_an_unknown_move_is_an_error() -> None:
    machine = door()

    with pytest.raises(WorkflowStateError, match="guard of 'lock' refused"):
        await machine.fire("lock", "wrong")
    with pytest.raises(WorkflowStateError, match="no transition 'close'"):
        await machine.fire("close")

    assert machine.can("lock", "secret")
    assert not machine.can("lock", "wrong")
    assert not machine.can("unlock")
    assert machine.state == "closed"


async def test_transitions_are_events_that_replay_to_the_same_state(
    tmp_path: Path,
) -> None:
    with LmdbEventStore.open(tmp_path / "s") as store:
        machine = door(store)
        await machine.fire("open")
        await machine.fire("close")
        await machine.fire("lock", "secret")
    with LmdbEventStore.open(tmp_path / "s") as store:
        again = door(store)
        again.load()
        events = list(store.read_stream("machines/door"))
        await again.fire("unlock")

    assert [e.type for e in events] == ["StateTransitioned"] * 3
    assert events[2].data == StateTransitioned(
        "door", "lock", "closed", "locked", "secret"
    )
    assert again.state == "closed"


def test_replay_of_a_record_that_does_not_fit_is_an_error() -> None:
    machine = door()

    with pytest.raises(WorkflowStateError, match="leaves 'opened'"):
        machine.replay([StateTransitioned("door", "close", "opened", "closed")])


def test_a_store_needs_a_stream() -> None:
    with pytest.raises(ValueError, match="needs a stream"):
        StateMachine("m", "a", [], store=MemoryEventStore())
