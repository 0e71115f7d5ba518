"""Validation against msgspec schemas, transformers and processing pipelines."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from actors._errors import ValidationError

__all__ = [
    "Step",
    "Transformer",
    "process_data",
    "run_transformers",
    "transform",
    "validate",
]

Transformer = Callable[[dict[str, Any]], Any]
Step = Callable[[Any], Any] | Callable[[Any], Awaitable[Any]]


def validate(
    data: Any,
    schema: type[msgspec.Struct] | None,
    *,
    collection: str | None = None,
    record_id: str | None = None,
) -> dict[str, Any]:
    """Check ``data`` against ``schema`` and return it as plain fields.

    Args:
        data: A mapping of fields.
        schema: A ``msgspec.Struct`` type, or None to accept any mapping.
        collection: The collection, named in errors.
        record_id: The record's id, named in errors.

    Returns:
        The data as a dict, with the schema's defaults filled in.

    Raises:
        ValidationError: If ``data`` is not a mapping or does not fit; the
            message names the field and the problem.

    """
    if not isinstance(data, dict):
        raise ValidationError(
            f"record data must be a dict, not {type(data).__name__}",
            collection=collection,
            record_id=record_id,
        )
    if schema is None:
        return data
    try:
        value = msgspec.convert(data, schema)
    except msgspec.ValidationError as error:
        message = str(error)
        field = _field_of(message)
        raise ValidationError(
            f"does not fit {schema.__name__}: {message}",
            collection=collection,
            record_id=record_id,
            field=field,
        ) from error
    result: dict[str, Any] = msgspec.to_builtins(value)
    return result


def transform(data: dict[str, Any], transformer: Transformer) -> dict[str, Any]:
    """Apply one transformer to ``data`` and check it returned a dict.

    Raises:
        ValidationError: If the transformer returned something else.

    """
    result = transformer(data)
    if not isinstance(result, dict):
        name = getattr(transformer, "__name__", repr(transformer))
        raise ValidationError(
            f"transformer {name} returned {type(result).__name__}, not a dict"
        )
    return result


def run_transformers(
    data: dict[str, Any], transformers: Sequence[Transformer]
) -> dict[str, Any]:
    """Apply transformers in order."""
    for transformer in transformers:
        data = transform(data, transformer)
    return data


async def process_data(data: Any, pipeline: Sequence[Step]) -> Any:
    """Run ``data`` through steps in order; a step may be sync or async."""
    for step in pipeline:
        result = step(data)
        data = await result if inspect.isawaitable(result) else result
    return data


def _field_of(message: str) -> str | None:
    """The path msgspec names in a validation error, down to a missing field."""
    head, sep, path = message.rpartition(" - at `")
    path = path.rstrip("`") if sep else "$"
    missing = "Object missing required field `"
    if head.startswith(missing) or (not sep and message.startswith(missing)):
        name = (head if sep else message)[len(missing) :].rstrip("`")
        return f"{path}.{name}"
    return path if sep else None
