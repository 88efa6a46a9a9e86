"""Kubernetes objects → Snapshot (docs/behaviour.md, "Ingress translation"), one YAML per case."""

from __future__ import annotations

import random

import pytest

from proxy.control.translate import TranslateOptions, translate
from proxy.core.cookies import CookieSettings
from proxy.core.model import AffinityMode, PathType, UpstreamPolicy
from tests.unit.kube_fixtures import endpoints, find, load, snapshot_of, summary, warned

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
