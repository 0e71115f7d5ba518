import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import INVALID_SPAN, SpanKind, StatusCode
from opentelemetry.util._once import Once

import actors
from actors import TracingNotAvailableError, configure_tracing
from actors._tracing import (
    append_span,
    attach_traceparent,
    command_span,
    current_traceparent,
    extract,
    fold_span,
    format_traceparent,
    inject,
    link_to,
    parse_traceparent,
    receive_span,
    step_span,
    suppress_tracing,
    sync_span,
    tracing_suppressed,
    use_tracer_provider,
    workflow_span,
)
from eventstore import EventMetadata, LmdbEventStore, NewEvent, RecordCreated


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    use_tracer_provider(provider)
    yield exporter
    use_tracer_provider(None)
    provider.shutdown()


def only(exporter: InMemorySpanExporter) -> ReadableSpan:
    spans = exporter.get_finished_spans()
    assert len(spans) == 1
    return spans[0]


def test_without_an_sdk_spans_are_the_shared_invalid_span() -> None:
    with command_span("create", "users") as span:
        assert span is INVALID_SPAN
        assert current_traceparent() is None
        assert inject() == {}


def test_a_command_span_follows_the_messaging_conventions(
    exported: InMemorySpanExporter,
) -> None:
    with command_span("create", "users", record_id="u1", command_id="c1"):
        pass

    span = only(exported)
    assert span.name == "create users"
    assert span.kind is SpanKind.PRODUCER
    assert span.attributes is not None
    assert span.attributes["messaging.system"] == "actorlog"
    assert span.attributes["messaging.operation.name"] == "create"
    assert span.attributes["messaging.operation.type"] == "send"
    assert span.attributes["messaging.destination.name"] == "users"
    assert span.attributes["actorlog.record.id"] == "u1"
    assert span.attributes["messaging.message.id"] == "c1"


def test_a_failing_command_marks_its_span_and_still_raises(
    exported: InMemorySpanExporter,
) -> None:
    with pytest.raises(KeyError), command_span("update", "users"):
        raise KeyError("u9")

    span = only(exported)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "KeyError"
    assert [event.name for event in span.events] == ["exception"]


def test_the_current_traceparent_names_the_current_span(
    exported: InMemorySpanExporter,
) -> None:
    with command_span("delete", "users") as span:
        header = current_traceparent()

    assert header is not None
    context = span.get_span_context()
    flags = int(context.trace_flags)
    assert header == f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags:02x}"
    parsed = parse_traceparent(header)
    assert parsed is not None
    assert (parsed.trace_id, parsed.span_id) == (context.trace_id, context.span_id)
    assert format_traceparent(parsed) == header
    assert len(exported.get_finished_spans()) == 1


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        "00-xyz-abc-01",
        "00-" + "g" * 32 + "-" + "0" * 16 + "-01",
        "00-" + "0" * 32 + "-" + "0" * 16 + "-01",
    ],
)
def test_a_malformed_traceparent_gives_no_context_and_no_link(header: str) -> None:
    assert parse_traceparent(header) is None
    assert link_to(header) is None
    assert link_to(None) is None


def test_context_injected_into_an_envelope_parents_the_receivers_span(
    exported: InMemorySpanExporter,
) -> None:
    envelope: dict[str, str] = {}
    received: list[str | None] = []

    def actor() -> None:
        with receive_span("users-actor", envelope, message_type="Create"):
            received.append(current_traceparent())

    with command_span("create", "users") as sender:
        returned = inject(envelope)
        thread = threading.Thread(target=actor)
        thread.start()
        thread.join(timeout=5)

    assert "traceparent" in envelope
    assert returned == envelope
    spans = {span.name: span for span in exported.get_finished_spans()}
    receiver = spans["process users-actor"]
    assert receiver.kind is SpanKind.CONSUMER
    assert receiver.parent is not None
    assert receiver.parent.span_id == sender.get_span_context().span_id
    assert receiver.context is not None
    assert receiver.context.trace_id == sender.get_span_context().trace_id
    assert received[0] is not None


def test_extracting_an_empty_carrier_gives_an_empty_context() -> None:
    assert trace.get_current_span(extract(None)) is INVALID_SPAN
    assert trace.get_current_span(extract({})) is INVALID_SPAN


def test_suppressed_tracing_emits_nothing_and_injects_nothing(
    exported: InMemorySpanExporter,
) -> None:
    seen_in_thread: list[bool] = []

    with command_span("create", "users"), suppress_tracing():
        assert tracing_suppressed()
        thread = threading.Thread(
            target=lambda: seen_in_thread.append(tracing_suppressed())
        )
        thread.start()
        thread.join(timeout=5)
        with command_span("replayed", "users") as span:
            assert span is INVALID_SPAN
        assert inject() == {}

    assert not tracing_suppressed()
    assert seen_in_thread == [False]
    assert [span.name for span in exported.get_finished_spans()] == ["create users"]


def test_a_fold_links_to_the_distinct_traces_of_its_events(
    exported: InMemorySpanExporter,
) -> None:
    first = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    second = "00-" + "3" * 32 + "-" + "4" * 16 + "-01"
    many = [f"00-{i + 1:032x}-{i + 1:016x}-01" for i in range(40)]

    with fold_span(
        "records", position=7, traceparents=[first, None, first, second, "bad"]
    ):
        pass
    with fold_span("stats", position=9, traceparents=many):
        pass

    records, stats = exported.get_finished_spans()
    assert records.name == "process records"
    assert records.kind is SpanKind.CONSUMER
    assert [link.context.trace_id for link in records.links] == [
        int("1" * 32, 16),
        int("3" * 32, 16),
    ]
    assert records.attributes is not None
    assert records.attributes["actorlog.position"] == 7
    assert len(stats.links) == 32


def test_workflow_step_append_and_sync_spans_nest_with_their_attributes(
    exported: InMemorySpanExporter,
) -> None:
    started_by = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"

    with workflow_span("signup", "e1", traceparent=started_by):
        with (
            step_span("validate", execution_id="e1", attempt=2),
            append_span("workflows/e1", event_count=3),
        ):
            pass
        with sync_span("users", source="here", target="there"):
            pass

    spans = {span.name: span for span in exported.get_finished_spans()}
    assert set(spans) == {
        "execute signup",
        "step validate",
        "append workflows/e1",
        "sync users",
    }
    root = spans["execute signup"]
    assert [link.context.trace_id for link in root.links] == [int("a" * 32, 16)]
    step = spans["step validate"]
    assert step.parent is not None
    assert root.context is not None
    assert step.parent.span_id == root.context.span_id
    assert step.attributes is not None
    assert step.attributes["actorlog.workflow.attempt"] == 2
    append = spans["append workflows/e1"]
    assert append.attributes is not None
    assert append.attributes["messaging.batch.message_count"] == 3
    assert spans["sync users"].kind is SpanKind.CLIENT


def test_attaching_a_stored_traceparent_makes_it_the_parent(
    exported: InMemorySpanExporter,
) -> None:
    stored = "00-" + "c" * 32 + "-" + "d" * 16 + "-01"

    with attach_traceparent(stored):
        assert current_traceparent() == stored
        with command_span("update", "users"):
            pass
    with attach_traceparent("not a header"):
        assert current_traceparent() is None

    span = only(exported)
    assert span.parent is not None
    assert span.parent.span_id == int("d" * 16, 16)


def test_configure_tracing_writes_json_lines_to_a_file(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    provider = configure_tracing("jsonl", path=str(path), set_global=False)
    try:
        with command_span("create", "users"):
            pass
        with command_span("create", "orders"):
            pass
    finally:
        provider.shutdown()
        use_tracer_provider(None)

    lines = path.read_text().splitlines()
    assert [orjson.loads(line)["name"] for line in lines] == [
        "create users",
        "create orders",
    ]
    assert (
        orjson.loads(lines[0])["resource"]["attributes"]["service.name"] == "actorlog"
    )


def test_a_sample_ratio_of_zero_records_no_span(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    provider = configure_tracing(
        "jsonl", path=str(path), sample_ratio=0.0, set_global=False
    )
    try:
        with command_span("create", "users") as span:
            recording = span.is_recording()
    finally:
        provider.shutdown()
        use_tracer_provider(None)

    assert not recording
    assert path.read_text() == ""


def test_configure_tracing_builds_an_otlp_provider() -> None:
    provider = configure_tracing(
        "otlp", endpoint="http://127.0.0.1:9/v1/traces", set_global=False
    )
    use_tracer_provider(None)
    provider.shutdown()

    assert provider.resource.attributes["service.name"] == "actorlog"


def test_configure_tracing_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="exporter must be"):
        configure_tracing("zipkin")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs path"):
        configure_tracing("jsonl")
    with pytest.raises(ValueError, match="sample_ratio must be within"):
        configure_tracing("console", sample_ratio=1.5)


def test_configure_tracing_without_the_sdk_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)

    with pytest.raises(TracingNotAvailableError, match=r"actorlog\[otel\]"):
        configure_tracing("console", set_global=False)


def test_configure_tracing_installs_a_global_console_provider() -> None:
    script = (
        "from actors import configure_tracing\n"
        "from actors._tracing import command_span\n"
        "provider = configure_tracing('console', service_name='demo')\n"
        "with command_span('create', 'users'):\n"
        "    pass\n"
        "provider.shutdown()\n"
    )

    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert '"name": "create users"' in done.stdout
    assert '"service.name": "demo"' in done.stdout


def test_every_helper_is_a_no_op_without_an_sdk() -> None:
    helpers = [
        command_span("create", "users"),
        append_span("records/users/u1", event_count=1),
        receive_span("users", {"traceparent": "x"}, message_type="Create"),
        fold_span("records", position=1),
        workflow_span("signup", "e1"),
        step_span("validate", execution_id="e1", attempt=1),
        sync_span("users", source="a", target="b"),
    ]

    for helper in helpers:
        with helper as span:
            assert span is INVALID_SPAN


def test_a_provider_set_globally_is_used_and_configure_can_set_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    path = tmp_path / "spans.jsonl"

    provider = configure_tracing("jsonl", path=str(path))
    with command_span("create", "users"):
        pass
    provider.shutdown()

    assert trace.get_tracer_provider() is provider
    assert orjson.loads(path.read_text())["name"] == "create users"


def test_the_observability_surface_is_exported() -> None:
    assert {
        "BoundedCache",
        "MonitoringSystem",
        "PerformanceOptimizer",
        "PoolExhaustedError",
        "TracingNotAvailableError",
        "configure_tracing",
    } <= set(actors.__all__)


def test_a_command_its_actor_its_events_and_their_fold_share_one_trace(
    exported: InMemorySpanExporter, tmp_path: Path
) -> None:
    with LmdbEventStore.open(tmp_path / "store") as store:
        envelope: dict[str, str] = {}

        def actor() -> None:
            with receive_span("users", envelope, message_type="Create"):
                event = NewEvent(
                    "records/users/u1",
                    "RecordCreated",
                    RecordCreated("users", "u1", {"n": 1}),
                    EventMetadata(traceparent=current_traceparent()),
                )
                with append_span("records/users/u1", event_count=1):
                    store.append([event])

        with command_span("create", "users", record_id="u1") as command:
            inject(envelope)
            thread = threading.Thread(target=actor)
            thread.start()
            thread.join(timeout=5)
        stored = list(store.read_all())
        with fold_span(
            "records",
            position=stored[-1].position,
            traceparents=[event.metadata.traceparent for event in stored],
        ):
            pass

    trace_id = command.get_span_context().trace_id
    spans = {span.name: span for span in exported.get_finished_spans()}
    for name in ("create users", "process users", "append records/users/u1"):
        context = spans[name].context
        assert context is not None
        assert context.trace_id == trace_id
    fold = spans["process records"]
    assert fold.context is not None
    assert fold.context.trace_id != trace_id
    assert [link.context.trace_id for link in fold.links] == [trace_id]
    header = stored[0].metadata.traceparent
    assert header is not None
    receiver = spans["process users"].context
    assert receiver is not None
    assert header.split("-")[2] == f"{receiver.span_id:016x}"
