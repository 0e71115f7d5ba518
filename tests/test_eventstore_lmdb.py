"""LMDB realities, with real files and real processes."""

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import lmdb
import msgspec
import pytest

from eventstore import (
    DamagedRecordError,
    ForkedProcessError,
    LmdbEventStore,
    NewEvent,
    NotAStoreError,
    ReadOnlyStoreError,
    StoreClosedError,
    StoreInUseError,
    StoreNotFoundError,
)
from eventstore._tables import EVENTS, pack_position

TIMEOUT_S = 30


def note(stream: str, text: str = "x") -> NewEvent:
    return NewEvent(stream, "Noted", {"text": text})


def run_child(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=True,
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(path: Path) -> Iterator[LmdbEventStore]:
    with LmdbEventStore.open(path, durability="fast") as opened:
        yield opened


# -- opening -----------------------------------------------------------------


def test_one_environment_per_path_per_process(path: Path) -> None:
    first = LmdbEventStore.open(path)
    with pytest.raises(StoreInUseError, match="already open"):
        LmdbEventStore.open(path / ".." / path.name)
    first.close()

    with LmdbEventStore.open(path) as second:
        assert second.head_position() == 0


def test_readonly_open_of_a_missing_path_raises_store_not_found(
    tmp_path: Path,
) -> None:
    with pytest.raises(StoreNotFoundError, match="no actorlog store"):
        LmdbEventStore.open(tmp_path / "nothing", readonly=True)

    assert not (tmp_path / "nothing").exists()


@pytest.mark.parametrize("readonly", [True, False])
def test_a_foreign_lmdb_environment_is_not_a_store(
    tmp_path: Path, readonly: bool
) -> None:
    env = lmdb.open(str(tmp_path / "foreign"), max_dbs=4)
    with env.begin(write=True) as txn:
        txn.put(b"meta", b"not a table")
        txn.put(b"other", b"data")
    env.close()

    with pytest.raises(NotAStoreError):
        LmdbEventStore.open(tmp_path / "foreign", readonly=readonly)

    with LmdbEventStore.open(tmp_path / "fresh"):
        pass


def test_a_file_is_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("hello")

    with pytest.raises(NotAStoreError, match="is a file"):
        LmdbEventStore.open(tmp_path / "file")


def test_an_unknown_durability_is_refused(path: Path) -> None:
    with pytest.raises(ValueError, match="durability"):
        LmdbEventStore.open(path, durability="sometimes")  # type: ignore[arg-type]


def test_a_store_with_another_format_is_refused(path: Path) -> None:
    LmdbEventStore.open(path).close()
    env = lmdb.open(str(path), max_dbs=16)
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        txn.put(b"format", b"actorlog-99", db=meta)
    env.close()

    with pytest.raises(NotAStoreError, match="actorlog-99"):
        LmdbEventStore.open(path)
    with pytest.raises(NotAStoreError):
        LmdbEventStore.open(path, readonly=True)


def test_a_store_of_the_first_record_layout_is_refused_by_name(path: Path) -> None:
    LmdbEventStore.open(path).close()
    env = lmdb.open(str(path), max_dbs=16)
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        txn.put(b"format", b"actorlog-1", db=meta)
    env.close()

    with pytest.raises(NotAStoreError, match="actorlog-1"):
        LmdbEventStore.open(path, readonly=True)


def test_a_readonly_store_reads_but_refuses_writes(path: Path) -> None:
    with LmdbEventStore.open(path) as writer:
        writer.append([note("a"), note("b")])
        writer.write_views(lambda txn: txn.put("view:v", b"k", b"v"))

    with LmdbEventStore.open(path, readonly=True) as reader:
        with pytest.raises(ReadOnlyStoreError):
            reader.append([note("c")])
        # Table handles opened by one read must stay valid for the next.
        assert reader.view_get("view:v", b"k") == b"v"
        assert reader.stream_version("b") == 1
        assert reader.view_get("view:v", b"k") == b"v"
        assert [e.stream for e in reader.read_all()] == ["a", "b"]
        assert reader.meta()["format"] == "actorlog-2"


def test_meta_and_info_describe_the_store(store: LmdbEventStore) -> None:
    store.append([note("a")])

    meta = store.meta()
    info = store.info()

    assert meta["durability"] == "fast"
    assert len(meta["replica_id"]) == 32
    assert info["path"] == str(store.path)
    assert info["map_size_bytes"] >= 1 << 20
    assert info["size_bytes"] > 0


def test_reopening_keeps_everything_including_command_ids(path: Path) -> None:
    with LmdbEventStore.open(path) as store:
        first = store.append([note("a"), note("b")], command_id="cmd")
        replica = store.meta()["replica_id"]

    with LmdbEventStore.open(path) as store:
        again = store.append([note("a")], command_id="cmd")

        assert again.duplicate
        assert again.events == first.events
        assert store.head_position() == 2
        assert store.meta()["replica_id"] == replica


def test_appends_queued_before_close_land_and_later_ones_are_refused(
    path: Path,
) -> None:
    store = LmdbEventStore.open(path, durability="fast")
    futures = [store.append_future([note("a")]) for _ in range(200)]

    store.close()

    assert all(f.result(timeout=TIMEOUT_S).events for f in futures)
    with pytest.raises(StoreClosedError):
        store.append([note("a")])
    with LmdbEventStore.open(path, readonly=True) as reader:
        assert reader.head_position() == 200


def test_sync_flushes_a_fast_store(store: LmdbEventStore) -> None:
    store.append([note("a")])

    store.sync()

    assert store.head_position() == 1


# -- map growth ------------------------------------------------------------------


def test_a_full_map_grows_and_the_append_lands_exactly_once(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="eventstore._lmdb")
    with LmdbEventStore.open(path, map_size_bytes=64 * 1024) as store:
        events = [note(f"s{i % 10}", "y" * 200) for i in range(2000)]

        result = store.append(events, command_id="big")

        assert store.map_resizes >= 1
        assert result.last_position == 2000
        assert store.head_position() == 2000
        assert store.append(events, command_id="big").duplicate
        assert [e.position for e in store.read_all()] == list(range(1, 2001))
        assert store.info()["map_size_bytes"] > 64 * 1024
    assert "grew the map" in caplog.text


def test_a_map_grown_by_another_process_is_adopted(path: Path) -> None:
    with LmdbEventStore.open(path, map_size_bytes=256 * 1024) as store:
        store.append([note("a")])

        run_child(
            """
            import sys
            from eventstore import LmdbEventStore, NewEvent
            with LmdbEventStore.open(sys.argv[1], map_size_bytes=64 << 20) as s:
                for _ in range(4):
                    s.append([NewEvent("b", "Noted", {"t": "z" * 500})] * 1000)
            """,
            str(path),
        )

        assert store.head_position() == 4001
        assert store.stream_version("b") == 4000
        store.append([note("c")])
        assert store.head_position() == 4002
        assert store.info()["map_size_bytes"] >= 2 << 20


# -- keys ------------------------------------------------------------------------


def test_keys_stay_within_511_bytes_whatever_the_name_length(
    path: Path,
) -> None:
    long_stream = "s" * 5000
    long_command = "c" * 5000
    with LmdbEventStore.open(path) as store:
        store.append([note(long_stream)], command_id=long_command)
        store.append([note(long_stream)], expected_versions={long_stream: 1})

        assert store.stream_version(long_stream) == 2
        assert store.append([], command_id=long_command).duplicate

    env = lmdb.open(str(path), max_dbs=16, readonly=True)
    with env.begin() as txn:
        for name in (b"streams", b"stream_index", b"commands", b"events"):
            db = env.open_db(name, txn=txn, create=False)
            keys = list(txn.cursor(db=db).iternext(values=False))
            assert keys
            assert max(len(key) for key in keys) <= 511
    env.close()


# -- processes -------------------------------------------------------------------


def test_a_store_used_after_fork_raises_in_the_child(store: LmdbEventStore) -> None:
    store.append([note("a")])
    read_end, write_end = os.pipe()

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 0
        try:
            store.head_position()
        except ForkedProcessError:
            code |= 1
        try:
            store.append([note("b")])
        except ForkedProcessError:
            code |= 2
        try:
            LmdbEventStore.open(store.path, readonly=True)
        except StoreInUseError as exc:
            code |= 4 if "spawn" in str(exc) else 0
        store.close()
        os.write(write_end, bytes([code]))
        os._exit(0)

    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        reported = reader.read(1)
    os.waitpid(pid, 0)

    assert reported == bytes([7])
    assert store.append([note("c")]).last_position == 2


def start_child(code: str, *args: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    return child


def kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(TIMEOUT_S)
    assert child.stdout is not None
    child.stdout.close()


def test_stale_reader_slots_of_a_killed_process_do_not_block_the_next_open(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with LmdbEventStore.open(path, max_readers=4) as store:
        store.append([note("a")])
    # A live process keeps the lock file's reader table from being reset.
    holder = start_child(
        """
        import sys, time, lmdb
        env = lmdb.open(sys.argv[1], max_dbs=128, max_readers=4)
        print("ready", flush=True)
        time.sleep(60)
        """,
        str(path),
    )
    try:
        reader = start_child(
            """
            import sys, time, lmdb
            env = lmdb.open(sys.argv[1], max_dbs=128, max_readers=4)
            txns = [env.begin(), env.begin(), env.begin()]
            print("ready", flush=True)
            time.sleep(60)
            """,
            str(path),
        )
        kill(reader)
        caplog.set_level(logging.INFO, logger="eventstore._lmdb")

        with LmdbEventStore.open(path, max_readers=4) as store:
            barrier = threading.Barrier(4)

            def read_while_another_reads() -> None:
                with store.read_views():
                    barrier.wait(TIMEOUT_S)

            readers = [
                threading.Thread(target=read_while_another_reads) for _ in range(4)
            ]
            for thread in readers:
                thread.start()
            for thread in readers:
                thread.join(TIMEOUT_S)

            assert not barrier.broken
            assert store.append([note("b")]).last_position == 2
    finally:
        kill(holder)
    assert "cleared 3 stale reader slots" in caplog.text


def test_stale_reader_slots_left_while_open_are_cleared_when_slots_run_out(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="eventstore._lmdb")
    with LmdbEventStore.open(path, max_readers=3) as store:
        store.append([note("a")])
        reader = start_child(
            """
            import sys, time, lmdb
            env = lmdb.open(sys.argv[1], max_dbs=128, max_readers=3)
            txns = [env.begin(), env.begin(), env.begin()]
            print("ready", flush=True)
            time.sleep(60)
            """,
            str(path),
        )
        kill(reader)

        assert store.head_position() == 1
    assert "cleared 3 stale reader slots" in caplog.text


# -- damage ----------------------------------------------------------------------


def test_flipped_bytes_on_disk_raise_damaged_record_naming_the_position(
    path: Path,
) -> None:
    marker = "MARKER-" + "q" * 40
    with LmdbEventStore.open(path) as store:
        store.append([note("a"), note("b", marker), note("c")])
    data = (path / "data.mdb").read_bytes()
    at = data.index(marker.encode())
    damaged = data[:at] + b"Z" + data[at + 1 :]
    (path / "data.mdb").write_bytes(damaged)

    with LmdbEventStore.open(path, readonly=True) as store:
        with pytest.raises(DamagedRecordError) as caught:
            list(store.read_all())
        assert [e.stream for e in store.read_all(to_position=1)] == ["a"]
        assert [e.stream for e in store.read_stream("c")] == ["c"]
        with pytest.raises(DamagedRecordError, match="position 2"):
            list(store.read_stream("b"))

    assert caught.value.position == 2
    assert "checksum" in caught.value.reason


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (b"\x00\x00", "only 2 bytes"),
        (b"\x00\x00\x00\x00garbage", "checksum"),
    ],
)
def test_a_bad_record_written_behind_the_store_raises_damaged_record(
    path: Path, record: bytes, reason: str
) -> None:
    with LmdbEventStore.open(path) as store:
        store.append([note("a")])
    env = lmdb.open(str(path), max_dbs=16)
    events = env.open_db(EVENTS.encode())
    with env.begin(write=True) as txn:
        txn.put(pack_position(2), record, db=events)
    env.close()

    with (
        LmdbEventStore.open(path) as store,
        pytest.raises(DamagedRecordError, match=reason) as caught,
    ):
        list(store.read_all())

    assert caught.value.position == 2


def test_a_record_with_a_good_checksum_but_bad_content_is_damaged(
    path: Path,
) -> None:
    with LmdbEventStore.open(path) as store:
        store.append([note("a")])
    bad_envelope = msgspec.msgpack.encode(["a", 2, "Noted", 0xFFFFFFFF])
    bad_data = msgspec.msgpack.encode(
        ["a", 2, "Deposited", 1, b"\xc1", {}, 0, 0xFFFFFFFF]
    ).replace(b"\xc4\x01\xc1", b"\xc1")
    env = lmdb.open(str(path), max_dbs=16)
    events = env.open_db(EVENTS.encode())
    with env.begin(write=True) as txn:
        for position, payload in ((2, bad_envelope), (3, bad_data)):
            head = payload[:-4]
            crc = zlib.crc32(head).to_bytes(4, "little")
            txn.put(pack_position(position), head + crc, db=events)
    env.close()

    with LmdbEventStore.open(path) as store:
        with pytest.raises(DamagedRecordError, match="envelope"):
            list(store.read_all(from_position=2, to_position=2))
        with pytest.raises(DamagedRecordError) as caught:
            list(store.read_all(from_position=3))

    assert caught.value.position == 3
