"""The proxy on `--kubernetes`, against the fake API server, with real pods on loopback: it is
ready only once everything is listed, routes what the cluster says, follows every change of the
endpoint set through expired versions and cut connections, and writes Ingress status."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import aiohttp
import pytest

from proxy.app.runtime import ProxyServer
from proxy.control.sources.kubernetes.resources import ALL_RESOURCES, RESTART_REASONS
from proxy.control.translate import TranslateOptions
from tests.certs import self_signed
from tests.integration.cluster import (
    Pods,
    endpoint_slice,
    get,
    ingress,
    reloads,
    rule,
    service,
    until,
    web_app,
)
from tests.integration.harness import Upstream
from tests.integration.kubernetes.conftest import StartKubeProxy, restarts, token_access
from tests.integration.prometheus import prometheus, prometheus_binary
from tests.integration.test_manifests_scaling import new_sessions, replay
from tests.integration.test_monitoring import KUBERNETES_ONLY, dashboard_queries
from tests.kube_fake.server import FakeApiServer
from tests.kube_fake.tls import Pki

# (secrets: without a TLS listener, the Opaque ones, for auth-secret)
RESOURCES = (
    "ingresses",
    "ingressclasses",
    "services",
    "endpointslices",
    "configmaps",
    "secrets",
)
# Watched too, and served by the fake unless it is told that their CRDs are not installed.
GATEWAY_API = ("gatewayclasses", "gateways", "httproutes", "referencegrants", "namespaces")
WATCHED = (*RESOURCES, *GATEWAY_API)


def serving(server: ProxyServer) -> set[str]:
    """The pod addresses the proxy routes to now."""
    snapshot = server.publisher.current
    if snapshot is None:
        return set()
    return {endpoint.address for cluster in snapshot.clusters for endpoint in cluster.endpoints}


async def routes_to(server: ProxyServer, pods: Iterable[Upstream], what: str) -> float:
    """Seconds until the proxy routes to exactly `pods`."""
    hosts = {pod.host for pod in pods}
    return await until(lambda: serving(server) == hosts, what)


async def readyz(server: ProxyServer) -> int:
    assert server.metrics_address is not None
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{server.metrics_address}/readyz") as response,
    ):
        return response.status


def apply(fake: FakeApiServer, objects: Iterable[dict[str, object]]) -> None:
    for obj in objects:
        fake.apply(obj)


async def started(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Sequence[Upstream], **annotations: str
) -> ProxyServer:
    apply(fake, web_app(pods, **annotations))
    server, _ = await kube_proxy()
    await routes_to(server, pods, "the first routes")
    return server


async def test_ready_only_when_everything_is_listed_and_a_403_keeps_it_unready(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods, caplog: pytest.LogCaptureFixture
) -> None:
    apply(fake, web_app(await pods.start(1)))
    fake.forbid("endpointslices", "list")
    with caplog.at_level(logging.INFO, "sticky_proxy.kubernetes"):
        server, _ = await kube_proxy()
        await until(lambda: len(fake.list_requests("endpointslices")) >= 3, "retries")
        assert all(fake.list_requests(plural) for plural in RESOURCES)
        assert await readyz(server) == 503
        early = asyncio.ensure_future(get(server))  # waits in the listening queue, no 503
        await asyncio.sleep(0.1)
        assert not early.done()
        fake.allow("endpointslices", "list")
        await until(server.ready, "ready once allowed")
    assert await readyz(server) == 200
    assert (await early).status == 200
    assert (await get(server)).status == 200
    refused = [r.getMessage() for r in caplog.records if "403" in r.getMessage()]
    assert len(refused) == 1
    assert refused[0].startswith("endpointslices.discovery.k8s.io: list refused (403 Forbidden)")
    assert restarts(server, "endpointslices", "forbidden") >= 2


async def test_every_restart_reason_is_exported_from_startup(
    fake: FakeApiServer, kube_proxy: StartKubeProxy
) -> None:
    server, _ = await kube_proxy()
    await until(server.ready, "ready on an empty cluster")
    for resource in (*WATCHED, "endpoints", "secrets", "secrets-opaque"):
        for reason in (
            "closed",
            "expired",
            "dropped",
            "stalled",
            "throttled",
            "unauthorized",
            "forbidden",
            "error",
        ):
            assert restarts(server, resource, reason) == 0


async def test_sessions_follow_pod_deletion_and_a_new_pod_joining(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods
) -> None:
    """The seed's experiment: delete a pod, its sessions move; a new pod joins."""
    first = await pods.start(3)
    server = await started(fake, kube_proxy, first, affinity="cookie")
    sessions = await new_sessions(server, 60)
    gone, *kept = first
    fake.apply(endpoint_slice(kept))
    took = await routes_to(server, kept, "the pod deletion")
    assert took < 1.0
    after = await replay(server, sessions)
    for (_, pod), answer in zip(sessions, after, strict=True):
        assert answer.pod in {p.name for p in kept}
        if pod != gone.name:
            assert answer.pod == pod, "sessions of the pods that stay do not move"
    (new,) = await pods.start(1)
    fake.apply(endpoint_slice([*kept, new]))
    took = await routes_to(server, [*kept, new], "the new pod")
    assert took < 1.0
    moved = [
        (before.pod, answer.pod)
        for before, answer in zip(after, await replay(server, sessions), strict=True)
        if before.pod != answer.pod
    ]
    assert moved and all(to == new.name for _, to in moved), "only onto the new pod"


async def test_a_410_mid_stream_does_not_lose_a_deletion(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods
) -> None:
    a, b = await pods.start(2)
    apply(fake, web_app([a]))
    other = endpoint_slice([b], name="web-slice-2")
    fake.apply(other)
    server, _ = await kube_proxy()
    await routes_to(server, [a, b], "both slices")
    await until(lambda: fake.open_watches("endpointslices") == 1, "the watch")
    fake.hold_watches("endpointslices")
    fake.delete(other)  # never seen as an event by the proxy
    fake.expire_watches("endpointslices")
    await routes_to(server, [a], "the relist, without the deleted slice")
    assert restarts(server, "endpointslices", "expired") == 1
    assert (await get(server)).pod == a.name


async def test_killed_watches_miss_no_deletion(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods
) -> None:
    first = await pods.start(3)
    server = await started(fake, kube_proxy, first)
    await until(lambda: fake.open_watches() == len(WATCHED), "every watch")
    for plural in WATCHED:
        fake.end_watches(plural, "drop")
    fake.apply(endpoint_slice(first[:1]))  # while every connection is down
    await routes_to(server, first[:1], "the change made while disconnected")
    await until(lambda: fake.open_watches() == len(WATCHED), "every watch again")
    assert restarts(server, "endpointslices", "dropped") == 1


async def test_legacy_endpoints(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods
) -> None:
    ready, not_ready = await pods.start(2)
    endpoints = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "web", "namespace": "default"},
        "subsets": [
            {
                "addresses": [{"ip": ready.host, "targetRef": {"kind": "Pod", "name": ready.name}}],
                "notReadyAddresses": [{"ip": not_ready.host}],
                "ports": [{"name": "http", "port": ready.port, "protocol": "TCP"}],
            }
        ],
    }
    apply(fake, [ingress("web", rule("app.test")), service(), endpoints])
    fake.apply(endpoint_slice([not_ready]))  # ignored in this mode
    server, _ = await kube_proxy(options=TranslateOptions(endpoints_api="endpoints"))
    await routes_to(server, [ready], "the Endpoints' ready address")
    assert fake.list_requests("endpoints") and not fake.list_requests("endpointslices")
    assert (await get(server)).pod == ready.name
    fake.apply({**endpoints, "subsets": None})
    await routes_to(server, [], "no addresses")


async def test_bursts_are_coalesced_and_bookkeeping_changes_publish_nothing(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods
) -> None:
    first = await pods.start(4)
    server = await started(fake, kube_proxy, first)
    published = reloads(server, "success")
    for step in range(100):  # a rollout: the slice changes a hundred times in a moment
        fake.apply(endpoint_slice(first[: 1 + step % 4]))
    await routes_to(server, first[:4], "the last state of the burst")
    await asyncio.sleep(0.1)
    rebuilt = reloads(server, "success") - published
    assert 1 <= rebuilt <= 10, rebuilt
    settled = reloads(server, "success")
    noisy = endpoint_slice(first)
    noisy["metadata"]["annotations"] = {"endpoints.kubernetes.io/last-change-trigger-time": "t"}
    fake.apply(noisy)
    fake.apply(service())  # the same Service again: a new resourceVersion, nothing else
    await asyncio.sleep(0.2)
    assert reloads(server, "success") == settled


async def test_objects_arriving_in_any_order(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods
) -> None:
    server, _ = await kube_proxy()
    await until(server.ready, "ready on an empty cluster")
    (pod,) = await pods.start(1)
    slice_, svc, ing = endpoint_slice([pod]), service(), ingress("web", rule("app.test"))
    fake.apply(slice_)  # endpoints before their Service, the Service before its Ingress
    fake.apply(svc)
    await asyncio.sleep(0.1)
    assert (await get(server)).status == 404
    fake.apply(ing)
    await routes_to(server, [pod], "the Ingress")
    assert (await get(server)).pod == pod.name
    fake.delete(svc)  # the Service goes before its slices
    await routes_to(server, [], "no Service, no endpoints")


async def test_publish_service_writes_ingress_status_only_where_it_differs(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods
) -> None:
    (pod,) = await pods.start(1)
    apply(fake, web_app([pod]))
    fake.apply(ingress("theirs", rule("other.test"), ingress_class="nginx"))
    fake.apply(ingress("same", rule("same.test")))
    front = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "sticky-proxy", "namespace": "ingress"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.50"},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}},
    }
    fake.apply(front)
    done = fake.objects["ingresses"]["default", "same"]
    done["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}
    fake.apply(done)  # already right: left alone
    server, _ = await kube_proxy(publish_service=("ingress", "sticky-proxy"))
    await until(lambda: len(fake.status_patches) == 1, "the status write")
    lb = {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}
    assert fake.status_patches == [("default", "web", {"status": lb})]
    assert fake.objects["ingresses"]["default", "web"]["status"] == lb
    await asyncio.sleep(0.2)
    assert len(fake.status_patches) == 1, "nothing more once it is right"
    fake.apply({**front, "status": {"loadBalancer": {"ingress": [{"hostname": "lb.example"}]}}})
    await until(lambda: len(fake.status_patches) == 3, "both rewritten for the new address")
    assert {(ns, name) for ns, name, _ in fake.status_patches[1:]} == {
        ("default", "web"),
        ("default", "same"),
    }
    assert server.ready()


async def test_a_publish_service_outside_the_watched_namespace(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods
) -> None:
    (pod,) = await pods.start(1)
    apply(fake, web_app([pod]))
    fake.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "front", "namespace": "ingress"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.9"},
        }
    )
    await kube_proxy(namespace="default", publish_service=("ingress", "front"))
    await until(lambda: len(fake.status_patches) == 1, "the status write")
    assert {r.path for r in fake.requests if r.plural == "services"} == {
        "/api/v1/namespaces/default/services",
        "/api/v1/namespaces/ingress/services",
    }
    assert fake.status_patches[0][2] == {
        "status": {"loadBalancer": {"ingress": [{"ip": "10.96.0.9"}]}}
    }


async def test_a_token_rotated_under_running_watches(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods, pki: Pki, tmp_path: Path
) -> None:
    first = await pods.start(2)
    token_file = tmp_path / "token"
    token_file.write_text("old")
    fake.tokens = {"old": "proxy"}
    apply(fake, web_app(first))
    server, _ = await kube_proxy(token_access(fake, pki, token_file=token_file))
    await routes_to(server, first, "the first routes")
    fake.tokens = {"new": "proxy"}  # the old token is refused from now on...
    token_file.write_text("new")
    for plural in RESOURCES:  # ... which running watches do not notice until they reconnect
        fake.end_watches(plural, "drop")
    fake.apply(endpoint_slice(first[1:]))
    await routes_to(server, first[1:], "the change, seen with the new token")
    assert [r.user for r in fake.requests if r.user is None]  # the 401s that led to a reread
    assert restarts(server, "endpointslices", "unauthorized") == 0, "renewed within the request"


def tls_secret(
    chain: bytes, key: bytes, name: str = "web-tls", kind: str = "kubernetes.io/tls"
) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"},
        "type": kind,
        "data": {
            "tls.crt": base64.b64encode(chain).decode(),
            "tls.key": base64.b64encode(key).decode(),
        },
    }


async def test_tls_secrets_are_watched_with_a_tls_listener_and_renewals_apply(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods
) -> None:
    """kubernetes.io/tls and Opaque Secrets, each asked for by type: no other type is read (a
    service account token, a docker config); an Opaque one with tls.crt and tls.key serves
    spec.tls as well, as in ingress-nginx."""
    world = web_app(await pods.start(1))
    world[0]["spec"]["tls"] = [  # type: ignore[index]
        {"hosts": ["app.test"], "secretName": "web-tls"},
        {"hosts": ["opaque.test"], "secretName": "opaque-tls"},
        {"hosts": ["token.test"], "secretName": "token"},
    ]
    first, opaque = self_signed("app.test"), self_signed("opaque.test")
    token = tls_secret(*self_signed("token.test"), "token", "kubernetes.io/service-account-token")
    apply(fake, [*world, tls_secret(*first), tls_secret(*opaque, "opaque-tls", "Opaque"), token])
    server, _ = await kube_proxy(tls=True)

    def chains() -> list[bytes]:
        snapshot = server.publisher.current
        return [c.chain for c in snapshot.certificates] if snapshot is not None else []

    await until(lambda: chains() == [opaque[0], first[0]], "the certificates of the Secrets")
    renewed = self_signed("app.test")
    fake.apply(tls_secret(*renewed))
    await until(lambda: chains() == [opaque[0], renewed[0]], "the renewed certificate")
    asked = fake.list_requests("secrets") + fake.watch_requests("secrets")
    by_type = {r.query.get("fieldSelector") for r in asked}
    assert by_type == {"type=kubernetes.io/tls", "type=Opaque"}


async def test_without_a_tls_listener_only_opaque_secrets_are_read(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods
) -> None:
    """For auth-secret (docs/behaviour.md, "Startup"); no TLS Secret is asked for."""
    server = await started(fake, kube_proxy, await pods.start(1))
    await until(server.ready, "ready")
    asked = fake.list_requests("secrets") + fake.watch_requests("secrets")
    assert {r.query.get("fieldSelector") for r in asked} == {"type=Opaque"}


@pytest.mark.skipif(prometheus_binary() is None, reason="Prometheus is not installed here")
async def test_prometheus_sees_a_forbidden_watch_restarting_and_the_proxy_not_ready(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods, tmp_path: Path
) -> None:
    """The dashboard's watch-restart panel and the not-ready alert, on the real Prometheus: a
    list RBAC refuses restarts its watch in a loop, and the proxy stays unready until allowed."""
    apply(fake, web_app(await pods.start(1)))
    fake.forbid("endpointslices", "list")
    server, _ = await kube_proxy()
    assert server.metrics_address is not None
    (panel,) = [expr for title, expr in dashboard_queries() if title in KUBERNETES_ONLY]
    async with prometheus([str(server.metrics_address)], tmp_path) as prom:
        await prom.scraped()
        seen = restarts(server, "endpointslices", "forbidden")
        # a retry between two scrapes (the backoff spaces them up to 0.5 s apart)
        await until(lambda: restarts(server, "endpointslices", "forbidden") > seen, "a retry")
        await prom.scraped()
        per_minute = {
            (s.labels["resource"], s.labels["reason"]): s.value for s in await prom.query(panel)
        }
        resources = {resource.series for resource in ALL_RESOURCES}
        assert len(per_minute) == len(RESTART_REASONS) * len(resources)  # every series, from 0
        assert per_minute["endpointslices", "forbidden"] > 0
        assert per_minute["ingresses", "forbidden"] == 0
        not_ready = "min by (instance) (sticky_proxy_ready) == 0"  # the alert's expression
        assert [s.labels["instance"] for s in await prom.query(not_ready)] == [
            str(server.metrics_address)
        ]
        fake.allow("endpointslices", "list")
        await until(server.ready, "ready once allowed")
        await prom.scraped()
        assert await prom.query(not_ready) == []
