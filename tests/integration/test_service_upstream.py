"""service-upstream through a real proxy: ingress-nginx's e2e cases
(test/e2e/annotations/serviceupstream.go), each named after the Go test it mirrors. The
"cluster IP" is one more loopback address with an upstream of its own, on the Service port, so
where each request went is plain (docs/behaviour.md, "service-upstream")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.app.runtime import ProxyServer
from tests.integration.cluster import (
    NAMESPACE,
    Obj,
    Pods,
    endpoint_slice,
    get,
    ingress,
    path,
    rule,
    write_manifest,
)
from tests.integration.conftest import StartManifestProxy
from tests.integration.harness import Upstream, start_upstream

CLUSTER_IP = "127.0.0.50"


@pytest.fixture
async def cluster_ip(pods: Pods) -> AsyncIterator[Upstream]:
    """What kube-proxy would answer on the Service's cluster IP: here, one more upstream on the
    pods' port (which is then also the Service port)."""
    await pods.start(2)
    upstream = await start_upstream("cluster-ip", pods.port, host=CLUSTER_IP)
    yield upstream
    await upstream.stop()


def service_with_ip(port: int, cluster_ip: str = CLUSTER_IP) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {
            "clusterIP": cluster_ip,
            "ports": [{"name": "http", "port": port, "targetPort": "http"}],
        },
    }


async def serve(
    tmp_path: Path, manifest_proxy: StartManifestProxy, pods: Pods, *objects: Obj
) -> ProxyServer:
    manifest = tmp_path / "cluster.yaml"
    write_manifest(manifest, [*objects, endpoint_slice(pods.started)])
    return await manifest_proxy(manifest)


async def answered_by(server: ProxyServer, count: int = 20) -> set[str | None]:
    return {(await get(server)).pod for _ in range(count)}


@pytest.mark.parametrize("port", ["number", "name"])
async def test_should_use_the_service_cluster_ip_and_port(
    port: str,
    cluster_ip: Upstream,
    pods: Pods,
    tmp_path: Path,
    manifest_proxy: StartManifestProxy,
) -> None:
    """A numeric Ingress port is dialled as written; a named one is the Service port's number."""
    port_ref: int | str = pods.port if port == "number" else "http"
    objects = (
        ingress("web", rule("app.test", path(port=port_ref)), service_upstream="true"),
        service_with_ip(pods.port),
    )
    server = await serve(tmp_path, manifest_proxy, pods, *objects)
    assert await answered_by(server) == {"cluster-ip"}


async def test_should_not_use_the_service_cluster_ip_and_port_when_disabled_in_the_annotations(
    cluster_ip: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    objects = (
        ingress("web", rule("app.test", path(port=pods.port)), service_upstream="false"),
        service_with_ip(pods.port),
    )
    server = await serve(tmp_path, manifest_proxy, pods, *objects)
    assert await answered_by(server, 40) == {"pod-2", "pod-3"}
    assert cluster_ip.requests == 0


async def test_a_headless_service_falls_back_to_its_endpoints(
    cluster_ip: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    objects = (
        ingress("web", rule("app.test", path(port=pods.port)), service_upstream="true"),
        service_with_ip(pods.port, cluster_ip="None"),
    )
    server = await serve(tmp_path, manifest_proxy, pods, *objects)
    assert await answered_by(server, 40) == {"pod-2", "pod-3"}
    assert cluster_ip.requests == 0


async def test_with_cookie_affinity_every_session_gets_the_one_cluster_ip_endpoint(
    cluster_ip: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """ingress-nginx still sets the cookie, but it can only name the cluster IP: which pod
    answers is kube-proxy's choice, so sessions stick to nothing."""
    routed = rule("app.test", path(port=pods.port))
    objects = (
        ingress("web", routed, service_upstream="true", affinity="cookie"),
        service_with_ip(pods.port),
    )
    server = await serve(tmp_path, manifest_proxy, pods, *objects)
    first = await get(server)
    assert first.pod == "cluster-ip"
    cookie = f"INGRESSCOOKIE={first.value('INGRESSCOOKIE')}"
    again = [await get(server, cookie=cookie) for _ in range(10)]
    assert {(a.pod, a.set_cookies) for a in again} == {("cluster-ip", ())}
