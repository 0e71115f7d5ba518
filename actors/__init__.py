"""Supervised actors and the asyncio API of actorlog."""

import logging

__all__: list[str] = []

logging.getLogger(__name__).addHandler(logging.NullHandler())
