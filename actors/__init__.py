"""Supervised actors and the asyncio API of actorlog."""

import logging

from actors._monitoring import MonitoringSystem
from actors._observability_errors import (
    ObservabilityError,
    OperationNotSupportedError,
    PoolExhaustedError,
    TraceExportError,
    TracingNotAvailableError,
    UnknownAlertError,
    UnknownPoolError,
)
from actors._tracing import configure_tracing

__all__ = [
    "MonitoringSystem",
    "ObservabilityError",
    "OperationNotSupportedError",
    "PoolExhaustedError",
    "TraceExportError",
    "TracingNotAvailableError",
    "UnknownAlertError",
    "UnknownPoolError",
    "configure_tracing",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
