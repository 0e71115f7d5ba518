"""The dashboard's HTTP and WebSocket side, on aiohttp (the ``web`` extra).

Kept apart from ``_dashboard`` so that importing ``actors`` never needs
aiohttp: this module is imported when a dashboard starts.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.resources
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import WSCloseCode, web
from yarl import URL

from actors._dashboard_fold import to_json

if TYPE_CHECKING:
    from actors._dashboard import DashboardServer

__all__ = ["DashboardHttp"]

logger = logging.getLogger(__name__)

_STATIC = {
    "app.js": "application/javascript",
    "app.css": "text/css",
    "index.html": "text/html",
}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_SEND_TIMEOUT_S = 5.0
_CLOSE_TIMEOUT_S = 2.0  # how long a stop waits for each page to answer its close

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class DashboardHttp:
    """The routes, the access rule and the open WebSockets of one dashboard."""

    def __init__(
        self, server: DashboardServer, *, host: str, token: str | None
    ) -> None:
        self._server = server
        self._host = host
        self._token = token
        self._port = 0
        self._clients: set[web.WebSocketResponse] = set()
        self._runner: web.AppRunner | None = None

    @property
    def has_clients(self) -> bool:
        """True while any page is connected."""
        return bool(self._clients)

    async def start(self, sock: socket.socket) -> None:
        """Serve on the bound, listening ``sock``."""
        self._port = sock.getsockname()[1]
        guard = self._guard

        @web.middleware
        async def middleware(
            request: web.Request, handler: Handler
        ) -> web.StreamResponse:
            return await guard(request, handler)

        app = web.Application(middlewares=[middleware])
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/ws", self._websocket)
        app.router.add_get("/api/snapshot", self._api_snapshot)
        app.router.add_get("/api/executions/{execution_id:.+}", self._api_execution)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        """Close every WebSocket, then the server."""
        for ws in list(self._clients):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server stopping")
        self._clients.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def broadcast(self, body: str) -> None:
        """Send ``body`` to every page; drop a page that cannot take it."""
        for ws in list(self._clients):
            try:
                await asyncio.wait_for(ws.send_str(body), _SEND_TIMEOUT_S)
            except (ConnectionError, TimeoutError, RuntimeError) as exc:
                logger.info("dropping a dashboard client: %s", exc)
                self._clients.discard(ws)
                await ws.close()

    async def _guard(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        if self._token is None:
            if (request.url.host or "") not in _LOOPBACK_NAMES | {self._host}:
                raise web.HTTPForbidden(text="this dashboard answers to loopback only")
        elif not self._authorized(request):
            raise web.HTTPUnauthorized(
                text="this dashboard needs its token: open /?token=...",
                headers={"WWW-Authenticate": "Bearer"},
            )
        origin = request.headers.get("Origin")
        if origin is not None and request.path == "/ws":
            seen = URL(origin)
            if (seen.host, seen.port) != (request.url.host, request.url.port):
                raise web.HTTPForbidden(text=f"cross-origin WebSocket from {origin}")

        response = await handler(request)
        if not isinstance(response, web.WebSocketResponse):
            response.headers.update(_HEADERS)
        if self._token is not None and request.query.get("token"):
            response.set_cookie(
                self._cookie_name,
                self._token,
                httponly=True,
                samesite="Strict",
                path="/",
            )
        return response

    @property
    def _cookie_name(self) -> str:
        # Cookies ignore ports: name it by port so dashboards side by side
        # keep their own tokens.
        return f"actorlog_dashboard_{self._port}"

    def _authorized(self, request: web.Request) -> bool:
        expected = (self._token or "").encode()
        header = request.headers.get("Authorization", "")
        offered = [
            header.removeprefix("Bearer ") if header.startswith("Bearer ") else "",
            request.query.get("token", ""),
            request.cookies.get(self._cookie_name, ""),
        ]
        return any(
            hmac.compare_digest(candidate.encode(), expected)
            for candidate in offered
            if candidate
        )

    async def _index(self, request: web.Request) -> web.StreamResponse:
        del request
        return _static_response("index.html")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in _STATIC or name == "index.html":
            raise web.HTTPNotFound(text=f"no static file {name!r}")
        return _static_response(name)

    async def _api_snapshot(self, request: web.Request) -> web.StreamResponse:
        del request
        body = to_json(self._server.snapshot())
        return web.Response(body=body, content_type="application/json")

    async def _api_execution(self, request: web.Request) -> web.StreamResponse:
        execution_id = request.match_info["execution_id"]
        execution = await self._server.execution(execution_id)
        if execution is None:
            raise web.HTTPNotFound(text=f"no execution {execution_id!r}")
        return web.Response(body=to_json(execution), content_type="application/json")

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=30.0, timeout=_CLOSE_TIMEOUT_S)
        await ws.prepare(request)
        self._clients.add(ws)
        try:
            await ws.send_str(to_json(self._server.snapshot()).decode())
            async for _message in ws:
                # The page only listens; anything it sends asks for a push now.
                await ws.send_str(to_json(self._server.snapshot()).decode())
        finally:
            self._clients.discard(ws)
        return ws


def _static_response(name: str) -> web.Response:
    body = importlib.resources.files("actors").joinpath("_static", name).read_bytes()
    return web.Response(body=body, content_type=_STATIC[name], charset="utf-8")
