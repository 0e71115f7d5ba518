from __future__ import annotations

import random
from typing import Any

import pytest
from _workflow_helpers import ManualClock

from actors import (
    BreakerPolicy,
    InvalidWorkflowError,
    RetryPolicy,
    WorkflowBuilder,
)
from actors._workflows._definition import WorkflowSpec, normalize_definition
from actors._workflows._policy import CircuitBreaker, SystemClock

ACTIONS = {"a", "b", "c"}


def edges(definition: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    spec = normalize_definition("w", definition, actions=ACTIONS)
    return {step.name: step.depends_on for step in spec.steps}


def test_steps_without_depends_on_follow_the_step_before() -> None:
    steps = [{"name": n, "action": "a"} for n in ("x", "y", "z")]

    assert edges({"steps": steps}) == {"x": (), "y": ("x",), "z": ("y",)}


def test_a_parallel_group_shares_its_predecessor_and_is_joined() -> None:
    definition = {
        "steps": [
            {"name": "start", "action": "a"},
            {"name": "p1", "action": "b", "parallel": True},
            {"name": "p2", "action": "b", "parallel": True},
            {"name": "p3", "action": "b", "parallel": True},
            {"name": "end", "action": "c"},
            {"name": "side", "action": "c", "depends_on": ["start"]},
            {"name": "last", "action": "c"},
        ]
    }

    assert edges(definition) == {
        "start": (),
        "p1": ("start",),
        "p2": ("start",),
        "p3": ("start",),
        "end": ("p1", "p2", "p3"),
        "side": ("start",),
        "last": ("side",),
    }


def test_a_definition_round_trips_through_its_stored_form() -> None:
    definition = (
        WorkflowBuilder("w", description="demo")
        .step("x", "a", retry=RetryPolicy(max_attempts=2), timeout_s=1.5)
        .step("y", "b", when="c", on_circuit_open="wait", depends_on=["x"])
        .build()
    )
    spec = normalize_definition("w", definition, actions=ACTIONS)

    again = WorkflowSpec.from_dict(spec.to_dict())

    assert again == spec
    assert spec.description == "demo"
    assert spec.step("x").retry.max_attempts == 2
    assert spec.step("y").on_circuit_open == "wait"
    with pytest.raises(KeyError):
        spec.step("nope")


def step(**fields: Any) -> dict[str, Any]:
    return {"name": "s", "action": "a", **fields}


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        (
            {"steps": [step(), {"name": "t", "action": "nope"}]},
            "step 't': unknown action 'nope'",
        ),
        ({"steps": [step(depends_on=["ghost"])]}, "unknown dependency 'ghost'"),
        ({"steps": [step(depends_on=["s"])]}, "cannot depend on itself"),
        ({"steps": [step(colour="red")]}, "step 's': unknown field 'colour'"),
        ({"steps": [step(timeout_s=0)]}, "'timeout_s' must be > 0, got 0"),
        ({"steps": [step(timeout_s=True)]}, "'timeout_s' must be > 0"),
        ({"steps": [step(parallel="yes")]}, "'parallel' must be true or false"),
        ({"steps": [step(depends_on="x")]}, "'depends_on' must be a list"),
        ({"steps": [step(when="nope")]}, "'when' names unknown action 'nope'"),
        ({"steps": [step(on_circuit_open="later")]}, "'on_circuit_open'"),
        ({"steps": [step(retry={"max_attempts": 0})]}, "bad 'retry'"),
        ({"steps": [step(retry={"tries": 3})]}, "bad 'retry'"),
        ({"steps": [step(), step()]}, "step name 's' is used twice"),
        ({"steps": [step(action="")]}, "'action' must be a non-empty str"),
        ({"steps": [{"action": "a"}]}, "step #1: 'name' must be a non-empty str"),
        ({"steps": ["s"]}, "step #1: a step must be a mapping"),
        ({"steps": []}, "'steps' must not be empty"),
        ({"steps": "s"}, "'steps' must be a list"),
        ({"stages": []}, "unknown field 'stages'"),
        ({"name": "other", "steps": [step()]}, "its 'name' field says 'other'"),
        ({"description": 3, "steps": [step()]}, "'description' must be a str"),
        (
            {
                "steps": [
                    {"name": "x", "action": "a", "depends_on": ["z"]},
                    {"name": "y", "action": "a", "depends_on": ["x"]},
                    {"name": "z", "action": "a", "depends_on": ["y"]},
                ]
            },
            "cycle: x -> z -> y -> x",
        ),
    ],
)
def test_invalid_definitions_are_rejected_naming_the_fault(
    definition: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidWorkflowError, match="workflow 'w'") as caught:
        normalize_definition("w", definition, actions=ACTIONS)

    assert message in str(caught.value)


def test_a_bad_name_or_shape_is_rejected() -> None:
    with pytest.raises(InvalidWorkflowError, match="without '/'"):
        normalize_definition("a/b", {"steps": [step()]}, actions=ACTIONS)
    with pytest.raises(InvalidWorkflowError, match="must be a mapping"):
        normalize_definition("w", [step()], actions=ACTIONS)  # type: ignore[arg-type]


def test_backoff_grows_by_the_multiplier_and_is_capped() -> None:
    policy = RetryPolicy(
        max_attempts=9, backoff_s=1, multiplier=3, max_backoff_s=5, jitter=0
    )
    rng = random.Random(1)

    delays = [policy.delay_s(n, rng) for n in (1, 2, 3)]

    assert delays == [1, 3, 5]


def test_jitter_stays_within_its_fraction() -> None:
    policy = RetryPolicy(backoff_s=10, jitter=0.2)
    rng = random.Random(7)

    delays = [policy.delay_s(1, rng) for _ in range(200)]

    assert all(8 <= d <= 12 for d in delays)
    assert len(set(delays)) > 100


def test_retry_on_matches_the_type_or_a_base() -> None:
    policy = RetryPolicy(retry_on=("OSError",))

    assert policy.retries(("ConnectionError", "OSError", "Exception"))
    assert not policy.retries(("KeyError", "LookupError", "Exception"))
    assert RetryPolicy().retries(("KeyError",))


def test_breaker_opens_after_failures_in_its_window_then_half_opens() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(
        "pay", BreakerPolicy(failure_threshold=2, window_s=10, cooldown_s=30), clock
    )

    breaker.record_failure()
    clock.advance(11)
    breaker.record_failure()
    still_closed = breaker.state
    breaker.record_failure()
    opened = breaker.state
    refused = breaker.allow()
    wait_s = breaker.retry_after_s()
    clock.advance(30)
    trial = breaker.allow()
    second = breaker.allow()
    breaker.record_failure()
    reopened = breaker.state
    clock.advance(30)
    trial_again = breaker.allow()
    breaker.abandon()
    trial_after_abandon = breaker.allow()
    breaker.record_success()

    assert still_closed == "closed"
    assert opened == "open"
    assert not refused
    assert wait_s == 30
    assert trial
    assert not second
    assert reopened == "open"
    assert trial_again
    assert trial_after_abandon
    assert breaker.state == "closed"
    assert breaker.allow()


async def test_the_system_clock_moves_forward() -> None:
    clock = SystemClock()
    before = clock.monotonic()

    await clock.sleep(0.001)

    assert clock.monotonic() > before
