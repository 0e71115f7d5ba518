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

__all__ = [
    "CONFLICT_STRATEGIES",
    "ConflictStrategy",
    "CustomStrategy",
    "Resolution",
    "Version",
    "check_strategy",
    "merge_data",
    "resolve",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
