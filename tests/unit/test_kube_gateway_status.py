"""The Gateway API status the `--kubernetes` source writes, pure: which objects get which status
fields from translation's conditions and what the API server holds, and when nothing is to be
written."""

from __future__ import annotations

from typing import Any

from proxy.control.sources.kubernetes.gateway_status import (
    GatewayObjects,
    StatusUpdate,
    conditions,
    plan_updates,
    supported_kinds,
    without_times,
)
from proxy.control.sources.kubernetes.resources import HTTP_ROUTES
from proxy.core.model import Condition, ObjectStatus

Obj = dict[str, Any]
GROUP = "gateway.networking.k8s.io"
OURS = "sticky-proxy.io/gateway-controller"
THEIRS = "example.com/other"
NOW = "2025-06-01T12:00:00Z"
BEFORE = "2025-01-01T00:00:00Z"
ACCEPTED = Condition("Accepted", True, "Accepted")
RESOLVED = Condition("ResolvedRefs", True, "ResolvedRefs")


def written(kind: str, status: bool, reason: str, since: str = NOW, generation: int = 3) -> Obj:
    return {
        "type": kind,
        "status": "True" if status else "False",
        "reason": reason,
        "message": "",
        "observedGeneration": generation,
        "lastTransitionTime": since,
    }


def route_status(
    gateway: str = "infra/gw", *found: Condition, section: str | None = None, generation: int = 3
) -> ObjectStatus:
    return ObjectStatus("HTTPRoute", "app", "web", generation, f"Gateway {gateway}",
                        found or (ACCEPTED, RESOLVED), section=section)  # fmt: skip


def route(*parents: Obj, status: list[Obj] | None = None, generation: int = 3) -> Obj:
    obj: Obj = {
        "metadata": {"name": "web", "namespace": "app", "resourceVersion": "41",
                     "generation": generation},
        "spec": {"parentRefs": list(parents) or [{"name": "gw", "namespace": "infra"}]},
    }  # fmt: skip
    if status is not None:
        obj["status"] = {"parents": status}
    return obj


def plan(
    statuses: list[ObjectStatus],
    *,
    classes: dict[Any, Obj] | None = None,
    gateways: dict[Any, Obj] | None = None,
    routes: dict[Any, Obj] | None = None,
    addresses: list[dict[str, str]] | None = None,
) -> list[StatusUpdate]:
    objects = GatewayObjects(classes or {}, gateways or {}, routes or {})
    return plan_updates(statuses, objects, OURS, addresses, NOW)


def ours(ref: Obj, *found: Obj) -> Obj:
    return {"parentRef": ref, "controllerName": OURS, "conditions": list(found)}


GW_REF = {"group": GROUP, "kind": "Gateway", "namespace": "infra", "name": "gw"}


def test_a_condition_keeps_its_time_while_its_status_stays() -> None:
    previous = [written("Accepted", True, "Accepted", BEFORE, 1),
                written("ResolvedRefs", True, "ResolvedRefs", BEFORE, 1)]  # fmt: skip
    wanted = [Condition("Accepted", True, "Accepted", "now with a message"),
              Condition("ResolvedRefs", False, "BackendNotFound", "Service app/x")]  # fmt: skip
    assert conditions(wanted, 4, previous, NOW) == [
        {**written("Accepted", True, "Accepted", BEFORE, 4), "message": "now with a message"},
        {**written("ResolvedRefs", False, "BackendNotFound", NOW, 4), "message": "Service app/x"},
    ]
    assert conditions(wanted[:1], 1, None, NOW)[0]["lastTransitionTime"] == NOW
    unknown = [{"type": "Accepted", "status": "Unknown", "reason": "Pending",
                "lastTransitionTime": "1970-01-01T00:00:00Z"}]  # the CRD's default  # fmt: skip
    assert conditions(wanted[:1], 1, unknown, NOW)[0]["lastTransitionTime"] == NOW
    long = conditions([Condition("Accepted", False, "Invalid", "x" * 40000)], 1, None, NOW)
    assert len(long[0]["message"]) == 32768


def test_supported_kinds_of_a_listener() -> None:
    http_route = [{"group": GROUP, "kind": "HTTPRoute"}]
    assert supported_kinds({"protocol": "HTTP"}) == http_route
    assert supported_kinds({"protocol": "HTTPS", "allowedRoutes": {"kinds": []}}) == http_route
    assert supported_kinds({"protocol": "HTTP", "allowedRoutes": {"kinds": [{"kind": "HTTPRoute"}]}}
                           ) == http_route  # fmt: skip
    grpc = {"protocol": "HTTP", "allowedRoutes": {"kinds": [{"group": GROUP, "kind": "GRPCRoute"}]}}
    assert supported_kinds(grpc) == []
    assert supported_kinds({"protocol": "TCP"}) == []
    assert supported_kinds(None) == []


def test_a_route_gets_one_entry_per_parent_of_ours_after_the_others() -> None:
    theirs = {"parentRef": {"name": "theirs"}, "controllerName": THEIRS, "conditions": []}
    stale = ours({**GW_REF, "name": "old"}, written("Accepted", True, "Accepted", BEFORE))
    obj = route({"name": "theirs"}, {"name": "gw", "namespace": "infra", "sectionName": "http"},
                status=[stale, theirs])  # fmt: skip
    (update,) = plan([route_status(section="http")], routes={("app", "web"): obj})
    assert update.resource is HTTP_ROUTES and update.key == ("app", "web")
    assert update.status == {"parents": [
        theirs,
        ours({**GW_REF, "sectionName": "http"},
             written("Accepted", True, "Accepted"), written("ResolvedRefs", True, "ResolvedRefs")),
    ]}  # fmt: skip
    assert update.patch() == {"status": update.status, "metadata": {"resourceVersion": "41"}}
    assert update.ref == "HTTPRoute app/web"


def test_a_parent_ref_without_namespace_is_written_without_one() -> None:
    obj = route({"name": "gw"})
    obj["metadata"]["namespace"] = "infra"
    status = ObjectStatus("HTTPRoute", "infra", "web", 3, "Gateway infra/gw", (ACCEPTED, RESOLVED))
    (update,) = plan([status], routes={("infra", "web"): obj})
    assert update.status["parents"][0]["parentRef"] == {
        "group": GROUP, "kind": "Gateway", "name": "gw"
    }  # fmt: skip


def test_nothing_to_write_when_the_server_holds_it_already() -> None:
    entry = ours(GW_REF, written("Accepted", True, "Accepted", BEFORE),
                 written("ResolvedRefs", True, "ResolvedRefs", BEFORE))  # fmt: skip
    obj = route(status=[entry])
    assert plan([route_status()], routes={("app", "web"): obj}) == []
    assert plan([], routes={("app", "web"): route(status=[])}) == []
    assert plan([], routes={("app", "web"): route()}) == []


def test_a_route_that_left_our_gateways_loses_only_our_entries() -> None:
    theirs = {"parentRef": {"name": "theirs"}, "controllerName": THEIRS, "conditions": []}
    obj = route(status=[ours(GW_REF), theirs])
    (update,) = plan([], routes={("app", "web"): obj})
    assert update.status == {"parents": [theirs]}


def test_an_object_newer_than_the_table_waits_for_the_next_table() -> None:
    obj = route(generation=4)
    assert plan([route_status(generation=3)], routes={("app", "web"): obj}) == []
    (update,) = plan([route_status(generation=4)], routes={("app", "web"): obj})
    assert update.status["parents"][0]["conditions"][0]["observedGeneration"] == 4


def test_parents_stay_within_the_crds_limit() -> None:
    others = [{"parentRef": {"name": f"g{n}"}, "controllerName": THEIRS, "conditions": []}
              for n in range(32)]  # fmt: skip
    obj = route(status=others)
    assert plan([route_status()], routes={("app", "web"): obj}) == []


def test_gateway_status_with_listeners_and_addresses() -> None:
    gateway = {
        "metadata": {"name": "gw", "namespace": "infra", "generation": 2, "resourceVersion": "7"},
        "spec": {"listeners": [{"name": "http", "protocol": "HTTP", "port": 80},
                               {"name": "tcp", "protocol": "TCP", "port": 9000}]},
        "status": {"addresses": [{"type": "IPAddress", "value": "192.0.2.1"}]},
    }  # fmt: skip
    programmed = Condition("Programmed", True, "Programmed")
    refused = Condition("Accepted", False, "UnsupportedProtocol", "TCP")
    statuses = [
        ObjectStatus("Gateway", "infra", "gw", 2, "", (ACCEPTED, programmed)),
        ObjectStatus("Gateway", "infra", "gw", 2, "listener http", (ACCEPTED,), attached_routes=5),
        ObjectStatus("Gateway", "infra", "gw", 2, "listener tcp", (refused,), attached_routes=0),
    ]
    addresses = [{"hostname": "lb.example"}, {"ip": "192.0.2.9"}]
    (update,) = plan(statuses, gateways={("infra", "gw"): gateway}, addresses=addresses)
    assert without_times(update.status) == without_times({
        "conditions": [written("Accepted", True, "Accepted", generation=2),
                       written("Programmed", True, "Programmed", generation=2)],
        "listeners": [
            {"name": "http", "supportedKinds": [{"group": GROUP, "kind": "HTTPRoute"}],
             "attachedRoutes": 5, "conditions": [written("Accepted", True, "Accepted",
                                                         generation=2)]},
            {"name": "tcp", "supportedKinds": [], "attachedRoutes": 0,
             "conditions": [{**written("Accepted", False, "UnsupportedProtocol", generation=2),
                             "message": "TCP"}]},
        ],
        "addresses": [{"type": "Hostname", "value": "lb.example"},
                      {"type": "IPAddress", "value": "192.0.2.9"}],
    })  # fmt: skip
    assert update.patch() == {"status": update.status}, "no precondition: the Gateway is ours"
    (unaddressed,) = plan(statuses, gateways={("infra", "gw"): gateway})
    assert "addresses" not in unaddressed.status, "left as they are without --publish-service"


def test_a_gateway_class_observes_its_own_generation() -> None:
    found = ObjectStatus("GatewayClass", "", "sticky", 0, "", (ACCEPTED,))
    obj = {"metadata": {"name": "sticky", "generation": 5, "resourceVersion": "3"}}
    (update,) = plan([found], classes={("", "sticky"): obj})
    assert update.status == {"conditions": [written("Accepted", True, "Accepted", generation=5)]}
    assert update.ref == "GatewayClass sticky"
    assert plan([found], classes={}) == [], "not in the cache (deleted meanwhile): nothing"
