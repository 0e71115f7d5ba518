"""Supervised actors and the asyncio API of actorlog."""

import logging

from actors._conflicts import (
    CONFLICT_STRATEGIES,
    ConflictStrategy,
    CustomStrategy,
    Resolution,
    Version,
    check_strategy,
    merge_data,
    resolve,
)
from actors._dashboard import DashboardError, DashboardServer

__all__ = [
    "CONFLICT_STRATEGIES",
    "ConflictStrategy",
    "CustomStrategy",
    "DashboardError",
    "DashboardServer",
    "Resolution",
    "Version",
    "check_strategy",
    "merge_data",
    "resolve",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
