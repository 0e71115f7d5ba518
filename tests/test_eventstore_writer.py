"""The LMDB writer thread: batches, completions, table handles."""

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import lmdb
import pytest

from eventstore import (
    ConcurrencyError,
    EventStoreError,
    LmdbEventStore,
    NewEvent,
    NotAStoreError,
    StoredEvent,
    ViewTxn,
)
from eventstore._completion import LoopWaiter

TIMEOUT_S = 30


def note(stream: str) -> NewEvent:
    return NewEvent(stream, "Noted", {"text": "x"})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LmdbEventStore]:
    with LmdbEventStore.open(tmp_path / "store", durability="fast") as opened:
        yield opened


class HeldWriter:
    """Keeps the writer busy in a view job until released."""

    def __init__(self, store: LmdbEventStore) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

        def hold(_txn: ViewTxn) -> None:
            self.entered.set()
            self.release.wait(TIMEOUT_S)

        self.thread = threading.Thread(target=store.write_views, args=(hold,))
        self.thread.start()
        assert self.entered.wait(TIMEOUT_S)

    def let_go(self) -> None:
        self.release.set()
        self.thread.join(TIMEOUT_S)


def test_a_group_commit_holds_at_most_20000_events(store: LmdbEventStore) -> None:
    held = HeldWriter(store)
    futures = [
        store.append_future([note(f"s{i}") for _ in range(8000)]) for i in range(5)
    ]
    commits_before = store.commits

    held.let_go()
    results = [f.result(timeout=TIMEOUT_S) for f in futures]

    assert [r.last_position for r in results] == [8000 * n for n in range(1, 6)]
    assert store.commits - commits_before >= 2


def test_a_view_job_between_appends_sees_them_and_repeats_stay_duplicates(
    store: LmdbEventStore,
) -> None:
    held = HeldWriter(store)
    first = store.append_future([note("a")], command_id="c1")
    seen: list[int] = []

    def count(txn: ViewTxn) -> None:
        seen.append(len(list(txn.scan("events"))))

    view = threading.Thread(target=store.write_views, args=(count,))
    view.start()
    while store._queue.qsize() < 2:
        threading.Event().wait(0.001)
    again = store.append_future([note("a")], command_id="c1")
    other = store.append_future([note("a"), note("b")], command_id="c2")

    held.let_go()
    view.join(TIMEOUT_S)

    assert seen == [1]
    assert again.result(timeout=TIMEOUT_S).duplicate
    assert again.result().events == first.result().events
    assert other.result(timeout=TIMEOUT_S).last_position == 3


def test_append_async_delivers_errors_and_results_on_the_loop(
    store: LmdbEventStore,
) -> None:
    async def main() -> tuple[int, BaseException | None]:
        ok = await store.append_async([note("a")])
        try:
            await store.append_async([note("a")], expected_versions={"a": 0})
        except ConcurrencyError as exc:
            return ok.last_position, exc
        return ok.last_position, None

    position, error = asyncio.run(asyncio.wait_for(main(), TIMEOUT_S))

    assert position == 1
    assert isinstance(error, ConcurrencyError)


def test_an_append_async_cancelled_while_queued_writes_nothing(
    store: LmdbEventStore,
) -> None:
    held = HeldWriter(store)

    async def main() -> None:
        task = asyncio.ensure_future(store.append_async([note("gone")]))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        held.let_go()
        await store.append_async([note("kept")])

    asyncio.run(asyncio.wait_for(main(), TIMEOUT_S))

    assert [e.stream for e in store.read_all()] == ["kept"]


def test_a_completion_after_its_loop_closed_is_dropped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="eventstore._completion")
    loop = asyncio.new_event_loop()
    waiter: LoopWaiter[int] = LoopWaiter(loop)
    loop.close()

    waiter.set_result(1)

    assert "after its event loop closed" in caplog.text


def test_completions_of_one_commit_reach_the_loop_together() -> None:
    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        waiters: list[LoopWaiter[int]] = [LoopWaiter(loop) for _ in range(3)]
        waiters[1].future.cancel()

        def complete() -> None:
            waiters[0].set_result(7)
            waiters[1].set_result(8)
            waiters[2].set_exception(KeyError("k"))

        await asyncio.to_thread(complete)
        return await asyncio.gather(
            *(w.future for w in waiters), return_exceptions=True
        )

    outcomes = asyncio.run(asyncio.wait_for(main(), TIMEOUT_S))

    assert outcomes[0] == 7
    assert isinstance(outcomes[1], asyncio.CancelledError)
    assert isinstance(outcomes[2], KeyError)


# -- table handles -------------------------------------------------------------


def test_a_table_created_by_another_process_after_open_is_readable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store"
    with LmdbEventStore.open(path) as store:
        subprocess.run(
            [
                sys.executable,
                "-c",
                textwrap.dedent(
                    """
                    import sys, lmdb
                    env = lmdb.open(sys.argv[1], max_dbs=128)
                    db = env.open_db(b"view:later")
                    with env.begin(write=True) as txn:
                        txn.put(b"k", b"v", db=db)
                        txn.put(b"m", b"w", db=db)
                    """
                ),
                str(path),
            ],
            check=True,
            timeout=TIMEOUT_S,
        )

        with store.read_views() as views:
            assert views.get("view:later", b"k") == b"v"
            assert list(views.scan("view:later")) == [(b"k", b"v"), (b"m", b"w")]
        assert store.view_get("view:later", b"m") == b"w"


def test_a_table_first_written_during_a_snapshot_reads_from_a_fresh_one(
    store: LmdbEventStore,
) -> None:
    with store.read_views() as views:
        assert views.get("view:new", b"k") is None
        writer = threading.Thread(
            target=store.write_views,
            args=(lambda txn: txn.put("view:new", b"k", b"v"),),
        )
        writer.start()
        writer.join(TIMEOUT_S)

        assert views.get("view:new", b"k") == b"v"
        assert list(views.scan("view:new")) == [(b"k", b"v")]


def test_view_transactions_refuse_keys_out_of_order_on_append(
    store: LmdbEventStore,
) -> None:
    def misuse(txn: ViewTxn) -> None:
        tables = cast("Any", txn)
        tables.append_many("view:t", [(b"b", b"1"), (b"a", b"2")])

    with pytest.raises(EventStoreError, match="not greater"):
        store.write_views(misuse)
    with store.read_views() as views:
        assert cast("Any", views).get_many("view:none", [b"a"]) == [None]
        assert list(views.scan("view:t")) == []


# -- opening, growing --------------------------------------------------------------


def test_an_lmdb_environment_with_foreign_keys_is_not_a_store(
    tmp_path: Path,
) -> None:
    env = lmdb.open(str(tmp_path / "foreign"))
    with env.begin(write=True) as txn:
        txn.put(b"other", b"data")
    env.close()

    with pytest.raises(NotAStoreError, match="another kind"):
        LmdbEventStore.open(tmp_path / "foreign")


def test_a_garbage_data_file_is_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "data.mdb").write_bytes(b"\x01" * 65536)

    with pytest.raises(NotAStoreError, match="not an LMDB store"):
        LmdbEventStore.open(tmp_path / "junk")


def test_an_append_first_after_another_process_grew_the_map_adopts_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store"
    with LmdbEventStore.open(path, map_size_bytes=256 * 1024) as store:
        subprocess.run(
            [
                sys.executable,
                "-c",
                textwrap.dedent(
                    """
                    import sys
                    from eventstore import LmdbEventStore, NewEvent
                    with LmdbEventStore.open(sys.argv[1], map_size_bytes=64 << 20) as s:
                        s.append([NewEvent("b", "Noted", {"t": "z" * 500})] * 3000)
                    """
                ),
                str(path),
            ],
            check=True,
            timeout=TIMEOUT_S,
        )

        result = store.append([note("c")])

        assert result.last_position == 3001


def test_readers_keep_reading_while_the_map_grows(tmp_path: Path) -> None:
    with LmdbEventStore.open(tmp_path / "s", map_size_bytes=64 * 1024) as store:
        store.append([note("seed")])
        stop = threading.Event()
        failures: list[BaseException] = []

        def read() -> None:
            while not stop.wait(0.001):
                try:
                    with store.read_views():
                        list(store.read_all(to_position=1))
                except BaseException as exc:  # noqa: BLE001 - reported below
                    failures.append(exc)
                    return

        readers = [threading.Thread(target=read) for _ in range(3)]
        for thread in readers:
            thread.start()
        try:
            for _ in range(10):
                store.append([NewEvent("s", "Noted", {"t": "y" * 300})] * 300)
        finally:
            stop.set()
            for thread in readers:
                thread.join(TIMEOUT_S)

        assert not failures
        assert store.map_resizes >= 1
        assert store.head_position() == 3001


def test_appends_queued_while_the_writer_is_busy_share_one_commit(
    store: LmdbEventStore,
) -> None:
    held = HeldWriter(store)
    threads = [
        threading.Thread(target=store.append, args=([note(f"w{i}")],))
        for i in range(32)
    ]
    for thread in threads:
        thread.start()
    while store._queue.qsize() < 32:
        threading.Event().wait(0.001)
    commits_before = store.commits

    held.let_go()
    for thread in threads:
        thread.join(TIMEOUT_S)

    # One commit for the held view job, one for all 32 appends.
    assert store.commits - commits_before == 2
    assert store.head_position() == 32


class Picky:
    name = "picky"

    def apply(self, txn: ViewTxn, events: Sequence[StoredEvent]) -> None:
        for event in events:
            if event.stream == "poison":
                raise RuntimeError("cannot fold poison")
            txn.put("view:picky", event.stream.encode(), b"1")


def test_a_failing_inline_projector_in_a_group_commit_fails_only_its_append(
    store: LmdbEventStore,
) -> None:
    store.add_inline_projector(Picky())
    held = HeldWriter(store)
    futures = [store.append_future([note(s)]) for s in ("a", "poison", "b")]
    commits_before = store.commits

    held.let_go()
    outcomes = [f.exception(timeout=TIMEOUT_S) for f in futures]

    assert [o is None for o in outcomes] == [True, False, True]
    assert [e.stream for e in store.read_all()] == ["a", "b"]
    assert store.view_get("view:picky", b"b") == b"1"
    # The held job, the failed group commit's retries: a, then b.
    assert store.commits - commits_before == 3
