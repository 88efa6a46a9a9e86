"""ingress-nginx's own canary e2e cases (test/e2e/annotations/canary.go), each named after the Go
test it mirrors, run from manifest files through a real proxy to real upstreams; then the
promise of docs/ingress-nginx-compat.md, "Canaries": a session holds its side while the weight
changes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from proxy.app.runtime import ProxyServer
from tests.integration.cluster import (
    Obj,
    Pods,
    endpoint_slice,
    get,
    ingress,
    path,
    reload_after,
    rule,
    service,
    write_manifest,
)
from tests.integration.conftest import StartManifestProxy
from tests.integration.harness import Upstream, url

HOST = "foo"  # the Go tests' fooHost
COOKIE = "aff"  # their affinityCookieName


@pytest.fixture
async def sides(pods: Pods) -> tuple[Upstream, Upstream]:
    """One pod behind Service `web` (the mainline) and one behind Service `canary`."""
    main, canary = await pods.start(2)
    return main, canary


def world(
    sides: tuple[Upstream, Upstream],
    canary: dict[str, str],
    mainline: dict[str, str] | None = None,
    *,
    with_mainline: bool = True,
    canary_rules: tuple[Obj, ...] = (),
) -> list[Obj]:
    """Ingress `foo` (host foo, /info → web) and the canary Ingress `foo-canary` (host foo,
    /info → canary, or `canary_rules`), with `canary: true` and the `canary` annotations."""
    main_pod, canary_pod = sides
    objects = [
        ingress(
            "foo-canary",
            *(canary_rules or (rule(HOST, path("/info", service="canary")),)),
            canary="true",
            **canary,
        ),
        service("web"),
        service("canary"),
        endpoint_slice([main_pod]),
        endpoint_slice([canary_pod], service_name="canary"),
    ]
    if with_mainline:
        objects.insert(0, ingress("foo", rule(HOST, path("/info")), **(mainline or {})))
    return objects


def warnings_of(server: ProxyServer) -> str:
    snapshot = server.publisher.current
    assert snapshot is not None
    return "\n".join(snapshot.warnings)


async def side(server: ProxyServer, sides: tuple[Upstream, Upstream], **options: object) -> str:
    """ "main" or "canary": which pod answered one GET /info on host foo."""
    answer = await get(server, "/info", HOST, **options)  # type: ignore[arg-type]
    assert answer.status == 200, answer
    return {sides[0].name: "main", sides[1].name: "canary"}[str(answer.pod)]


async def shares(
    server: ProxyServer, sides: tuple[Upstream, Upstream], requests: int
) -> Counter[str]:
    """How many of `requests` plain requests (no cookie jar) each side answered."""
    names = {sides[0].name: "main", sides[1].name: "canary"}
    counts: Counter[str] = Counter()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        for _ in range(requests):
            async with session.get(url(server, "/info"), headers={"Host": HOST}) as response:
                assert response.status == 200
                counts[names[(await response.json())["name"]]] += 1
    return counts


# --- when canary is created ---------------------------------------------------------------------


async def test_should_response_with_a_200_status_from_the_mainline_upstream_when_requests_are_made_to_the_mainline_ingress(  # noqa: E501
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    write_manifest(manifest, world(sides, {"canary_by_header": "CanaryByHeader"}))
    server = await manifest_proxy(manifest)
    assert await side(server, sides) == "main"


async def test_should_return_404_status_for_requests_to_the_canary_if_no_matching_ingress_is_found(
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    canary = {"canary_by_header": "CanaryByHeader"}
    write_manifest(manifest, world(sides, canary, with_mainline=False))
    server = await manifest_proxy(manifest)
    answer = await get(server, "/info", HOST, headers={"CanaryByHeader": "always"})
    assert answer.status == 404
    assert "no main Ingress has host foo" in warnings_of(server)


async def test_should_route_requests_to_the_correct_upstream_if_mainline_ingress_is_created_before_the_canary_ingress(  # noqa: E501
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    canary = {"canary_by_header": "CanaryByHeader"}
    write_manifest(manifest, world(sides, canary)[:1] + world(sides, canary)[2:])
    server = await manifest_proxy(manifest)
    assert await side(server, sides, headers={"CanaryByHeader": "always"}) == "main"
    assert await reload_after(server, lambda: write_manifest(manifest, world(sides, canary)))
    assert await side(server, sides, headers={"CanaryByHeader": "always"}) == "canary"
    assert await side(server, sides, headers={"CanaryByHeader": "never"}) == "main"


async def test_should_route_requests_to_the_correct_upstream_if_mainline_ingress_is_created_after_the_canary_ingress(  # noqa: E501
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    canary = {"canary_by_header": "CanaryByHeader"}
    write_manifest(manifest, world(sides, canary, with_mainline=False))
    server = await manifest_proxy(manifest)
    assert await reload_after(server, lambda: write_manifest(manifest, world(sides, canary)))
    assert await side(server, sides, headers={"CanaryByHeader": "always"}) == "canary"
    assert await side(server, sides, headers={"CanaryByHeader": "never"}) == "main"


async def test_should_route_requests_to_the_correct_upstream_if_the_mainline_ingress_is_modified(
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    canary = {"canary_by_header": "CanaryByHeader"}
    write_manifest(manifest, world(sides, canary))
    server = await manifest_proxy(manifest)
    modified = world(sides, canary, {"proxy_read_timeout": "30"})
    assert await reload_after(server, lambda: write_manifest(manifest, modified)) == "success"
    assert await side(server, sides, headers={"CanaryByHeader": "always"}) == "canary"
    assert await side(server, sides, headers={"CanaryByHeader": "never"}) == "main"


async def test_should_route_requests_to_the_correct_upstream_if_the_canary_ingress_is_modified(
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    write_manifest(manifest, world(sides, {"canary_by_header": "CanaryByHeader"}))
    server = await manifest_proxy(manifest)
    modified = world(sides, {"canary_by_header": "CanaryByHeader2"})
    assert await reload_after(server, lambda: write_manifest(manifest, modified)) == "success"
    assert await side(server, sides, headers={"CanaryByHeader2": "always"}) == "canary"
    assert await side(server, sides, headers={"CanaryByHeader": "always"}) == "main"


# --- canaried by header, cookie, weight ---------------------------------------------------------


async def test_when_canaried_by_header_with_no_value_should_route_requests_to_the_correct_upstream(
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    write_manifest(manifest, world(sides, {"canary_by_header": "CanaryByHeader"}))
    server = await manifest_proxy(manifest)
    for value, expected in (("always", "canary"), ("never", "main"), ("badheadervalue", "main")):
        assert await side(server, sides, headers={"CanaryByHeader": value}) == expected, value
    # nginx's $http_ variable: any case, and `_` stands for `-`
    assert await side(server, sides, headers={"canarybyheader": "always"}) == "canary"


async def test_when_canaried_by_header_with_value_should_route_requests_to_the_correct_upstream(
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    canary = {"canary_by_header": "CanaryByHeader", "canary_by_header_value": "DoCanary"}
    write_manifest(manifest, world(sides, canary))
    server = await manifest_proxy(manifest)
    for value, expected in (
        ("DoCanary", "canary"),
        ("always", "main"),  # the value replaces always and never
        ("never", "main"),
        ("otherheadervalue", "main"),
    ):
        assert await side(server, sides, headers={"CanaryByHeader": value}) == expected, value


async def test_when_canaried_by_header_with_value_and_pattern_should_route_requests_to_the_correct_upstream(  # noqa: E501
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    canary = {"canary_by_header": "CanaryByHeader", "canary_by_header_pattern": "^Do[A-Z][a-z]+y$"}
    write_manifest(manifest, world(sides, canary))
    server = await manifest_proxy(manifest)
    assert await side(server, sides, headers={"CanaryByHeader": "DoCanary"}) == "canary"
    assert await side(server, sides, headers={"CanaryByHeader": "Docanary"}) == "main"
    # with a value too, the pattern is not used
    both = {**canary, "canary_by_header_value": "DoCanary"}
    assert await reload_after(server, lambda: write_manifest(manifest, world(sides, both)))
    assert await side(server, sides, headers={"CanaryByHeader": "DoCananry"}) == "main"


async def test_should_routes_to_mainline_upstream_when_the_given_regex_causes_error(
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    canary = {
        "canary_by_header": "CanaryByHeader",
        "canary_by_header_pattern": "[][**da?$&*",
        "canary_by_cookie": "CanaryByCookie",
    }
    write_manifest(manifest, world(sides, canary))
    server = await manifest_proxy(manifest)
    headers = {"CanaryByHeader": "DoCanary"}
    assert await side(server, sides, headers=headers, cookie="CanaryByCookie=always") == "main"
    # without the header, the cookie still decides
    assert await side(server, sides, cookie="CanaryByCookie=always") == "canary"
    assert "is not a valid regular expression" in warnings_of(server)


async def test_when_canaried_by_header_with_value_and_cookie_should_route_requests_to_the_correct_upstream(  # noqa: E501
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    canary = {
        "canary_by_header": "CanaryByHeader",
        "canary_by_header_value": "DoCanary",
        "canary_by_cookie": "CanaryByCookie",
    }
    write_manifest(manifest, world(sides, canary))
    server = await manifest_proxy(manifest)
    headers = {"CanaryByHeader": "otherheadervalue"}
    assert await side(server, sides, headers=headers, cookie="CanaryByCookie=always") == "canary"


async def test_when_canaried_by_cookie_respects_always_and_never_values(
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    write_manifest(manifest, world(sides, {"canary_by_cookie": "Canary-By-Cookie"}))
    server = await manifest_proxy(manifest)
    for value, expected in (("always", "canary"), ("never", "main"), ("badcookievalue", "main")):
        assert await side(server, sides, cookie=f"Canary-By-Cookie={value}") == expected, value


async def test_should_route_requests_only_to_mainline_if_canary_weight_is_0(
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    write_manifest(manifest, world(sides, {"canary_weight": "0"}))
    server = await manifest_proxy(manifest)
    assert await shares(server, sides, 50) == {"main": 50}


async def test_should_route_requests_only_to_canary_if_canary_weight_is_100(
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    write_manifest(manifest, world(sides, {"canary_weight": "100"}))
    server = await manifest_proxy(manifest)
    assert await shares(server, sides, 50) == {"canary": 50}


async def test_should_route_requests_only_to_canary_if_canary_weight_is_equal_to_canary_weight_total(  # noqa: E501
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    write_manifest(manifest, world(sides, {"canary_weight": "1000", "canary_weight_total": "1000"}))
    server = await manifest_proxy(manifest)
    assert await shares(server, sides, 50) == {"canary": 50}


# Split checks: 400 requests at p = 1/2 give 200 ± 10 each; a share below 30% (120) would be
# 8 standard deviations out, never by chance.
async def test_should_route_requests_split_between_mainline_and_canary_if_canary_weight_is_50(
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    write_manifest(manifest, world(sides, {"canary_weight": "50"}))
    server = await manifest_proxy(manifest)
    counts = await shares(server, sides, 400)
    assert counts["main"] >= 120 and counts["canary"] >= 120, counts


async def test_should_route_requests_split_between_mainline_and_canary_if_canary_weight_is_100_and_weight_total_is_200(  # noqa: E501
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    write_manifest(manifest, world(sides, {"canary_weight": "100", "canary_weight_total": "200"}))
    server = await manifest_proxy(manifest)
    counts = await shares(server, sides, 400)
    assert counts["main"] >= 120 and counts["canary"] >= 120, counts


# --- single canary Ingress ----------------------------------------------------------------------


def catch_all(name: str, service_name: str, **annotations: str) -> Obj:
    """An Ingress with only a defaultBackend (the Go framework's NewSingleCatchAllIngress)."""
    obj = ingress(name, **annotations)
    del obj["spec"]["rules"]
    obj["spec"]["defaultBackend"] = {"service": {"name": service_name, "port": {"number": 80}}}
    return obj


async def test_should_not_use_canary_as_a_catch_all_server(
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    objects = world(sides, {})[2:]  # the Services and slices
    objects += [
        catch_all("foo-canary", "canary", canary="true", canary_by_header="CanaryByHeader"),
        catch_all("foo", "web"),
    ]
    write_manifest(manifest, objects)
    server = await manifest_proxy(manifest)
    for host in ("foo", "any.test"):
        answer = await get(server, "/info", host)
        assert answer.pod == sides[0].name, host  # the catch-all is the mainline's
    # ...and the canary joins it, as ingress-nginx merges a canary defaultBackend
    answer = await get(server, "/info", "any.test", headers={"CanaryByHeader": "always"})
    assert answer.pod == sides[1].name


async def test_should_not_use_canary_with_domain_as_a_server(
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    objects = world(sides, {"canary_by_header": "CanaryByHeader"}, with_mainline=False)
    objects.append(ingress("bar", rule("bar", path("/info"))))
    write_manifest(manifest, objects)
    server = await manifest_proxy(manifest)
    assert (await get(server, "/info", "foo")).status == 404
    assert (await get(server, "/info", "bar")).pod == sides[0].name


async def test_does_not_crash_when_canary_ingress_has_multiple_paths_to_the_same_non_matching_backend(  # noqa: E501
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    paths = rule(HOST, path("/foo", service="httpy-svc-canary"), path("/bar", "httpy-svc-canary"))
    objects = world(sides, {"canary_by_header": "CanaryByHeader"}, canary_rules=(paths,))
    write_manifest(manifest, objects)
    server = await manifest_proxy(manifest)
    assert await side(server, sides, headers={"CanaryByHeader": "always"}) == "main"
    warnings = warnings_of(server)
    assert "no main Ingress route has the host, path and type" in warnings


# --- canary affinity behavior -------------------------------------------------------------------

STICKY_MAIN = {"affinity": "cookie", "session_cookie_name": COOKIE}
FORCED = {"ForceCanary": "yes"}


async def canary_session(
    server: ProxyServer, sides: tuple[Upstream, Upstream], behaviour: str | None
) -> None:
    """The Go tests' sticky case: a forced canary request's cookie keeps 50 more requests on
    the canary though its weight is 1%."""
    forced = await get(server, "/info", HOST, headers=FORCED)
    assert forced.pod == sides[1].name
    cookie = forced.value(COOKIE)
    for _ in range(50):
        assert await side(server, sides, cookie=f"{COOKIE}={cookie}") == "canary", behaviour


def behaviour_world(
    sides: tuple[Upstream, Upstream], weight: str, behaviour: str | None
) -> list[Obj]:
    canary = {
        "canary_by_header": "ForceCanary",
        "canary_by_header_value": "yes",
        "canary_weight": weight,
        **({"affinity_canary_behavior": behaviour} if behaviour else {}),
    }
    return world(sides, canary, STICKY_MAIN)


async def test_always_routes_traffic_to_canary_if_first_request_was_affinitized_to_canary_default_behavior(  # noqa: E501
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    write_manifest(manifest, behaviour_world(sides, "1", None))
    server = await manifest_proxy(manifest)
    await canary_session(server, sides, None)


async def test_always_routes_traffic_to_canary_if_first_request_was_affinitized_to_canary_explicit_sticky_behavior(  # noqa: E501
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    write_manifest(manifest, behaviour_world(sides, "1", "sticky"))
    server = await manifest_proxy(manifest)
    await canary_session(server, sides, "sticky")


async def test_routes_traffic_to_either_mainline_or_canary_backend_legacy_behavior(
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    write_manifest(manifest, behaviour_world(sides, "50", "legacy"))
    server = await manifest_proxy(manifest)
    forced = await get(server, "/info", HOST, headers=FORCED)
    assert forced.pod == sides[1].name
    assert not any(c.startswith(f"{COOKIE}=") for c in forced.set_cookies)
    # TestMainlineCanaryDistribution: with no cookie kept, both sides keep getting requests
    counts = await shares(server, sides, 400)
    assert counts["main"] >= 120 and counts["canary"] >= 120, counts


async def test_sessions_keep_their_side_when_the_weight_changes(
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    """Sticky behaviour: a main cookie never flips to the canary as its weight goes to 100, and
    a canary cookie never flips back as it goes to 0."""
    write_manifest(manifest, behaviour_world(sides, "0", None))
    server = await manifest_proxy(manifest)
    main_cookie = (await get(server, "/info", HOST)).value(COOKIE)
    canary_cookie = (await get(server, "/info", HOST, headers=FORCED)).value(COOKIE)
    for weight in ("100", "0"):
        changed = behaviour_world(sides, weight, None)
        assert await reload_after(server, lambda c=changed: write_manifest(manifest, c))  # type: ignore[misc]
        for _ in range(20):
            assert await side(server, sides, cookie=f"{COOKIE}={main_cookie}") == "main"
            assert await side(server, sides, cookie=f"{COOKIE}={canary_cookie}") == "canary"
        # a new client follows the weight
        assert await side(server, sides) == ("canary" if weight == "100" else "main")


async def test_status_shows_each_route_s_canary_and_its_traffic(
    sides: tuple[Upstream, Upstream], manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    write_manifest(manifest, world(sides, {"canary_by_header": "CanaryByHeader"}))
    server = await manifest_proxy(manifest)
    for value in ("always", "always", "never"):
        await side(server, sides, headers={"CanaryByHeader": value})
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{server.metrics_address}/status") as response,
    ):
        status = await response.json()
    (route,) = status["routes"]
    assert (route["cluster"], route["canary"]) == ("default-web-80", "default-canary-80")
    requests = {
        cluster["name"]: (cluster["balancing"], sum(e["requests"] for e in cluster["endpoints"]))
        for cluster in status["clusters"]
    }
    default = "load-balance of --load-balance (round_robin by default)"
    assert requests == {"default-web-80": (default, 1), "default-canary-80": (default, 2)}
