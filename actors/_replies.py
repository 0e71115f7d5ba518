"""Answers from actors to their callers, without blocking anyone."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future
from typing import Any, Protocol

__all__ = ["FutureReply", "LoopReply", "Reply"]

logger = logging.getLogger(__name__)


class Reply(Protocol):
    """Where an actor sends the answer to one command."""

    def ok(self, value: Any) -> None:
        """Answer with ``value``."""

    def fail(self, error: BaseException) -> None:
        """Answer with ``error``."""


def _resolve(
    future: asyncio.Future[Any], value: Any, error: BaseException | None
) -> None:
    if future.done():  # the caller timed out or was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


class LoopReply:
    """Resolves an asyncio future on its loop's thread (``call_soon_threadsafe``)."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()

    def ok(self, value: Any) -> None:
        """Answer with ``value``."""
        self._send(value, None)

    def fail(self, error: BaseException) -> None:
        """Answer with ``error``."""
        self._send(None, error)

    def _send(self, value: Any, error: BaseException | None) -> None:
        try:
            self.loop.call_soon_threadsafe(_resolve, self.future, value, error)
        except RuntimeError:
            logger.debug("reply dropped: the caller's event loop is closed")


class FutureReply:
    """Resolves a ``concurrent.futures.Future``, for callers on plain threads."""

    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: Future[Any] = Future()

    def ok(self, value: Any) -> None:
        """Answer with ``value``."""
        if not self.future.done():
            self.future.set_result(value)

    def fail(self, error: BaseException) -> None:
        """Answer with ``error``."""
        if not self.future.done():
            self.future.set_exception(error)
