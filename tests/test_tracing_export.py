import datetime as dt
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click
import orjson
import pytest
from click.testing import CliRunner
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from actors import TraceExportError, TracingNotAvailableError, export_trace
from actors._cli_trace import trace
from actors._trace_export import (
    execution_spans,
    export_spans,
    span_id_for,
    stream_spans,
    trace_id_for,
)
from eventstore import (
    EventMetadata,
    EventRegistry,
    LmdbEventStore,
    NewEvent,
    RecordCreated,
    RecordUpdated,
    StoredEvent,
    WorkflowCancelled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowPaused,
    WorkflowResumed,
    WorkflowStarted,
    WorkflowStepFailed,
    WorkflowStepRetried,
    WorkflowStepSkipped,
    WorkflowStepStarted,
    WorkflowStepSucceeded,
    record_stream,
    workflow_stream,
)

CAUSE = "00-" + "e" * 32 + "-" + "f" * 16 + "-01"


def append_one(
    store: LmdbEventStore, stream: str, data: Any, traceparent: str | None = None
) -> None:
    metadata = EventMetadata(traceparent=traceparent)
    store.append([NewEvent(stream, type(data).__name__, data, metadata)])


def record_completed(store: LmdbEventStore, eid: str) -> None:
    stream = workflow_stream(eid)
    append_one(store, stream, WorkflowStarted(eid, "signup", 1, {"u": 1}, {}), CAUSE)
    append_one(store, stream, WorkflowStepStarted(eid, "validate", 1, "k1"))
    append_one(
        store,
        stream,
        WorkflowStepFailed(
            eid, "validate", 1, "ValueError", "bad", 0.01, will_retry=True
        ),
    )
    append_one(store, stream, WorkflowStepRetried(eid, "validate", 2, 0.5))
    append_one(store, stream, WorkflowStepStarted(eid, "validate", 2, "k2"))
    append_one(
        store, stream, WorkflowStepSucceeded(eid, "validate", 2, {"ok": True}, 0.02)
    )
    append_one(store, stream, WorkflowPaused(eid))
    append_one(store, stream, WorkflowResumed(eid))
    append_one(store, stream, WorkflowStepSkipped(eid, "notify", "by hand"))
    append_one(store, stream, WorkflowCompleted(eid, {"done": True}))


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    with LmdbEventStore.open(path) as store:
        record_completed(store, "e1")
        stream = workflow_stream("e2")
        append_one(store, stream, WorkflowStarted("e2", "sync", 1, None, {}))
        append_one(store, stream, WorkflowStepStarted("e2", "fetch", 1, "k"))
        append_one(
            store,
            stream,
            WorkflowStepFailed(
                "e2", "fetch", 1, "IOError", "down", 0.1, will_retry=False
            ),
        )
        append_one(store, stream, WorkflowStepStarted("e2", "other", 1, "k"))
        append_one(store, stream, WorkflowFailed("e2", "fetch", "IOError", "down"))
        stream = workflow_stream("e3")
        append_one(store, stream, WorkflowStarted("e3", "sync", 1, None, {}))
        append_one(store, stream, WorkflowStepSucceeded("e3", "orphan", 1, None, 0.25))
        append_one(store, stream, WorkflowCancelled("e3", "user asked"))
        users = record_stream("users", "u1")
        append_one(store, users, RecordCreated("users", "u1", {"n": 1}), CAUSE)
        append_one(store, users, RecordUpdated("users", "u1", {"n": 2}))
    return path


@pytest.fixture
def store(store_path: Path) -> Iterator[LmdbEventStore]:
    with LmdbEventStore.open(store_path, readonly=True) as opened:
        yield opened


def ns(event: StoredEvent) -> int:
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (event.recorded_at - epoch) // dt.timedelta(microseconds=1) * 1000


def by_name(spans: list[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    named: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        named.setdefault(span.name, []).append(span)
    return named


def test_an_execution_becomes_a_root_span_and_one_span_per_attempt(
    store: LmdbEventStore,
) -> None:
    events = list(store.read_stream(workflow_stream("e1")))

    spans = execution_spans(store, "e1")

    named = by_name(spans)
    root = spans[0]
    assert root.name == "execute signup"
    assert root.parent is None
    assert root.status.status_code is StatusCode.OK
    assert (root.start_time, root.end_time) == (ns(events[0]), ns(events[-1]))
    assert [event.name for event in root.events] == [
        "WorkflowStepRetried",
        "WorkflowPaused",
        "WorkflowResumed",
    ]
    assert [link.context.trace_id for link in root.links] == [int("e" * 32, 16)]
    failed, succeeded = named["step validate"]
    assert root.context is not None
    assert failed.parent is not None
    assert failed.parent.span_id == root.context.span_id
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "ValueError"
    assert (failed.start_time, failed.end_time) == (ns(events[1]), ns(events[2]))
    assert (succeeded.start_time, succeeded.end_time) == (ns(events[4]), ns(events[5]))
    assert succeeded.attributes is not None
    assert succeeded.attributes["actorlog.workflow.idempotency_key"] == "k2"
    skipped = named["step notify"][0]
    assert skipped.start_time == skipped.end_time == ns(events[8])


def test_exporting_twice_gives_the_same_ids_derived_from_the_replica(
    store: LmdbEventStore,
) -> None:
    replica = store.meta()["replica_id"]

    first = execution_spans(store, "e1")
    second = execution_spans(store, "e1")

    ids = [(s.context.trace_id, s.context.span_id) for s in first if s.context]
    assert ids == [(s.context.trace_id, s.context.span_id) for s in second if s.context]
    assert len({span_id for _, span_id in ids}) == len(ids)
    assert ids[0] == (
        trace_id_for(replica, "workflow", "e1"),
        span_id_for(replica, "e1", "execution"),
    )
    other = execution_spans(store, "e1", replica_id="elsewhere")
    assert other[0].context is not None
    assert other[0].context.trace_id != ids[0][0]


def test_a_failed_execution_marks_its_root_and_ends_unfinished_steps(
    store: LmdbEventStore,
) -> None:
    events = list(store.read_stream(workflow_stream("e2")))

    spans = execution_spans(store, "e2")

    root = spans[0]
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes is not None
    assert root.attributes["error.type"] == "IOError"
    assert root.attributes["actorlog.workflow.status"] == "failed"
    other = by_name(spans)["step other"][0]
    assert other.end_time == ns(events[-1])
    assert other.attributes is not None
    assert other.attributes["actorlog.workflow.step.status"] == "unfinished"


def test_a_cancelled_execution_and_a_step_without_its_start(
    store: LmdbEventStore,
) -> None:
    events = list(store.read_stream(workflow_stream("e3")))

    spans = execution_spans(store, "e3")

    root = spans[0]
    assert root.attributes is not None
    assert root.attributes["actorlog.workflow.status"] == "cancelled"
    assert [event.name for event in root.events] == ["WorkflowCancelled"]
    orphan = by_name(spans)["step orphan"][0]
    assert orphan.end_time == ns(events[1])
    assert orphan.start_time == ns(events[1]) - 250_000_000


def test_events_of_unregistered_types_export_from_plain_data(store_path: Path) -> None:
    with LmdbEventStore.open(
        store_path, readonly=True, registry=EventRegistry()
    ) as raw:
        spans = execution_spans(raw, "e1")

    assert [span.name for span in spans][:2] == ["execute signup", "step validate"]


def test_a_record_stream_becomes_one_span_per_event(store: LmdbEventStore) -> None:
    stream = record_stream("users", "u1")
    events = list(store.read_stream(stream))

    spans = stream_spans(store, stream)

    assert [span.name for span in spans] == [
        f"history {stream}",
        f"RecordCreated {stream}",
        f"RecordUpdated {stream}",
    ]
    assert spans[1].start_time == spans[1].end_time == ns(events[0])
    assert [link.context.trace_id for link in spans[1].links] == [int("e" * 32, 16)]
    assert spans[2].links == ()


def test_history_that_is_not_there_is_a_clear_error(store: LmdbEventStore) -> None:
    with pytest.raises(TraceExportError, match="no workflow execution 'nope'"):
        execution_spans(store, "nope")
    with pytest.raises(TraceExportError, match="stream 'records/x/y' has no events"):
        stream_spans(store, "records/x/y")


class Receiver:
    """An OTLP/HTTP traces endpoint on 127.0.0.1 that keeps what it decodes."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.requests.append(request)
                receiver.paths.append(self.path)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    running.thread.start()
    yield running
    running.server.shutdown()
    running.server.server_close()
    running.thread.join(timeout=5)


def test_cli_exports_an_execution_to_an_otlp_receiver(
    store_path: Path, receiver: Receiver
) -> None:
    with LmdbEventStore.open(store_path, readonly=True) as store:
        expected = execution_spans(store, "e1")

    result = CliRunner().invoke(
        trace,
        [
            "export",
            "--execution",
            "e1",
            "--to",
            "otlp",
            "--endpoint",
            receiver.endpoint,
            "--store",
            str(store_path),
        ],
    )

    assert result.exit_code == 0, result.output
    assert "exported 4 spans" in result.output
    assert receiver.paths == ["/v1/traces"]
    sent = [
        span
        for resource in receiver.requests[0].resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    assert [span.name for span in sent] == [span.name for span in expected]
    for got, want in zip(sent, expected, strict=True):
        assert want.context is not None
        assert int.from_bytes(got.trace_id, "big") == want.context.trace_id
        assert int.from_bytes(got.span_id, "big") == want.context.span_id
        assert (got.start_time_unix_nano, got.end_time_unix_nano) == (
            want.start_time,
            want.end_time,
        )
    assert sent[1].parent_span_id == sent[0].span_id


def test_a_receiver_that_refuses_the_spans_is_a_clear_error(
    store: LmdbEventStore,
) -> None:
    refusing = Receiver(status=400)
    refusing.thread.start()
    try:
        with pytest.raises(
            TraceExportError, match="otlp exporter failed to send 4 spans"
        ):
            export_spans(
                execution_spans(store, "e1"), to="otlp", endpoint=refusing.endpoint
            )
    finally:
        refusing.server.shutdown()
        refusing.server.server_close()
        refusing.thread.join(timeout=5)


def test_cli_writes_json_lines_to_stdout_or_a_file(
    store_path: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    output = tmp_path / "spans.jsonl"

    to_stdout = runner.invoke(
        trace,
        [
            "export",
            "--stream",
            "records/users/u1",
            "--to",
            "jsonl",
            "--store",
            str(store_path),
        ],
    )
    to_file = runner.invoke(
        trace,
        [
            "export",
            "--execution",
            "e2",
            "--to",
            "jsonl",
            "--output",
            str(output),
            "--store",
            str(store_path),
        ],
    )

    assert to_stdout.exit_code == 0, to_stdout.output
    names = [orjson.loads(line)["name"] for line in to_stdout.stdout.splitlines()]
    assert names == [
        "history records/users/u1",
        "RecordCreated records/users/u1",
        "RecordUpdated records/users/u1",
    ]
    assert to_file.exit_code == 0, to_file.output
    lines = output.read_text().splitlines()
    assert orjson.loads(lines[0])["name"] == "execute sync"
    assert orjson.loads(lines[0])["status"]["status_code"] == "ERROR"


def test_cli_takes_the_store_from_its_parent_group_and_prints_to_the_console(
    store_path: Path,
) -> None:
    @click.group()
    @click.option("--store")
    @click.pass_context
    def actorlog(ctx: click.Context, store: str) -> None:
        ctx.obj = {"store": store}

    actorlog.add_command(trace)

    result = CliRunner().invoke(
        actorlog, ["--store", str(store_path), "trace", "export", "--execution", "e3"]
    )

    assert result.exit_code == 0, result.output
    assert '"name": "execute sync"' in result.output
    assert '"name": "step orphan"' in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "--store", "."], "exactly one of --execution and --stream"),
        (["export", "--execution", "a", "--stream", "b"], "exactly one of"),
        (["export", "--execution", "a"], "no store"),
        (["export", "--execution", "nope"], "no workflow execution 'nope'"),
    ],
)
def test_cli_errors_name_what_is_wrong(
    store_path: Path, args: list[str], message: str
) -> None:
    if args[-1] == "nope":
        args = [*args, "--store", str(store_path)]

    result = CliRunner().invoke(trace, args)

    assert result.exit_code != 0
    assert message in result.output


def test_export_trace_sends_an_execution_or_a_stream(
    store: LmdbEventStore, tmp_path: Path
) -> None:
    path = tmp_path / "out.jsonl"

    execution_count = export_trace(store, execution_id="e3", to="jsonl", path=path)
    stream_count = export_trace(store, stream="records/users/u1", to="jsonl", path=path)

    names = [orjson.loads(line)["name"] for line in path.read_text().splitlines()]
    assert (execution_count, stream_count) == (2, 3)
    assert names[:2] == ["execute sync", "step orphan"]
    assert names[2] == "history records/users/u1"
    with pytest.raises(ValueError, match="exactly one of execution_id and stream"):
        export_trace(store)


def test_export_without_the_sdk_says_which_extra_to_install(
    store: LmdbEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "actors._trace_export", None)

    with pytest.raises(TracingNotAvailableError, match=r"actorlog\[otel\]"):
        export_trace(store, execution_id="e1")


def test_cli_export_without_the_sdk_says_which_extra_to_install(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "actors._trace_export", None)

    result = CliRunner().invoke(
        trace, ["export", "--execution", "e1", "--store", str(store_path)]
    )
    assert result.exit_code == 1
    assert "actorlog[otel]" in result.output


def test_a_read_only_store_can_be_read_again_and_again(store: LmdbEventStore) -> None:
    first = [event.position for event in store.read_stream(workflow_stream("e1"))]
    second = [event.position for event in store.read_stream(workflow_stream("e1"))]

    assert first == second
    assert len(first) == 10
    assert store.meta()["replica_id"] == store.meta()["replica_id"]
