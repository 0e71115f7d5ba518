"""Read models folded from the log."""

import logging

__all__: list[str] = []

logging.getLogger(__name__).addHandler(logging.NullHandler())
