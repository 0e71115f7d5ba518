"""Workflow definitions: checking a plain dict, resolving its graph, a builder.

A definition is JSON-shaped so that it can be stored in the log: the engine
keeps each version as an event, and every execution records the normalised
definition it started with. Normalising makes every implicit edge explicit
(a step without ``depends_on`` follows the step, or parallel group, before
it), so an execution never depends on these rules again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal

import msgspec

from actors._workflows._errors import InvalidWorkflowError
from actors._workflows._policy import RetryPolicy

__all__ = ["StepSpec", "WorkflowBuilder", "WorkflowSpec", "normalize_definition"]

_TOP_FIELDS = frozenset({"name", "description", "steps"})
_STEP_FIELDS = frozenset(
    {
        "name",
        "action",
        "depends_on",
        "parallel",
        "retry",
        "timeout_s",
        "when",
        "on_circuit_open",
    }
)


class StepSpec(msgspec.Struct, frozen=True):
    """One step of a normalised definition."""

    name: str
    action: str
    depends_on: tuple[str, ...] = ()
    parallel: bool = False
    retry: RetryPolicy = RetryPolicy()
    timeout_s: float | None = None
    when: str | None = None
    on_circuit_open: Literal["fail", "wait"] = "fail"


class WorkflowSpec(msgspec.Struct, frozen=True):
    """A normalised definition: steps in their declared order, edges explicit."""

    name: str
    steps: tuple[StepSpec, ...]
    description: str = ""

    def step(self, name: str) -> StepSpec:
        """The step called ``name``.

        Raises:
            KeyError: If there is no such step.

        """
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The plain-data form stored in events."""
        data: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(self))
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkflowSpec:
        """Read back a definition stored by :meth:`to_dict`."""
        return msgspec.convert(data, cls)


def _fail(workflow: str, where: str, message: str) -> InvalidWorkflowError:
    return InvalidWorkflowError(f"workflow {workflow!r}{where}: {message}")


def _check_step(
    workflow: str, index: int, raw: Any, actions: Collection[str]
) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise _fail(workflow, f", step #{index + 1}", "a step must be a mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise _fail(workflow, f", step #{index + 1}", "'name' must be a non-empty str")
    where = f", step {name!r}"
    unknown = sorted(set(raw) - _STEP_FIELDS)
    if unknown:
        raise _fail(workflow, where, f"unknown field {unknown[0]!r}")
    action = raw.get("action")
    if not isinstance(action, str) or not action:
        raise _fail(workflow, where, "'action' must be a non-empty str")
    if action not in actions:
        raise _fail(workflow, where, f"unknown action {action!r}")
    _check_options(workflow, where, raw, actions)
    return dict(raw)


def _check_options(
    workflow: str, where: str, raw: Mapping[str, Any], actions: Collection[str]
) -> None:
    depends_on = raw.get("depends_on")
    if depends_on is not None and (
        isinstance(depends_on, str)
        or not isinstance(depends_on, Sequence)
        or not all(isinstance(dep, str) for dep in depends_on)
    ):
        raise _fail(workflow, where, "'depends_on' must be a list of step names")
    if not isinstance(raw.get("parallel", False), bool):
        raise _fail(workflow, where, "'parallel' must be true or false")
    timeout_s = raw.get("timeout_s")
    if timeout_s is not None and (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int | float)
        or timeout_s <= 0
    ):
        raise _fail(workflow, where, f"'timeout_s' must be > 0, got {timeout_s!r}")
    when = raw.get("when")
    if when is not None and when not in actions:
        raise _fail(workflow, where, f"'when' names unknown action {when!r}")
    if raw.get("on_circuit_open", "fail") not in ("fail", "wait"):
        raise _fail(workflow, where, "'on_circuit_open' must be 'fail' or 'wait'")
    try:
        msgspec.convert(raw.get("retry") or {}, RetryPolicy)
    except msgspec.ValidationError as exc:
        raise _fail(workflow, where, f"bad 'retry': {exc}") from exc


def _resolve_edges(steps: list[dict[str, Any]]) -> None:
    # Implicit edges: a step follows the step (or parallel group) before it;
    # consecutive parallel steps share the predecessors of their group.
    tail: list[str] = []
    group_deps: list[str] = []
    in_group = False
    for step in steps:
        parallel = bool(step.get("parallel", False))
        if step.get("depends_on") is not None:
            step["depends_on"] = list(step["depends_on"])
            tail, in_group = [step["name"]], False
            continue
        if parallel and in_group:
            step["depends_on"] = list(group_deps)
            tail.append(step["name"])
            continue
        step["depends_on"] = list(tail)
        if parallel:
            group_deps, in_group = list(tail), True
        else:
            in_group = False
        tail = [step["name"]]


def _check_graph(workflow: str, steps: list[dict[str, Any]]) -> None:
    names = [step["name"] for step in steps]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise _fail(workflow, "", f"step name {name!r} is used twice")
        seen.add(name)
    for step in steps:
        for dep in step["depends_on"]:
            if dep not in seen:
                raise _fail(
                    workflow, f", step {step['name']!r}", f"unknown dependency {dep!r}"
                )
            if dep == step["name"]:
                raise _fail(
                    workflow, f", step {dep!r}", "a step cannot depend on itself"
                )
    _check_cycles(workflow, names, steps)


def _check_cycles(workflow: str, names: list[str], steps: list[dict[str, Any]]) -> None:
    deps = {step["name"]: step["depends_on"] for step in steps}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for dep in deps[name]:
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep]
                raise _fail(workflow, "", "steps form a cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        path.pop()
        state[name] = 2

    for name in names:
        if name not in state:
            visit(name)


def normalize_definition(
    name: str, definition: Mapping[str, Any], *, actions: Collection[str]
) -> WorkflowSpec:
    """Check a definition and make its edges explicit.

    Args:
        name: The workflow's name.
        definition: A mapping with ``steps`` (and optionally ``name`` and
            ``description``), as loaded from JSON or built.
        actions: The names of the registered actions.

    Returns:
        The normalised definition.

    Raises:
        InvalidWorkflowError: Naming the workflow, the step and the field at
            fault: an unknown field or action, a bad value, an unknown
            dependency, a repeated step name, or a cycle.

    """
    if not isinstance(name, str) or not name or "/" in name:
        raise InvalidWorkflowError(
            f"workflow name {name!r} must be a non-empty str without '/'"
        )
    if not isinstance(definition, Mapping):
        raise _fail(name, "", "a definition must be a mapping")
    unknown = sorted(set(definition) - _TOP_FIELDS)
    if unknown:
        raise _fail(name, "", f"unknown field {unknown[0]!r}")
    if definition.get("name", name) != name:
        raise _fail(name, "", f"its 'name' field says {definition['name']!r}")
    description = definition.get("description", "")
    if not isinstance(description, str):
        raise _fail(name, "", "'description' must be a str")
    raw_steps = definition.get("steps")
    if isinstance(raw_steps, str | bytes) or not isinstance(raw_steps, Sequence):
        raise _fail(name, "", "'steps' must be a list")
    if not raw_steps:
        raise _fail(name, "", "'steps' must not be empty")
    steps = [_check_step(name, i, raw, actions) for i, raw in enumerate(raw_steps)]
    _resolve_edges(steps)
    _check_graph(name, steps)
    return msgspec.convert(
        {"name": name, "description": description, "steps": steps}, WorkflowSpec
    )


class WorkflowBuilder:
    """Build a definition step by step.

    Example:
        >>> definition = (
        ...     WorkflowBuilder("user-registration")
        ...     .step("validate", "validateUser")
        ...     .step("create", "createUser", retry={"max_attempts": 3})
        ...     .build()
        ... )

    """

    def __init__(self, name: str, *, description: str = "") -> None:
        self.name = name
        self._description = description
        self._steps: list[dict[str, Any]] = []

    def step(
        self,
        name: str,
        action: str,
        *,
        depends_on: Sequence[str] | None = None,
        parallel: bool = False,
        retry: Mapping[str, Any] | RetryPolicy | None = None,
        timeout_s: float | None = None,
        when: str | None = None,
        on_circuit_open: Literal["fail", "wait"] = "fail",
    ) -> WorkflowBuilder:
        """Add a step; see the workflows guide for what each field means."""
        step: dict[str, Any] = {"name": name, "action": action}
        if depends_on is not None:
            step["depends_on"] = list(depends_on)
        if parallel:
            step["parallel"] = True
        if retry is not None:
            step["retry"] = (
                msgspec.to_builtins(retry)
                if isinstance(retry, RetryPolicy)
                else dict(retry)
            )
        if timeout_s is not None:
            step["timeout_s"] = timeout_s
        if when is not None:
            step["when"] = when
        if on_circuit_open != "fail":
            step["on_circuit_open"] = on_circuit_open
        self._steps.append(step)
        return self

    def build(self) -> dict[str, Any]:
        """The definition as a plain dict (checked by ``create_workflow``)."""
        return {
            "name": self.name,
            "description": self._description,
            "steps": [dict(step) for step in self._steps],
        }
