import asyncio
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from actors import (
    ActorError,
    DashboardError,
    DataManager,
    MonitoringSystem,
    ObservabilityError,
    PerformanceOptimizer,
    UnknownAlertError,
    ValidationError,
    WorkflowEngine,
    WorkflowFailedError,
)
from actors._instrument import CommandMeter
from actors._tracing import command_span, use_tracer_provider
from eventstore import record_stream, workflow_stream
from projections import InlineRunner, StreamsProjection

TOKEN = "dashboard-token-for-tests"  # noqa: S105 - a test's own server


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    use_tracer_provider(provider)
    yield exporter
    use_tracer_provider(None)
    provider.shutdown()


@pytest.fixture
async def dm(tmp_path: Path) -> AsyncIterator[DataManager]:
    manager = DataManager.open(tmp_path / "store", durability="fast")
    async with manager:
        manager.add_data_source("users")
        yield manager


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


async def test_a_command_its_actor_its_append_and_the_inline_fold_share_one_trace(
    exported: InMemorySpanExporter, dm: DataManager
) -> None:
    with command_span("request", "api") as request:
        await dm.create("users", {"name": "ada"}, id="u1")

    spans = by_name(exported)
    create = spans["create users"]
    process = spans["process users"]
    append = spans["append users"]
    fold = spans["process records"]
    assert create.kind is SpanKind.PRODUCER
    assert process.kind is SpanKind.CONSUMER
    assert append.kind is SpanKind.PRODUCER
    assert fold.kind is SpanKind.CONSUMER
    assert parent_of(create) == request.get_span_context().span_id
    assert parent_of(process) == span_id(create)
    assert parent_of(append) == span_id(process)
    assert parent_of(fold) == span_id(process)
    assert {trace_id(span) for span in (create, process, append, fold)} == {
        request.get_span_context().trace_id
    }
    assert create.attributes is not None
    assert create.attributes["messaging.destination.name"] == "users"
    assert create.attributes["actorlog.record.id"] == "u1"
    assert append.attributes is not None
    assert append.attributes["messaging.batch.message_count"] == 1
    [event] = dm.store.read_stream(record_stream("users", "u1"))
    assert event.metadata.traceparent is not None
    assert event.metadata.traceparent.split("-")[2] == f"{span_id(process):016x}"


async def test_a_failed_command_marks_its_span_and_counts_the_error(
    exported: InMemorySpanExporter, dm: DataManager
) -> None:
    await dm.create("users", {"n": 1}, id="u1")

    with pytest.raises(ActorError):
        await dm.create("users", {"n": 2}, id="u1")

    failed = [
        span for span in exported.get_finished_spans() if span.name == "create users"
    ][-1]
    assert failed.status.status_code is StatusCode.ERROR
    errors = dm.monitoring.get_metric("command.errors", {"command": "create"})
    assert errors["sum"] == 1


async def test_reads_are_spans_and_untraced_commands_store_no_traceparent(
    exported: InMemorySpanExporter, dm: DataManager
) -> None:
    use_tracer_provider(None)
    await dm.create("users", {"n": 1}, id="u1")
    use_tracer_provider(_provider_of(exported))

    await dm.read("users", "u1")
    await dm.batch_read("users", ["u1", "u2"])
    await dm.query("users", where={"n": 1})

    names = [span.name for span in exported.get_finished_spans()]
    assert names == ["read users", "batch_read users", "query users"]
    [event] = dm.store.read_stream(record_stream("users", "u1"))
    assert event.metadata.traceparent is None


def _provider_of(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


async def test_recovery_after_a_restart_emits_no_spans(
    exported: InMemorySpanExporter, tmp_path: Path
) -> None:
    async with DataManager.open(tmp_path / "store", durability="fast") as first:
        first.add_data_source("users")
        await first.batch_create("users", [{"n": n} for n in range(20)])
    exported.clear()

    async with DataManager.open(tmp_path / "store", durability="fast") as second:
        second.add_data_source("users")
        found = await second.query("users")

    assert len(found) == 20
    assert [span.name for span in exported.get_finished_spans()] == ["query users"]


async def test_the_datamanager_measures_itself_out_of_the_box(
    dm: DataManager,
) -> None:
    records = await dm.batch_create("users", [{"n": n} for n in range(10)])
    for record in records[:5]:
        await dm.update("users", record.id, {"n": -1})
    await dm.read("users", records[0].id)

    monitoring = dm.monitoring
    assert isinstance(monitoring, MonitoringSystem)
    assert isinstance(dm.optimizer, PerformanceOptimizer)
    updates = monitoring.get_metric(
        "command.latency", {"command": "update", "collection": "users"}
    )
    assert updates["count"] == 5
    assert updates["p50"] > 0
    count = monitoring.get_metric("command.count", {"collection": "users"})
    assert count["sum"] == 1 + 5 + 1
    assert monitoring.get_metric("append.events")["sum"] == 10 + 5
    assert monitoring.get_metric("append.batch_size")["max"] == 10
    assert monitoring.get_metric("append.latency")["count"] >= 2
    depth = monitoring.get_metric("actor.mailbox_depth", {"actor": "users"})
    assert depth["last"] == 0
    restarts = monitoring.get_metric("actor.restarts", {"supervisor": "collections"})
    assert restarts["last"] == dm.collections.restarts == 0


async def test_projection_lag_is_the_distance_from_the_head(tmp_path: Path) -> None:
    manager = DataManager.open(tmp_path / "store", async_projections=())
    async with manager:
        manager.add_data_source("users")
        await manager.create("users", {"n": 1})
        runner = InlineRunner(manager.store, StreamsProjection()).attach()
        runner.detach()
        await manager.create("users", {"n": 2})
        await manager.create("users", {"n": 3})

        streams = manager.monitoring.get_metric(
            "projection.lag", {"projection": "streams"}
        )
        records = manager.monitoring.get_metric(
            "projection.lag", {"projection": "records"}
        )

    assert streams["last"] == 2
    assert records["last"] == 0


async def test_a_sync_conflict_and_a_workflow_execution_are_counted() -> None:
    monitoring = MonitoringSystem()

    monitoring.record_sync_conflict("users", resolution="lww", count=3)
    monitoring.record_workflow_execution("signup", "completed")

    conflicts = monitoring.get_metric("sync.conflicts", {"resolution": "lww"})
    assert conflicts["sum"] == 3
    executions = monitoring.get_metric("workflow.executions", {"state": "completed"})
    assert executions["sum"] == 1


async def test_a_collector_that_raises_is_logged_and_counted_not_raised() -> None:
    monitoring = MonitoringSystem()

    def broken() -> None:
        raise RuntimeError("no sample")

    monitoring.add_collector(broken)
    monitoring.get_metrics()
    monitoring.remove_collector(broken)
    monitoring.remove_collector(broken)

    [group] = monitoring.get_errors()
    assert group["type"] == "RuntimeError"


async def test_workflow_executions_and_steps_are_spans_and_metrics(
    exported: InMemorySpanExporter, dm: DataManager
) -> None:
    engine = WorkflowEngine(dm.store, monitoring=dm.monitoring)
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("first time")
        return "ok"

    engine.register_action("check", lambda: "checked")
    engine.register_action("flaky", flaky)
    async with engine:
        await engine.create_workflow(
            "signup",
            {
                "steps": [
                    {"name": "a", "action": "check"},
                    {
                        "name": "b",
                        "action": "flaky",
                        "depends_on": ["a"],
                        "retry": {"max_attempts": 2, "backoff_s": 0.001},
                    },
                ]
            },
        )
        with command_span("request", "api") as request:
            execution_id = await engine.execute_workflow("signup", wait=False)
        await engine.wait(execution_id, timeout_s=10)

    spans = exported.get_finished_spans()
    [execution] = [span for span in spans if span.name == "execute signup"]
    steps = [span for span in spans if span.name.startswith("step ")]
    assert parent_of(execution) == request.get_span_context().span_id
    assert sorted(span.name for span in steps) == ["step a", "step b", "step b"]
    assert {parent_of(span) for span in steps} == {span_id(execution)}
    failed = [span for span in steps if span.status.status_code is StatusCode.ERROR]
    assert len(failed) == 1
    assert execution.attributes is not None
    assert execution.attributes["actorlog.workflow.state"] == "completed"
    first = next(iter(dm.store.read_stream(workflow_stream(execution_id))))
    assert first.metadata.traceparent is not None
    assert first.metadata.traceparent.split("-")[2] == f"{span_id(execution):016x}"
    monitoring = dm.monitoring
    states = {
        state: monitoring.get_metric("workflow.executions", {"state": state})
        for state in ("started", "completed")
    }
    assert states["started"]["sum"] == states["completed"]["sum"] == 1
    step_b = monitoring.get_metric("workflow.steps", {"step": "b"})
    assert step_b["sum"] == 2


async def test_serve_dashboard_serves_the_monitoring_snapshot_until_close(
    tmp_path: Path,
) -> None:
    manager = DataManager.open(tmp_path / "store", durability="fast")
    async with manager:
        manager.add_data_source("users")
        await manager.create("users", {"n": 1})
        server = await manager.serve_dashboard(token=TOKEN)
        with pytest.raises(ActorError, match="already served"):
            await manager.serve_dashboard()
        body = await asyncio.to_thread(_get, f"{server.url}api/snapshot?token={TOKEN}")
        assert b"command.latency" in body
    with pytest.raises(urllib.error.URLError):
        await asyncio.to_thread(_get, f"{server.url}api/snapshot?token={TOKEN}")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - 127.0.0.1
        body: bytes = response.read()
        return body


async def test_a_dashboard_on_a_public_interface_needs_a_token(
    dm: DataManager,
) -> None:
    with pytest.raises(DashboardError):
        await dm.serve_dashboard(host="0.0.0.0")  # noqa: S104 - refused


def test_observability_errors_are_actor_errors() -> None:
    assert issubclass(ObservabilityError, ActorError)
    assert issubclass(DashboardError, ActorError)
    assert issubclass(UnknownAlertError, ActorError)


async def test_alert_transitions_are_recorded_in_the_datamanagers_store(
    dm: DataManager,
) -> None:
    dm.monitoring.set_alert(
        "slow", {"metric": "command.latency", "op": ">", "value": -1}
    )

    dm.monitoring.trigger_alert("slow")
    await asyncio.to_thread(dm.monitoring.flush)

    [event] = dm.store.read_stream("alerts/slow")
    assert event.type == "AlertFired"


async def test_validation_failures_count_as_command_errors(dm: DataManager) -> None:
    await dm.create("users", {"n": 1}, id="u1")

    with pytest.raises(ValidationError):
        await dm.update("users", "u1", "not a dict")  # type: ignore[arg-type]

    errors = dm.monitoring.get_metric("command.errors", {"command": "update"})
    assert errors["sum"] == 1
    [group] = dm.monitoring.get_errors()
    assert group["type"] == "ValidationError"


async def test_a_failed_append_fails_its_span_and_the_command(
    exported: InMemorySpanExporter, dm: DataManager
) -> None:
    await dm.create("users", {"n": 1}, id="u1")

    with pytest.raises(ValidationError):
        await dm.create("users", {"blob": object()})
    await dm.update("users", "u1", {"n": 2})

    append_spans = [
        span for span in exported.get_finished_spans() if span.name == "append users"
    ]
    assert all(span.status.status_code is StatusCode.UNSET for span in append_spans)
    assert append_spans[-1].attributes is not None
    position = append_spans[-1].attributes["actorlog.position"]
    assert isinstance(position, int)
    assert position >= 2


async def test_an_execution_interrupted_or_failed_ends_its_span_with_its_state(
    exported: InMemorySpanExporter, dm: DataManager
) -> None:
    engine = WorkflowEngine(dm.store, monitoring=dm.monitoring)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.sleep(60)

    def boom() -> None:
        raise ValueError("no")

    engine.register_action("hang", hang)
    engine.register_action("boom", boom)
    async with engine:
        await engine.create_workflow(
            "stuck", {"steps": [{"name": "s", "action": "hang"}]}
        )
        await engine.create_workflow(
            "bad", {"steps": [{"name": "s", "action": "boom"}]}
        )
        failing = await engine.execute_workflow("bad")
        with pytest.raises(WorkflowFailedError):
            await engine.wait(failing, timeout_s=10)
        await engine.execute_workflow("stuck")
        await asyncio.wait_for(started.wait(), 10)

    states = {
        span.name: (span.attributes or {}).get("actorlog.workflow.state")
        for span in exported.get_finished_spans()
        if span.name.startswith("execute ")
    }
    assert states == {"execute bad": "failed", "execute stuck": "interrupted"}
    failed = dm.monitoring.get_metric("workflow.executions", {"state": "failed"})
    assert failed["sum"] == 1


async def test_samples_are_handed_over_in_bulk_once_enough_have_gathered() -> None:
    monitoring = MonitoringSystem()
    meter = CommandMeter(monitoring, flush_every=4)

    for _ in range(4):
        meter.command("read", "users", 0.001)
        meter.append(2, 0.002)
    counted = monitoring.get_metric("command.count")["sum"]
    appended = monitoring.get_metric("append.events")["sum"]
    meter.flush()

    assert counted == 4
    assert appended == 6  # the fourth append came after the hand-over
    assert monitoring.get_metric("append.events")["sum"] == 8


def test_many_samples_at_once_count_in_full_and_keep_the_latest_window() -> None:
    monitoring = MonitoringSystem(window_size=4)

    monitoring.record_many("load", "timer", [5.0, 1.0, 2.0, 3.0, 4.0, 9.0])
    monitoring.record_many("load", "timer", [7.0])
    monitoring.record_many("hits", "counter", [1.0, 2.0])
    monitoring.record_many("load", "timer", [])

    load = monitoring.get_metric("load")
    assert (load["count"], load["sum"], load["min"], load["max"]) == (7, 31, 1, 9)
    assert load["last"] == 7
    assert load["p99"] == 9  # the window holds 3, 4, 9, 7
    assert load["p50"] == 4
    assert monitoring.get_metric("hits")["sum"] == 3
    with pytest.raises(ValueError, match="NaN"):
        monitoring.record_many("load", "timer", [float("nan"), 1.0])
