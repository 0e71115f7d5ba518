"""The dashboard server over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

import actors
from actors._dashboard import DashboardError, DashboardServer, is_loopback
from eventstore import (
    LmdbEventStore,
    MemoryEventStore,
    NewEvent,
    RecordCreated,
    WorkflowStarted,
    WorkflowStepFailed,
    WorkflowStepStarted,
    record_stream,
    workflow_stream,
)

TIMEOUT_S = 10.0
SHARED = "s3cret"
BLANK = " "
Snapshot = dict[str, Any]


@pytest.fixture
def store() -> Iterator[MemoryEventStore]:
    memory = MemoryEventStore()
    yield memory
    memory.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def server(store: MemoryEventStore) -> AsyncIterator[DashboardServer]:
    dashboard = DashboardServer(store, refresh_s=0.05)
    await dashboard.start()
    yield dashboard
    await dashboard.stop()


def users(count: int) -> list[NewEvent]:
    return [
        NewEvent(
            record_stream("users", str(i)),
            "RecordCreated",
            RecordCreated("users", str(i), {"n": i}),
        )
        for i in range(count)
    ]


def failing_execution(execution_id: str) -> list[NewEvent]:
    stream = workflow_stream(execution_id)
    definition = {"steps": [{"name": "validate"}, {"name": "create"}]}
    return [
        NewEvent(
            stream,
            "WorkflowStarted",
            WorkflowStarted(execution_id, "signup", 1, {}, definition),
        ),
        NewEvent(
            stream,
            "WorkflowStepStarted",
            WorkflowStepStarted(execution_id, "validate", 1, "k"),
        ),
        NewEvent(
            stream,
            "WorkflowStepFailed",
            WorkflowStepFailed(
                execution_id, "validate", 1, "ValueError", "bad", 0.1, will_retry=False
            ),
        ),
    ]


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def until(
    fetch: Callable[[], Awaitable[Snapshot]], predicate: Callable[[Snapshot], bool]
) -> Snapshot:
    async def poll() -> Snapshot:
        while True:
            snapshot = await fetch()
            if predicate(snapshot):
                return snapshot
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(poll(), TIMEOUT_S)


async def test_snapshot_follows_appends_to_the_store(
    store: MemoryEventStore, server: DashboardServer, session: aiohttp.ClientSession
) -> None:
    url = f"{server.url}api/snapshot"

    await store.append_async(users(3))
    await store.append_async(failing_execution("e1"))
    snapshot = await until(lambda: get_json(session, url), lambda s: s["position"] == 6)

    assert snapshot["head_position"] == 6
    assert snapshot["lag"] == 0
    assert sum(snapshot["throughput"]["total"]) == 6
    assert snapshot["throughput"]["type_totals"]["RecordCreated"] == 3
    assert snapshot["workflows"]["by_state"] == {"running": 1}
    assert snapshot["errors"][0]["error"] == "bad"
    assert snapshot["store"] == "MemoryEventStore"
    assert snapshot["metrics"]["enabled"] is False


async def test_websocket_pushes_a_snapshot_then_updates(
    store: MemoryEventStore, server: DashboardServer, session: aiohttp.ClientSession
) -> None:
    async with session.ws_connect(f"{server.url}ws") as ws:
        first = await asyncio.wait_for(ws.receive_json(), TIMEOUT_S)
        await store.append_async(users(2))

        async def next_snapshot() -> Snapshot:
            return dict(await ws.receive_json())

        updated = await until(next_snapshot, lambda s: s["position"] == 2)
        await ws.send_str("refresh")
        asked = await asyncio.wait_for(ws.receive_json(), TIMEOUT_S)

    assert first["position"] == 0
    assert updated["throughput"]["total"][-1] + updated["throughput"]["total"][-2] == 2
    assert asked["position"] == 2


async def test_execution_endpoint_shows_steps_and_404s_for_unknown_ids(
    store: MemoryEventStore, server: DashboardServer, session: aiohttp.ClientSession
) -> None:
    await store.append_async(failing_execution("run/1"))

    execution = await get_json(session, f"{server.url}api/executions/run/1")
    async with session.get(f"{server.url}api/executions/nope") as missing:
        missing_text = await missing.text()

    assert execution["execution_id"] == "run/1"
    assert [(s["step"], s["state"]) for s in execution["steps"]] == [
        ("validate", "failed"),
        ("create", "pending"),
    ]
    assert execution["steps"][0]["error"] == "ValueError: bad"
    assert missing.status == 404
    assert "no execution 'nope'" in missing_text


async def test_page_and_static_files_are_served_with_a_strict_policy(
    server: DashboardServer, session: aiohttp.ClientSession
) -> None:
    async with session.get(server.url) as page:
        html = await page.text()
    async with session.get(f"{server.url}static/app.js") as script:
        js = await script.text()
    async with session.get(f"{server.url}static/app.css") as style:
        css_type = style.content_type
    async with session.get(f"{server.url}static/secret.py") as missing:
        missing_status = missing.status

    assert page.status == 200
    assert '<script src="/static/app.js"' in html
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert script.content_type == "application/javascript"
    assert "new WebSocket" in js
    assert css_type == "text/css"
    assert missing_status == 404


async def test_without_a_token_only_loopback_host_names_are_answered(
    server: DashboardServer, session: aiohttp.ClientSession
) -> None:
    url = f"{server.url}api/snapshot"

    async with session.get(url, headers={"Host": "evil.example"}) as rebound:
        text = await rebound.text()
    async with session.get(url, headers={"Host": "localhost"}) as local:
        local_status = local.status

    assert rebound.status == 403
    assert "loopback only" in text
    assert local_status == 200


async def test_a_cross_origin_websocket_is_refused(
    server: DashboardServer, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await session.ws_connect(
            f"{server.url}ws", headers={"Origin": "http://evil.example"}
        )
    same = await session.ws_connect(f"{server.url}ws", origin=server.url.rstrip("/"))
    await same.close()

    assert refused.value.status == 403


def test_a_non_loopback_bind_without_a_token_is_refused(
    store: MemoryEventStore,
) -> None:
    with pytest.raises(DashboardError, match=r"'0\.0\.0\.0' without a token"):
        DashboardServer(store, host="0.0.0.0")  # noqa: S104 - the refused case


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),  # noqa: S104 - a value, not a bind
        ("192.168.1.4", False),
        ("example.com", False),
    ],
)
def test_loopback_is_recognised(host: str, *, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_bad_options_are_named(store: MemoryEventStore) -> None:
    with pytest.raises(ValueError, match="refresh_s must be > 0, not 0"):
        DashboardServer(store, refresh_s=0)
    with pytest.raises(ValueError, match="token must not be empty"):
        DashboardServer(store, token=BLANK)


async def test_with_a_token_every_request_must_carry_it(
    store: MemoryEventStore,
) -> None:
    # Like a browser, keep cookies set by a server named by its IP address.
    jar = aiohttp.CookieJar(unsafe=True)
    async with (
        aiohttp.ClientSession(cookie_jar=jar) as session,
        DashboardServer(store, token=SHARED, refresh_s=0.05) as server,
    ):
        url = server.url

        async with session.get(f"{url}api/snapshot") as bare:
            bare_status = bare.status
        async with session.get(f"{url}api/snapshot?token=wrong") as wrong:
            wrong_status = wrong.status
        bearer = {"Authorization": f"Bearer {SHARED}"}
        async with session.get(f"{url}api/snapshot", headers=bearer) as with_header:
            header_status = with_header.status
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"{url}ws")
        ws = await session.ws_connect(f"{url}ws?token={SHARED}")
        await ws.close()
        async with session.get(f"{url}static/app.js") as no_cookie:
            no_cookie_status = no_cookie.status
        async with session.get(f"{url}?token={SHARED}") as page:
            cookie = page.cookies
        async with session.get(f"{url}static/app.js") as with_cookie:
            cookie_status = with_cookie.status

    assert bare_status == 401
    assert bare.headers["WWW-Authenticate"] == "Bearer"
    assert wrong_status == 401
    assert header_status == 200
    assert refused.value.status == 401
    assert no_cookie_status == 401
    assert page.status == 200
    (morsel,) = cookie.values()
    assert morsel["httponly"]
    assert morsel["samesite"] == "Strict"
    assert cookie_status == 200


async def test_a_token_server_answers_any_host_name(
    store: MemoryEventStore, session: aiohttp.ClientSession
) -> None:
    async with DashboardServer(store, token=SHARED) as server:
        headers = {"Host": "dash.example", "Authorization": f"Bearer {SHARED}"}
        async with session.get(f"{server.url}api/snapshot", headers=headers) as reply:
            status = reply.status

    assert status == 200


async def test_metrics_provider_series_are_charted_with_projection_lag(
    store: MemoryEventStore, session: aiohttp.ClientSession
) -> None:
    calls = 0

    async def metrics() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {
            "metrics": {"db": {"count": calls, "p50": 0.1, "p95": calls / 10}},
            "projections": {"records": 1, "stats": {"position": 2}, "bad": "x"},
        }

    await store.append_async(users(3))
    async with DashboardServer(store, metrics=metrics, refresh_s=0.01) as server:
        snapshot = await until(
            lambda: get_json(session, f"{server.url}api/snapshot"),
            lambda s: (
                len(s["metrics"]["history"].get("metrics.db", {}).get("p95", [])) >= 3
            ),
        )

    assert snapshot["metrics"]["enabled"] is True
    assert snapshot["metrics"]["error"] is None
    assert snapshot["metrics"]["series"]["metrics.db"]["p50"] == 0.1
    p95 = snapshot["metrics"]["history"]["metrics.db"]["p95"]
    assert p95 == sorted(p95)
    assert snapshot["metrics"]["history"]["metrics.db"]["p99"][0] is None
    assert snapshot["projections"] == [
        {"name": "records", "position": 1, "lag": 2},
        {"name": "stats", "position": 2, "lag": 1},
    ]


async def test_a_failing_metrics_provider_is_logged_and_shown(
    store: MemoryEventStore, caplog: pytest.LogCaptureFixture
) -> None:
    answers: list[Any] = [{"m": {"count": 1, "max": 2}}, ["not", "a", "mapping"]]

    def metrics() -> Any:
        if answers:
            return answers.pop(0)
        raise RuntimeError("monitor is down")

    server = DashboardServer(store, metrics=metrics)
    await server.sample_metrics()
    kept = server.snapshot()["metrics"]
    with caplog.at_level(logging.ERROR, logger="actors._dashboard"):
        await server.sample_metrics()
        not_mapping = server.snapshot()["metrics"]["error"]
        await server.sample_metrics()
    failed = server.snapshot()["metrics"]

    assert kept["series"] == {"m": {"count": 1.0, "max": 2.0}}
    assert not_mapping == "TypeError: the metrics provider returned list, not a mapping"
    assert failed["error"] == "RuntimeError: monitor is down"
    assert failed["series"] == kept["series"]
    assert "metrics provider failed" in caplog.text


async def test_a_series_that_disappears_loses_its_history(
    store: MemoryEventStore,
) -> None:
    answers = [{"a": {"count": 1, "p95": 1}}, {"b": {"count": 1, "p95": 2}}]
    server = DashboardServer(store, metrics=lambda: answers.pop(0))

    await server.sample_metrics()
    await server.sample_metrics()

    assert list(server.snapshot()["metrics"]["history"]) == ["b"]


async def test_a_store_closed_under_the_dashboard_shows_why_it_stopped(
    store: MemoryEventStore,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await store.append_async(users(2))
    async with DashboardServer(store, refresh_s=0.05) as server:
        url = f"{server.url}api/snapshot"
        await until(lambda: get_json(session, url), lambda s: s["position"] == 2)

        with caplog.at_level(logging.ERROR, logger="actors._dashboard"):
            store.close()
            snapshot = await until(
                lambda: get_json(session, url), lambda s: s["follow_error"] is not None
            )

    assert snapshot["follow_error"] == "StoreClosedError: the memory store is closed"
    assert snapshot["position"] == 2
    assert snapshot["head_position"] == 2


async def test_stop_closes_open_websockets(
    store: MemoryEventStore, session: aiohttp.ClientSession
) -> None:
    server = DashboardServer(store, refresh_s=0.05)
    await server.start()
    ws = await session.ws_connect(f"{server.url}ws")
    await asyncio.wait_for(ws.receive_json(), TIMEOUT_S)

    stopping = asyncio.create_task(server.stop())
    closing = await asyncio.wait_for(ws.receive(), TIMEOUT_S)
    while closing.type == aiohttp.WSMsgType.TEXT:  # pushes sent before the stop
        closing = await asyncio.wait_for(ws.receive(), TIMEOUT_S)
    await asyncio.wait_for(stopping, TIMEOUT_S)

    assert closing.type in {aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED}
    assert ws.close_code == 1001
    await ws.close()


async def test_url_and_start_are_guarded(store: MemoryEventStore) -> None:
    server = DashboardServer(store)

    with pytest.raises(DashboardError, match="not started"):
        _ = server.url
    await server.start()
    try:
        with pytest.raises(DashboardError, match="already started"):
            await server.start()
    finally:
        await server.stop()


async def test_a_port_in_use_is_a_clear_error(store: MemoryEventStore) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        server = DashboardServer(store, port=port)

        with pytest.raises(DashboardError, match=f"cannot bind .*:{port}"):
            await server.start()


async def test_ipv6_loopback_urls_are_bracketed(
    store: MemoryEventStore, session: aiohttp.ClientSession
) -> None:
    if not socket.has_ipv6:
        pytest.skip("this machine has no IPv6")
    try:
        server = DashboardServer(store, host="::1")
        await server.start()
    except DashboardError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        snapshot = await get_json(session, f"{server.url}api/snapshot")
    finally:
        await server.stop()

    assert server.url.startswith("http://[::1]:")
    assert snapshot["position"] == 0


async def test_an_lmdb_store_written_meanwhile_is_followed(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    with LmdbEventStore.open(tmp_path / "store", durability="fast") as lmdb_store:
        lmdb_store.append(users(5))
        async with DashboardServer(lmdb_store, refresh_s=0.05) as server:
            url = f"{server.url}api/snapshot"
            await lmdb_store.append_async(failing_execution("x"))
            snapshot = await until(
                lambda: get_json(session, url), lambda s: s["position"] == 8
            )

    assert snapshot["store"] == str(tmp_path / "store")
    assert snapshot["workflows"]["total"] == 1


async def test_a_stopped_dashboard_cannot_start_again(store: MemoryEventStore) -> None:
    server = DashboardServer(store)
    await server.start()
    await server.stop()

    with pytest.raises(DashboardError, match="already started"):
        await server.start()


async def test_without_aiohttp_start_names_the_extra(
    store: MemoryEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, "actors._dashboard_http", raising=False)
    monkeypatch.setitem(sys.modules, "aiohttp", None)
    server = DashboardServer(store)

    with pytest.raises(DashboardError, match=r"pip install 'actorlog\[web\]'"):
        await server.start()


def test_importing_actors_does_not_need_aiohttp() -> None:
    code = "import actors, sys; print('aiohttp' in sys.modules)"

    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=True,
    )

    assert result.stdout.strip() == "False"
    assert {"DashboardError", "DashboardServer"} <= set(actors.__all__)


@pytest.mark.parametrize("execution_id", ["run/1", "a b", "ü?x#y"])
async def test_execution_ids_are_found_when_percent_encoded(
    store: MemoryEventStore,
    server: DashboardServer,
    session: aiohttp.ClientSession,
    execution_id: str,
) -> None:
    await store.append_async(failing_execution(execution_id))
    quoted = urllib.parse.quote(execution_id, safe="")

    url = URL(f"{server.url}api/executions/{quoted}", encoded=True)
    async with session.get(url) as response:
        execution = await response.json()

    assert execution["execution_id"] == execution_id


async def test_a_snapshot_that_fails_is_logged_and_pushes_go_on(
    store: MemoryEventStore,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = False

    def clock() -> float:
        if broken:
            raise RuntimeError("clock stopped")
        return time.time()

    async with DashboardServer(store, refresh_s=0.02, clock=clock) as server:
        ws = await session.ws_connect(f"{server.url}ws")
        await asyncio.wait_for(ws.receive_json(), TIMEOUT_S)
        with caplog.at_level(logging.ERROR, logger="actors._dashboard"):
            broken = True
            await until(
                lambda: asyncio.sleep(0.02, {}),
                lambda _: "could not build a snapshot" in caplog.text,
            )
            broken = False
        pushed = await asyncio.wait_for(ws.receive_json(), TIMEOUT_S)
        await ws.close()

    assert "clock stopped" in caplog.text
    assert pushed["position"] == 0
