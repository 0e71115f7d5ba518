"""The errors of tracing, monitoring and the performance optimizer."""

from __future__ import annotations

__all__ = [
    "ObservabilityError",
    "OperationNotSupportedError",
    "PoolExhaustedError",
    "TraceExportError",
    "TracingNotAvailableError",
    "UnknownAlertError",
    "UnknownPoolError",
    "UnknownProfileError",
]


class ObservabilityError(Exception):
    """Raised when tracing, monitoring or the optimizer is misused."""


class TracingNotAvailableError(ObservabilityError):
    """Raised when the OpenTelemetry SDK (the ``otel`` extra) is missing."""


class TraceExportError(ObservabilityError):
    """Raised when recorded history cannot be turned into spans."""


class UnknownAlertError(ObservabilityError, KeyError):
    """Raised when an alert name was never set (or was removed)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownPoolError(ObservabilityError, KeyError):
    """Raised when a pool name was never created."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownProfileError(ObservabilityError, KeyError):
    """Raised when a profile name was never started or recorded."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PoolExhaustedError(ObservabilityError, TimeoutError):
    """Raised when no resource of a pool came free within the wait's timeout."""


class OperationNotSupportedError(ObservabilityError, NotImplementedError):
    """Raised when an optimizer operation is not supported by actorlog."""
