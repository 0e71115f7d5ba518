"""Supervised actors and the asyncio API of actorlog."""

import logging

from actors._cache import BoundedCache
from actors._monitoring import MonitoringSystem
from actors._observability_errors import (
    ObservabilityError,
    OperationNotSupportedError,
    PoolExhaustedError,
    TraceExportError,
    TracingNotAvailableError,
    UnknownAlertError,
    UnknownPoolError,
    UnknownProfileError,
)
from actors._optimizer import PerformanceOptimizer
from actors._pool import ResourcePool
from actors._tracing_setup import configure_tracing, export_trace

__all__ = [
    "BoundedCache",
    "MonitoringSystem",
    "ObservabilityError",
    "OperationNotSupportedError",
    "PerformanceOptimizer",
    "PoolExhaustedError",
    "ResourcePool",
    "TraceExportError",
    "TracingNotAvailableError",
    "UnknownAlertError",
    "UnknownPoolError",
    "UnknownProfileError",
    "configure_tracing",
    "export_trace",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
