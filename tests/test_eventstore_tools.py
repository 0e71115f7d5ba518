"""Export, import, verify and backup."""

import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import msgspec
import orjson
import pytest

from eventstore import (
    DamagedRecordError,
    EventMetadata,
    EventRegistry,
    HLCTimestamp,
    LmdbEventStore,
    MemoryEventStore,
    NdjsonLineError,
    NewEvent,
    UnknownSchemaVersionError,
    export_ndjson,
    import_ndjson,
    verify,
)
from eventstore._base import BaseStore
from eventstore._tables import EVENTS, STREAM_INDEX, STREAMS, pack_position

TIMEOUT_S = 30


class Opened(msgspec.Struct, frozen=True):
    owner: str
    limit: int = 0


@pytest.fixture
def registry() -> EventRegistry:
    registry = EventRegistry()
    registry.register(Opened)
    return registry


@pytest.fixture(params=["memory", "lmdb"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, registry: EventRegistry
) -> Iterator[BaseStore]:
    opened: BaseStore
    if request.param == "memory":
        opened = MemoryEventStore(registry=registry)
    else:
        opened = LmdbEventStore.open(
            tmp_path / "source", durability="fast", registry=registry
        )
    yield opened
    opened.close()


@pytest.fixture
def target(tmp_path: Path, registry: EventRegistry) -> Iterator[LmdbEventStore]:
    with LmdbEventStore.open(
        tmp_path / "target", durability="fast", registry=registry
    ) as opened:
        yield opened


METADATA = EventMetadata(
    hlc=HLCTimestamp(5, 1), origin="r1", correlation_id="c", extra={"k": [1]}
)


def fill(store: BaseStore) -> None:
    store.append(
        [
            NewEvent("acct/1", "Opened", Opened("ann", 5), METADATA),
            NewEvent("acct/2", "Opened", {"owner": "bob"}),
        ]
    )
    store.append([NewEvent("acct/1", "Noted", {"text": "hi", "n": 1.5})])
    store.append([NewEvent("acct/3", "Noted", {"text": "x" * 10})] * 3)


def lines(buffer: io.BytesIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in buffer.getvalue().splitlines()]


# -- export ---------------------------------------------------------------------


def test_export_writes_one_event_per_line_with_every_field(
    store: BaseStore,
) -> None:
    fill(store)
    out = io.BytesIO()

    count = export_ndjson(store, out)

    exported = lines(out)
    assert count == 6
    assert [e["position"] for e in exported] == [1, 2, 3, 4, 5, 6]
    assert exported[0]["stream"] == "acct/1"
    assert exported[0]["type"] == "Opened"
    assert exported[0]["schema_version"] == 1
    assert exported[0]["version"] == 1
    assert exported[0]["data"] == {"owner": "ann", "limit": 5}
    assert exported[0]["metadata"] == {
        "hlc": [5, 1],
        "origin": "r1",
        "correlation_id": "c",
        "extra": {"k": [1]},
    }
    assert exported[0]["recorded_at"].endswith("+00:00")
    assert exported[2]["schema_version"] == 0
    assert exported[2]["data"] == {"text": "hi", "n": 1.5}


def test_export_honours_a_position_range_and_paths(
    store: BaseStore, tmp_path: Path
) -> None:
    fill(store)

    count = export_ndjson(
        store, tmp_path / "out.ndjson", from_position=2, to_position=4
    )

    exported = [orjson.loads(x) for x in (tmp_path / "out.ndjson").read_bytes().split()]
    assert count == 3
    assert [e["position"] for e in exported] == [2, 3, 4]


def test_export_of_many_events_crosses_chunks(store: BaseStore) -> None:
    store.append([NewEvent("s", "Noted", {"i": i}) for i in range(5000)])
    out = io.BytesIO()

    assert export_ndjson(store, out) == 5000
    assert lines(out)[-1]["data"] == {"i": 4999}


# -- import -----------------------------------------------------------------------


def test_import_appends_preserving_streams_types_and_metadata(
    store: BaseStore, target: LmdbEventStore
) -> None:
    fill(store)
    out = io.BytesIO()
    export_ndjson(store, out)

    report = import_ndjson(target, io.BytesIO(out.getvalue()), batch_size=4)

    assert (report.events, report.appended, report.skipped) == (6, 6, 0)
    source = list(store.read_all())
    copied = list(target.read_all())
    assert [(e.stream, e.version, e.type, e.data, e.metadata) for e in copied] == [
        (e.stream, e.version, e.type, e.data, e.metadata) for e in source
    ]
    assert verify(target).ok


def test_importing_the_same_file_again_appends_nothing(
    store: BaseStore, target: LmdbEventStore, tmp_path: Path
) -> None:
    fill(store)
    export_ndjson(store, tmp_path / "x.ndjson")
    import_ndjson(target, tmp_path / "x.ndjson", batch_size=4)

    again = import_ndjson(target, tmp_path / "x.ndjson", batch_size=4)

    assert (again.appended, again.skipped) == (0, 6)
    assert target.head_position() == 6


def test_import_refuses_a_bad_line_naming_it_and_keeps_earlier_batches(
    store: BaseStore, target: LmdbEventStore
) -> None:
    fill(store)
    out = io.BytesIO()
    export_ndjson(store, out)
    good = out.getvalue().splitlines()
    damaged = b"\n".join([*good[:3], b"", b'{"position": "x"', *good[3:]])

    with pytest.raises(NdjsonLineError, match="line 5") as caught:
        import_ndjson(target, io.BytesIO(damaged), batch_size=2)

    assert caught.value.line == 5
    assert target.head_position() == 2


def test_import_refuses_a_batch_the_store_rejects(target: LmdbEventStore) -> None:
    line = {
        "position": 1,
        "stream": "s",
        "version": 1,
        "type": "Opened",
        "schema_version": 1,
        "data": {"owner": 5},
        "metadata": {},
        "recorded_at": "2026-01-01T00:00:00+00:00",
    }

    with pytest.raises(NdjsonLineError, match="line 1"):
        import_ndjson(target, io.BytesIO(orjson.dumps(line)))
    with pytest.raises(ValueError, match="batch_size"):
        import_ndjson(target, io.BytesIO(b""), batch_size=0)
    assert target.head_position() == 0


def test_import_lifts_old_schema_versions(
    store: BaseStore, tmp_path: Path, registry: EventRegistry
) -> None:
    store.append([NewEvent("s", "Renamed", {"title": "t"})])
    export_ndjson(store, tmp_path / "old.ndjson")

    class Renamed(msgspec.Struct, frozen=True):
        name: str

    registry.register(Renamed, version=1)
    registry.upcaster("Renamed", from_version=0)(lambda d: {"name": d["title"]})
    with LmdbEventStore.open(tmp_path / "t2", registry=registry) as fresh:
        import_ndjson(fresh, tmp_path / "old.ndjson")
        (event,) = fresh.read_all()

    assert event.data == Renamed("t")


def test_import_names_the_line_of_an_unknown_schema_version(
    tmp_path: Path, registry: EventRegistry
) -> None:
    line = {
        "position": 1,
        "stream": "s",
        "version": 1,
        "type": "Opened",
        "schema_version": 7,
        "data": {"owner": "a"},
        "metadata": {},
        "recorded_at": "2026-01-01T00:00:00+00:00",
    }
    with LmdbEventStore.open(tmp_path / "t", registry=registry) as fresh:
        with pytest.raises(NdjsonLineError, match="line 1") as caught:
            import_ndjson(fresh, io.BytesIO(orjson.dumps(line) + b"\n"))

        assert isinstance(caught.value.__cause__, UnknownSchemaVersionError)


# -- verify -------------------------------------------------------------------------


def test_verify_passes_a_sound_store(store: BaseStore) -> None:
    fill(store)
    store.append([NewEvent("s", "Noted", {}) for _ in range(5000)])

    report = verify(store)

    assert report.ok
    assert (report.events, report.streams) == (5006, 4)
    assert report.first_bad_position is None


def test_verify_of_an_empty_store_passes(store: BaseStore) -> None:
    assert verify(store).ok


def break_table(path: Path, table: str, key: bytes, value: bytes | None) -> None:
    env = lmdb.open(str(path), max_dbs=16)
    db = env.open_db(table.encode())
    with env.begin(write=True) as txn:
        if value is None:
            txn.delete(key, db=db)
        else:
            txn.put(key, value, db=db)
    env.close()


@pytest.fixture
def sound(tmp_path: Path, registry: EventRegistry) -> Path:
    path = tmp_path / "sound"
    with LmdbEventStore.open(path, registry=registry) as store:
        fill(store)
    return path


def verify_at(path: Path, registry: EventRegistry) -> Any:
    with LmdbEventStore.open(path, readonly=True, registry=registry) as store:
        return verify(store)


def test_verify_reports_a_damaged_record_by_position(
    sound: Path, registry: EventRegistry
) -> None:
    break_table(sound, EVENTS, pack_position(3), b"\x00\x00\x00\x00junk")

    report = verify_at(sound, registry)

    assert not report.ok
    assert report.first_bad_position == 3
    assert "position 3" in report.problems[0]


def test_verify_reports_a_gap_in_positions(
    sound: Path, registry: EventRegistry
) -> None:
    break_table(sound, EVENTS, pack_position(2), None)

    report = verify_at(sound, registry)

    assert report.first_bad_position == 2
    assert any("jump from 1 to 3" in p for p in report.problems)


def test_verify_reports_a_broken_stream_index_and_infos(
    sound: Path, registry: EventRegistry
) -> None:
    break_table(sound, STREAM_INDEX, b"acct/3" + pack_position(2), pack_position(9))
    break_table(sound, STREAMS, b"acct/2", None)

    report = verify_at(sound, registry)

    assert report.first_bad_position == 2
    assert any("acct/3" in p and "does not point here" in p for p in report.problems)
    assert any("'acct/2' has events but no info" in p for p in report.problems)


def test_verify_reports_versions_out_of_order_and_stale_infos(
    tmp_path: Path, registry: EventRegistry
) -> None:
    path = tmp_path / "s"
    with LmdbEventStore.open(path, registry=registry) as store:
        store.append([NewEvent("a", "Noted", {})])
        record = store.read_record(1)
        store.append([NewEvent("b", "Noted", {})])
    assert record is not None
    env = lmdb.open(str(path), max_dbs=16)
    with env.begin(write=True) as txn:
        txn.put(pack_position(3), record, db=env.open_db(EVENTS.encode(), txn=txn))
        txn.put(
            b"zz",
            msgspec.msgpack.encode(["zz", 1, 9, 9]),
            db=env.open_db(STREAMS.encode(), txn=txn),
        )
    env.close()

    report = verify_at(path, registry)

    assert report.first_bad_position == 3
    assert any("version 1 after 1" in p for p in report.problems)
    assert any("'zz' is listed but empty" in p for p in report.problems)
    assert any("listed as version 1" in p for p in report.problems)


def test_verify_reports_undecodable_data(tmp_path: Path) -> None:
    class LooseOpened(msgspec.Struct, frozen=True):
        owner: int

    loose = EventRegistry()
    loose.register(LooseOpened, name="Opened")
    with LmdbEventStore.open(tmp_path / "s", registry=loose) as store:
        store.append([NewEvent("a", "Opened", {"owner": 1})])
        strict = EventRegistry()
        strict.register(Opened)
        store.registry = strict

        report = verify(store)

    assert report.first_bad_position == 1
    assert "does not fit" in report.problems[0]


def test_export_refuses_a_damaged_record(sound: Path, registry: EventRegistry) -> None:
    break_table(sound, EVENTS, pack_position(2), b"\x00\x00\x00\x00junk")

    with (
        LmdbEventStore.open(sound, readonly=True, registry=registry) as store,
        pytest.raises(DamagedRecordError) as caught,
    ):
        export_ndjson(store, io.BytesIO())

    assert caught.value.position == 2


# -- backup ---------------------------------------------------------------------


def test_backup_while_a_writer_appends_is_a_consistent_copy(
    tmp_path: Path, registry: EventRegistry
) -> None:
    stop = threading.Event()
    with LmdbEventStore.open(tmp_path / "live", registry=registry) as store:
        fill(store)

        def write() -> None:
            while not stop.is_set():
                store.append([NewEvent(f"w/{i}", "Noted", {"i": i}) for i in range(20)])

        writer = threading.Thread(target=write)
        writer.start()
        try:
            while store.head_position() < 500:
                stop.wait(0.01)
            dest = store.backup(tmp_path / "copy")
        finally:
            stop.set()
            writer.join(TIMEOUT_S)
        with pytest.raises(FileExistsError):
            store.backup(dest)

        with LmdbEventStore.open(dest, readonly=True, registry=registry) as copy:
            report = verify(copy)
            head = copy.head_position()
            copied = list(copy.read_all())

        assert report.ok
        assert head >= 500
        assert (head - 6) % 20 == 0
        assert copied == list(store.read_all(to_position=head))
