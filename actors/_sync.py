"""The sync protocol: two replicas exchange what the other lacks.

Design note. A session runs over a channel that delivers messages in order
(a WebSocket, or a pair of queues in one process). The side that connects
sends ``Hello`` with its replica id and high-water marks; the other answers
with its own. From then on the protocol is symmetric: each side sends
``Batch``es of the events the other lacks, computed from the other's marks
and bounded in size, with at most ``window`` batches unacknowledged; the
receiver applies each batch atomically and answers ``Ack`` with its new
marks; a side that has nothing more sends ``Done``. A session ends when a
side has sent ``Done``, had every batch acknowledged and received the
other's ``Done``.

Nothing depends on a session finishing. Applying is idempotent (events are
named by origin and number) and atomic per batch, and the next ``Hello``
carries the marks as they are, so a session cut mid-batch resumes where it
stopped: the half-sent batch was either applied whole or not at all. A
refused batch aborts the session on both sides with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol, TypeAlias

import msgspec

from eventstore import (
    ApplyResult,
    EventStore,
    RemoteValidation,
    ReplicatedEvent,
    ReplicationError,
    apply_remote,
    events_since,
    high_water_marks,
    replica_id,
)

__all__ = [
    "PROTOCOL_VERSION",
    "Abort",
    "Ack",
    "Applied",
    "Batch",
    "Channel",
    "Done",
    "Hello",
    "InProcessChannel",
    "Message",
    "StoreEndpoint",
    "SyncConnectionError",
    "SyncEndpoint",
    "SyncError",
    "SyncRefusedError",
    "SyncReport",
    "channel_pair",
    "connect_in_process",
    "run_session",
    "serve_sessions",
    "sync_in_process",
]

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1


class Hello(msgspec.Struct, frozen=True, tag="hello"):
    """Opens a session: who I am and what I have."""

    replica_id: str
    marks: dict[str, int]
    protocol: int = PROTOCOL_VERSION
    max_batch: int = 0  # the most events per batch it accepts; 0: no limit


class Batch(msgspec.Struct, frozen=True, tag="batch"):
    """Events the receiver lacks, in the sender's position order."""

    number: int
    events: tuple[ReplicatedEvent, ...]


class Ack(msgspec.Struct, frozen=True, tag="ack"):
    """A batch was applied; the receiver's marks after it."""

    number: int
    applied: int
    skipped: int
    marks: dict[str, int]
    conflicts_found: int = 0
    conflicts_resolved: int = 0


class Done(msgspec.Struct, frozen=True, tag="done"):
    """The sender has nothing more for this session."""


class Abort(msgspec.Struct, frozen=True, tag="abort"):
    """The session ends with an error; ``reason`` says which."""

    reason: str


Message: TypeAlias = Hello | Batch | Ack | Done | Abort


class SyncError(Exception):
    """The root of the errors of sync."""


class SyncConnectionError(SyncError):
    """Raised when the connection to a peer is lost, refused or times out."""


class SyncRefusedError(SyncError):
    """Raised when one side refuses what the other sent; the session ends."""


class SyncReport(msgspec.Struct, frozen=True, kw_only=True):
    """What one session did, seen from one side.

    Attributes:
        replica_id: This side's replica id.
        peer: The other side's replica id.
        sent: Events the peer applied from this side.
        received: Events this side applied from the peer.
        skipped: Events the peer sent that this side held already.
        batches_sent: Batches sent.
        batches_received: Batches received.
        bytes_sent: Bytes this side put on the wire (0 in one process).
        bytes_received: Bytes it read from the wire.
        conflicts_found: Concurrent writes found while applying.
        conflicts_resolved: Of those, resolved by the collection's strategy.
        duration_s: How long the session took.

    """

    replica_id: str
    peer: str
    sent: int = 0
    received: int = 0
    skipped: int = 0
    batches_sent: int = 0
    batches_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    conflicts_found: int = 0
    conflicts_resolved: int = 0
    duration_s: float = 0.0


class Applied(msgspec.Struct, frozen=True):
    """What an endpoint did with one received batch."""

    applied: int
    skipped: int
    conflicts_found: int = 0
    conflicts_resolved: int = 0


class _Counts(msgspec.Struct):
    sent: int = 0
    received: int = 0
    skipped: int = 0
    batches_sent: int = 0
    batches_received: int = 0
    conflicts_found: int = 0
    conflicts_resolved: int = 0


class SyncEndpoint(Protocol):
    """One side of a sync: a replica that can say, export and apply."""

    replica_id: str

    async def marks(self) -> dict[str, int]:
        """Its high-water marks."""

    async def export(
        self, marks: dict[str, int], limit: int
    ) -> Sequence[ReplicatedEvent]:
        """Up to ``limit`` events a replica with ``marks`` lacks."""

    async def apply(self, events: Sequence[ReplicatedEvent]) -> Applied:
        """Apply a received batch atomically."""


class StoreEndpoint:
    """A store as a sync endpoint; blocking store calls run in threads.

    Args:
        store: The store.
        validation: What it accepts from peers.
        on_applied: Called (in a worker thread) with each applied batch's
            result and events; returns (conflicts found, conflicts resolved).

    """

    def __init__(
        self,
        store: EventStore,
        *,
        validation: RemoteValidation | None = None,
        on_applied: Callable[[ApplyResult, Sequence[ReplicatedEvent]], tuple[int, int]]
        | None = None,
    ) -> None:
        self.store = store
        self.validation = validation
        self.on_applied = on_applied
        self.replica_id = replica_id(store)

    async def marks(self) -> dict[str, int]:
        """Its high-water marks."""
        return await asyncio.to_thread(high_water_marks, self.store)

    async def export(
        self, marks: dict[str, int], limit: int
    ) -> Sequence[ReplicatedEvent]:
        """Up to ``limit`` events a replica with ``marks`` lacks."""
        return await asyncio.to_thread(events_since, self.store, marks, limit=limit)

    async def apply(self, events: Sequence[ReplicatedEvent]) -> Applied:
        """Apply a received batch atomically."""
        return await asyncio.to_thread(self._apply, events)

    def _apply(self, events: Sequence[ReplicatedEvent]) -> Applied:
        result = apply_remote(self.store, events, validation=self.validation)
        found = resolved = 0
        if self.on_applied is not None and result.applied:
            found, resolved = self.on_applied(result, events)
        return Applied(result.applied, result.skipped, found, resolved)


class Channel(Protocol):
    """An ordered, message-oriented connection to a peer."""

    bytes_sent: int
    bytes_received: int

    async def send(self, message: Message) -> None:
        """Send one message.

        Raises:
            SyncConnectionError: If the connection is gone.

        """

    async def receive(self) -> Message:
        """The next message.

        Raises:
            SyncConnectionError: If the connection is gone.

        """

    async def close(self) -> None:
        """Close the connection; the peer's ``receive`` then raises."""


_CLOSED = object()


class InProcessChannel:
    """One end of a pair of in-process queues (see :func:`channel_pair`)."""

    def __init__(
        self, inbox: asyncio.Queue[object], outbox: asyncio.Queue[object]
    ) -> None:
        self._inbox = inbox
        self._outbox = outbox
        self._closed = False
        self.bytes_sent = 0
        self.bytes_received = 0

    async def send(self, message: Message) -> None:
        """Put a message in the peer's inbox."""
        if self._closed:
            raise SyncConnectionError("the in-process channel is closed")
        await self._outbox.put(message)

    async def receive(self) -> Message:
        """The next message from the peer."""
        item = await self._inbox.get()
        if item is _CLOSED:
            self._closed = True
            raise SyncConnectionError("the in-process peer closed the channel")
        return item  # type: ignore[return-value]

    async def close(self) -> None:
        """Close both directions."""
        if not self._closed:
            self._closed = True
            await self._outbox.put(_CLOSED)


def channel_pair() -> tuple[InProcessChannel, InProcessChannel]:
    """Two connected in-process channel ends."""
    left: asyncio.Queue[object] = asyncio.Queue()
    right: asyncio.Queue[object] = asyncio.Queue()
    return InProcessChannel(left, right), InProcessChannel(right, left)


class _Session:
    """The state of one session on one side."""

    def __init__(
        self,
        endpoint: SyncEndpoint,
        channel: Channel,
        *,
        batch_size: int,
        window: int,
        timeout_s: float,
    ) -> None:
        if batch_size < 1 or window < 1:
            raise ValueError(
                f"batch_size and window must be >= 1, got {batch_size}, {window}"
            )
        self.endpoint = endpoint
        self.channel = channel
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.slots = asyncio.Semaphore(window)
        self.unacked: set[int] = set()
        self.all_acked = asyncio.Event()
        self.all_acked.set()
        self.peer_done = False
        self.batch_sent = asyncio.Event()
        self.counts = _Counts()

    async def receive(self) -> Message:
        try:
            return await asyncio.wait_for(self.channel.receive(), self.timeout_s)
        except TimeoutError:
            raise SyncConnectionError(
                f"the peer sent nothing for {self.timeout_s} s"
            ) from None

    async def send_all(self, peer_marks: dict[str, int]) -> None:
        """Send batches until the peer lacks nothing, then ``Done``."""
        known = dict(peer_marks)
        number = 0
        while True:
            events = await self.endpoint.export(known, self.batch_size)
            if not events:
                break
            await asyncio.wait_for(self.slots.acquire(), self.timeout_s)
            number += 1
            self.unacked.add(number)
            self.all_acked.clear()
            await self.channel.send(Batch(number, tuple(events)))
            self.batch_sent.set()
            self.counts.batches_sent += 1
            for event in events:
                origin = event.metadata.origin or ""
                seq = event.metadata.origin_seq or 0
                known[origin] = max(known.get(origin, 0), seq)
        await self.channel.send(Done())

    async def receive_all(self, sending: asyncio.Task[None]) -> None:
        """Apply the peer's batches and take its acks until both sides are done.

        A receive is started only while a message is due (the peer's batches
        or ``Done``, or acks of this side's batches), so that a finished
        session never swallows a message of the next one.
        """
        receiving: asyncio.Future[Message] | None = None
        try:
            while True:
                if self.peer_done and self.all_acked.is_set():
                    if sending.done():
                        sending.result()
                        return
                    # Only this side's sender is busy: wait for it to finish
                    # or to send a batch, whose ack will then be due.
                    batch_sent = asyncio.ensure_future(self.batch_sent.wait())
                    either: set[asyncio.Future[Any]] = {sending, batch_sent}
                    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                    batch_sent.cancel()
                    self.batch_sent.clear()
                    continue
                if receiving is None:
                    receiving = asyncio.ensure_future(self.receive())
                pending: set[asyncio.Future[Any]] = {receiving, sending}
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if sending.done() and sending.exception() is not None:
                    sending.result()
                if receiving.done():
                    message = receiving.result()
                    receiving = None
                    await self._handle(message)
        finally:
            if receiving is not None:
                await _settle(receiving)

    async def _handle(self, message: Message) -> None:
        counts = self.counts
        if isinstance(message, Batch):
            counts.batches_received += 1
            try:
                applied = await self.endpoint.apply(message.events)
            except ReplicationError as exc:
                await self._abort(f"{self.endpoint.replica_id} refused: {exc}")
                raise SyncRefusedError(str(exc)) from exc
            counts.received += applied.applied
            counts.skipped += applied.skipped
            counts.conflicts_found += applied.conflicts_found
            counts.conflicts_resolved += applied.conflicts_resolved
            marks = await self.endpoint.marks()
            await self.channel.send(
                Ack(
                    message.number,
                    applied.applied,
                    applied.skipped,
                    marks,
                    applied.conflicts_found,
                    applied.conflicts_resolved,
                )
            )
        elif isinstance(message, Ack):
            if message.number not in self.unacked:
                raise SyncRefusedError(f"the peer acked unknown batch {message.number}")
            self.unacked.discard(message.number)
            self.slots.release()
            counts.sent += message.applied
            if not self.unacked:
                self.all_acked.set()
        elif isinstance(message, Done):
            self.peer_done = True
        elif isinstance(message, Abort):
            raise SyncRefusedError(f"the peer aborted the session: {message.reason}")
        else:
            raise SyncRefusedError("the peer sent a second hello within a session")

    async def _abort(self, reason: str) -> None:
        try:
            await self.channel.send(Abort(reason))
        except SyncConnectionError as exc:
            logger.debug("could not tell the peer why the session ended: %s", exc)


async def _settle(future: asyncio.Future[Any]) -> None:
    """Cancel ``future`` if pending; either way, consume its outcome.

    Called when the session already failed or finished: a second error from
    the other half of the session adds nothing to the first.
    """
    future.cancel()
    with contextlib.suppress(asyncio.CancelledError, SyncError):
        await future


async def run_session(
    endpoint: SyncEndpoint,
    channel: Channel,
    *,
    hello: Hello | None = None,
    batch_size: int = 1000,
    window: int = 2,
    timeout_s: float = 30.0,
) -> SyncReport:
    """Run one session over ``channel``.

    Args:
        endpoint: This side.
        channel: The connection to the peer.
        hello: The peer's ``Hello`` if it was already received (the
            accepting side); without it this side opens the session.
        batch_size: Events per batch at most, either way: the peer sends
            batches no larger either.
        window: Batches in flight before waiting for an ack.
        timeout_s: How long to wait for any message before giving up.

    Returns:
        What the session did.

    Raises:
        SyncConnectionError: If the connection is lost or times out.
        SyncRefusedError: If either side refused a batch, or the peer does not
            speak the protocol.

    """
    started = time.perf_counter()
    session = _Session(
        endpoint, channel, batch_size=batch_size, window=window, timeout_s=timeout_s
    )
    sent_before = channel.bytes_sent
    received_before = channel.bytes_received
    mine = Hello(endpoint.replica_id, await endpoint.marks(), max_batch=batch_size)
    if hello is None:
        await channel.send(mine)
        answer = await session.receive()
        if not isinstance(answer, Hello):
            raise SyncRefusedError(
                f"the peer answered hello with {type(answer).__name__}"
            )
        hello = answer
    else:
        await channel.send(mine)
    if hello.protocol != PROTOCOL_VERSION:
        raise SyncRefusedError(
            f"the peer speaks sync protocol {hello.protocol}, this side "
            f"{PROTOCOL_VERSION}"
        )
    if hello.replica_id == endpoint.replica_id:
        raise SyncRefusedError(
            f"the peer has this side's replica id {hello.replica_id!r}; "
            "a replica cannot sync with itself or a copy of itself"
        )

    if hello.max_batch > 0:
        session.batch_size = min(batch_size, hello.max_batch)
    sending = asyncio.ensure_future(session.send_all(hello.marks))
    try:
        await session.receive_all(sending)
        await sending
    finally:
        await _settle(sending)
    report = SyncReport(
        replica_id=endpoint.replica_id,
        peer=hello.replica_id,
        bytes_sent=channel.bytes_sent - sent_before,
        bytes_received=channel.bytes_received - received_before,
        duration_s=time.perf_counter() - started,
        **msgspec.structs.asdict(session.counts),
    )
    logger.info(
        "synced with %s: sent %d, received %d events in %.3f s",
        report.peer,
        report.sent,
        report.received,
        report.duration_s,
    )
    return report


async def serve_sessions(
    endpoint: SyncEndpoint,
    channel: Channel,
    *,
    batch_size: int = 1000,
    window: int = 2,
    idle_timeout_s: float | None = None,
    timeout_s: float = 30.0,
    on_report: Callable[[SyncReport], None] | None = None,
) -> int:
    """Answer sessions opened by the peer until it closes the channel.

    Returns:
        How many sessions completed.

    """
    completed = 0
    while True:
        try:
            first = await asyncio.wait_for(channel.receive(), idle_timeout_s)
        except (SyncConnectionError, TimeoutError):
            return completed
        if not isinstance(first, Hello):
            await channel.send(Abort(f"expected hello, got {type(first).__name__}"))
            return completed
        report = await run_session(
            endpoint,
            channel,
            hello=first,
            batch_size=batch_size,
            window=window,
            timeout_s=timeout_s,
        )
        completed += 1
        if on_report is not None:
            on_report(report)


async def sync_in_process(
    local: SyncEndpoint,
    peer: SyncEndpoint,
    *,
    batch_size: int = 1000,
    window: int = 2,
    timeout_s: float = 30.0,
) -> SyncReport:
    """Sync two endpoints of this process; return the report of ``local``."""
    async with connect_in_process(
        peer, batch_size=batch_size, window=window, timeout_s=timeout_s
    ) as channel:
        return await run_session(
            local, channel, batch_size=batch_size, window=window, timeout_s=timeout_s
        )


@contextlib.asynccontextmanager
async def connect_in_process(
    peer: SyncEndpoint,
    *,
    batch_size: int = 1000,
    window: int = 2,
    timeout_s: float = 30.0,
) -> AsyncIterator[Channel]:
    """A channel to ``peer`` in this process, which answers its sessions."""
    mine, theirs = channel_pair()
    answering = asyncio.ensure_future(
        serve_sessions(
            peer, theirs, batch_size=batch_size, window=window, timeout_s=timeout_s
        )
    )
    try:
        yield mine
    finally:
        await mine.close()
        try:
            await asyncio.wait_for(answering, timeout_s)
        except SyncError as exc:
            logger.warning("the in-process peer %s failed: %s", peer.replica_id, exc)
        finally:
            await theirs.close()
