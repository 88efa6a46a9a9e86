"""Canaries (docs/ingress-nginx-compat.md, "Canaries"): the per-request choice as pure code, the
canary-* annotations, and how translation merges a canary Ingress into the main routes."""

from __future__ import annotations

import random
import re
from typing import Any

from proxy.control.translate import TranslateOptions, translate
from proxy.control.translate.annotations import PREFIX
from proxy.core.affinity import build_cluster
from proxy.core.balancing import LoadBalance
from proxy.core.canary import CanaryPolicy, first_cookie, header_variable, takes_canary
from proxy.core.cookies import CookieSettings, backend_key
from proxy.core.headers import Request, scan_request
from proxy.core.model import Affinity, AffinityMode, Endpoint
from proxy.core.routing import Snapshot
from tests.unit.kube_fixtures import annotations_of, ingress_object, parsed

MAIN = build_cluster("default-web-80", [Endpoint("10.0.0.1", 8080)], Affinity())
CANARY = build_cluster("default-canary-80", [Endpoint("10.0.0.2", 8080)], Affinity())


def request(*headers: tuple[str, str]) -> Request:
    raw = [(b"Host", b"foo"), *((n.encode(), v.encode()) for n, v in headers)]
    return scan_request(b"GET", b"/info", True, raw)


def draws(policy: CanaryPolicy, count: int = 2000, *headers: tuple[str, str]) -> int:
    """How many of `count` requests with `headers` the policy sends to the canary."""
    rng = random.Random(7)
    req = request(*headers)
    return sum(policy.wants(req, rng) for _ in range(count))


# --- the policy ---------------------------------------------------------------------------------


def test_header_always_and_never_then_the_cookie_then_the_weight() -> None:
    policy = CanaryPolicy(header="canarybyheader", cookie="canarybycookie", weight=0)
    assert draws(policy, 10, ("CanaryByHeader", "always")) == 10
    assert draws(policy, 10, ("CanaryByHeader", "never"), ("Cookie", "CanaryByCookie=always")) == 0
    # any other header value goes on to the cookie
    assert draws(policy, 10, ("CanaryByHeader", "x"), ("Cookie", "CanaryByCookie=always")) == 10
    assert draws(policy, 10, ("Cookie", "canarybycookie=never")) == 0
    assert draws(policy, 10, ("Cookie", "CanaryByCookie=maybe")) == 0  # weight 0


def test_a_header_value_replaces_always_and_a_pattern_is_searched() -> None:
    valued = CanaryPolicy(header="h", header_value="DoCanary")
    assert draws(valued, 5, ("H", "DoCanary")) == 5
    assert draws(valued, 5, ("H", "always")) == 0
    patterned = CanaryPolicy(header="h", header_pattern=re.compile("Can"))
    assert draws(patterned, 5, ("H", "DoCanary")) == 5  # anywhere in the value, as ngx.re.match
    assert draws(patterned, 5, ("H", "docanary")) == 0


def test_a_broken_pattern_keeps_requests_with_the_header_on_the_main_side() -> None:
    policy = CanaryPolicy(header="h", pattern_error=True, cookie="c", weight=100)
    assert draws(policy, 5, ("H", "DoCanary"), ("Cookie", "c=always")) == 0
    assert draws(policy, 5, ("Cookie", "c=always")) == 5


def test_weights_out_of_the_total_and_a_total_below_100_counts_as_100() -> None:
    assert draws(CanaryPolicy(weight=100)) == 2000
    assert draws(CanaryPolicy(weight=1000, weight_total=1000)) == 2000
    # 2,000 draws at p = 1/4 give 500 ± 19; at p = 1/2, 1,000 ± 22
    assert 400 < draws(CanaryPolicy(weight=50, weight_total=200)) < 600
    assert 900 < draws(CanaryPolicy(weight=50, weight_total=50)) < 1100


def test_nginx_variables() -> None:
    req = request(("X-Canary", "a"), ("x_canary", "b"), ("X-CANARY", "c"))
    # (x_canary is dropped, as nginx drops names with underscores unless told otherwise)
    assert header_variable(req, "x_canary") == "a, c"
    assert header_variable(req, "other") is None
    assert first_cookie("a=1; B=2; b=3", "b") == "2"
    assert first_cookie("a=1; flag", "flag") is None


# --- the side, with cookies ---------------------------------------------------------------------


def cookie(cluster_name: str, name: str = "INGRESSCOOKIE") -> tuple[str, str]:
    return ("Cookie", f"{name}=1700000000.123.4567.890|{backend_key(cluster_name)}")


def test_a_cookie_of_either_side_wins_over_everything_else() -> None:
    always = CanaryPolicy(header="h", weight=100)
    rng = random.Random(1)
    main_cookie = request(cookie(MAIN.name), ("H", "always"))
    assert not takes_canary(MAIN, CANARY, always, main_cookie, rng)
    never = CanaryPolicy(header="h", weight=0)
    canary_cookie = request(cookie(CANARY.name), ("H", "never"))
    assert takes_canary(MAIN, CANARY, never, canary_cookie, rng)
    # a cookie of another backend, or another name, ties to neither side
    assert takes_canary(MAIN, CANARY, always, request(cookie("default-other-80")), rng)
    assert takes_canary(MAIN, CANARY, always, request(cookie(MAIN.name, "other")), rng)


def test_a_legacy_canary_has_no_cookie_to_be_tied_by() -> None:
    legacy = build_cluster("default-canary-80", [Endpoint("10.0.0.2", 8080)], None)
    policy = CanaryPolicy(weight=0)
    assert not takes_canary(MAIN, legacy, policy, request(cookie(CANARY.name)), random.Random(1))


# --- annotations --------------------------------------------------------------------------------


def test_canary_annotations() -> None:
    got = parsed(
        canary="true",
        canary_by_header="X-Canary",
        canary_by_header_value="yes",
        canary_by_cookie="Beta",
        canary_weight="10",
        canary_weight_total="1000",
        affinity_canary_behavior="legacy",
    )
    assert got.canary == CanaryPolicy(
        header="x_canary", header_value="yes", cookie="beta", weight=10, weight_total=1000
    )
    assert not got.canary_sticky
    assert got.warnings == ()
    assert parsed(canary="true").canary_sticky


def test_bad_canary_annotations_are_warned_about() -> None:
    got = parsed(canary_weight="10", affinity_canary_behavior="legacy")
    assert got.canary is None
    assert got.warnings == (
        f'{PREFIX}canary-weight is ignored without {PREFIX}canary: "true"',
        f'{PREFIX}affinity-canary-behavior has effect only with {PREFIX}canary: "true"',
    )
    got = parsed(
        canary="true",
        canary_weight="ten",
        canary_weight_total="50",
        canary_by_header="bad header!",
        canary_by_header_pattern="[",
        affinity_canary_behavior="Sticky",
    )
    assert got.canary is not None
    assert got.canary.pattern_error
    assert (got.canary.weight, got.canary.weight_total, got.canary.header) == (0, 50, "")
    assert len(got.warnings) == 5, got.warnings


# --- translation --------------------------------------------------------------------------------


def ingress(name: str, host: str | None, *paths: tuple[str, str], **annotations: str) -> Any:
    return ingress_object(name, host, *paths, annotations=annotations_of(**annotations))


def services(*names: str) -> list[Any]:
    objects: list[Any] = []
    for number, name in enumerate(names, 1):
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"ports": [{"port": 80, "targetPort": 8080}]},
            }
        )
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": name, "namespace": "default"},
                "subsets": [{"addresses": [{"ip": f"10.0.0.{number}"}], "ports": [{"port": 8080}]}],
            }
        )
    return objects


def snapshot(*objects: Any) -> Snapshot:
    return translate([*objects, *services("web", "canary", "beta")], TranslateOptions())


def test_a_canary_joins_every_route_of_the_main_backend() -> None:
    snap = snapshot(
        ingress("shop", "shop.test", ("/", "web"), affinity="cookie", affinity_mode="persistent"),
        ingress("other", "other.test", ("/x", "web")),
        ingress("canary", "shop.test", ("/", "canary"), canary="true", canary_weight="5"),
    )
    assert len(snap.routes) == 2
    for route in snap.routes:  # the other host's route to the same backend too, as ingress-nginx
        assert route.canary is not None and route.canary_policy == CanaryPolicy(weight=5)
        assert route.canary.cluster.name == "default-canary-80"
        assert (route.canary.ingress, route.canary.service) == ("canary", "canary")
        assert (route.canary.host, route.canary.path) == (route.host, route.path)
        # sticky: the main backend's affinity, with the canary's own backend name
        assert route.canary.cluster.affinity == Affinity(AffinityMode.PERSISTENT, CookieSettings())
        assert route.canary.cluster.balancer.backend_key == backend_key("default-canary-80")
        assert route.canary.sets_cookie == route.sets_cookie
    assert "default-canary-80" in {cluster.name for cluster in snap.clusters}
    assert snap.warnings == ()


def test_a_legacy_canary_has_no_affinity() -> None:
    snap = snapshot(
        ingress("shop", "shop.test", ("/", "web"), affinity="cookie"),
        ingress(
            "canary",
            "shop.test",
            ("/", "canary"),
            canary="true",
            affinity_canary_behavior="legacy",
        ),
    )
    (route,) = snap.routes
    assert route.canary is not None
    assert route.canary.cluster.affinity is None and route.canary.set_cookie is None


def test_canaries_that_find_no_route_are_warned_about() -> None:
    snap = snapshot(
        ingress("shop", "shop.test", ("/", "web")),
        ingress("lost", "nowhere.test", ("/", "canary"), canary="true"),
        ingress("off-path", "shop.test", ("/elsewhere", "canary"), canary="true"),
        ingress("itself", "shop.test", ("/", "web"), canary="true"),
    )
    (route,) = snap.routes
    assert route.canary is None
    assert sorted(snap.warnings) == [
        "Ingress default/itself: canary backend default-web-80 is the backend of a main"
        " Ingress; ignored",
        "Ingress default/lost: canary path '/': no main Ingress has host nowhere.test; ignored",
        "Ingress default/off-path: no main Ingress route has the host, path and type of canary"
        " backend default-canary-80; ignored",
    ]


def test_a_backend_takes_the_first_canary() -> None:
    snap = snapshot(
        ingress("shop", "shop.test", ("/", "web")),
        ingress("first", "shop.test", ("/", "canary"), canary="true"),
        ingress("second", "shop.test", ("/", "beta"), canary="true"),
    )
    (route,) = snap.routes
    assert route.canary is not None
    # processing order without timestamps: namespace/name descending, so "second" comes first
    assert route.canary.cluster.name == "default-beta-80"
    assert snap.warnings == (
        "Ingress default/first: backend default-web-80 already has canary default-beta-80 from"
        " Ingress default/second; ignored",
    )


def test_only_canaries_make_no_routes() -> None:
    snap = snapshot(ingress("canary", "shop.test", ("/", "canary"), canary="true"))
    assert snap.routes == ()


def test_a_canary_backend_without_affinity_keeps_its_own_balancing() -> None:
    """ingress-nginx makes the canary's upstream from the canary Ingress's own annotations."""
    snap = snapshot(
        ingress("shop", "shop.test", ("/", "web")),
        ingress(
            "canary", "shop.test", ("/", "canary"), canary="true", load_balance="ewma",
            upstream_hash_by="$remote_addr",
        ),
    )  # fmt: skip
    (route,) = snap.routes
    assert route.canary is not None
    balancing = route.canary.cluster.balancing
    assert balancing is not None and balancing.algorithm is LoadBalance.EWMA
    assert balancing.hash_by is not None
    assert route.cluster.balancing is None
