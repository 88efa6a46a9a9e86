"""The metrics/admin listener (aiohttp): /metrics, /healthz, /readyz, / (status page), /status."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proxy.core.routing import Snapshot
from proxy.observability.metrics import Metrics
from proxy.observability.status import status
from proxy.observability.status_page import PAGE


def admin_app(
    metrics: Metrics, ready: Callable[[], bool], snapshot: Callable[[], Snapshot | None]
) -> web.Application:
    # A scrape syncs here, on the event loop (the data path's counters are not for other
    # threads), and renders in a thread: a table of 1,000 endpoints takes over 100 ms to render,
    # which on the loop stalled every request in flight; in a thread the loop keeps its turns.
    async def metrics_page(request: web.Request) -> web.Response:
        metrics.sync()
        body = await asyncio.to_thread(generate_latest, metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    async def status_page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def status_json(request: web.Request) -> web.Response:
        metrics.sync()
        totals = await asyncio.to_thread(metrics.endpoint_totals)
        return web.json_response(status(snapshot(), totals))

    app = web.Application()
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/", status_page)
    app.router.add_get("/status", status_json)
    return app
