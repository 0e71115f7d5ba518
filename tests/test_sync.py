from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import msgspec
import pytest
from aiohttp import web

from actors import (
    Replicator,
    StoreEndpoint,
    SyncConnectionError,
    SyncRefusedError,
    SyncServer,
    mount_sync,
    run_session,
    serve_sessions,
    sync_in_process,
    sync_websocket,
)
from actors._sync import (
    Abort,
    Ack,
    Applied,
    Batch,
    Done,
    Hello,
    Message,
    channel_pair,
    connect_in_process,
)
from actors._sync_live import connector
from actors._sync_ws import WebSocketChannel, connect_websocket
from eventstore import (
    ApplyResult,
    HLCTimestamp,
    LmdbEventStore,
    NewEvent,
    RecordCreated,
    RemoteValidation,
    ReplicatedEvent,
    high_water_marks,
    record_stream,
    replica_id,
)
from eventstore._types import EventMetadata

TIMEOUT_S = 20.0


def created(record_id: str, collection: str = "users") -> NewEvent:
    return NewEvent(
        record_stream(collection, record_id),
        "RecordCreated",
        RecordCreated(collection, record_id, {"id": record_id}),
    )


def fill(store: LmdbEventStore, prefix: str, count: int) -> None:
    store.append([created(f"{prefix}{i}") for i in range(count)])


def ids(store: LmdbEventStore) -> set[str]:
    return {e.stream for e in store.read_all()}


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[LmdbEventStore, LmdbEventStore]]:
    a = LmdbEventStore.open(tmp_path / "a", durability="fast")
    b = LmdbEventStore.open(tmp_path / "b", durability="fast")
    yield a, b
    a.close()
    b.close()


async def test_two_stores_in_one_process_exchange_what_each_lacks(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    a, b = stores
    fill(a, "a", 250)
    fill(b, "b", 70)

    report = await asyncio.wait_for(
        sync_in_process(StoreEndpoint(a), StoreEndpoint(b), batch_size=64), TIMEOUT_S
    )
    again = await asyncio.wait_for(
        sync_in_process(StoreEndpoint(b), StoreEndpoint(a)), TIMEOUT_S
    )

    assert (report.sent, report.received) == (250, 70)
    assert (report.batches_sent, report.batches_received) == (4, 2)
    assert report.peer == replica_id(b)
    assert report.replica_id == replica_id(a)
    assert (again.sent, again.received, again.batches_sent) == (0, 0, 0)
    assert ids(a) == ids(b)
    assert len(ids(a)) == 320
    assert high_water_marks(a) == high_water_marks(b)


async def test_three_replicas_converge_through_a_middle_one(tmp_path: Path) -> None:
    paths = [tmp_path / name for name in ("east", "mid", "west")]
    east, mid, west = (LmdbEventStore.open(p, durability="fast") for p in paths)
    try:
        fill(east, "e", 30)
        fill(west, "w", 20)
        endpoints = [StoreEndpoint(s) for s in (east, mid, west)]

        await sync_in_process(endpoints[0], endpoints[1], batch_size=7)
        await sync_in_process(endpoints[2], endpoints[1], batch_size=7)
        last = await sync_in_process(endpoints[0], endpoints[1], batch_size=7)

        assert last.received == 20
        assert ids(east) == ids(mid) == ids(west)
        assert high_water_marks(east) == high_water_marks(west)
    finally:
        for store in (east, mid, west):
            store.close()


async def test_a_refused_batch_aborts_the_session_on_both_sides(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    a, b = stores
    fill(a, "a", 3)
    a.append([created("1", collection="secrets")])
    picky = StoreEndpoint(b, validation=RemoteValidation(collections={"users"}))
    server_errors: list[BaseException] = []
    mine, theirs = channel_pair()

    async def answer() -> None:
        try:
            await serve_sessions(picky, theirs, timeout_s=TIMEOUT_S)
        except SyncRefusedError as exc:
            server_errors.append(exc)

    answering = asyncio.ensure_future(answer())
    with pytest.raises(SyncRefusedError, match="collection 'secrets' is not accepted"):
        await run_session(StoreEndpoint(a), mine, timeout_s=TIMEOUT_S)
    await mine.close()
    await asyncio.wait_for(answering, TIMEOUT_S)

    assert b.head_position() == 0
    assert len(server_errors) == 1


async def play(script: Sequence[Message], endpoint: StoreEndpoint) -> BaseException:
    mine, theirs = channel_pair()

    async def peer() -> None:
        await theirs.receive()
        for message in script:
            await theirs.send(message)

    task = asyncio.ensure_future(peer())
    try:
        await run_session(endpoint, mine, timeout_s=1.0)
    except (SyncRefusedError, SyncConnectionError) as exc:
        return exc
    finally:
        await asyncio.wait_for(task, TIMEOUT_S)
        await mine.close()
    raise AssertionError("the session should have failed")


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ([Done()], "answered hello with Done"),
        ([Hello("x", {}, protocol=99)], "speaks sync protocol 99"),
        ([Hello("x", {}), Ack(7, 0, 0, {})], "acked unknown batch 7"),
        ([Hello("x", {}), Abort("disk full")], "aborted the session: disk full"),
        ([Hello("x", {}), Hello("x", {})], "second hello"),
        ([Hello("x", {})], "sent nothing for 1.0 s"),
    ],
)
async def test_a_peer_that_breaks_the_protocol_ends_the_session(
    stores: tuple[LmdbEventStore, LmdbEventStore],
    script: list[Message],
    message: str,
) -> None:
    a, _ = stores

    error = await play(script, StoreEndpoint(a))

    assert message in str(error)


async def test_a_peer_with_the_same_replica_id_is_refused(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    a, _ = stores
    endpoint = StoreEndpoint(a)

    error = await play([Hello(endpoint.replica_id, {})], endpoint)

    assert "cannot sync with itself" in str(error)


async def test_session_options_are_checked(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    a, _ = stores
    mine, _ = channel_pair()

    with pytest.raises(ValueError, match="batch_size and window must be >= 1"):
        await run_session(StoreEndpoint(a), mine, batch_size=0)


async def test_serve_sessions_refuses_a_first_message_other_than_hello(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    a, _ = stores
    mine, theirs = channel_pair()
    await mine.send(Done())

    served = await asyncio.wait_for(serve_sessions(StoreEndpoint(a), theirs), TIMEOUT_S)
    answer = await asyncio.wait_for(mine.receive(), TIMEOUT_S)

    assert served == 0
    assert isinstance(answer, Abort)
    assert "expected hello" in answer.reason


async def test_a_closed_in_process_channel_refuses_to_send() -> None:
    mine, theirs = channel_pair()
    await mine.close()

    with pytest.raises(SyncConnectionError, match="closed"):
        await mine.send(Done())
    with pytest.raises(SyncConnectionError, match="peer closed"):
        await theirs.receive()


async def test_the_apply_hook_counts_conflicts_in_the_report(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    a, b = stores
    fill(a, "a", 5)
    seen: list[int] = []

    def hook(result: ApplyResult, events: Sequence[ReplicatedEvent]) -> tuple[int, int]:
        seen.append(len(events))
        return result.applied, result.applied - 1

    report = await sync_in_process(
        StoreEndpoint(b, on_applied=hook), StoreEndpoint(a), batch_size=2
    )

    assert seen == [2, 2, 1]
    assert (report.conflicts_found, report.conflicts_resolved) == (5, 2)


async def test_two_stores_sync_over_a_websocket(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    a, b = stores
    fill(a, "a", 120)
    fill(b, "b", 30)

    async with SyncServer(StoreEndpoint(b), batch_size=50) as server:
        report = await asyncio.wait_for(
            sync_websocket(StoreEndpoint(a), server.url, batch_size=50), TIMEOUT_S
        )
        again = await asyncio.wait_for(
            sync_websocket(StoreEndpoint(a), server.url), TIMEOUT_S
        )
        await asyncio.sleep(0)

    assert (report.sent, report.received) == (120, 30)
    assert report.bytes_sent > 120 * 40
    assert report.bytes_received > 30 * 40
    assert (again.sent, again.received) == (0, 0)
    assert ids(a) == ids(b)
    assert len(server.reports) == 2
    assert server.reports[0].received == 120


async def test_connecting_to_nothing_is_a_connection_error(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    a, _ = stores
    async with SyncServer(StoreEndpoint(a)) as server:
        url = server.url

    with pytest.raises(SyncConnectionError, match="cannot connect"):
        await sync_websocket(StoreEndpoint(a), url, timeout_s=5)


@pytest.fixture
async def raw_server() -> AsyncIterator[str]:
    """A WebSocket server that sends one text frame and one garbage frame."""

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        kind = request.query.get("kind", "text")
        if kind == "text":
            await ws.send_str("hello?")
        else:
            await ws.send_bytes(b"\xc1garbage")
        await ws.receive()
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/raw", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"ws://127.0.0.1:{runner.addresses[0][1]}/raw"
    await runner.cleanup()


async def test_frames_outside_the_protocol_are_refused(raw_server: str) -> None:
    async with connect_websocket(raw_server) as channel:
        with pytest.raises(SyncRefusedError, match="unexpected TEXT frame"):
            await channel.receive()
    async with connect_websocket(raw_server + "?kind=bytes") as channel:
        with pytest.raises(SyncRefusedError, match="malformed sync message"):
            await channel.receive()


async def drain(channel: WebSocketChannel) -> None:
    for _ in range(10):
        await asyncio.wait_for(channel.receive(), TIMEOUT_S)


async def test_a_websocket_closed_by_the_server_is_a_connection_error(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    a, _ = stores
    app = web.Application()
    mount_sync(app, StoreEndpoint(a), path="/sync", timeout_s=0.2)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"ws://127.0.0.1:{runner.addresses[0][1]}/sync"
    try:
        async with connect_websocket(url) as channel:
            await channel.send(Hello("client", {}))
            hello = await asyncio.wait_for(channel.receive(), TIMEOUT_S)
            # Never answer: the server's session times out and closes.
            with pytest.raises(SyncConnectionError):
                await drain(channel)
            with pytest.raises(SyncConnectionError):
                await channel.send(Done())
        assert isinstance(hello, Hello)
    finally:
        await runner.cleanup()


async def test_the_replicator_keeps_replicas_level_and_reports_the_peer_offline(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    a, b = stores
    fill(a, "a", 10)
    statuses: list[bool] = []
    offline = asyncio.Event()

    def on_status(online: bool, _: Exception | None) -> None:
        statuses.append(online)
        if not online:
            offline.set()

    server = SyncServer(StoreEndpoint(b))
    url = await server.start()
    port = int(url.rsplit(":", 1)[1].split("/")[0])

    replicator = Replicator(
        StoreEndpoint(a),
        url,
        interval_s=30,
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
        on_status=on_status,
        timeout_s=5,
    )
    async with replicator:
        first = await replicator.wait_round(timeout_s=TIMEOUT_S)
        await server.stop()
        fill(a, "x", 5)  # local writes go on while the peer is away
        replicator.wake()
        await asyncio.wait_for(offline.wait(), TIMEOUT_S)
        server = SyncServer(StoreEndpoint(b), port=port)
        await server.start()
        replicator.wake()
        back = await replicator.wait_round(timeout_s=TIMEOUT_S)
    await server.stop()

    assert first.sent == 10
    assert back.sent == 5
    assert statuses[:3] == [True, False, True]
    assert replicator.failures == 0
    assert ids(a) == ids(b)


async def test_the_replicator_works_with_an_in_process_peer(
    stores: tuple[LmdbEventStore, LmdbEventStore],
) -> None:
    a, b = stores
    fill(b, "b", 3)

    async with Replicator(StoreEndpoint(a), StoreEndpoint(b), interval_s=0.01) as rep:
        report = await rep.wait_round(timeout_s=TIMEOUT_S)

    assert report.received == 3
    assert rep.online is True
    with pytest.raises(ValueError, match="must be > 0"):
        Replicator(StoreEndpoint(a), StoreEndpoint(b), interval_s=0)


def test_a_peer_url_must_be_a_websocket_url() -> None:
    with pytest.raises(ValueError, match="ws:// or wss://"):
        connector("http://127.0.0.1:1/sync")


async def test_an_in_process_connection_logs_a_failed_peer(
    stores: tuple[LmdbEventStore, LmdbEventStore],
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = stores
    async with connect_in_process(StoreEndpoint(b), timeout_s=TIMEOUT_S) as channel:
        await channel.send(Hello("client", {}))
        await channel.receive()
        await channel.send(Batch(1, ()))
        await channel.send(Ack(5, 0, 0, {}))
        await asyncio.sleep(0.05)

    assert "acked unknown batch 5" in caplog.text
    assert a.head_position() == 0


def test_messages_round_trip_as_msgpack() -> None:
    event = ReplicatedEvent(
        "records/users/1",
        "RecordCreated",
        1,
        msgspec.Raw(msgspec.msgpack.encode({"collection": "users"})),
        EventMetadata(hlc=HLCTimestamp(5), origin="east", origin_seq=1),
    )
    messages: list[Message] = [
        Hello("east", {"east": 3}),
        Batch(1, (event,)),
        Ack(1, 1, 0, {"east": 3}),
        Done(),
        Abort("no"),
    ]
    decoder = msgspec.msgpack.Decoder(Message)

    decoded = [decoder.decode(msgspec.msgpack.encode(m)) for m in messages]

    assert decoded[0] == messages[0]
    assert isinstance(decoded[1], Batch)
    assert bytes(decoded[1].events[0].data) == bytes(event.data)
    assert decoded[2:] == messages[2:]
    assert Applied(1, 2).conflicts_found == 0
