import asyncio
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Metric

from actors import MonitoringSystem, UnknownAlertError
from actors._alerts import AlertFired, AlertNotice, AlertResolved, AlertRule
from eventstore import LmdbEventStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def monitoring(clock: Clock) -> MonitoringSystem:
    return MonitoringSystem(clock=clock)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LmdbEventStore]:
    with LmdbEventStore.open(tmp_path / "store") as opened:
        yield opened


def test_a_metric_aggregates_count_sum_extremes_and_percentiles(
    monitoring: MonitoringSystem,
) -> None:
    for value in range(1, 101):
        monitoring.record_metric("size", value)

    stats = monitoring.get_metric("size")

    assert stats["count"] == 100
    assert stats["sum"] == 5050
    assert (stats["min"], stats["max"], stats["mean"]) == (1, 100, 50.5)
    assert (stats["p50"], stats["p95"], stats["p99"]) == (50, 95, 99)
    assert stats["last"] == 100


def test_percentiles_cover_the_window_while_totals_cover_everything(
    clock: Clock,
) -> None:
    monitoring = MonitoringSystem(clock=clock, window_size=10)

    for value in range(1, 101):
        monitoring.record_metric("size", value)

    stats = monitoring.get_metric("size")
    assert stats["count"] == 100
    assert stats["min"] == 1
    assert stats["p50"] == 95


def test_tags_split_series_and_filter_what_is_read(
    monitoring: MonitoringSystem,
) -> None:
    monitoring.record_counter("hits", 2, {"collection": "users"})
    monitoring.record_counter("hits", 5, {"collection": "orders"})
    monitoring.record_counter("hits", 1, {"collection": "users", "shard": 1})

    assert monitoring.get_metric("hits")["sum"] == 8
    assert monitoring.get_metric("hits", {"collection": "users"})["sum"] == 3
    assert monitoring.get_metric("hits", {"shard": 2}) == {}
    assert monitoring.get_metrics()["hits"]["count"] == 3


def test_bad_metric_input_is_refused_with_the_metric_named(
    monitoring: MonitoringSystem,
) -> None:
    monitoring.record_gauge("queue", 3)

    with pytest.raises(ValueError, match="counter 'c': increment must be >= 0"):
        monitoring.record_counter("c", -1)
    with pytest.raises(ValueError, match="metric name '9lives'"):
        monitoring.record_metric("9lives", 1)
    with pytest.raises(ValueError, match="metric 'queue' is a gauge, not a counter"):
        monitoring.record_counter("queue")
    with pytest.raises(ValueError, match="'x': value is NaN"):
        monitoring.record_metric("x", math.nan)
    with pytest.raises(TypeError, match="'x': value must be a number"):
        monitoring.record_metric("x", "7")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="duration must be >= 0"):
        monitoring.record_timer("t", -0.5)
    with pytest.raises(ValueError, match="window_size"):
        MonitoringSystem(window_size=0)
    with pytest.raises(ValueError, match="max_series"):
        MonitoringSystem(max_series=0)


def test_series_beyond_the_bound_are_dropped_and_counted(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    monitoring = MonitoringSystem(clock=clock, max_series=2)

    with caplog.at_level(logging.WARNING):
        for user in range(4):
            monitoring.record_counter("logins", 1, {"user": user})

    assert monitoring.get_metric("logins")["count"] == 2
    assert monitoring.get_dashboard()["dropped_series"] == 2
    assert "max_series" in caplog.text


def test_a_timer_records_a_duration_or_times_a_block_even_when_it_raises(
    monitoring: MonitoringSystem,
) -> None:
    monitoring.record_timer("load", 0.25)
    with monitoring.record_timer("load"):
        pass
    with pytest.raises(RuntimeError), monitoring.record_timer("load"):
        raise RuntimeError

    stats = monitoring.get_metric("load")
    assert stats["count"] == 3
    assert stats["max"] == 0.25
    assert stats["min"] < 0.25


def point(metric: Metric) -> Any:
    return next(iter(metric.data.data_points))


def test_metrics_are_exported_through_opentelemetry(clock: Clock) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    monitoring = MonitoringSystem(clock=clock, meter=provider.get_meter("test"))

    monitoring.record_counter("orders", 2, {"region": "eu"})
    monitoring.record_counter("orders", 3, {"region": "eu"})
    monitoring.record_gauge("queue", 7)
    monitoring.record_timer("latency", 0.5)
    data = reader.get_metrics_data()
    provider.shutdown()

    assert data is not None
    found = {
        metric.name: metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    orders = point(found["orders"])
    assert orders.value == 5
    assert dict(orders.attributes or {}) == {"region": "eu"}
    assert point(found["queue"]).value == 7
    assert point(found["latency"]).count == 1
    assert found["latency"].unit == "s"


def test_a_rule_fires_after_holding_for_its_duration_and_then_resolves(
    clock: Clock, store: LmdbEventStore
) -> None:
    monitoring = MonitoringSystem(clock=clock, store=store)
    notices: list[AlertNotice] = []
    rule = {
        "metric": "command.latency",
        "stat": "p99",
        "op": ">",
        "value": 0.05,
        "for_s": 10,
    }
    monitoring.set_alert("slow", rule, notices.append)

    monitoring.record_timer("command.latency", 0.2)
    pending = monitoring.get_alerts()[0]
    clock.now += 5
    monitoring.record_timer("command.latency", 0.2)
    still_pending = monitoring.get_alerts()[0]
    clock.now += 5
    monitoring.record_timer("command.latency", 0.3)
    clock.now += 1
    monitoring.record_timer("command.latency", 0.3)
    firing = monitoring.get_alerts()[0]
    monitoring.set_alert("slow", {**rule, "value": 1.0}, notices.append)
    monitoring.get_alerts()
    monitoring.record_timer("command.latency", 0.01)
    monitoring.flush()

    assert pending["state"] == still_pending["state"] == "pending"
    assert firing["state"] == "firing"
    assert firing["count"] == 1
    assert firing["last_fired"] == clock.now - 1
    assert [notice.value for notice in notices] == [0.3]
    assert not notices[0].manual
    events = list(store.read_stream("alerts/slow"))
    assert [event.type for event in events] == ["AlertFired"]
    assert isinstance(events[0].data, AlertFired)
    assert events[0].data.value == 0.3


def test_a_firing_rule_resolves_when_its_condition_stops_holding(
    clock: Clock, store: LmdbEventStore
) -> None:
    monitoring = MonitoringSystem(clock=clock, store=store)
    monitoring.set_alert("deep", {"metric": "queue", "op": ">=", "value": 10})

    monitoring.record_gauge("queue", 12)
    clock.now += 30
    monitoring.record_gauge("queue", 3)
    monitoring.flush()

    alert = monitoring.get_alerts()[0]
    assert alert["state"] == "ok"
    assert alert["last_resolved"] == clock.now
    events = list(store.read_stream("alerts/deep"))
    assert [event.type for event in events] == ["AlertFired", "AlertResolved"]
    resolved = events[1].data
    assert isinstance(resolved, AlertResolved)
    assert resolved.firing_s == 30
    assert resolved.value == 3


def test_a_pending_rule_that_stops_holding_goes_back_to_ok(
    monitoring: MonitoringSystem, clock: Clock
) -> None:
    monitoring.set_alert("low", AlertRule(metric="free", op="<", value=5, for_s=60))

    monitoring.record_gauge("free", 1)
    clock.now += 10
    monitoring.record_gauge("free", 50)

    alert = monitoring.get_alerts()[0]
    assert alert["state"] == "ok"
    assert alert["count"] == 0
    assert alert["condition"]["for_s"] == 60


def test_callable_conditions_are_checked_by_check_alerts_and_the_dashboard(
    monitoring: MonitoringSystem,
) -> None:
    flag = {"on": False}
    fired: list[str] = []
    monitoring.set_alert("flag", lambda _: flag["on"], lambda n: fired.append(n.name))

    monitoring.check_alerts()
    flag["on"] = True
    snapshot = monitoring.update_dashboard()

    assert fired == ["flag"]
    assert snapshot["alerts"][0]["state"] == "firing"
    assert monitoring.last_dashboard is snapshot


def test_a_raising_condition_or_callback_is_logged_and_counted_not_fatal(
    monitoring: MonitoringSystem, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_: MonitoringSystem) -> bool:
        raise ZeroDivisionError("bad condition")

    def noisy(_: AlertNotice) -> None:
        raise OSError("mail server down")

    monitoring.set_alert("broken", broken)
    monitoring.set_alert("noisy", lambda _: True, noisy)

    with caplog.at_level(logging.ERROR):
        alerts = {alert["name"]: alert for alert in monitoring.check_alerts()}

    assert alerts["broken"]["state"] == "ok"
    assert alerts["noisy"]["state"] == "firing"
    errors = {error["type"]: error for error in monitoring.get_errors()}
    assert errors["ZeroDivisionError"]["where"] == "alert broken"
    assert errors["OSError"]["where"] == "alert noisy callback"
    assert "its callback raised" in caplog.text


def test_trigger_alert_fires_by_hand_with_data_and_unknown_names_fail(
    monitoring: MonitoringSystem,
) -> None:
    notices: list[AlertNotice] = []
    monitoring.set_alert("manual", lambda _: False, notices.append)

    monitoring.trigger_alert("manual", {"why": "drill"})
    monitoring.remove_alert("manual")

    assert notices[0].data == {"why": "drill"}
    assert notices[0].manual
    assert monitoring.get_alerts() == []
    with pytest.raises(UnknownAlertError, match="no alert named 'manual'"):
        monitoring.trigger_alert("manual")
    with pytest.raises(UnknownAlertError, match="no alert named 'manual'"):
        monitoring.remove_alert("manual")


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"metric": "m", "op": ">", "value": 1, "stat": "p42"}, "stat 'p42'"),
        ({"metric": "m", "op": "=>", "value": 1}, "op '=>'"),
        ({"metric": "m", "op": ">"}, "value"),
        ({"metric": "m", "op": ">", "value": 1, "color": "red"}, "color"),
        ({"metric": "m", "op": ">", "value": 1, "for_s": -1}, "for_s"),
    ],
)
def test_malformed_rules_are_refused_naming_the_field(
    monitoring: MonitoringSystem, rule: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        monitoring.set_alert("a", rule)


def test_alert_names_must_be_usable_as_a_stream_suffix(
    monitoring: MonitoringSystem,
) -> None:
    with pytest.raises(ValueError, match="alert name"):
        monitoring.set_alert("", lambda _: True)
    with pytest.raises(ValueError, match="alert name"):
        monitoring.set_alert("a/b", lambda _: True)


async def test_an_async_callback_runs_on_the_running_loop(
    monitoring: MonitoringSystem,
) -> None:
    done = asyncio.Event()
    seen: list[str] = []

    async def page(notice: AlertNotice) -> None:
        seen.append(notice.name)
        done.set()

    async def fail(_: AlertNotice) -> None:
        raise ConnectionError("pager down")

    monitoring.set_alert("page", lambda _: True, page)
    monitoring.set_alert("fail", lambda _: True, fail)

    monitoring.trigger_alert("page")
    monitoring.trigger_alert("fail")
    await asyncio.wait_for(done.wait(), timeout=5)
    for _ in range(5):
        await asyncio.sleep(0)

    assert seen == ["page"]
    assert [error["type"] for error in monitoring.get_errors()] == ["ConnectionError"]


def test_an_async_callback_without_a_loop_is_reported(
    monitoring: MonitoringSystem, caplog: pytest.LogCaptureFixture
) -> None:
    async def page(_: AlertNotice) -> None:
        raise AssertionError("never runs")

    monitoring.set_alert("page", lambda _: True, page)

    with caplog.at_level(logging.ERROR):
        monitoring.trigger_alert("page")

    assert "needs a running event loop" in caplog.text


def test_logs_are_kept_bounded_and_filtered(clock: Clock) -> None:
    monitoring = MonitoringSystem(clock=clock, max_logs=3)
    for level, message in [
        ("debug", "cache warm"),
        ("info", "user created"),
        ("warning", "slow disk"),
        ("error", "Disk full"),
    ]:
        clock.now += 1
        monitoring.log(level, message, {"n": 1})
    monitoring.log(logging.CRITICAL, "down")

    assert [entry.message for entry in monitoring.get_logs()] == [
        "slow disk",
        "Disk full",
        "down",
    ]
    assert [e.message for e in monitoring.get_logs({"level": "error"})] == [
        "Disk full",
        "down",
    ]
    assert [e.message for e in monitoring.get_logs({"text": "DISK"})] == [
        "slow disk",
        "Disk full",
    ]
    since = clock.now - 1
    assert [e.level for e in monitoring.get_logs({"since": since, "until": since})] == [
        "warning"
    ]
    assert [e.message for e in monitoring.get_logs({"limit": 1})] == ["down"]
    monitoring.clear_logs()
    assert monitoring.get_logs() == []


def test_bad_log_levels_and_filters_are_refused(monitoring: MonitoringSystem) -> None:
    with pytest.raises(ValueError, match="log level 'loud'"):
        monitoring.log("loud", "x")
    with pytest.raises(ValueError, match="log level 5"):
        monitoring.log(5, "x")
    with pytest.raises(ValueError, match=r"unknown log filter keys \['lvl'\]"):
        monitoring.get_logs({"lvl": "info"})


def test_errors_are_grouped_by_type_and_place(clock: Clock) -> None:
    monitoring = MonitoringSystem(clock=clock, max_error_groups=3)

    def fail(message: str) -> None:
        raise KeyError(message)

    for message in ("a", "b"):
        with pytest.raises(KeyError), monitoring.track_errors():
            fail(message)
    monitoring.record_error(ValueError("no traceback"))
    monitoring.record_error(ValueError("elsewhere"), where="import users")
    monitoring.record_error(TypeError("one too many"), where="x")

    groups = monitoring.get_errors()
    assert groups[0]["type"] == "KeyError"
    assert groups[0]["count"] == 2
    assert groups[0]["last_message"] == "'b'"
    assert "in fail" in groups[0]["where"]
    assert {(g["type"], g["where"]) for g in groups[1:]} == {
        ("ValueError", "unknown"),
        ("ValueError", "import users"),
    }


def test_the_built_in_metric_hooks_name_their_series(
    monitoring: MonitoringSystem,
) -> None:
    monitoring.record_command("create", "users", 0.002)
    monitoring.record_command("create", "users", 0.004, error=KeyError("u1"))
    monitoring.record_append(3, 0.001)
    monitoring.record_workflow_step("signup", "validate", 0.1, outcome="succeeded")
    monitoring.record_projection_lag("records", 12)
    monitoring.record_sync("users", 40, 0.5)

    metrics = monitoring.get_metrics()
    assert metrics["command.latency"]["count"] == 2
    assert metrics["command.count"]["sum"] == 2
    assert metrics["command.errors"]["sum"] == 1
    assert metrics["append.events"]["sum"] == 3
    assert metrics["workflow.steps"]["sum"] == 1
    assert metrics["projection.lag"]["last"] == 12
    assert metrics["sync.events"]["sum"] == 40
    assert monitoring.get_errors()[0]["where"] == "create users"


def test_the_dashboard_exports_as_json_and_as_self_contained_html(
    monitoring: MonitoringSystem, clock: Clock
) -> None:
    for value in (0.1, 0.3, 0.2):
        clock.now += 1
        monitoring.record_timer("latency", value, {"collection": "<users>"})
    monitoring.record_gauge("single", 1)
    monitoring.set_alert("slow", {"metric": "latency", "op": ">", "value": 0.25})
    monitoring.log("error", "<script>alert(1)</script>")
    monitoring.record_error(OSError("disk"), where="save")

    as_json = orjson.loads(monitoring.export_dashboard("json"))
    as_html = monitoring.export_dashboard("html")

    latency = next(m for m in as_json["metrics"] if m["name"] == "latency")
    assert latency["count"] == 3
    assert latency["points"][-1] == [clock.now, 0.2]
    assert as_json["logs"]["by_level"] == {"error": 1}
    assert as_html.startswith("<!DOCTYPE html>")
    assert as_html.count("<svg") == 2
    assert "<polyline" in as_html
    assert "&lt;script&gt;" in as_html
    assert "<script" not in as_html
    assert "http://" not in as_html
    assert "https://" not in as_html
    assert "&lt;users&gt;" in as_html
    with pytest.raises(ValueError, match="'json' or 'html'"):
        monitoring.export_dashboard("pdf")  # type: ignore[arg-type]


def test_rules_are_checked_at_most_once_per_interval_when_recording(
    clock: Clock,
) -> None:
    monitoring = MonitoringSystem(clock=clock, alert_interval_s=1.0)
    monitoring.set_alert("high", {"metric": "load", "op": ">", "value": 10})

    monitoring.record_gauge("load", 1)
    monitoring.record_gauge("load", 20)
    unchecked = monitoring.get_alerts()[0]["state"]
    clock.now += 1
    monitoring.record_gauge("load", 20)

    assert unchecked == "ok"
    assert monitoring.get_alerts()[0]["state"] == "firing"
    with pytest.raises(ValueError, match="alert_interval_s must be >= 0"):
        MonitoringSystem(alert_interval_s=-1)


def test_an_alert_that_cannot_be_recorded_is_reported_not_raised(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "store"
    LmdbEventStore.open(path).close()
    with LmdbEventStore.open(path, readonly=True) as readonly:
        monitoring = MonitoringSystem(clock=clock, store=readonly)
        monitoring.set_alert("deep", {"metric": "queue", "op": ">", "value": 1})

        with caplog.at_level(logging.ERROR):
            monitoring.record_gauge("queue", 5)
        monitoring.flush()

    assert monitoring.get_alerts()[0]["state"] == "firing"
    assert monitoring.get_errors()[0]["type"] == "ReadOnlyStoreError"
    assert monitoring.get_errors()[0]["where"] == "alert deep record"
    assert "recording AlertFired failed" in caplog.text
