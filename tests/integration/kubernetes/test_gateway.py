"""The Gateway API through `--kubernetes`, against the fake API server with real pods: HTTPRoutes
watched and served, a cluster without the Gateway API CRDs (or without RBAC for them) served
its Ingresses all the same, and the status the API server ends up holding, as the conformance
suite reads it."""

from __future__ import annotations

import asyncio
import copy
import logging
from dataclasses import replace
from typing import Any

import pytest

from proxy.app.runtime import ProxyServer
from proxy.control.translate.options import DEFAULT_GATEWAY_CONTROLLER
from tests.integration.cluster import (
    Answer,
    Pods,
    endpoint_slice,
    get,
    reloads,
    service,
    until,
    web_app,
)
from tests.integration.kubernetes.conftest import FAST, StartKubeProxy, restarts
from tests.integration.kubernetes.test_source import apply, readyz
from tests.kube_fake.server import GATEWAY_GROUP, FakeApiServer

Obj = dict[str, Any]
CONTROLLER = DEFAULT_GATEWAY_CONTROLLER
OTHER = "example.com/other-controller"
CRDS = ("gatewayclasses", "gateways", "httproutes", "referencegrants")
REASONS = ("closed", "expired", "dropped", "stalled", "throttled", "unauthorized", "forbidden",
           "error")  # fmt: skip
HTTP_ROUTE_KIND = {"group": GATEWAY_GROUP, "kind": "HTTPRoute"}
LONG_AGO = "2020-01-01T00:00:00Z"


# --- objects -----------------------------------------------------------------------------------


def gateway_class(name: str = "sticky-proxy", controller: str = CONTROLLER) -> Obj:
    return {
        "apiVersion": f"{GATEWAY_GROUP}/v1",
        "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": controller},
    }


def listener(name: str = "http", port: int = 80, protocol: str = "HTTP", **extra: Any) -> Obj:
    return {"name": name, "port": port, "protocol": protocol, **extra}


ALL_NAMESPACES = {"namespaces": {"from": "All"}}


def gateway(*listeners: Obj, name: str = "gw", class_name: str = "sticky-proxy") -> Obj:
    return {
        "apiVersion": f"{GATEWAY_GROUP}/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "gatewayClassName": class_name,
            "listeners": list(listeners) or [listener(allowedRoutes=ALL_NAMESPACES)],
        },
    }


def http_route(
    name: str = "web",
    *,
    namespace: str = "default",
    parents: list[Obj] | None = None,
    backend: str = "web",
    backend_namespace: str | None = None,
    path: str = "/",
) -> Obj:
    ref: Obj = {"name": backend, "port": 80}
    if backend_namespace is not None:
        ref["namespace"] = backend_namespace
    return {
        "apiVersion": f"{GATEWAY_GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "parentRefs": parents if parents is not None else [{"name": "gw"}],
            "hostnames": ["gw.test"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": path}}],
                    "backendRefs": [ref],
                }
            ],
        },
    }


def gateway_world(pods: Any) -> list[Obj]:
    return [gateway_class(), gateway(), http_route(), service(), endpoint_slice(pods)]


def status_of(fake: FakeApiServer, plural: str, name: str, namespace: str = "default") -> Obj:
    key = ("" if plural == "gatewayclasses" else namespace, name)
    found: Obj = fake.objects[plural][key].get("status", {})
    return found


def condition(kind: str, status: bool, reason: str, generation: int = 1, **extra: Any) -> Obj:
    """A condition as written, its message and time left out (`shape` drops them)."""
    return {"type": kind, "status": "True" if status else "False", "reason": reason,
            "observedGeneration": generation, **extra}  # fmt: skip


def shape(value: Any) -> Any:
    """`value` without the messages and times of its conditions: what the tests compare."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()
                if k not in ("message", "lastTransitionTime")}  # fmt: skip
    if isinstance(value, list):
        return [shape(item) for item in value]
    return value


def restamped(obj: Obj) -> Obj:
    """`obj` with every condition's lastTransitionTime set long ago, as another replica of the
    proxy would have written it."""
    copied = copy.deepcopy(obj)

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if "lastTransitionTime" in value:
                value["lastTransitionTime"] = LONG_AGO
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(copied.get("status"))
    return copied


def patched(fake: FakeApiServer) -> list[tuple[str, str]]:
    """(plural, name) of every status write so far."""
    return [(plural, name) for plural, _, name, _ in fake.patches]


async def answers(server: ProxyServer, what: str, target: str = "/", **expected: Any) -> Answer:
    """The answer for gw.test once it has the `expected` status and pod."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        answer = await get(server, target, host="gw.test")
        if all(getattr(answer, key) == value for key, value in expected.items()):
            return answer
        if loop.time() > deadline:
            raise AssertionError(f"{what}: the answer is still {answer}")
        await asyncio.sleep(0.02)


# --- routes ------------------------------------------------------------------------------------


async def test_http_routes_from_the_api_server_answer_through_the_proxy(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods
) -> None:
    first, second = await pods.start(2)
    apply(fake, gateway_world([first]))
    server, _ = await kube_proxy()
    await until(server.ready, "ready")
    assert (await get(server, host="gw.test")).pod == first.name
    apply(fake, [service("api"), endpoint_slice([second], service_name="api")])
    fake.apply(http_route("api", backend="api", path="/api"))
    await answers(server, "the route added later", "/api/x", pod=second.name)
    assert (await get(server, "/other", host="gw.test")).pod == first.name
    fake.delete(gateway())
    await answers(server, "no Gateway, no routes", status=404)


async def test_a_reference_grant_served_only_as_v1beta1_lets_a_route_reach_across_namespaces(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods
) -> None:
    fake.install("referencegrants", versions=("v1beta1",))  # a Gateway API release before v1
    (pod,) = await pods.start(1)
    grant = {
        "apiVersion": f"{GATEWAY_GROUP}/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": {"name": "from-app", "namespace": "default"},
        "spec": {
            "from": [{"group": GATEWAY_GROUP, "kind": "HTTPRoute", "namespace": "app"}],
            "to": [{"group": "", "kind": "Service"}],
        },
    }
    route = http_route(
        namespace="app",
        parents=[{"name": "gw", "namespace": "default"}],
        backend_namespace="default",
    )
    apply(fake, [gateway_class(), gateway(), route, service(), endpoint_slice([pod]), grant])
    server, _ = await kube_proxy()
    await answers(server, "the granted backend", pod=pod.name)
    assert {r.path for r in fake.watch_requests("referencegrants")} == {
        f"/apis/{GATEWAY_GROUP}/v1beta1/referencegrants"
    }
    fake.delete(grant)
    await answers(server, "no grant: the backend is not resolved", status=500)


async def test_without_the_gateway_api_crds_ingresses_are_served_and_routes_join_later(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods, caplog: pytest.LogCaptureFixture
) -> None:
    fake.uninstall()
    (pod,) = await pods.start(1)
    apply(fake, web_app([pod]))
    with caplog.at_level(logging.INFO, "sticky_proxy.kubernetes"):
        server, _ = await kube_proxy()
        took = await until(server.ready, "ready without the Gateway API")
        assert took < 1.0, "the first table does not wait for kinds the server does not serve"
        assert (await get(server)).pod == pod.name
        await until(lambda: len(fake.list_requests("httproutes")) >= 3, "looked for again")
        fake.install()
        apply(fake, [gateway_class(), gateway(), http_route()])
        await answers(server, "the HTTPRoute, once its CRD is installed", pod=pod.name)
        assert (await get(server)).pod == pod.name, "the Ingress still answers"
    absent = [r.getMessage() for r in caplog.records if "not served by the API server" in r.msg]
    assert sorted(absent) == [
        f"{plural}.{GATEWAY_GROUP}: not served by the API server (404: its CRD is not installed);"
        " serving without it, looking again every 0.3 s"
        for plural in sorted(CRDS)
    ], "one line per resource, however often it is looked for"
    for plural in CRDS:
        for reason in REASONS:
            assert restarts(server, plural, reason) == 0


async def test_a_gateway_api_kind_that_rbac_forbids_leaves_ingresses_served(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods, caplog: pytest.LogCaptureFixture
) -> None:
    (pod,) = await pods.start(1)
    apply(fake, [*web_app([pod]), *gateway_world([pod])[:3]])
    fake.forbid("httproutes", "list")
    with caplog.at_level(logging.INFO, "sticky_proxy.kubernetes"):
        server, _ = await kube_proxy()
        await until(server.ready, "ready while HTTPRoutes are forbidden")
        assert await readyz(server) == 200
        assert (await get(server)).pod == pod.name
        assert (await get(server, host="gw.test")).status == 404
        await until(lambda: restarts(server, "httproutes", "forbidden") >= 2, "retried")
        assert fake.patches == [], "no status from a view without the HTTPRoutes"
        fake.allow("httproutes", "list")
        await answers(server, "the HTTPRoute, once allowed", pod=pod.name)
        await until(lambda: len(fake.patches) == 3, "then the status of all three")
    held = [r.getMessage() for r in caplog.records if "status not written" in r.getMessage()]
    assert held == [
        f"Gateway API status not written until httproutes.{GATEWAY_GROUP} can be listed"
    ]
    refused = [r.getMessage() for r in caplog.records if "403" in r.getMessage()]
    assert refused == [
        f"httproutes.{GATEWAY_GROUP}: list refused (403 Forbidden): httproutes.{GATEWAY_GROUP} "
        'is forbidden: User "system:serviceaccount:ingress:proxy" cannot list resource '
        f'"httproutes" in API group "{GATEWAY_GROUP}" at the cluster scope; retrying with '
        "backoff, serving without it until it is allowed"
    ]


async def test_a_gateway_api_kind_failing_at_startup_is_waited_for_only_so_long(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods
) -> None:
    (pod,) = await pods.start(1)
    apply(fake, [*web_app([pod]), *gateway_world([pod])[:3]])
    fake.fail("httproutes", "list", 500, times=2)  # a moment of trouble: waited for
    server, _ = await kube_proxy()
    await until(server.ready, "ready")
    assert (await get(server, host="gw.test")).pod == pod.name, "in the first table"
    fake.fail("gateways", "list", 500, times=1000)  # lasting trouble: not beyond optional_wait
    later, _ = await kube_proxy(tuning=replace(FAST, optional_wait=0.5))
    took = await until(later.ready, "ready without Gateways")
    assert 0.3 <= took < 2.0, took
    assert (await get(later)).pod == pod.name
    assert (await get(later, host="gw.test")).status == 404


async def test_listeners_selecting_namespaces_by_label_follow_the_namespaces_labels(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods
) -> None:
    (pod,) = await pods.start(1)
    selecting = listener(allowedRoutes={
        "namespaces": {"from": "Selector", "selector": {"matchLabels": {"team": "blue"}}}
    })  # fmt: skip
    namespace: Obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}
    route = http_route(
        namespace="app",
        parents=[{"name": "gw", "namespace": "default"}],
        backend_namespace="default",
    )
    grant = {
        "apiVersion": f"{GATEWAY_GROUP}/v1",
        "kind": "ReferenceGrant",
        "metadata": {"name": "from-app", "namespace": "default"},
        "spec": {
            "from": [{"group": GATEWAY_GROUP, "kind": "HTTPRoute", "namespace": "app"}],
            "to": [{"group": "", "kind": "Service"}],
        },
    }
    apply(fake, [gateway_class(), gateway(selecting), route, grant, namespace, service(),
                 endpoint_slice([pod])])  # fmt: skip
    server, _ = await kube_proxy()
    await until(server.ready, "ready")
    await until(lambda: bool(status_of(fake, "httproutes", "web", "app")), "the route's status")
    (parent,) = status_of(fake, "httproutes", "web", "app")["parents"]
    assert shape(parent["conditions"])[0] == condition("Accepted", False, "NotAllowedByListeners")
    assert (await get(server, host="gw.test")).status == 404
    fake.apply({**namespace, "metadata": {"name": "app", "labels": {"team": "blue"}}})
    await answers(server, "the route, once its namespace has the label", pod=pod.name)


# --- status ------------------------------------------------------------------------------------


async def test_status_as_a_conformance_run_reads_it(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods
) -> None:
    (pod,) = await pods.start(1)
    front = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "sticky-proxy", "namespace": "ingress"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.50"},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}},
    }
    theirs = {"parentRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "name": "theirs"},
              "controllerName": OTHER,
              "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                              "message": "", "observedGeneration": 1,
                              "lastTransitionTime": LONG_AGO}]}  # fmt: skip
    shared = http_route("shared", parents=[{"name": "theirs"}, {"name": "gw"}])
    shared["status"] = {"parents": [theirs]}
    apply(fake, [
        front, service(), endpoint_slice([pod]),
        gateway_class(), gateway_class("other", OTHER),
        gateway(listener(allowedRoutes=ALL_NAMESPACES), listener("tcp", 9000, "TCP")),
        gateway(name="theirs", class_name="other"),
        http_route(), shared,
        http_route("lost", parents=[{"name": "gw", "sectionName": "nope"}]),
        http_route("broken", backend="missing"),
    ])  # fmt: skip
    server, _ = await kube_proxy(publish_service=("ingress", "sticky-proxy"))
    writes = {("gatewayclasses", "sticky-proxy"), ("gateways", "gw"),
              *(("httproutes", name) for name in ("web", "shared", "lost", "broken"))}  # fmt: skip
    await until(lambda: set(patched(fake)) == writes, "every status of ours written")
    assert patched(fake)[:2] == [("gatewayclasses", "sticky-proxy"), ("gateways", "gw")]

    assert shape(status_of(fake, "gatewayclasses", "sticky-proxy")) == {
        "conditions": [condition("Accepted", True, "Accepted")]
    }
    assert status_of(fake, "gatewayclasses", "other") == {}
    assert status_of(fake, "gateways", "theirs") == {}
    assert shape(status_of(fake, "gateways", "gw")) == {
        "addresses": [{"type": "IPAddress", "value": "203.0.113.7"}],
        "conditions": [condition("Accepted", True, "Accepted"),
                       condition("Programmed", True, "Programmed")],
        "listeners": [
            {"name": "http", "supportedKinds": [HTTP_ROUTE_KIND], "attachedRoutes": 3,
             "conditions": [condition("Accepted", True, "Accepted"),
                            condition("Programmed", True, "Programmed"),
                            condition("ResolvedRefs", True, "ResolvedRefs")]},
            {"name": "tcp", "supportedKinds": [], "attachedRoutes": 0,
             "conditions": [condition("Accepted", False, "UnsupportedProtocol"),
                            condition("Programmed", False, "Invalid"),
                            condition("ResolvedRefs", True, "ResolvedRefs")]},
        ],
    }  # fmt: skip
    ours = {"group": GATEWAY_GROUP, "kind": "Gateway", "name": "gw"}

    def parent(ref: Obj, *conditions: Obj) -> Obj:
        return {"parentRef": ref, "controllerName": CONTROLLER, "conditions": list(conditions)}

    accepted, resolved = (
        condition("Accepted", True, "Accepted"),
        condition("ResolvedRefs", True, "ResolvedRefs"),
    )
    assert shape(status_of(fake, "httproutes", "web")) == {
        "parents": [parent(ours, accepted, resolved)]
    }
    assert status_of(fake, "httproutes", "shared")["parents"][0] == theirs, "kept as it was"
    assert shape(status_of(fake, "httproutes", "shared")) == {
        "parents": [shape(theirs), parent(ours, accepted, resolved)]
    }
    assert shape(status_of(fake, "httproutes", "lost")) == {
        "parents": [parent({**ours, "sectionName": "nope"},
                           condition("Accepted", False, "NoMatchingParent"), resolved)]
    }  # fmt: skip
    assert shape(status_of(fake, "httproutes", "broken")) == {
        "parents": [parent(ours, accepted, condition("ResolvedRefs", False, "BackendNotFound"))]
    }
    (written,) = status_of(fake, "httproutes", "web")["parents"][0]["conditions"][:1]
    assert written["message"] == "" and written["lastTransitionTime"].endswith("Z")

    # Nothing changed: nothing written, even when the times were written by someone else; and
    # a change of status alone (ours coming back through the watch, too) rebuilds no routes.
    await asyncio.sleep(0.3)
    count, rebuilt = len(fake.patches), reloads(server, "success")
    assert count == len(writes)
    for plural, name in (("gateways", "gw"), ("httproutes", "broken")):
        fake.apply(restamped(fake.objects[plural]["default", name]))
    await asyncio.sleep(0.3)
    assert len(fake.patches) == count, "the same conditions, the same times: no write"
    assert reloads(server, "success") == rebuilt

    # A spec change: the generation moves on and is observed; a condition whose status stays
    # keeps its time, one whose status flips gets a new one.
    fake.apply(http_route("broken"))
    await until(lambda: len(fake.patches) > count, "the changed route's status")
    await asyncio.sleep(0.2)
    assert patched(fake)[count:] == [("httproutes", "broken")]
    (entry,) = status_of(fake, "httproutes", "broken")["parents"]
    assert shape(entry["conditions"]) == [
        condition("Accepted", True, "Accepted", generation=2),
        condition("ResolvedRefs", True, "ResolvedRefs", generation=2),
    ]
    since = [c["lastTransitionTime"] for c in entry["conditions"]]
    assert since[0] == LONG_AGO and since[1] != LONG_AGO

    # A route that comes to our Gateway raises the listener's attachedRoutes; one that leaves
    # it loses our entry, and only ours.
    count = len(fake.patches)
    fake.apply(http_route("lost"))
    await until(lambda: listeners(fake)[0]["attachedRoutes"] == 4, "lost attached")
    assert shape(status_of(fake, "httproutes", "lost")["parents"]) == [
        parent(ours, condition("Accepted", True, "Accepted", generation=2),
               condition("ResolvedRefs", True, "ResolvedRefs", generation=2))
    ]  # fmt: skip
    fake.apply(http_route("shared", parents=[{"name": "theirs"}]))
    await until(lambda: listeners(fake)[0]["attachedRoutes"] == 3, "shared gone")
    await until(
        lambda: status_of(fake, "httproutes", "shared") == {"parents": [theirs]},
        "our entry removed, theirs kept",
    )
    await asyncio.sleep(0.2)
    assert sorted(patched(fake)[count:]) == [
        ("gateways", "gw"), ("gateways", "gw"), ("httproutes", "lost"), ("httproutes", "shared"),
    ], "each written once, none from a table older than the object"  # fmt: skip


def listeners(fake: FakeApiServer) -> list[Obj]:
    found: list[Obj] = status_of(fake, "gateways", "gw")["listeners"]
    return found


async def test_gateway_status_without_publish_service_has_conditions_and_no_addresses(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods
) -> None:
    apply(fake, gateway_world(await pods.start(1)))
    await kube_proxy()
    await until(lambda: len(fake.patches) == 3, "the class, the Gateway and the route")
    status = status_of(fake, "gateways", "gw")
    assert "addresses" not in status
    assert [c["type"] for c in status["conditions"]] == ["Accepted", "Programmed"]
    assert status["listeners"][0]["attachedRoutes"] == 1


async def test_a_parent_written_by_another_controller_meanwhile_is_not_lost(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods
) -> None:
    """Our write carries the version we read; one that lands on a newer version is refused
    (409) and made again from what the watch brings, so the other controller's entry stays."""
    (pod,) = await pods.start(1)
    apply(fake, gateway_world([pod]))
    server, _ = await kube_proxy()
    await until(lambda: bool(status_of(fake, "httproutes", "web")), "our first write")
    await until(lambda: fake.open_watches("httproutes") == 1, "the watch")
    fake.hold_watches("httproutes")  # the proxy does not see what happens to routes now
    route = fake.objects["httproutes"]["default", "web"]
    foreign = {"parentRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "name": "theirs"},
               "controllerName": OTHER, "conditions": []}  # fmt: skip
    fake.apply({**route, "status": {"parents": [foreign, *route["status"]["parents"]]}})
    count = len(fake.patches)
    fake.delete(service())  # our route's ResolvedRefs turns False: a write from a stale version
    await until(
        lambda: any(r.method == "PATCH" and r.path.endswith("/httproutes/web/status")
                    for r in fake.requests[-5:]),
        "the write attempt",
    )  # fmt: skip
    await asyncio.sleep(0.2)
    assert len(fake.patches) == count, "refused: the route changed since it was read"
    fake.expire_watches("httproutes")  # the proxy relists and sees the other controller's entry
    await until(lambda: len(fake.patches) > count, "written again from the new version")
    parents = status_of(fake, "httproutes", "web")["parents"]
    assert parents[0] == foreign
    assert shape(parents[1]["conditions"])[1] == condition("ResolvedRefs", False, "BackendNotFound")
    assert server.ready()


async def test_scoped_to_one_namespace_only_its_namespace_object_is_read(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods
) -> None:
    (pod,) = await pods.start(1)
    apply(fake, gateway_world([pod]))
    fake.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})
    fake.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "elsewhere"}})
    server, _ = await kube_proxy(namespace="default")
    await answers(server, "the route", pod=pod.name)
    asked = fake.list_requests("namespaces") + fake.watch_requests("namespaces")
    assert {(r.path, r.query.get("fieldSelector")) for r in asked} == {
        ("/api/v1/namespaces", "metadata.name=default")
    }
    assert {r.path for r in fake.list_requests("gatewayclasses")} == {
        f"/apis/{GATEWAY_GROUP}/v1/gatewayclasses"
    }
    assert {r.path for r in fake.list_requests("httproutes")} == {
        f"/apis/{GATEWAY_GROUP}/v1/namespaces/default/httproutes"
    }
