"""The contract every store backend satisfies."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Protocol, TypeVar

from eventstore._codec import EventRegistry
from eventstore._core import InlineProjector
from eventstore._notify import CommitNotifier
from eventstore._subscription import Subscription
from eventstore._tables import ViewReader, ViewTxn
from eventstore._types import AppendResult, Expected, NewEvent, StoredEvent, StreamInfo

__all__ = ["EventStore"]

T = TypeVar("T")


class EventStore(Protocol):
    """An append-only log of events in streams; see ``BaseStore`` for details."""

    registry: EventRegistry
    notifier: CommitNotifier
    readonly: bool

    def append(
        self,
        events: Sequence[NewEvent],
        *,
        expected_versions: Mapping[str, Expected] | None = None,
        command_id: str | None = None,
    ) -> AppendResult:
        """Append events atomically; return where they landed."""

    def append_future(
        self,
        events: Sequence[NewEvent],
        *,
        expected_versions: Mapping[str, Expected] | None = None,
        command_id: str | None = None,
    ) -> Future[AppendResult]:
        """Queue an append; the future completes on commit."""

    async def append_async(
        self,
        events: Sequence[NewEvent],
        *,
        expected_versions: Mapping[str, Expected] | None = None,
        command_id: str | None = None,
    ) -> AppendResult:
        """Append without blocking the event loop."""

    def write_views(self, fn: Callable[[ViewTxn], T]) -> T:
        """Run ``fn`` in one write transaction."""

    def add_inline_projector(self, projector: InlineProjector) -> None:
        """Fold every later append into ``projector`` in its commit."""

    def remove_inline_projector(self, projector: InlineProjector) -> None:
        """Stop folding into ``projector``."""

    def head_position(self) -> int:
        """The last committed position; 0 when empty."""

    def stream_version(self, stream: str) -> int:
        """The stream's version; 0 when it has no events."""

    def stream_info(self, stream: str) -> StreamInfo | None:
        """The stream's version and positions."""

    def command_result(self, command_id: str) -> AppendResult | None:
        """The result of the append that carried ``command_id``."""

    def streams(self, *, prefix: str = "") -> Iterator[StreamInfo]:
        """Streams by name."""

    def read_stream(
        self, stream: str, *, from_version: int = 1, to_version: int | None = None
    ) -> Iterator[StoredEvent]:
        """A stream's events in version order."""

    def read_all(
        self,
        *,
        from_position: int = 1,
        to_position: int | None = None,
        types: Collection[str] | None = None,
    ) -> Iterator[StoredEvent]:
        """The log's events in position order."""

    def read_record(self, position: int) -> bytes | None:
        """The raw record at ``position``."""

    def subscribe(
        self,
        from_position: int | None = None,
        *,
        timeout_s: float | None = None,
        types: Collection[str] | None = None,
    ) -> Subscription:
        """Follow the log."""

    def read_views(self) -> contextlib.AbstractContextManager[ViewReader]:
        """A consistent snapshot of the view tables."""

    def view_get(self, table: str, key: bytes) -> bytes | None:
        """One value of a view table."""

    def close(self) -> None:
        """Release the store."""
