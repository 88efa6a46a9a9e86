"""Fixtures for the `--kubernetes` source: the fake API server over TLS, and proxies on it.

Timings are shortened where the tests wait on them (watch timeouts, backoff, coalescing); the
defaults are checked where they are the subject (tests of the reflector's tuning)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from proxy.app.runtime import ProxyServer
from proxy.app.settings import ServeSettings
from proxy.control.sources.kubernetes.auth import Credentials
from proxy.control.sources.kubernetes.client import KubeClient
from proxy.control.sources.kubernetes.config import ClusterAccess, UserAuth
from proxy.control.sources.kubernetes.reflector import Reflector, WatchTuning
from proxy.control.sources.kubernetes.resources import ENDPOINT_SLICES, Resource
from proxy.control.sources.kubernetes.source import KubernetesSource
from proxy.control.translate import TranslateOptions
from proxy.core.values import Address
from tests.integration.cluster import until
from tests.kube_fake.server import FakeApiServer
from tests.kube_fake.tls import Pki, make_pki

TOKEN = "fake-token"
FAST = WatchTuning(
    page_size=500,
    watch_timeout=(30, 30),
    inactivity=5.0,
    backoff_base=0.05,
    backoff_cap=0.5,
    absent_retry=0.3,
)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def fake(pki: Pki) -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer(pki)
    server.tokens[TOKEN] = "system:serviceaccount:ingress:proxy"
    await server.start()
    yield server
    await server.stop()


def token_access(fake: FakeApiServer, pki: Pki, **user: Any) -> ClusterAccess:
    return ClusterAccess(
        server=fake.url,
        ca=pki.ca,
        user=UserAuth(**(user or {"token": TOKEN})),
        origin="test",
    )


@pytest.fixture
def access(fake: FakeApiServer, pki: Pki) -> ClusterAccess:
    return token_access(fake, pki)


StartKubeProxy = Callable[..., Awaitable[tuple[ProxyServer, KubernetesSource]]]


@pytest.fixture
async def kube_proxy(access: ClusterAccess) -> AsyncIterator[StartKubeProxy]:
    """Starts a proxy on the fake cluster; does not wait for it to be ready."""
    started: list[ProxyServer] = []

    async def start(
        cluster: ClusterAccess | None = None,
        tuning: WatchTuning = FAST,
        options: TranslateOptions | None = None,
        https: bool = False,
        **source: Any,
    ) -> tuple[ProxyServer, KubernetesSource]:
        """`https`: with a TLS listener too (bound at start); `source`: KubernetesSource's."""
        server = ProxyServer(
            ServeSettings(
                listen=Address("127.0.0.1", 0),
                metrics_listen=Address("127.0.0.1", 0),
                tls_listen=Address("127.0.0.1", 0) if https else None,
            )
        )
        kube = KubernetesSource(
            cluster or access,
            options or TranslateOptions(),
            server.metrics,
            tuning=tuning,
            coalesce=0.02,
            rng=random.Random(7),
            **source,
        )
        await server.start(kube)
        started.append(server)
        return server, kube

    yield start
    for server in started:
        await server.stop(grace=0.2)


def restarts(server: ProxyServer, resource: str, reason: str) -> int:
    value = server.metrics.registry.get_sample_value(
        "sticky_proxy_kubernetes_watch_restarts_total", {"resource": resource, "reason": reason}
    )
    assert value is not None, "every resource and reason is exported from startup"
    return int(value)


def tmp_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def slice_object(name: str, *addresses: str, service: str = "web", **extra: Any) -> dict[str, Any]:
    """An EndpointSlice of `service` with one ready endpoint per address, port `http` 8080."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        **extra,
    }


@dataclass
class Reflecting:
    """A reflector running against the fake, with what it reported."""

    reflector: Reflector
    task: asyncio.Task[None]
    changes: int = 0
    restarts: Counter[str] = field(default_factory=Counter)

    def names(self) -> set[str]:
        return {name for _, name in self.reflector.objects}


StartReflector = Callable[..., Awaitable[Reflecting]]


@pytest.fixture
async def reflect(access: ClusterAccess) -> AsyncIterator[StartReflector]:
    """Runs a reflector on the fake and waits for its first list (unless told not to)."""
    running: list[Reflecting] = []
    clients: list[KubeClient] = []

    async def start(
        resource: Resource = ENDPOINT_SLICES,
        tuning: WatchTuning = FAST,
        cluster: ClusterAccess | None = None,
        synced: bool = True,
        named: Callable[[tuple[str, str]], bool] | None = None,
        **credentials: Any,
    ) -> Reflecting:
        chosen = cluster or access
        client = KubeClient(chosen, Credentials(chosen, **credentials))
        clients.append(client)
        restarts: Counter[str] = Counter()
        reflector = Reflector(
            client,
            resource,
            None,
            count_restart=lambda _, why: restarts.update([why]),
            tuning=tuning,
            rng=random.Random(3),
            named=named,
        )
        task = asyncio.ensure_future(reflector.run())
        state = Reflecting(reflector, task, restarts=restarts)

        def counted() -> None:
            state.changes += 1

        reflector.on_change(counted)
        running.append(state)
        if synced:
            await until(lambda: reflector.synced.is_set() or task.done(), "the first list")
            if task.done():
                task.result()
        return state

    yield start
    for state in running:
        state.task.cancel()
        await asyncio.wait([state.task])
    for client in clients:
        await client.close()
