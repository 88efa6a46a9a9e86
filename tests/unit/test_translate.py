"""Kubernetes objects → Snapshot (DESIGN §5, compat §2 and §8.1), one YAML fixture per case."""

from __future__ import annotations

import random
from typing import Any

import pytest

from proxy.control.translate import ManifestError, TranslateOptions, object_ref, translate
from proxy.control.translate.annotations import PREFIX
from proxy.core.cookies import CookieSettings
from proxy.core.model import AffinityMode, PathType, UpstreamPolicy
from proxy.core.routing import Route, Snapshot
from tests.unit.kube_fixtures import load, snapshot_of


def find(snapshot: Snapshot, host: str | None, path: str, path_type: str = "Prefix") -> Route:
    for route in snapshot.routes:
        if (route.host, route.path, route.path_type.value) == (host, path, path_type):
            return route
    raise AssertionError(f"no route {host} {path} {path_type} in {summary(snapshot)}")


def summary(snapshot: Snapshot) -> list[tuple[Any, ...]]:
    """(host, path, path type, cluster, sets cookie, cookie path) of every route, in order."""
    return [
        (r.host, r.path, r.path_type.value, r.cluster.name, r.sets_cookie, r.cookie_path)
        for r in snapshot.routes
    ]


def endpoints(route: Route) -> list[str]:
    """`node` of each endpoint, `node (draining)` for draining ones, `@pod` when known."""
    return [
        e.node + (" (draining)" if e.draining else "") + (f" @{e.pod}" if e.pod else "")
        for e in route.cluster.endpoints
    ]


def warned(snapshot: Snapshot, *fragments: str) -> bool:
    """Whether one warning line contains every fragment."""
    return any(all(f in line for f in fragments) for line in snapshot.warnings)


# --- the seed ----------------------------------------------------------------------------------


def test_seed_ingress() -> None:
    snapshot = snapshot_of("seed")
    assert summary(snapshot) == [
        ("sticky.info", "/", "Prefix", "default-sticky-d-8080", True, "/"),
    ]
    route = snapshot.routes[0]
    assert endpoints(route) == [
        "10.244.0.5:8080 @sticky-d-6d8f7c9b5-q2w7r",
        "10.244.0.6:8080 (draining) @sticky-d-6d8f7c9b5-x9k4m",
    ]
    affinity = route.cluster.affinity
    assert affinity is not None
    assert affinity.mode is AffinityMode.BALANCED
    assert affinity.cookie == CookieSettings(name="key", max_age=60)
    assert (route.namespace, route.ingress, route.service) == ("default", "sticky", "sticky-d")
    assert route.upstream == UpstreamPolicy()
    assert snapshot.default_route is None
    assert snapshot.warnings == ()
    assert snapshot.table.match("sticky.info", "/anything") is route
    assert snapshot.table.match("other.example.com", "/") is None


def test_same_objects_in_any_order_give_an_equal_snapshot() -> None:
    for name in ("seed", "matching", "endpoints", "shared_backend", "default_backend"):
        objects = load(name)
        expected = translate(objects, TranslateOptions())
        for seed in range(5):
            shuffled = objects[:]
            random.Random(seed).shuffle(shuffled)
            assert translate(shuffled, TranslateOptions()) == expected, name


# --- hosts and paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "path", "route_path", "cluster"),
    [
        # exact host, lower-cased; Exact beats Prefix; the longest prefix wins, element-wise
        ("shop.example.com", "/", "/", "default-web-80"),
        ("shop.example.com", "/api", "/api", "default-exact-80"),
        ("shop.example.com", "/api/", "/api", "default-api-80"),
        ("shop.example.com", "/apix", "/", "default-web-80"),
        ("shop.example.com", "/api/v2/items", "/api/v2", "default-api-v2-80"),
        ("shop.example.com", "/docs/intro", "/docs", "default-web-80"),  # ImplementationSpecific
        # server-alias: the same paths under other names
        ("www.shop.example", "/api/v2", "/api/v2", "default-api-v2-80"),
        ("shop.example.org", "/api", "/api", "default-exact-80"),
        # one-label wildcard; deeper names and the bare domain fall to the rules without host
        ("a.example.net", "/x", "/", "default-wild-80"),
        ("a.b.example.net", "/x", "/", "default-fallback-80"),
        ("example.net", "/", "/", "default-fallback-80"),
        # rules without host: every other host; an empty path is "/"
        ("other.example.com", "/static", "/static", "default-static-80"),
        ("other.example.com", "/static/app.js", "/", "default-fallback-80"),
        # use-regex: ImplementationSpecific paths are case-insensitive regexes anchored at the start
        ("regex.example.com", "/USER/42", "/user/[0-9]+", "default-user-80"),
        ("regex.example.com", "/user/me", "/user", "default-web-80"),
        ("regex2.example.com", "/api/x", "/api(.*)", "default-api-8080"),
    ],
)
def test_host_and_path_matching(host: str, path: str, route_path: str, cluster: str) -> None:
    route = snapshot_of("matching").table.match(host, path)
    assert route is not None
    assert (route.path, route.cluster.name) == (route_path, cluster)


def test_matching_routes_and_warnings() -> None:
    snapshot = snapshot_of("matching")
    assert find(snapshot, "regex.example.com", "/user/[0-9]+", "Regex").cookie_path == "/"
    assert find(snapshot, "shop.example.com", "/docs").path_type is PathType.PREFIX
    assert find(snapshot, "regex2.example.com", "/v[12]/items").path_type is PathType.PREFIX
    assert warned(
        snapshot,
        "Ingress default/regex-no-cookie-path: path '/api(.*)' uses use-regex without"
        " session-cookie-path; cookies get Path=/api(.*)",
    )
    assert warned(snapshot, "regex-no-cookie-path: path '/bad('", "not a valid regular expression")
    assert warned(
        snapshot,
        "Ingress default/regex-neighbour: path '/v[12]/items' is matched as Prefix",
        "Ingress default/regex-no-cookie-path sets use-regex on the same host",
    )
    assert not warned(snapshot, "regex-neighbour", "/bad(")
    hosts = {route.host for route in snapshot.routes}
    assert {"shop.example.com", "www.shop.example", "shop.example.org", "*.example.net"} <= hosts
    assert len(snapshot.warnings) == 3, snapshot.warnings


def test_aliases_and_repeated_locations() -> None:
    snapshot = snapshot_of("aliases")
    assert summary(snapshot) == [
        ("eins.example.com", "/", "Prefix", "default-two-80", False, "/"),
        ("one.example.com", "/", "Prefix", "default-one-80", True, "/"),
        ("one.example.com", "/extra", "Prefix", "default-two-80", False, "/extra"),
        ("three.example.com", "/", "Prefix", "default-three-80", False, "/"),
        ("two.example.com", "/", "Prefix", "default-two-80", False, "/"),
        ("uno.example.com", "/", "Prefix", "default-one-80", True, "/"),
        ("uno.example.com", "/extra", "Prefix", "default-two-80", False, "/extra"),
        (None, "/any", "Prefix", "default-three-80", False, "/any"),
    ]
    assert snapshot.warnings == (
        "Ingress default/first: server-alias two.example.com ignored: it is a host of its own",
        "Ingress default/second: Prefix path '/' of one.example.com is already routed by"
        " Ingress default/first; ignored",
        "Ingress default/second: server-alias for one.example.com ignored: Ingress default/first"
        " set it",
        "Ingress default/third: server-alias has no effect on a rule without host",
        "Ingress default/third: server-alias uno.example.com for three.example.com ignored:"
        " it is an alias of one.example.com already",
    )


# --- class selection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ingress_class", "selected"),
    [
        ("sticky", {"spec-sticky", "legacy-sticky", "no-class", "spec-wins"}),
        ("other", {"spec-other", "legacy-other", "no-class", "spec-wins-other"}),
    ],
)
def test_class_selection(ingress_class: str, selected: set[str]) -> None:
    snapshot = snapshot_of("classes", ingress_class=ingress_class)
    assert {route.ingress for route in snapshot.routes} == selected
    assert snapshot.warnings == ()


# --- endpoints ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "cluster", "expected"),
    [
        # port number 80 -> ServicePort http -> slice port named http (8080), never metrics
        ("/number", "shop-numbered-80", ["10.0.0.1:8080 @numbered-1"]),
        # port name http -> named targetPort: two numbers for one name, three slices merged, the
        # address that two slices list is ready (its ready copy wins), 10.0.1.9 only draining
        (
            "/name",
            "shop-named-http",
            [
                "10.0.1.1:8080 @named-1",
                "10.0.1.2:8080 @named-2",
                "10.0.1.3:8081 @named-3",
                "10.0.1.9:8080 (draining) @named-9",
            ],
        ),
        # endpoints: null adds nothing; ports: null dials the numeric targetPort
        ("/nulls", "shop-nulls-80", ["10.0.2.1:8080"]),
        # nil conditions are ready; serving+terminating drains; the rest is out; UDP ports ignored
        (
            "/conditions",
            "shop-conditions-80",
            [
                "10.0.3.1:8080",
                "10.0.3.2:8080",
                "10.0.3.3:8080",
                "10.0.3.5:8080 (draining)",
                "10.0.3.8:8080",
                "[fd00::8]:8080",
            ],
        ),
        # ingress-nginx also finds a Service port by its targetPort; the name keeps 8080
        ("/loose", "shop-numbered-8080", ["10.0.0.1:8080 @numbered-1"]),
        ("/missing", "shop-missing-80", []),
        ("/external", "shop-external-80", []),
        ("/no-port", "shop-numbered-81", []),
        ("/fqdn", "shop-fqdn-80", []),
        ("/other-namespace", "shop-elsewhere-80", []),
    ],
)
def test_endpoint_resolution(path: str, cluster: str, expected: list[str]) -> None:
    route = find(snapshot_of("endpoints"), "shop.example.com", path)
    assert route.cluster.name == cluster
    assert endpoints(route) == expected
    assert route.cluster.affinity is None
    assert not route.sets_cookie


@pytest.mark.parametrize(
    "fragments",
    [
        ("Ingress shop/ports: service shop/missing not found; path /missing answers 503",),
        ("Ingress shop/ports: service shop/external is of type ExternalName", "/external answers"),
        ("Ingress shop/ports: service shop/numbered has no port 81; path /no-port answers 503",),
        ("EndpointSlice shop/fqdn-aaaaa: addressType FQDN is not supported",),
        ("service shop/elsewhere not found; path /other-namespace answers 503",),
    ],
)
def test_endpoint_warnings(fragments: tuple[str, ...]) -> None:
    assert warned(snapshot_of("endpoints"), *fragments)


def test_endpoint_warnings_are_only_these() -> None:
    assert len(snapshot_of("endpoints").warnings) == 5


def test_shared_cluster_object() -> None:
    """Every path to one namespace/service/port shares one Cluster (and its balancer)."""
    snapshot = snapshot_of("endpoints")
    numbered = [r.cluster for r in snapshot.routes if r.cluster.name == "shop-numbered-80"]
    snapshot = snapshot_of("shared_backend")
    shared = [r.cluster for r in snapshot.routes if r.cluster.name == "default-shared-80"]
    assert len(numbered) == 1
    assert len(shared) == 5
    assert all(cluster is shared[0] for cluster in shared)


@pytest.mark.parametrize(
    ("endpoints_api", "expected"),
    [
        # addresses ready, notReadyAddresses out, the port by the Service port's name, per subset
        ("endpoints", ["10.1.0.1:8080 @app-1", "10.1.0.2:8080 @app-2", "10.1.0.4:8081"]),
        ("endpointslices", ["10.1.9.9:8080"]),
    ],
)
def test_legacy_endpoints(endpoints_api: str, expected: list[str]) -> None:
    snapshot = snapshot_of("legacy_endpoints", endpoints_api=endpoints_api)
    assert endpoints(find(snapshot, "legacy.example.com", "/")) == expected
    assert snapshot.warnings == ()


# --- shared backends ---------------------------------------------------------------------------


def test_shared_backend_affinity_merge() -> None:
    snapshot = snapshot_of("shared_backend")
    gamma_path = "/shop"  # gamma's session-cookie-path applies to every affinity location
    assert summary(snapshot) == [
        ("shop.example.com", "/a", "Exact", "default-shared-80", True, gamma_path),
        ("shop.example.com", "/a", "Prefix", "default-shared-80", True, gamma_path),
        ("shop.example.com", "/b", "Prefix", "default-shared-80", False, gamma_path),
        ("shop.example.com", "/c", "Prefix", "default-shared-80", True, gamma_path),
        ("shop.example.com", "/d", "Prefix", "default-shared-80", False, gamma_path),
        ("shop.example.com", "/plain", "Prefix", "default-plain-80", False, "/plain"),
        ("shop.example.com", "/solo", "Prefix", "default-solo-80", True, "/shop"),
    ]
    affinity = find(snapshot, "shop.example.com", "/b").cluster.affinity
    assert affinity is not None
    assert affinity.mode is AffinityMode.PERSISTENT  # beta's: the first Ingress that sets one
    assert affinity.cookie == CookieSettings(name="gamma-cookie", path="/shop", secure=True)
    assert find(snapshot, "shop.example.com", "/plain").cluster.affinity is None
    assert find(snapshot, "shop.example.com", "/b").ingress == "beta"
    assert warned(
        snapshot,
        "Ingress default/gamma: affinity-mode balanced does not apply to backend default-shared-80",
        "Ingress default/beta sets persistent first",
    )
    assert warned(
        snapshot,
        "Ingress default/alpha: its session-cookie-* settings do not apply to backend"
        " default-shared-80: those of Ingress default/gamma",
    )
    assert len(snapshot.warnings) == 2, snapshot.warnings


def test_affinity_locations_fall_back_to_the_wildcard_host() -> None:
    assert summary(snapshot_of("affinity_locations")) == [
        ("*.example.com", "/", "Prefix", "default-app-80", True, "/"),
        ("a.example.com", "/", "Prefix", "default-app-80", True, "/"),
        ("b.example.com", "/", "Prefix", "default-app-80", False, "/"),
        ("b.example.com", "/other", "Prefix", "default-app-80", True, "/other"),
    ]


def test_processing_order_without_timestamps() -> None:
    """ingress-nginx breaks ties by namespace/name descending: zeta first, aardvark last."""
    snapshot = snapshot_of("processing_order")
    affinity = find(snapshot, "apps.example.com", "/a").cluster.affinity
    assert affinity is not None
    assert affinity.mode is AffinityMode.PERSISTENT
    assert affinity.cookie.name == "aardvark"
    assert find(snapshot, "apps.example.com", "/z").cluster.name == "apps-shared-http"


# --- default backends --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "path", "cluster", "ingress"),
    [
        ("unknown.example.com", "/x", "default-fallback-80", "catch-all"),  # the catch-all
        ("unknown.example.com", "/docs/a", "default-docs-80", "no-host"),
        ("shop.example.com", "/api/x", "default-api-80", "shop"),
        ("shop.example.com", "/other", "default-shop-default-80", "shop"),  # the host's root
        ("status.example.com", "/", "default-shop-default-80", "shop"),  # a rule without http
        ("blog.example.com", "/x", "default-blog-80", "blog"),  # a path claims the root
    ],
)
def test_default_backends(host: str, path: str, cluster: str, ingress: str) -> None:
    route = snapshot_of("default_backend").table.match(host, path)
    assert route is not None
    assert (route.cluster.name, route.ingress) == (cluster, ingress)


def test_default_backend_route_and_warnings() -> None:
    snapshot = snapshot_of("default_backend")
    default = snapshot.default_route
    assert default is not None
    assert (default.host, default.path, default.cluster.name) == (None, "/", "default-fallback-80")
    assert default not in snapshot.routes
    assert "default-fallback-80" in {cluster.name for cluster in snapshot.clusters}
    assert warned(
        snapshot,
        "Ingress default/another-catch-all: defaultBackend ignored: Ingress default/catch-all",
    )
    assert warned(
        snapshot,
        "Ingress default/no-host: Prefix path '/' of every host is already routed by"
        " Ingress default/catch-all; ignored",
    )
    assert warned(snapshot, "Ingress default/bucket: defaultBackend: resource backends")
    assert warned(snapshot, "Ingress default/bucket: path '/assets': resource backends")
    assert len(snapshot.warnings) == 4, snapshot.warnings


# --- annotations -------------------------------------------------------------------------------


def test_valid_annotations() -> None:
    defaults = UpstreamPolicy(connect_timeout=2.0, body_size=0)
    snapshot = snapshot_of("annotations", upstream=defaults)
    route = find(snapshot, "valid.example.com", "/app")
    affinity = route.cluster.affinity
    assert affinity is not None
    assert affinity.mode is AffinityMode.PERSISTENT
    assert affinity.cookie == CookieSettings(
        name="route",
        path="/app",
        domain=".example.com",
        samesite="none",  # kept as written; the cookie writer emits exact spellings only
        conditional_samesite_none=True,
        secure=True,
        max_age=-1,
        expires=3600,
        change_on_failure=True,
    )
    assert route.upstream == UpstreamPolicy(
        connect_timeout=10.0,
        read_timeout=30.0,
        send_timeout=40.0,
        body_size=8 * 1024 * 1024,
        next_upstream=frozenset({"error", "timeout", "http_502"}),
        next_upstream_tries=0,
    )
    assert find(snapshot, "valid.example.org", "/app").sets_cookie  # the alias
    assert [line for line in snapshot.warnings if "default/valid:" in line] == [
        f"Ingress default/valid: {PREFIX}session-cookie-samesite: 'none' is sent as no SameSite"
        " at all, as by ingress-nginx; write None"
    ]
    # an Ingress without proxy annotations keeps the process-wide defaults
    assert find(snapshot, "no-affinity.example.com", "/").upstream is defaults


def test_invalid_annotations_fall_back_to_defaults() -> None:
    defaults = UpstreamPolicy(connect_timeout=2.0)
    snapshot = snapshot_of("annotations", upstream=defaults)
    route = find(snapshot, "invalid.example.com", "/")
    affinity = route.cluster.affinity
    assert affinity is not None
    assert affinity.mode is AffinityMode.BALANCED
    assert affinity.cookie == CookieSettings()
    assert route.upstream == defaults
    assert route.path_type is PathType.PREFIX
    assert [r for r in snapshot.routes if r.host == "ok.example.com"] == []


@pytest.mark.parametrize(
    ("annotation", "complaint"),
    [
        ("affinity-mode", ": 'Persistent' is not balanced or persistent; ignored"),
        ("session-cookie-name", ": 'bad name!' is not a cookie name"),
        ("session-cookie-path", ": '/api(.*)' is not a cookie path"),
        ("session-cookie-domain", " is empty; ignored"),
        ("session-cookie-samesite", ": 'sometimes' is not None, Lax or Strict; ignored"),
        ("session-cookie-conditional-samesite-none", ": 'maybe' is not a boolean"),
        ("session-cookie-secure", ": 'yes' is not a boolean"),
        ("session-cookie-max-age", ": 'abc' is not a number of seconds; ignored"),
        ("session-cookie-expires", ": '1.5' is not a number of seconds; ignored"),
        ("session-cookie-change-on-failure", ": '2' is not a boolean"),
        ("use-regex", ": 'yep' is not a boolean"),
        ("server-alias", r": '~^www\\d+\\.example\\.com$' is not a host name"),
        ("proxy-connect-timeout", ": '5s' is not a whole number above 0; ignored"),
        ("proxy-read-timeout", ": '0' is not a whole number above 0; ignored"),
        ("proxy-send-timeout", ": '1.5' is not a whole number above 0; ignored"),
        ("proxy-body-size", ": '1x' is not a size"),
        ("proxy-next-upstream", ": unknown condition 'http_418'"),
        ("proxy-next-upstream-tries", ": 'three' is not a whole number"),
        ("rewrite-target", " is not supported; ignored"),
        ("ssl-redirect", ": 'nope' is not a boolean"),
        ("session-cookie-partitioned", " is not supported; ignored"),
    ],
)
def test_each_invalid_annotation_is_warned_about(annotation: str, complaint: str) -> None:
    snapshot = snapshot_of("annotations")
    assert warned(snapshot, f"Ingress default/invalid: {PREFIX}{annotation}{complaint}")


def test_invalid_annotations_warn_once_each() -> None:
    snapshot = snapshot_of("annotations")
    invalid = [line for line in snapshot.warnings if line.startswith("Ingress default/invalid:")]
    assert len(invalid) == 21, invalid
    assert not warned(snapshot, "example.com/not-ours")


def test_cookie_annotations_without_affinity() -> None:
    snapshot = snapshot_of("annotations")
    route = find(snapshot, "no-affinity.example.com", "/")
    assert route.cluster.affinity is None
    assert not route.sets_cookie
    assert warned(
        snapshot, f"Ingress default/no-affinity: {PREFIX}affinity: 'Cookie' is not cookie"
    )
    for annotation in ("session-cookie-name", "session-cookie-max-age"):
        assert warned(
            snapshot,
            f"Ingress default/no-affinity: {PREFIX}{annotation} is ignored without"
            f" {PREFIX}affinity: cookie",
        )


# --- objects that cannot be used ---------------------------------------------------------------

_OBJECT_ERRORS = [
    "object 1: a list is not a Kubernetes object",
    "object nameless-kind: kind: missing",
    "Service default/no-api-version: apiVersion: missing",
    "Service shop/(no name): metadata.name: missing",
    "Service default/web: metadata.namespace: 5 is not a string",
    "Ingress shop/web: spec.rules: a mapping is not a list",
    "Ingress shop/web: spec.rules[0].http.paths[1].pathType: 'Foo' is not Exact, Prefix or"
    " ImplementationSpecific",
    "Ingress default/web: spec.rules[0].http.paths[0].pathType: missing",
    "Ingress default/web: spec.rules[0].http.paths[0].path: 'api' does not start with /",
    "Ingress default/web: spec.rules[0].http.paths[0].backend: needs a service or a resource",
    "Ingress default/web: spec.rules[0].http.paths[0].backend.service.port: needs exactly one"
    " of number and name",
    "Ingress default/web: spec.defaultBackend.service.port.number: 70000 is not a port",
    "Ingress default/web: spec.rules[0].host: 'bad_host.example.com' is not a host name",
    "Ingress default/web: metadata.annotations['nginx.ingress.kubernetes.io/server-alias']:"
    " a list is not a string",
    "Ingress default/web: metadata.creationTimestamp: 'yesterday' is not an RFC 3339 timestamp",
    "Service default/web: spec.ports[0].port: '80' is not an integer",
    "Service default/web: spec.ports[0].port: True is not an integer",
    "EndpointSlice default/web-abc: endpoints[0].conditions.ready: 'yes' is not true or false",
    "EndpointSlice default/web-abc: addressType: missing",
    "Endpoints default/web: subsets[0].addresses[0].ip: missing",
    "List (no name): items: a mapping is not a list",
]


@pytest.mark.parametrize(("index", "message"), list(enumerate(_OBJECT_ERRORS)))
def test_manifest_errors_name_the_object_and_field(index: int, message: str) -> None:
    document = load("manifest_errors")[index]
    legacy = isinstance(document, dict) and document.get("kind") == "Endpoints"
    api = "endpoints" if legacy else "endpointslices"
    with pytest.raises(ManifestError) as raised:
        translate([document], TranslateOptions(endpoints_api=api))  # type: ignore[arg-type]
    assert message in str(raised.value)
    if isinstance(document, dict):  # how the manifests source finds the file and line
        assert str(raised.value).startswith(object_ref(document) + ":")


def test_every_manifest_error_case_is_listed() -> None:
    assert len(load("manifest_errors")) == len(_OBJECT_ERRORS)


# --- the rest of the object handling -----------------------------------------------------------


def test_lists_other_kinds_versions_and_repeats() -> None:
    seed = load("seed")
    objects = [
        {"apiVersion": "v1", "kind": "List", "items": seed},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}},
        {
            "apiVersion": "extensions/v1beta1",
            "kind": "Ingress",
            "metadata": {"name": "old", "namespace": "legacy"},
        },
        seed[1],  # the Service once more
    ]
    snapshot = translate(objects, TranslateOptions())
    assert summary(snapshot) == summary(translate(seed, TranslateOptions()))
    assert snapshot.warnings == (
        "Ingress legacy/old: apiVersion extensions/v1beta1 is not supported; ignored",
        "Service default/sticky-d: given more than once; the last one is used",
    )


@pytest.mark.parametrize(
    ("obj", "ref"),
    [
        ({"kind": "Ingress", "metadata": {"name": "web", "namespace": "shop"}}, "Ingress shop/web"),
        ({"kind": "Service", "metadata": {"name": "web"}}, "Service default/web"),
        ({"kind": "IngressClass", "metadata": {"name": "sticky"}}, "IngressClass sticky"),
        ({"kind": "Namespace", "metadata": {"name": "shop"}}, "Namespace shop"),
        ({"kind": "ConfigMap", "metadata": {"name": "a", "namespace": "b"}}, "ConfigMap b/a"),
        ({"metadata": "broken"}, "object (no name)"),
    ],
)
def test_object_ref(obj: dict[str, Any], ref: str) -> None:
    assert object_ref(obj) == ref


def test_options_check_the_endpoints_api() -> None:
    with pytest.raises(ValueError, match="endpointslices or endpoints"):
        TranslateOptions(endpoints_api="slices")  # type: ignore[arg-type]
