"""Fixtures: upstreams and proxies started on 127.0.0.1 port 0, stopped after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from proxy.core.model import Affinity, Endpoint, UpstreamPolicy
from proxy.runtime import ProxyServer
from proxy.settings import Address, ServeSettings
from proxy.sources.static import static_snapshot
from tests.integration.harness import Upstream, start_upstream

StartUpstreams = Callable[[int], Awaitable[list[Upstream]]]


@pytest.fixture
async def upstreams() -> AsyncIterator[StartUpstreams]:
    started: list[Upstream] = []

    async def start(count: int) -> list[Upstream]:
        new = [await start_upstream(f"u{len(started) + i}") for i in range(count)]
        started.extend(new)
        return new

    yield start
    for upstream in started:
        await upstream.stop()


StartProxy = Callable[..., Awaitable[ProxyServer]]


@pytest.fixture
async def proxy() -> AsyncIterator[StartProxy]:
    started: list[ProxyServer] = []

    async def start(
        endpoints: list[Endpoint],
        affinity: Affinity | None = None,
        upstream: UpstreamPolicy | None = None,
        **settings: object,
    ) -> ProxyServer:
        serve = ServeSettings(
            listen=Address("127.0.0.1", 0),
            metrics_listen=Address("127.0.0.1", 0),
            **settings,  # type: ignore[arg-type]
        )
        snapshot = static_snapshot(endpoints, affinity, upstream or UpstreamPolicy())
        server = ProxyServer(serve, snapshot)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop(grace=0.5)
