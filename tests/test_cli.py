from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _projection_helpers import create, run_workflow, update
from click.testing import CliRunner, Result

from actors import DataManager
from actors._cli import main
from eventstore import LmdbEventStore, NewEvent, WriterBusyError
from eventstore._tables import EVENTS, pack_position
from projections import RecordsProjection, catch_up, fold_batch

ACTORLOG = [sys.executable, "-m", "actors._cli"]
HOLDER = """
import sys, time
from eventstore import LmdbEventStore
store = LmdbEventStore.open(sys.argv[1])
print('open', flush=True)
time.sleep(60)
"""


def _make(path: Path) -> None:
    asyncio.run(_fill(path))


async def _fill(path: Path) -> None:
    """Records written by a DataManager, workflow events appended beside them."""
    async with DataManager.open(path, durability="fast") as dm:
        dm.add_data_source("users", indexes=["age"])
        dm.add_data_source("items")
        await dm.create("users", {"name": "Ann", "age": 31}, id="u1")
        await dm.create("users", {"name": "Bob", "age": 25}, id="u2")
        await dm.update("users", "u1", {"age": 32})
        await dm.create("items", {"sku": "X"}, id="i1")
        await dm.delete("items", "i1")
        await asyncio.to_thread(run_workflow, dm.store, "e1", fail=True)
        await asyncio.to_thread(run_workflow, dm.store, "e2", fail=False)
        await dm.projections.wait(timeout_s=10)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    _make(path)
    return path


def _run(path: Path, *args: str, output: str = "json") -> Result:
    runner = CliRunner()
    return runner.invoke(main, ["--store", str(path), "-o", output, *args])


def _json(path: Path, *args: str) -> Any:
    result = _run(path, *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_info_describes_the_store(store_path: Path) -> None:
    info = _json(store_path, "info")

    assert info["path"] == str(store_path.resolve())
    assert info["head_position"] == 23
    assert info["events"] == 23
    assert info["streams"] == 5
    assert info["durability"] == "fast"
    assert info["size_bytes"] > 0
    assert info["max_readers"] >= info["reader_slots_used"] >= 1


def test_streams_lists_streams_by_prefix(store_path: Path) -> None:
    rows = _json(store_path, "streams", "--prefix", "records/users/")

    assert [(r["stream"], r["version"]) for r in rows] == [
        ("records/users/u1", 2),
        ("records/users/u2", 1),
    ]
    assert rows[0]["first_position"] == 1
    assert rows[0]["last_position"] == 3


def test_events_filter_by_type_position_stream_and_limit(store_path: Path) -> None:
    by_type = _json(store_path, "events", "--type", "RecordDeleted")
    window = _json(store_path, "events", "--from", "2", "--to", "4")
    limited = _json(store_path, "events", "--limit", "2")
    stream = _json(store_path, "events", "--stream", "records/users/u1")
    late = _json(store_path, "events", "--stream", "workflows/e1", "--from", "8")

    assert [(e["position"], e["stream"]) for e in by_type] == [(5, "records/items/i1")]
    assert by_type[0]["data"] == {"collection": "items", "id": "i1"}
    assert [e["position"] for e in window] == [2, 3, 4]
    assert [e["position"] for e in limited] == [1, 2]
    assert [e["version"] for e in stream] == [1, 2]
    assert [e["position"] for e in late] == [8, 9, 10, 11, 12, 13, 14]


def test_events_from_beyond_the_head_is_an_error(store_path: Path) -> None:
    result = _run(store_path, "events", "--from", "99")

    assert result.exit_code == 1
    assert "position 99 is not in the log (its head is 23)" in result.stderr


def test_replay_prints_the_view_at_a_position(store_path: Path) -> None:
    records = _json(
        store_path, "replay", "--to-position", "2", "--projection", "records"
    )
    everything = _json(store_path, "replay", "--to-position", "5")

    assert [(r["id"], r["data"]) for r in records] == [
        ("u1", {"name": "Ann", "age": 31}),
        ("u2", {"name": "Bob", "age": 25}),
    ]
    assert sorted(everything) == ["records", "streams", "workflows"]
    assert [r["id"] for r in everything["records"]] == ["u1", "u2"]
    assert everything["workflows"] == []
    assert len(everything["streams"]) == 3


def test_replay_past_the_head_is_an_error(store_path: Path) -> None:
    result = _run(store_path, "replay", "--to-position", "24")

    assert result.exit_code == 1
    assert "position 24 is not in the log" in result.stderr


def test_projections_list_reports_checkpoints(store_path: Path) -> None:
    rows = _json(store_path, "projections", "list")

    assert [r["name"] for r in rows] == ["records", "streams", "workflows"]
    assert all(r["checkpoint"] == 23 and r["lag_events"] == 0 for r in rows)
    assert all(r["parked"] == 0 for r in rows)


def test_projections_show_records(store_path: Path) -> None:
    summary = _json(store_path, "projections", "show", "records")
    users = _json(store_path, "projections", "show", "records", "--collection", "users")
    one = _json(
        store_path,
        "projections",
        "show",
        "records",
        "--collection",
        "users",
        "--key",
        "u1",
    )

    assert summary == [{"collection": "users", "records": 2, "indexes": ["age"]}]
    assert [u["id"] for u in users] == ["u1", "u2"]
    assert one["data"] == {"name": "Ann", "age": 32}
    assert one["version"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["records", "--key", "u1"], "--key needs --collection"),
        (["records", "--collection", "users", "--key", "zz"], "no record 'zz'"),
        (["streams", "--collection", "users"], "--collection applies to records"),
        (["streams", "--key", "nope"], "no stream 'nope'"),
        (["workflows", "--key", "nope"], "no workflow execution 'nope'"),
        (["nope"], "unknown projection 'nope'"),
    ],
)
def test_projections_show_refuses_bad_requests(
    store_path: Path, args: list[str], message: str
) -> None:
    result = _run(store_path, "projections", "show", *args)

    assert result.exit_code != 0
    assert message in result.stderr


def test_projections_show_workflows_and_streams(store_path: Path) -> None:
    executions = _json(store_path, "projections", "show", "workflows")
    execution = _json(store_path, "projections", "show", "workflows", "--key", "e2")
    streams = _json(store_path, "projections", "show", "streams")
    stream = _json(
        store_path, "projections", "show", "streams", "--key", "records/users/u1"
    )

    assert [(e["execution_id"], e["status"]) for e in executions] == [
        ("e1", "failed"),
        ("e2", "completed"),
    ]
    assert execution["output"] == {"saved": 2}
    assert len(streams) == 5
    assert stream["counts"] == {"RecordCreated": 1, "RecordUpdated": 1}


def test_parked_events_are_listed_and_retried(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with LmdbEventStore.open(path, durability="fast") as store:
        update(store, "users", "ghost", {"a": 1})
        fold_batch(store, RecordsProjection(), list(store.read_all()))

    parked = _json(path, "projections", "parked", "records")
    assert [(p["position"], p["type"]) for p in parked] == [(1, "RecordUpdated")]
    assert "does not exist" in parked[0]["error"]

    with LmdbEventStore.open(path, durability="fast") as store:
        create(store, "users", "ghost", {"a": 0})
        catch_up(store, RecordsProjection())
    still = _json(path, "projections", "retry", "records")
    after = _json(path, "projections", "parked", "records")

    record = _json(
        path,
        "projections",
        "show",
        "records",
        "--collection",
        "users",
        "--key",
        "ghost",
    )
    assert still == []
    assert after == []
    assert record["data"] == {"a": 1}


def test_rebuild_rebuilds_a_view(store_path: Path) -> None:
    done = _json(store_path, "projections", "rebuild", "workflows")

    assert done["name"] == "workflows"
    assert done["checkpoint"] == 23
    assert _json(store_path, "workflows", "show", "e1")["status"] == "failed"


def test_rebuild_of_an_unknown_projection_or_store_is_refused(
    store_path: Path, tmp_path: Path
) -> None:
    unknown = _run(store_path, "projections", "rebuild", "nope")
    missing = _run(tmp_path / "none", "projections", "rebuild", "records")

    assert unknown.exit_code == 1
    assert "unknown projection 'nope'" in unknown.stderr
    assert missing.exit_code == 1
    assert "no actorlog store at" in missing.stderr
    assert not (tmp_path / "none").exists()


def test_rebuild_is_refused_while_another_process_writes(store_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLDER,
            str(store_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "open"

        result = _run(store_path, "projections", "rebuild", "records")
        retried = _run(store_path, "projections", "retry", "records")
    finally:
        holder.kill()
        holder.wait(10)

    assert result.exit_code == 1
    assert "another process has the store" in result.stderr
    assert "is the application running?" in result.stderr
    assert retried.exit_code == 1


def test_workflows_list_show_and_history(store_path: Path) -> None:
    everything = _json(store_path, "workflows", "list")
    failed = _json(store_path, "workflows", "list", "--status", "failed")
    shown = _json(store_path, "workflows", "show", "e1")
    history = _json(store_path, "workflows", "history", "e1")
    missing = _run(store_path, "workflows", "history", "nope")

    assert [e["execution_id"] for e in everything] == ["e1", "e2"]
    assert [e["execution_id"] for e in failed] == ["e1"]
    assert shown["steps"]["save"]["attempts"] == 2
    assert shown["steps"]["save"]["error_type"] == "IOError"
    assert shown["error"]["step"] == "save"
    assert [e["type"] for e in history][:2] == [
        "WorkflowStarted",
        "WorkflowStepStarted",
    ]
    assert len(history) == 9
    assert missing.exit_code == 1
    assert "no workflow execution 'nope'" in missing.stderr


def test_verify_passes_a_sound_store_and_names_a_damaged_position(
    store_path: Path,
) -> None:
    sound = _json(store_path, "verify")
    with LmdbEventStore.open(store_path) as store:
        store.write_views(lambda txn: txn.put(EVENTS, pack_position(4), b"junkjunk"))

    damaged = _run(store_path, "verify")
    reading = _run(store_path, "events")

    assert sound["ok"] is True
    assert sound["events"] == 23
    assert damaged.exit_code == 1
    assert json.loads(damaged.stdout)["first_bad_position"] == 4
    assert "damaged from position 4" in damaged.stderr
    assert reading.exit_code == 1
    assert "position 4" in reading.stderr


def test_export_import_and_backup_copy_the_log(
    store_path: Path, tmp_path: Path
) -> None:
    exported = _run(store_path, "export", "--from", "2", "--to", "5")
    dump = tmp_path / "dump.ndjson"
    dump.write_bytes(exported.stdout_bytes)
    copy = tmp_path / "copy"

    imported = _json(copy, "import", str(dump))
    backup = _json(store_path, "backup", str(tmp_path / "backup"))
    again = _run(store_path, "backup", str(tmp_path / "backup"))

    assert exported.exit_code == 0
    assert "exported 4 events" in exported.stderr
    assert len(dump.read_bytes().splitlines()) == 4
    assert imported == {"events": 4, "appended": 4, "skipped": 0}
    assert _json(copy, "info")["head_position"] == 4
    assert backup["head_position"] == 23
    assert _json(tmp_path / "backup", "info")["head_position"] == 23
    assert again.exit_code == 1
    assert "not empty" in again.stderr


def test_a_missing_store_is_an_error_on_stderr(tmp_path: Path) -> None:
    result = _run(tmp_path / "none", "info")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert "no actorlog store at" in result.stderr


def test_the_store_comes_from_the_environment_and_output_defaults_to_json(
    store_path: Path,
) -> None:
    runner = CliRunner(env={"ACTORLOG_STORE": str(store_path)})

    result = runner.invoke(main, ["info"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["head_position"] == 23


def test_table_and_ndjson_outputs(store_path: Path) -> None:
    table = _run(store_path, "projections", "list", output="table")
    pairs = _run(store_path, "info", output="table")
    ndjson = _run(store_path, "streams", output="ndjson")
    sections = _run(store_path, "replay", "--to-position", "1", output="table")
    steps = _run(store_path, "workflows", "show", "e1", output="table")
    empty = _run(store_path, "projections", "parked", "records", output="table")

    assert table.exit_code == 0
    assert "records" in table.stdout
    assert "head_position" in pairs.stdout
    first = json.loads(ndjson.stdout.splitlines()[0])
    assert first["stream"] == "records/items/i1"
    assert "(no workflows)" in sections.stdout
    assert "fetch" in steps.stdout
    assert "succeeded" in steps.stdout
    assert "(no parked in records)" in empty.stdout


def test_verbose_logging_goes_to_stderr(store_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["--store", str(store_path), "-vv", "-o", "json", "info"]
    )

    assert result.exit_code == 0


@pytest.fixture
def follower(store_path: Path) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [*ACTORLOG, "--store", str(store_path), "-o", "ndjson", "events", "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    yield process
    if process.poll() is None:
        process.kill()
    process.wait(10)


def test_events_follow_sees_an_event_appended_by_another_process(
    store_path: Path, follower: subprocess.Popen[str]
) -> None:
    assert follower.stdout is not None
    backlog = [json.loads(follower.stdout.readline()) for _ in range(23)]

    with LmdbEventStore.open(store_path) as store:
        store.append([NewEvent("notes/1", "Noted", {"text": "hello"})])
    line = follower.stdout.readline()
    follower.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 10
    while follower.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)

    assert [e["position"] for e in backlog] == list(range(1, 24))
    event = json.loads(line)
    assert (event["position"], event["stream"], event["data"]) == (
        24,
        "notes/1",
        {"text": "hello"},
    )
    assert follower.returncode == 0


APPENDER = """
import sys
import threading
from eventstore import LmdbEventStore, NewEvent, WriterBusyError
with LmdbEventStore.open(sys.argv[1]) as store:
    store.append([NewEvent("notes/2", "Noted", {"text": "table"})])
"""


def test_follow_prints_table_lines_until_interrupted(store_path: Path) -> None:
    main_thread = threading.get_ident()

    def append_then_interrupt() -> None:
        time.sleep(0.3)
        subprocess.run(
            [sys.executable, "-c", APPENDER, str(store_path)], check=True, timeout=30
        )
        time.sleep(0.8)
        signal.pthread_kill(main_thread, signal.SIGINT)

    helper = threading.Thread(target=append_then_interrupt)
    helper.start()
    try:
        result = _run(
            store_path,
            "events",
            "--follow",
            "--from",
            "23",
            "--type",
            "Noted",
            "--type",
            "WorkflowCompleted",
            output="table",
        )
    finally:
        helper.join(30)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("23  workflows/e2  WorkflowCompleted")
    assert lines[1] == '24  notes/2  Noted  {"text":"table"}'


def test_bad_positions_are_refused_by_the_options(store_path: Path) -> None:
    result = _run(store_path, "events", "--from", "0")
    bounded = _json(store_path, "events", "--stream", "workflows/e1", "--to", "7")

    assert result.exit_code == 2
    assert "must be >= 1, not 0" in result.stderr
    assert [e["position"] for e in bounded] == [6, 7]


EXCLUSIVE_HOLDER = """
import sys, time
from eventstore import LmdbEventStore
store = LmdbEventStore.open(sys.argv[1], exclusive=True)
print('open', flush=True)
time.sleep(60)
"""


def test_the_application_cannot_open_the_store_during_an_exclusive_job(
    store_path: Path,
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", EXCLUSIVE_HOLDER, str(store_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(WriterBusyError, match="exclusively"):
            LmdbEventStore.open(store_path)
        with LmdbEventStore.open(store_path, readonly=True) as reader:
            assert reader.head_position() == 23
    finally:
        holder.kill()
        holder.wait(10)

    with LmdbEventStore.open(store_path, exclusive=True) as store:
        assert store.head_position() == 23


def test_the_root_group_carries_trace_and_serve() -> None:
    from click.testing import CliRunner  # noqa: PLC0415

    from actors._cli import main  # noqa: PLC0415

    result = CliRunner().invoke(main, ["--help"])

    assert result.exit_code == 0
    assert "trace" in result.output
    assert "serve" in result.output


def test_the_output_option_may_follow_the_command(tmp_path: Path) -> None:
    from click.testing import CliRunner  # noqa: PLC0415

    from actors._cli import main  # noqa: PLC0415
    from eventstore import LmdbEventStore, NewEvent  # noqa: PLC0415

    path = tmp_path / "s"
    with LmdbEventStore.open(path) as store:
        store.append([NewEvent("a/1", "Noted", {"n": 1})])

    after = CliRunner().invoke(main, ["--store", str(path), "streams", "-o", "json"])
    glued = CliRunner().invoke(main, ["--store", str(path), "streams", "-ojson"])
    before = CliRunner().invoke(main, ["--store", str(path), "-o", "json", "streams"])

    assert after.exit_code == 0, after.output
    assert after.output == before.output == glued.output
    assert '"stream": "a/1"' in after.output
