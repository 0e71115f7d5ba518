"""Registered actions and how a step's arguments are found for them.

An action asks for what it needs by parameter name: ``context`` (or
``ctx``), ``input``, ``results``, ``idempotency_key``, ``cancel``, or the
name of a service given to ``WorkflowEngine.provide``. A first parameter
with any other name receives the step context.
"""

from __future__ import annotations

import dataclasses
import inspect
import threading
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["CONTEXT_FIELDS", "Action", "StepContext"]


@dataclasses.dataclass(frozen=True)
class StepContext:
    """What a step receives besides its services.

    Attributes:
        execution_id: The execution it belongs to.
        workflow: The workflow's name.
        step: The step's name.
        attempt: Which attempt this is (from 1).
        idempotency_key: The same for every attempt of this step in this
            execution: give it to external systems so a re-run after a crash
            does its side effect once.
        input: The execution's input.
        results: The outputs of the steps this one depends on, by step name.
        cancel: Set when the step is cancelled or timed out; long-running
            sync actions should check it.

    """

    execution_id: str
    workflow: str
    step: str
    attempt: int
    idempotency_key: str
    input: Any
    results: Mapping[str, Any]
    cancel: threading.Event

    @property
    def cancelled(self) -> bool:
        """Whether the step was asked to stop."""
        return self.cancel.is_set()


CONTEXT_FIELDS: dict[str, Callable[[StepContext], Any]] = {
    "context": lambda ctx: ctx,
    "ctx": lambda ctx: ctx,
    "input": lambda ctx: ctx.input,
    "results": lambda ctx: ctx.results,
    "idempotency_key": lambda ctx: ctx.idempotency_key,
    "cancel": lambda ctx: ctx.cancel,
}


@dataclasses.dataclass(frozen=True)
class _Param:
    name: str
    required: bool
    context_fallback: bool


class Action:
    """A registered callable and the plan for calling it."""

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        if not callable(fn):
            raise TypeError(f"action {name!r} must be callable, got {fn!r}")
        self.name = name
        self.fn = fn
        self.is_async = inspect.iscoroutinefunction(fn) or (
            inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004 - async callables
        )
        params: list[_Param] = []
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"action {name!r} has no readable signature") from exc
        for index, param in enumerate(signature.parameters.values()):
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            if param.kind is param.POSITIONAL_ONLY and index > 0:
                raise TypeError(
                    f"action {name!r}: positional-only parameter {param.name!r} "
                    "is not supported"
                )
            params.append(
                _Param(
                    param.name,
                    param.default is param.empty,
                    index == 0 and param.kind is not param.KEYWORD_ONLY,
                )
            )
        self._params = tuple(params)
        self._positional_first = bool(
            params
            and signature.parameters[params[0].name].kind
            is inspect.Parameter.POSITIONAL_ONLY
        )

    def arguments(
        self, ctx: StepContext, services: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The positional and keyword arguments for one call.

        Raises:
            TypeError: If a required parameter is neither a context field
                nor a provided service.

        """
        args: tuple[Any, ...] = ()
        kwargs: dict[str, Any] = {}
        for param in self._params:
            if param.name in CONTEXT_FIELDS:
                value = CONTEXT_FIELDS[param.name](ctx)
            elif param.name in services:
                value = services[param.name]
            elif param.context_fallback:
                value = ctx
            elif param.required:
                raise TypeError(
                    f"action {self.name!r} asks for {param.name!r}, which is "
                    "neither a context field nor a provided service"
                )
            else:
                continue
            if param is self._params[0] and self._positional_first:
                args = (value,)
            else:
                kwargs[param.name] = value
        return args, kwargs

    def wanted_services(self, provided: Mapping[str, Any]) -> list[str]:
        """The provided services this action asks for."""
        return [
            p.name
            for p in self._params
            if p.name not in CONTEXT_FIELDS and p.name in provided
        ]
