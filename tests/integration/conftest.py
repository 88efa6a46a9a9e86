"""Fixtures: upstreams and proxies started on 127.0.0.1 port 0, stopped after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from proxy.app.runtime import ProxyServer
from proxy.app.settings import ServeSettings
from proxy.control.sources.manifests import ManifestSource
from proxy.control.sources.static import static_snapshot
from proxy.control.translate import TranslateOptions
from proxy.core.access import RealIp
from proxy.core.model import Affinity, Endpoint, UpstreamPolicy
from proxy.core.values import Address
from proxy.dataplane.context import LIMIT_STATUS
from tests.integration.cluster import Pods, until
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


@pytest.fixture
async def pods() -> AsyncIterator[Pods]:
    started = Pods()
    yield started
    await started.stop()


@pytest.fixture
async def pod(pods: Pods) -> Upstream:
    """One pod, for tests that need no more."""
    (one,) = await pods.start(1)
    return one


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    """The manifest file a test writes its cluster into."""
    return tmp_path / "cluster.yaml"


StartManifestProxy = Callable[..., Awaitable[ProxyServer]]


@pytest.fixture
async def manifest_proxy() -> AsyncIterator[StartManifestProxy]:
    """Starts a proxy on `--manifests paths`, once it serves their first snapshot (with a TLS
    listener too, for `tls=True`).

    Polls every 50 ms instead of 250 so the many reloads of these tests stay quick; the reload
    latency test measures the real interval.
    """
    started: list[ProxyServer] = []

    async def start(
        *paths: Path,
        poll_interval: float = 0.05,
        tls: bool = False,
        real_ip: RealIp | None = None,
        limit_req_status: int = LIMIT_STATUS,
        limit_conn_status: int = LIMIT_STATUS,
        **options: object,
    ) -> ProxyServer:
        server = ProxyServer(
            ServeSettings(
                listen=Address("127.0.0.1", 0),
                metrics_listen=Address("127.0.0.1", 0),
                tls_listen=Address("127.0.0.1", 0) if tls else None,
                real_ip=real_ip,
                limit_req_status=limit_req_status,
                limit_conn_status=limit_conn_status,
            )
        )
        source = ManifestSource(paths, TranslateOptions(**options), poll_interval)  # type: ignore[arg-type]
        await server.start(source)
        started.append(server)
        feeding = server.feeding
        assert feeding is not None
        await until(lambda: server.ready() or feeding.done(), "the first snapshot")
        if feeding.done():
            feeding.result()  # the source gave up: raise its SourceError here
        return server

    yield start
    for server in started:
        await server.stop(grace=0.5)
