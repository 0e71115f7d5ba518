"""Answers from actors to their callers, without blocking anyone."""

from __future__ import annotations

import asyncio
import collections
import logging
import weakref
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


class _Poster:
    """Hands answers to one loop, waking it once for many of them.

    Threads append to a deque and schedule one drain unless one is pending;
    the drain clears the flag before it empties the deque, so an answer
    appended during a drain is either taken by it or schedules the next.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: collections.deque[
            tuple[asyncio.Future[Any], Any, BaseException | None]
        ] = collections.deque()
        self.scheduled = False

    def post(
        self, future: asyncio.Future[Any], value: Any, error: BaseException | None
    ) -> None:
        self.items.append((future, value, error))
        if not self.scheduled:
            self.scheduled = True
            try:
                self.loop.call_soon_threadsafe(self.drain)
            except RuntimeError:
                self.scheduled = False
                logger.debug("reply dropped: the caller's event loop is closed")

    def drain(self) -> None:
        self.scheduled = False
        items = self.items
        while items:
            _resolve(*items.popleft())


_posters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Poster] = (
    weakref.WeakKeyDictionary()
)


def _poster(loop: asyncio.AbstractEventLoop) -> _Poster:
    poster = _posters.get(loop)
    if poster is None:
        poster = _posters[loop] = _Poster(loop)
    return poster


class LoopReply:
    """Resolves an asyncio future on its loop's thread (``call_soon_threadsafe``).

    Answers bound for one loop are batched: the loop is woken once for all
    the answers that arrived since it last ran them.
    """

    __slots__ = ("_poster", "future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self._poster = _poster(loop)

    def ok(self, value: Any) -> None:
        """Answer with ``value``."""
        self._send(value, None)

    def fail(self, error: BaseException) -> None:
        """Answer with ``error``."""
        self._send(None, error)

    def _send(self, value: Any, error: BaseException | None) -> None:
        self._poster.post(self.future, value, error)


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
