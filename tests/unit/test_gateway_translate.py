"""Gateway API objects → routes and status (docs/gateway-api.md), pure: no sockets."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from typing import Any

import pytest

from proxy.control.translate import ManifestError, TranslateOptions, translate
from proxy.control.translate.gateway.attach import effective_hostnames
from proxy.core.headers import scan_request
from proxy.core.model import ObjectStatus
from proxy.core.routing import Route, Snapshot
from tests.certs import self_signed

Obj = dict[str, Any]
GATEWAY_GROUP = "gateway.networking.k8s.io/v1"


def gateway_class(
    name: str = "sticky-proxy", controller: str = "sticky-proxy.io/gateway-controller"
) -> Obj:
    return {
        "apiVersion": GATEWAY_GROUP,
        "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": controller},
    }


def gateway(
    *listeners: Obj, name: str = "gw", namespace: str = "infra", class_name: str = "sticky-proxy"
) -> Obj:
    return {
        "apiVersion": GATEWAY_GROUP,
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace, "generation": 2},
        "spec": {
            "gatewayClassName": class_name,
            "listeners": list(listeners) or [listener()],
        },
    }


def listener(name: str = "http", port: int = 80, protocol: str = "HTTP", **extra: Any) -> Obj:
    return {"name": name, "port": port, "protocol": protocol, **extra}


def http_route(name: str = "route", namespace: str = "infra", *, parents: list[Obj] | None = None,
               hostnames: list[str] | None = None, rules: list[Obj] | None = None,
               created: str | None = None) -> Obj:  # fmt: skip
    metadata: Obj = {"name": name, "namespace": namespace, "generation": 3}
    if created is not None:
        metadata["creationTimestamp"] = created
    spec: Obj = {
        "parentRefs": parents if parents is not None else [{"name": "gw", "namespace": "infra"}],
        "rules": rules if rules is not None else [{"backendRefs": [backend("web")]}],
    }
    if hostnames is not None:
        spec["hostnames"] = hostnames
    return {"apiVersion": GATEWAY_GROUP, "kind": "HTTPRoute", "metadata": metadata, "spec": spec}


def backend(name: str, port: int = 8080, **extra: Any) -> Obj:
    return {"name": name, "port": port, **extra}


def service(name: str, namespace: str = "infra") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"ports": [{"port": 8080, "targetPort": 3000}]},
    }


def world(*objects: Obj) -> list[Obj]:
    return [gateway_class(), service("web"), service("other"), *objects]


def snapshot(*objects: Obj) -> Snapshot:
    return translate(world(*objects), TranslateOptions())


def route_status(snap: Snapshot, name: str) -> dict[str, tuple[bool, str]]:
    """{condition type: (status, reason)} of HTTPRoute `name` on its one parent."""
    (found,) = [s for s in snap.statuses if s.kind == "HTTPRoute" and s.name == name]
    return {c.type: (c.status, c.reason) for c in found.conditions}


def listener_status(snap: Snapshot, name: str = "http") -> ObjectStatus:
    (found,) = [s for s in snap.statuses if s.parent == f"listener {name}"]
    return found


def request(target: str = "/", host: str = "a.example.com", method: str = "GET",
            headers: list[tuple[str, str]] = ()) -> Any:  # type: ignore[assignment]  # fmt: skip
    raw = [(b"Host", host.encode()), *((n.encode(), v.encode()) for n, v in headers)]
    return scan_request(method.encode(), target.encode(), True, raw)


def matched(
    snap: Snapshot, target: str = "/", host: str = "a.example.com", **options: Any
) -> Route | None:
    req = request(target, host, **options)
    return snap.table.match(req.host, target.partition("?")[0], req)


# --- hostnames -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listener_host", "route_hosts", "expected"),
    [
        (None, (), (None,)),
        ("a.example.com", (), ("a.example.com",)),
        (None, ("a.example.com",), ("a.example.com",)),
        ("*.example.com", ("a.example.com", "b.b.example.com", "example.com", "a.other.org"),
         ("a.example.com", "b.b.example.com")),
        ("a.example.com", ("*.example.com",), ("a.example.com",)),
        ("*.example.com", ("*.a.example.com",), ("*.a.example.com",)),
        ("*.a.example.com", ("*.example.com",), ("*.a.example.com",)),
        ("a.example.com", ("b.example.com",), ()),
        ("*.example.com", ("*.example.org",), ()),
    ],
)  # fmt: skip
def test_hostnames_intersect_as_the_specification_says(
    listener_host: str | None, route_hosts: tuple[str, ...], expected: tuple[str | None, ...]
) -> None:
    assert effective_hostnames(listener_host, route_hosts) == expected


def test_a_route_wildcard_matches_any_number_of_labels_but_not_the_domain_itself() -> None:
    snap = snapshot(gateway(), http_route(hostnames=["*.example.com"]))
    assert matched(snap, host="a.example.com") is not None
    assert matched(snap, host="a.b.example.com") is not None
    assert matched(snap, host="example.com") is None
    assert matched(snap, host="a.example.org") is None


# --- attaching ------------------------------------------------------------------------------


def test_an_accepted_route_is_served_and_counted_on_its_listener() -> None:
    snap = snapshot(gateway(), http_route())
    assert route_status(snap, "route") == {
        "Accepted": (True, "Accepted"),
        "ResolvedRefs": (True, "ResolvedRefs"),
    }
    assert listener_status(snap).attached_routes == 1
    found = matched(snap, "/anything")
    assert found is not None
    assert (found.namespace, found.ingress, found.service) == ("infra", "route", "web")
    (status,) = [s for s in snap.statuses if s.kind == "HTTPRoute"]
    assert (status.generation, status.parent) == (3, "Gateway infra/gw")


@pytest.mark.parametrize(
    ("parent", "reason"),
    [
        ({"name": "gw", "namespace": "infra", "sectionName": "nope"}, "NoMatchingParent"),
        ({"name": "gw", "namespace": "infra", "port": 81}, "NoMatchingParent"),
        ({"name": "gw", "namespace": "infra", "sectionName": "http", "port": 81},
         "NoMatchingParent"),
    ],
)  # fmt: skip
def test_a_parent_ref_that_names_no_listener_is_not_accepted(parent: Obj, reason: str) -> None:
    snap = snapshot(gateway(), http_route(parents=[parent]))
    assert route_status(snap, "route")["Accepted"] == (False, reason)
    assert snap.routes == ()
    assert listener_status(snap).attached_routes == 0


def test_routes_from_another_namespace_need_the_listener_to_allow_them() -> None:
    foreign = http_route(namespace="apps", rules=[])
    snap = snapshot(gateway(), foreign)
    assert route_status(snap, "route")["Accepted"] == (False, "NotAllowedByListeners")
    allowing = listener(allowedRoutes={"namespaces": {"from": "All"}})
    assert route_status(snapshot(gateway(allowing), foreign), "route")["Accepted"][0]


def test_a_namespace_selector_reads_the_namespace_labels() -> None:
    selecting = listener(
        allowedRoutes={
            "namespaces": {"from": "Selector", "selector": {"matchLabels": {"team": "a"}}}
        }
    )
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "apps", "labels": {"team": "a"}},
    }
    foreign = http_route(namespace="apps", rules=[])
    assert route_status(snapshot(gateway(selecting), foreign, namespace), "route")["Accepted"][0]
    assert route_status(snapshot(gateway(selecting), foreign), "route")["Accepted"] == (
        False, "NotAllowedByListeners",
    )  # fmt: skip
    by_name = listener(
        allowedRoutes={"namespaces": {"from": "Selector", "selector": {"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["apps"]}]}}}
    )  # fmt: skip
    assert route_status(snapshot(gateway(by_name), foreign), "route")["Accepted"][0]


def test_listener_kinds_and_protocols_decide_whether_http_routes_attach() -> None:
    no_http_routes = listener(allowedRoutes={"kinds": [{"kind": "GRPCRoute"}]})
    snap = snapshot(gateway(no_http_routes), http_route())
    assert route_status(snap, "route")["Accepted"] == (False, "NotAllowedByListeners")
    conditions = {c.type: (c.status, c.reason) for c in listener_status(snap).conditions}
    assert conditions["ResolvedRefs"] == (False, "InvalidRouteKinds")
    assert conditions["Programmed"] == (True, "Programmed")
    tcp = listener(protocol="TCP")
    snap = snapshot(gateway(tcp), http_route())
    assert route_status(snap, "route")["Accepted"] == (False, "NotAllowedByListeners")
    assert {c.type: c.reason for c in listener_status(snap).conditions}["Accepted"] == (
        "UnsupportedProtocol"
    )


def test_hostnames_that_miss_every_listener_are_not_accepted() -> None:
    snap = snapshot(
        gateway(listener(hostname="*.example.com")), http_route(hostnames=["app.example.org"])
    )
    assert route_status(snap, "route")["Accepted"] == (False, "NoMatchingListenerHostname")
    assert snap.routes == ()


def test_gateways_of_other_classes_and_missing_ones_are_not_ours_to_judge() -> None:
    other = gateway_class("theirs", "example.com/other")
    theirs = gateway(name="gw", class_name="theirs")
    snap = translate(world(other, theirs, http_route()), TranslateOptions())
    assert snap.routes == ()
    assert [s.kind for s in snap.statuses] == ["GatewayClass"]  # theirs is not ours to judge
    missing = snapshot(http_route(parents=[{"name": "nowhere"}]))
    assert [s.kind for s in missing.statuses] == ["GatewayClass"]


def test_gateway_classes_report_their_generation() -> None:
    (status,) = [s for s in snapshot(gateway()).statuses if s.kind == "GatewayClass"]
    assert status.generation == 0  # none written in the object
    owned = gateway_class()
    owned["metadata"]["generation"] = 4
    snap = translate([owned, gateway()], TranslateOptions())
    assert [s.generation for s in snap.statuses if s.kind == "GatewayClass"] == [4]


def test_the_controller_name_is_an_option() -> None:
    mine = gateway_class("mine", "example.com/mine")
    snap = translate(
        world(mine, gateway(class_name="mine"), http_route()),
        TranslateOptions(gateway_controller="example.com/mine"),
    )
    assert route_status(snap, "route")["Accepted"][0]


# --- backends ---------------------------------------------------------------------------------


def test_unresolved_backend_refs_are_reported_and_answered_500() -> None:
    cases = {
        "InvalidKind": backend("web", kind="ConfigMap", group="core"),
        "BackendNotFound": backend("missing"),
        "RefNotPermitted": backend("web", namespace="elsewhere"),
    }
    for reason, ref in cases.items():
        snap = snapshot(gateway(), http_route(rules=[{"backendRefs": [ref]}]))
        assert route_status(snap, "route") == {
            "Accepted": (True, "Accepted"),
            "ResolvedRefs": (False, reason),
        }, reason
        found = matched(snap)
        assert found is not None and found.invalid_backend, reason


def test_a_reference_grant_lets_a_route_use_a_service_of_another_namespace() -> None:
    grant = {
        "apiVersion": "gateway.networking.k8s.io/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": {"name": "grant", "namespace": "elsewhere"},
        "spec": {
            "from": [
                {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "infra"}
            ],
            "to": [{"group": "", "kind": "Service", "name": "shared"}],
        },
    }  # fmt: skip
    rules = [{"backendRefs": [backend("shared", namespace="elsewhere")]}]
    snap = snapshot(gateway(), http_route(rules=rules), service("shared", "elsewhere"), grant)
    assert route_status(snap, "route")["ResolvedRefs"] == (True, "ResolvedRefs")
    found = matched(snap)
    assert found is not None and not found.invalid_backend
    other_rules = [{"backendRefs": [backend("other", namespace="elsewhere")]}]
    snap = snapshot(gateway(), http_route(rules=other_rules), service("other", "elsewhere"), grant)
    assert route_status(snap, "route")["ResolvedRefs"] == (False, "RefNotPermitted")


def test_weights_split_requests_and_zero_takes_none() -> None:
    rules = [{"backendRefs": [backend("web", weight=3), backend("other", weight=1),
                              backend("web", port=9090, weight=0)]}]  # fmt: skip
    snap = snapshot(gateway(), http_route(rules=rules))
    found = matched(snap)
    assert found is not None
    rng = random.Random(7)
    counts = Counter(found.pick(rng).service for _ in range(4000))
    assert set(counts) == {"web", "other"}
    assert 2800 < counts["web"] < 3200


def test_a_rule_without_backends_answers_500() -> None:
    snap = snapshot(gateway(), http_route(rules=[{"matches": [{"path": {"value": "/x"}}]}]))
    found = matched(snap, "/x")
    assert found is not None and found.invalid_backend
    zero = snapshot(gateway(), http_route(rules=[{"backendRefs": [backend("web", weight=0)]}]))
    found = matched(zero)
    assert found is not None and found.invalid_backend


# --- matching ---------------------------------------------------------------------------------


def rule(*matches: Obj, to: str = "web") -> Obj:
    return {"matches": list(matches), "backendRefs": [backend(to)]}


def test_precedence_exact_then_longest_then_method_headers_query() -> None:
    rules = [
        rule({"path": {"type": "PathPrefix", "value": "/"}}, to="web"),
        rule({"path": {"type": "PathPrefix", "value": "/a"},
              "queryParams": [{"name": "q", "value": "1"}]}, to="query"),
        rule({"path": {"type": "PathPrefix", "value": "/a"},
              "headers": [{"name": "X-One", "value": "1"}]}, to="header"),
        rule({"path": {"type": "PathPrefix", "value": "/a"}, "method": "POST"}, to="method"),
        rule({"path": {"type": "Exact", "value": "/a"}}, to="exact"),
    ]  # fmt: skip
    services = [service(name) for name in ("query", "header", "method", "exact")]
    snap = snapshot(gateway(), http_route(rules=rules), *services)

    def to(target: str, **options: Any) -> str:
        found = matched(snap, target, **options)
        assert found is not None
        return found.service

    assert to("/a", method="POST", headers=[("x-one", "1")]) == "exact"
    assert to("/a/b?q=1", method="POST", headers=[("X-ONE", "1")]) == "method"
    assert to("/a/b?q=1", headers=[("X-One", "1")]) == "header"
    assert to("/a/b?q=1") == "query"
    assert to("/a/b?q=2") == "web"
    assert to("/ab?q=1") == "web"  # a prefix matches whole segments


def test_more_header_matches_win_and_ties_go_to_the_older_route() -> None:
    one = rule({"headers": [{"name": "a", "value": "1"}]}, to="web")
    two = rule({"headers": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]}, to="other")
    snap = snapshot(
        gateway(),
        http_route("young", rules=[one], created="2026-02-01T00:00:00Z"),
        http_route("old", rules=[rule({"headers": [{"name": "a", "value": "1"}]}, to="other")],
                   created="2026-01-01T00:00:00Z"),
        http_route("two", rules=[two], created="2026-03-01T00:00:00Z"),
    )  # fmt: skip
    both = matched(snap, headers=[("A", "1"), ("B", "2")])
    assert both is not None and both.ingress == "two"
    first = matched(snap, headers=[("A", "1")])
    assert first is not None and first.ingress == "old"
    assert matched(snap) is None  # every rule has a condition; none holds


def test_value_matches_exact_regex_repeated_and_percent_decoded() -> None:
    rules = [
        rule({"headers": [{"name": "Version", "value": "one, two"}]}, to="web"),
        rule({"queryParams": [{"name": "animal", "value": "whale shark"}]}, to="other"),
        rule({"path": {"type": "RegularExpression", "value": "/v[0-9]+"}}, to="header"),
    ]
    snap = snapshot(gateway(), http_route(rules=rules), service("header"))
    joined = matched(snap, "/", headers=[("version", "one"), ("version", "two")])
    assert joined is not None and joined.service == "web"
    decoded = matched(snap, "/?animal=whale%20shark&animal=dolphin")
    assert decoded is not None and decoded.service == "other"
    assert matched(snap, "/?ANIMAL=whale%20shark") is None  # names are case-sensitive
    regex = matched(snap, "/v12")
    assert regex is not None and regex.service == "header"
    assert matched(snap, "/v12/more") is None  # the whole path must match


def test_only_the_first_condition_on_a_name_counts() -> None:
    twice = rule({"headers": [{"name": "a", "value": "1"}, {"name": "A", "value": "2"}]})
    snap = snapshot(gateway(), http_route(rules=[twice]))
    assert matched(snap, headers=[("a", "1")]) is not None


def test_a_route_without_conditions_matches_without_a_request() -> None:
    snap = snapshot(gateway(), http_route(rules=[rule({"method": "GET"}), rule()]))
    assert snap.table.match("a.example.com", "/") is not None  # the plain rule


# --- refused and invalid ----------------------------------------------------------------------


def test_fields_not_built_yet_refuse_the_route_instead_of_ignoring_them() -> None:
    rules = [{"backendRefs": [backend("web")], "retry": {"attempts": 2},
              "filters": [{"type": "RequestMirror", "requestMirror": {}}]}]  # fmt: skip
    snap = snapshot(gateway(), http_route(rules=rules))
    assert route_status(snap, "route")["Accepted"] == (False, "UnsupportedValue")
    assert snap.routes == ()
    assert any("filters RequestMirror, retry" in w for w in snap.warnings)


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({"matches": [{"path": {"type": "Regex", "value": "/"}}]}, "path.type: 'Regex' is not"),
        ({"matches": [{"path": {"value": "nope"}}]}, "does not start with /"),
        ({"matches": [{"headers": [{"name": "a"}]}]}, "headers[0].value: missing"),
        ({"backendRefs": [backend("web", weight=2_000_000)]}, "weight: 2000000 is not"),
    ],
)
def test_values_the_crd_would_refuse_name_the_object_and_field(broken: Obj, message: str) -> None:
    with pytest.raises(ManifestError, match=r"HTTPRoute infra/route: spec\.rules") as error:
        snapshot(gateway(), http_route(rules=[broken]))
    assert message in str(error.value)


def test_ingress_and_gateway_routes_share_one_table() -> None:
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "web", "namespace": "infra"},
        "spec": {"ingressClassName": "sticky", "rules": [{"host": "a.example.com", "http": {
            "paths": [{"path": "/ingress", "pathType": "Prefix", "backend": {
                "service": {"name": "web", "port": {"number": 8080}}}}]}}]},
    }  # fmt: skip
    route = http_route(hostnames=["a.example.com"], rules=[rule({"path": {"value": "/gateway"}})])
    snap = snapshot(gateway(), route, ingress)
    from_ingress = matched(snap, "/ingress/x")
    from_route = matched(snap, "/gateway/x")
    assert from_ingress is not None and from_ingress.cluster.name == "infra-web-8080"
    assert from_route is not None and from_route.cluster.name == "gateway-infra-web-8080"
    both = [
        rule({"path": {"value": "/ingress"}}, to="other"),
        rule({"path": {"value": "/ingress"}, "method": "POST"}, to="other"),
    ]
    snap = snapshot(gateway(), http_route(hostnames=["a.example.com"], rules=both), ingress)
    same = matched(snap, "/ingress/x")
    assert same is not None and same.ingress == "web"  # the Ingress's rule comes first
    post = matched(snap, "/ingress/x", method="POST")
    assert post is not None and post.service == "other"  # unless the match says more


# --- session persistence ------------------------------------------------------------------------


def session_rule(persistence: Obj, *refs: Obj) -> Obj:
    return {"backendRefs": list(refs) or [backend("web")], "sessionPersistence": persistence}


def endpoints_slice(name: str, *addresses: str) -> Obj:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "infra",
                     "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"port": 3000}],
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
    }  # fmt: skip


def session_route(persistence: Obj, *refs: Obj) -> Route:
    snap = translate(
        world(gateway(), http_route(rules=[session_rule(persistence, *refs)]),
              endpoints_slice("web", "10.0.0.1", "10.0.0.2"), endpoints_slice("other", "10.0.1.1")),
        TranslateOptions(session_key=b"secret"),
    )  # fmt: skip
    found = matched(snap)
    assert found is not None
    return found


def test_a_session_token_names_the_backend_and_endpoint_of_every_backend_ref() -> None:
    route = session_route({"sessionName": "SID"}, backend("web"), backend("other", weight=0))
    session = route.session
    assert session is not None and session.name == "SID"
    assert [b.service for b in route.session_backends] == ["web", "other"]
    assert [r.service for _, r in route.split] == ["web"]  # weight 0 takes no new sessions
    other = route.session_backends[1]
    (endpoint,) = other.cluster.endpoints
    token = session.token(other.cluster.name, endpoint, now=1000.0)
    assert session.resolve(token, now=5000.0) == (1, endpoint)  # no lifetime: never expires
    assert session.resolve("0" * 32, now=1000.0) is None


def test_signed_tokens_expire_and_resist_tampering() -> None:
    route = session_route({"sessionName": "SID", "absoluteTimeout": "10s"})
    session = route.session
    assert session is not None and session.signed
    endpoint = route.cluster.endpoints[0]
    token = session.token(route.cluster.name, endpoint, now=1000.0)
    assert session.resolve(token, now=1009.0) == (0, endpoint)
    assert session.resolve(token, now=1010.0) is None  # expired
    assert session.resolve(token, now=999.0) is None  # issued in the future
    key, issued, mac = token.split(".")
    assert session.resolve(f"{key}.{int(issued, 16) + 5:x}.{mac}", now=1009.0) is None
    assert session.resolve(key, now=1000.0) is None
    assert session.resolve("a.b.c", now=1000.0) is None
    other_key = dataclasses.replace(session, key=b"another")
    assert other_key.resolve(token, now=1001.0) is None


def test_generated_session_names_differ_per_rule_and_are_stable() -> None:
    one = session_route({})
    again = session_route({})
    assert one.session is not None and again.session is not None
    assert one.session.name == again.session.name and one.session.name.startswith("sp-")


@pytest.mark.parametrize(
    ("persistence", "message"),
    [
        ({"cookieConfig": {"lifetimeType": "Permanent"}}, "absoluteTimeout: must be set"),
        ({"type": "Header", "cookieConfig": {}}, "can only be set with type Cookie"),
        ({"type": "Query"}, "'Query' is not Cookie or Header"),
        ({"sessionName": "a b"}, "cannot name a cookie or header"),
        ({"absoluteTimeout": "ten"}, "is not a duration"),
    ],
)
def test_invalid_session_persistence_is_refused(persistence: Obj, message: str) -> None:
    with pytest.raises(ManifestError, match="sessionPersistence") as error:
        snapshot(gateway(), http_route(rules=[session_rule(persistence)]))
    assert message in str(error.value)


# --- HTTPS listeners --------------------------------------------------------------------------


def tls_secret(name: str, namespace: str = "infra") -> Obj:
    chain, key = self_signed("a.example.com")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {"tls.crt": chain.decode(), "tls.key": key.decode()},
    }


def https_listener(*refs: Obj, hostname: str | None = "a.example.com") -> Obj:
    extra: Obj = {"tls": {"certificateRefs": list(refs)}}
    if hostname is not None:
        extra["hostname"] = hostname
    return listener("https", 443, "HTTPS", **extra)


def resolved_refs(snap: Snapshot) -> tuple[bool, str]:
    conditions = {c.type: c for c in listener_status(snap, "https").conditions}
    return conditions["ResolvedRefs"].status, conditions["ResolvedRefs"].reason


def test_https_listeners_serve_their_secrets_certificates_by_hostname() -> None:
    snap = snapshot(gateway(https_listener({"name": "web-tls"})), tls_secret("web-tls"))
    (certificate,) = snap.certificates
    assert (certificate.source, certificate.hosts) == ("Secret infra/web-tls", ("a.example.com",))
    assert resolved_refs(snap) == (True, "ResolvedRefs")
    default = snapshot(
        gateway(https_listener({"name": "web-tls"}, hostname=None)), tls_secret("web-tls")
    )
    assert default.certificates[0].hosts == ()  # the default certificate


def test_certificate_refs_that_do_not_resolve_are_reported() -> None:
    missing = snapshot(gateway(https_listener({"name": "nope"})))
    assert resolved_refs(missing) == (False, "InvalidCertificateRef")
    assert missing.certificates == ()
    programmed = {c.type: c.status for c in listener_status(missing, "https").conditions}
    assert programmed["Programmed"] is False
    foreign = {"name": "web-tls", "namespace": "certs"}
    snap = snapshot(gateway(https_listener(foreign)), tls_secret("web-tls", "certs"))
    assert resolved_refs(snap) == (False, "RefNotPermitted")
    grant = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "ReferenceGrant",
        "metadata": {"name": "certs", "namespace": "certs"},
        "spec": {
            "from": [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                      "namespace": "infra"}],
            "to": [{"group": "", "kind": "Secret"}],
        },
    }  # fmt: skip
    snap = snapshot(gateway(https_listener(foreign)), tls_secret("web-tls", "certs"), grant)
    assert resolved_refs(snap) == (True, "ResolvedRefs")
    assert len(snap.certificates) == 1


def test_routes_answer_only_on_the_proxy_listener_of_their_gateway_listener() -> None:
    both = gateway(listener(), https_listener({"name": "web-tls"}, hostname=None))
    plain_only = http_route("plain", parents=[{"name": "gw", "sectionName": "http"}],
                            rules=[rule({"path": {"value": "/plain"}})])  # fmt: skip
    tls_only = http_route("tls", parents=[{"name": "gw", "sectionName": "https"}],
                          rules=[rule({"path": {"value": "/tls"}})])  # fmt: skip
    snap = snapshot(both, plain_only, tls_only, tls_secret("web-tls"))
    req = request()
    table = snap.table
    assert table.match(req.host, "/plain", req, tls=False) is not None
    assert table.match(req.host, "/plain", req, tls=True) is None
    assert table.match(req.host, "/tls", req, tls=True) is not None
    assert table.match(req.host, "/tls", req, tls=False) is None


def test_hostnames_the_crds_would_refuse_name_the_object_and_field() -> None:
    with pytest.raises(ManifestError, match=r"HTTPRoute infra/route: spec\.hostnames: '\*'"):
        snapshot(gateway(), http_route(hostnames=["*"]))
    with pytest.raises(ManifestError, match=r"Gateway infra/gw: spec\.listeners\[0\]\.hostname"):
        snapshot(gateway(listener(hostname="a..b")), http_route())
    redirect = {"type": "RequestRedirect", "requestRedirect": {"hostname": "*.example.com"}}
    with pytest.raises(ManifestError, match="a wildcard cannot be a request's host"):
        snapshot(gateway(), http_route(rules=[{"filters": [redirect]}]))
