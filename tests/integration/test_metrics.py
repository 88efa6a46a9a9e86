"""/metrics after real traffic (docs/behaviour.md, "Metrics"), read as Prometheus reads it:
names, types, labels and the counts of what each test did."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from proxy.app.runtime import ProxyServer
from proxy.app.settings import ServeSettings
from proxy.control.sources.static import static_snapshot
from proxy.control.translate import TranslateOptions
from proxy.control.translate.pipeline import translate
from proxy.core.access import RealIp, parse_ranges
from proxy.core.cookies import CookieSettings
from proxy.core.model import Affinity, AffinityMode, Endpoint, UpstreamPolicy
from proxy.core.values import Address
from proxy.observability.metrics import BYTES, SECONDS, Metrics
from tests.gateway.test_sessions import GATEWAY
from tests.integration.cluster import (
    Answer,
    Pods,
    endpoint_slice,
    get,
    ingress,
    path,
    rule,
    service,
    until,
    write_manifest,
)
from tests.integration.conftest import StartManifestProxy, StartProxy, StartUpstreams
from tests.integration.harness import Upstream
from tests.tables import affinity_table

OUTCOMES = {"sticky", "new", "repicked", "failover", "draining"}
ROUTE_LABELS = {"namespace", "ingress", "service", "host", "path"}


async def scrape(server: ProxyServer) -> dict[str, Metric]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{server.metrics_address}/metrics") as response,
    ):
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    return {family.name: family for family in text_string_to_metric_families(text)}


def values(family: Metric, suffix: str = "", by: str | None = None) -> dict[str, float]:
    """Sample values of `family` (samples named name+suffix), keyed by the label `by`."""
    return {
        sample.labels[by] if by else "": sample.value
        for sample in family.samples
        if sample.name == family.name + suffix
    }


def outcomes(families: dict[str, Metric]) -> dict[str, float]:
    return values(families["sticky_proxy_affinity_decisions"], "_total", "outcome")


def publish(server: ProxyServer, endpoints: list[Endpoint], affinity: Affinity) -> None:
    server.publisher.publish(static_snapshot(endpoints, affinity, UpstreamPolicy()))


async def test_names_types_and_labels_after_traffic(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    ups = await upstreams(3)
    server = await proxy([u.endpoint for u in ups], Affinity(cookie=CookieSettings(name="key")))
    first = await get(server, "/a?q=1")
    await get(server, "/b")
    for _ in range(3):
        assert (await get(server, "/c", cookie="key=" + first.value("key"))).pod == first.pod
    families = await scrape(server)

    kinds = {name: family.type for name, family in families.items()}
    assert {
        "sticky_proxy_requests": "counter",
        "sticky_proxy_request_duration_seconds": "histogram",
        "sticky_proxy_upstream_response_seconds": "histogram",
        "sticky_proxy_request_size_bytes": "histogram",
        "sticky_proxy_response_size_bytes": "histogram",
        "sticky_proxy_affinity_decisions": "counter",
        "sticky_proxy_upstream_errors": "counter",
        "sticky_proxy_endpoints": "gauge",
        "sticky_proxy_endpoint_requests": "counter",
        "sticky_proxy_endpoint_new_sessions": "counter",
        "sticky_proxy_endpoint_active_sessions": "gauge",
        "sticky_proxy_config_reloads": "counter",
        "sticky_proxy_config_last_reload_successful": "gauge",
        "sticky_proxy_config_last_reload_success_timestamp_seconds": "gauge",
        "sticky_proxy_config_build_seconds": "histogram",
        "sticky_proxy_routes": "gauge",
        "sticky_proxy_ready": "gauge",
        "sticky_proxy_endpoint_draining": "gauge",
        "sticky_proxy_kubernetes_watch_restarts": "counter",
        "process_cpu_seconds": "counter",
        "process_resident_memory_bytes": "gauge",
        "process_start_time_seconds": "gauge",
    }.items() <= kinds.items()
    # ingress-nginx has no _created series; neither has this proxy, with one worker or many
    assert not [s for f in families.values() for s in f.samples if s.name.endswith("_created")]

    (requests,) = families["sticky_proxy_requests"].samples
    assert requests.name == "sticky_proxy_requests_total"
    assert requests.labels == {"namespace": "", "ingress": "", "service": "", "host": "*",
                               "path": "/", "method": "GET", "status": "200"}  # fmt: skip
    assert requests.value == 5  # the raw paths /a?q=1, /b, /c are no labels: the route's is
    for name, bounds in (
        ("sticky_proxy_request_duration_seconds", SECONDS),
        ("sticky_proxy_upstream_response_seconds", SECONDS),
        ("sticky_proxy_request_size_bytes", BYTES),
        ("sticky_proxy_response_size_bytes", BYTES),
    ):
        family = families[name]
        buckets = [s for s in family.samples if s.name == name + "_bucket"]
        assert [float(s.labels["le"]) for s in buckets] == [*bounds, float("inf")], name
        assert all(set(s.labels) == ROUTE_LABELS | {"le"} for s in buckets), name
        assert values(family, "_count") == {"": 5}, name
        assert buckets[-1].value == 5, name
        assert values(family, "_sum")[""] > 0, name
    sizes = families["sticky_proxy_response_size_bytes"]
    assert values(sizes, "_sum")[""] > 5 * 100  # heads and JSON bodies

    assert outcomes(families) == {"sticky": 3, "new": 2, "repicked": 0, "failover": 0,
                                  "draining": 0}  # fmt: skip
    errors = values(families["sticky_proxy_upstream_errors"], "_total", "reason")
    assert errors == {"connect": 0, "timeout": 0, "reset": 0, "protocol": 0}
    assert values(families["sticky_proxy_endpoints"], by="state") == {"ready": 3, "draining": 0}

    labels = {u.endpoint.label for u in ups}
    endpoint_requests = families["sticky_proxy_endpoint_requests"]
    assert {tuple(s.labels.items()) for s in endpoint_requests.samples} == {
        (("cluster", "static"), ("endpoint", label)) for label in labels
    }
    by_endpoint = values(endpoint_requests, "_total", "endpoint")
    assert sum(by_endpoint.values()) == 5
    assert by_endpoint[next(u.endpoint.label for u in ups if u.name == first.pod)] >= 4
    new_sessions = values(families["sticky_proxy_endpoint_new_sessions"], "_total", "endpoint")
    assert sum(new_sessions.values()) == 2
    active = values(families["sticky_proxy_endpoint_active_sessions"], by="endpoint")
    assert set(active) == labels
    assert sum(active.values()) in (1, 2)  # two cookies (an estimate: 1 if their hashes collide)

    assert values(families["sticky_proxy_config_reloads"], "_total", "result") == {
        "success": 1, "failure": 0,
    }  # fmt: skip
    assert values(families["sticky_proxy_config_last_reload_successful"]) == {"": 1}
    assert values(families["process_cpu_seconds"], "_total")[""] > 0


CHANGE_ON_FAILURE = Affinity(cookie=CookieSettings(name="key", change_on_failure=True))


async def first_session(
    upstreams: StartUpstreams, proxy: StartProxy
) -> tuple[ProxyServer, list[Upstream], Answer]:
    """A proxy in front of 3 upstreams with change-on-failure, and its first answer (new)."""
    ups = await upstreams(3)
    server = await proxy([u.endpoint for u in ups], CHANGE_ON_FAILURE)
    return server, ups, await get(server)


async def test_outcome_counters_follow_what_happened(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    server, ups, first = await first_session(upstreams, proxy)  # new
    cookie = "key=" + first.value("key")
    await get(server, cookie=cookie)  # sticky
    await get(server, cookie=cookie)  # sticky
    pinned = next(u for u in ups if u.name == first.pod)
    draining = [Endpoint(u.host, u.port, draining=u is pinned) for u in ups]
    publish(server, draining, CHANGE_ON_FAILURE)
    assert (await get(server, cookie=cookie)).pod == pinned.name  # draining
    families = await scrape(server)
    assert outcomes(families) == {"sticky": 2, "new": 1, "repicked": 0, "failover": 0,
                                  "draining": 1}  # fmt: skip
    assert values(families["sticky_proxy_endpoints"], by="state") == {"ready": 2, "draining": 1}

    await pinned.stop()
    # draining, its connection refused, then failover: the request's decision is its last try's
    moved = await get(server, cookie=cookie)
    assert moved.status == 200 and moved.pod != pinned.name
    families = await scrape(server)
    assert outcomes(families) == {"sticky": 2, "new": 1, "repicked": 0, "failover": 1,
                                  "draining": 1}  # fmt: skip
    errors = values(families["sticky_proxy_upstream_errors"], "_total", "reason")
    assert errors["connect"] == 1
    new_sessions = values(families["sticky_proxy_endpoint_new_sessions"], "_total", "endpoint")
    assert sum(new_sessions.values()) == 2  # the first visit and the failover's new cookie

    persistent = await proxy(
        [u.endpoint for u in ups if u is not pinned], Affinity(AffinityMode.PERSISTENT)
    )
    assert (await get(persistent, cookie="INGRESSCOOKIE=unknown|x")).status == 200  # repicked
    assert outcomes(await scrape(persistent)) == {"sticky": 0, "new": 0, "repicked": 1,
                                                  "failover": 0, "draining": 0}  # fmt: skip


async def test_a_retried_request_counts_one_decision_the_last_tries(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    """Tries are upstream errors and endpoint requests; a request makes one affinity decision,
    its last try's, and only a session the endpoint answered counts as new or active there."""
    ups = await upstreams(2)
    server = await proxy([u.endpoint for u in ups], Affinity(cookie=CookieSettings(name="key")))
    first = await get(server)  # new, answered by `dead` while it lived
    dead = next(u for u in ups if u.name == first.pod)
    live = next(u for u in ups if u is not dead)
    await dead.stop()  # its port now refuses connections
    for _ in range(20):
        # a new session: a first try on `dead` is refused, the failover try reaches `live`
        assert (await get(server)).pod == live.name
    for _ in range(2):
        # pinned to `dead`, no change-on-failure: all 3 tries refused, then 502
        assert (await get(server, cookie="key=" + first.value("key"))).status == 502
    families = await scrape(server)

    refused = values(families["sticky_proxy_upstream_errors"], "_total", "reason")["connect"]
    failovers = refused - 2 * 3
    assert failovers > 0  # each new session's first try lands on `dead` with odds 1/2
    assert outcomes(families) == {"new": 1 + 20 - failovers, "failover": failovers,
                                  "sticky": 2, "repicked": 0, "draining": 0}  # fmt: skip
    assert sum(outcomes(families).values()) == 23  # one per request
    endpoint = {dead.endpoint.label: "dead", live.endpoint.label: "live"}
    requests = values(families["sticky_proxy_endpoint_requests"], "_total", "endpoint")
    assert {endpoint[k]: v for k, v in requests.items()} == {"dead": 1 + refused, "live": 20}
    new_sessions = values(families["sticky_proxy_endpoint_new_sessions"], "_total", "endpoint")
    # the cookies of refused tries never reached a client
    assert {endpoint[k]: v for k, v in new_sessions.items()} == {"dead": 1, "live": 20}
    active = values(families["sticky_proxy_endpoint_active_sessions"], by="endpoint")
    assert active[dead.endpoint.label] == 1  # the one session it answered


async def test_a_request_whose_client_left_counts_its_decision(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    server, ups, first = await first_session(upstreams, proxy)  # new
    dead = next(u for u in ups if u.name == first.pod)
    await dead.stop()
    others = [u for u in ups if u is not dead]
    for upstream in others:
        upstream.slow_seconds = 30.0
    assert server.address is not None
    _, writer = await asyncio.open_connection(server.address.host, server.address.port)
    writer.write(b"GET /slow HTTP/1.1\r\nHost: app.test\r\nCookie: key=%s\r\n\r\n"
                 % first.value("key").encode())  # fmt: skip
    # the sticky try is refused; the failover try waits on a slow upstream; the client leaves
    await until(lambda: sum(u.requests for u in others) == 1, "the failover try")
    writer.close()
    await until(lambda: left(server) == 1, "the proxy counting the request as 499")
    assert outcomes(await scrape(server)) == {"new": 1, "failover": 1, "sticky": 0,
                                              "repicked": 0, "draining": 0}  # fmt: skip


async def test_a_session_counts_when_its_answer_starts_even_after_a_sync(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    (up,) = await upstreams(1)
    up.slow_seconds = 0.5
    server = await proxy([up.endpoint], Affinity(cookie=CookieSettings(name="key")))
    answer = asyncio.create_task(get(server, "/slow"))
    await until(lambda: up.requests == 1, "the try reaching the upstream")
    families = await scrape(server)  # syncs between the try and its answer
    assert values(families["sticky_proxy_endpoint_requests"], "_total") == {"": 1}
    assert values(families["sticky_proxy_endpoint_new_sessions"], "_total") == {"": 0}
    assert (await answer).status == 200
    families = await scrape(server)
    assert values(families["sticky_proxy_endpoint_requests"], "_total") == {"": 1}
    assert values(families["sticky_proxy_endpoint_new_sessions"], "_total") == {"": 1}
    assert values(families["sticky_proxy_endpoint_active_sessions"]) == {"": 1}
    assert outcomes(families)["new"] == 1


async def test_an_answer_from_an_endpoint_that_left_the_table_brings_no_series_back(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    ups = await upstreams(2)
    for upstream in ups:
        upstream.slow_seconds = 0.5
    affinity = Affinity(cookie=CookieSettings(name="key"))
    server = await proxy([u.endpoint for u in ups], affinity)
    answer = asyncio.create_task(get(server, "/slow"))
    await until(lambda: sum(u.requests for u in ups) == 1, "the try reaching an upstream")
    (staying,) = [u for u in ups if not u.requests]
    publish(server, [staying.endpoint], affinity)
    series = "sticky_proxy_endpoint_new_sessions"
    assert set(values((await scrape(server))[series], "_total", "endpoint")) == {
        staying.endpoint.label
    }
    assert (await answer).status == 200  # from the upstream that left, with a new cookie
    assert set(values((await scrape(server))[series], "_total", "endpoint")) == {
        staying.endpoint.label
    }


def left(server: ProxyServer) -> float:
    """Requests counted as 499: the client closed the connection before the answer."""
    labels = {"namespace": "", "ingress": "", "service": "", "host": "*", "path": "/",
              "method": "GET", "status": "499"}  # fmt: skip
    return server.metrics.registry.get_sample_value("sticky_proxy_requests_total", labels) or 0


async def test_endpoints_that_leave_the_table_take_their_series_along(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    ups = await upstreams(3)
    affinity = Affinity()
    server = await proxy([u.endpoint for u in ups], affinity)
    for _ in range(6):
        await get(server)
    publish(server, [Endpoint(u.host, u.port, pod=f"pod-{u.name}") for u in ups[:2]], affinity)
    families = await scrape(server)
    for name in ("sticky_proxy_endpoint_requests", "sticky_proxy_endpoint_new_sessions",
                 "sticky_proxy_endpoint_active_sessions"):  # fmt: skip
        # pods are named by pod name when known; the address-named series are gone
        assert {s.labels["endpoint"] for s in families[name].samples} == {"pod-u0", "pod-u1"}
    assert values(families["sticky_proxy_endpoints"], by="state") == {"ready": 2, "draining": 0}
    # The proxy-wide counts stay: they count what happened, not who is left.
    assert outcomes(families)["new"] == 6
    assert values(families["sticky_proxy_requests"], "_total") == {"": 6}


async def test_endpoint_counts_add_up_across_syncs(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    """A sync moves only the endpoints counted since the last one: a big table's idle
    endpoints are not walked every second. Nothing may be lost or counted twice by that."""
    ups = await upstreams(2)
    server = await proxy([u.endpoint for u in ups], Affinity(cookie=CookieSettings(name="key")))
    first = await get(server)
    for _ in range(2):
        await get(server, cookie="key=" + first.value("key"))
    families = await scrape(server)  # a scrape syncs
    requests = values(families["sticky_proxy_endpoint_requests"], "_total", "endpoint")
    assert sorted(requests.values()) == [0, 3]
    for _ in range(4):
        await get(server, cookie="key=" + first.value("key"))
    families = await scrape(server)
    requests = values(families["sticky_proxy_endpoint_requests"], "_total", "endpoint")
    assert sorted(requests.values()) == [0, 7]
    active = values(families["sticky_proxy_endpoint_active_sessions"], by="endpoint")
    assert sorted(active.values()) == [0, 1]  # one session, on the endpoint that served it
    new_sessions = values(families["sticky_proxy_endpoint_new_sessions"], "_total", "endpoint")
    assert sorted(new_sessions.values()) == [0, 1]


async def test_requests_without_a_route_count_with_empty_route_labels(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], None)
    await get(server)
    async with (
        aiohttp.ClientSession() as session,
        # a malformed Host is refused before any route is looked up
        session.get(f"http://{server.address}/", headers={"Host": "a\tb"}) as response,
    ):
        assert response.status == 400
    families = await scrape(server)
    statuses = {
        (s.labels["host"], s.labels["status"]): s.value
        for s in families["sticky_proxy_requests"].samples
    }
    assert statuses == {("*", "200"): 1, ("", "400"): 1}
    # no affinity: no decisions, but the endpoint's load still counts
    assert set(outcomes(families).values()) == {0}
    assert values(families["sticky_proxy_endpoint_requests"], "_total") == {"": 1}


def test_collecting_in_another_thread_reads_what_the_event_loop_synced() -> None:
    """The admin listener syncs on the loop and renders in a thread; the thread must not sync
    (the data path's counters belong to the loop), so it sees exactly what the loop moved in."""
    metrics = Metrics()
    labels = {"namespace": "", "ingress": "", "service": "", "host": "", "path": "",
              "method": "GET", "status": "503"}  # fmt: skip

    def read_in_a_thread() -> float | None:
        with ThreadPoolExecutor(1) as thread:
            return thread.submit(
                metrics.registry.get_sample_value, "sticky_proxy_requests_total", labels
            ).result()

    metrics.count_request(None, b"GET", 503)
    assert read_in_a_thread() is None  # counted on the data path, not synced yet
    metrics.sync()
    assert read_in_a_thread() == 1
    metrics.count_request(None, b"GET", 503)
    assert metrics.registry.get_sample_value("sticky_proxy_requests_total", labels) == 2


def test_a_new_tables_series_are_made_a_slice_at_a_time_and_a_scrape_completes_them() -> None:
    """Making a series costs 12-30 µs: a table of 20,000 new endpoints made at once held the
    event loop for over 250 ms, so the runtime makes them a slice per loop turn."""
    snapshot = affinity_table([f"slice{i}" for i in range(30)], endpoints=10, subnet=9)
    metrics = Metrics()
    metrics.follow(lambda: snapshot)

    def endpoint_series() -> int:
        with ThreadPoolExecutor(1) as thread:  # another thread's collection does not sync
            families = thread.submit(lambda: list(metrics.registry.collect())).result()
        return sum(
            1
            for family in families
            if family.name == "sticky_proxy_endpoint_requests"
            for sample in family.samples
            if sample.name.endswith("_total")
        )

    metrics.sync(series=50)
    assert metrics.series_pending
    assert endpoint_series() == 50  # five clusters of ten
    metrics.add_series(100)
    assert endpoint_series() == 150
    metrics.registry.get_sample_value("sticky_proxy_requests_total")  # a scrape: syncs it all
    assert not metrics.series_pending
    assert endpoint_series() == 300


async def test_persistent_sessions_count_clients_as_trusted_proxies_name_them(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    """A persistent cookie names the pod, so sessions are told apart by client: behind a
    trusted load balancer, the client it names, not the balancer's own address."""
    (up,) = await upstreams(1)
    behind_balancer = RealIp(b"x-forwarded-for", parse_ranges("127.0.0.0/8"))
    server = await proxy([up.endpoint], Affinity(AffinityMode.PERSISTENT), real_ip=behind_balancer)
    for client in ("203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.1"):
        assert (await get(server, headers={"X-Forwarded-For": client})).status == 200
    active = values((await scrape(server))["sticky_proxy_endpoint_active_sessions"])
    assert active in ({"": 3}, {"": 2})  # three clients, not one (2: two hashes shared a register)


async def test_requests_a_canary_answers_count_under_the_canarys_route(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    """A canary's route is in no table's list of routes, only its location's: its series must
    still count as current, not be pruned as soon as they are made."""
    main_pod, canary_pod = await pods.start(2)
    canary = ingress("foo-canary", rule("foo", path("/", service="canary")), canary="true",
                     canary_by_header="Canary")  # fmt: skip
    write_manifest(manifest, [ingress("foo", rule("foo", path("/"))), canary, service("web"),
                              service("canary"), endpoint_slice([main_pod]),
                              endpoint_slice([canary_pod], service_name="canary")])  # fmt: skip
    server = await manifest_proxy(manifest)
    for _ in range(2):
        assert (await get(server, "/", "foo", headers={"Canary": "always"})).pod == canary_pod.name
    assert (await get(server, "/", "foo")).pod == main_pod.name
    families = await scrape(server)
    assert values(families["sticky_proxy_requests"], "_total", "ingress") == {
        "foo": 1, "foo-canary": 2
    }  # fmt: skip
    assert values(families["sticky_proxy_request_duration_seconds"], "_count", "service") == {
        "web": 1, "canary": 2
    }  # fmt: skip


async def test_requests_each_backend_of_an_httproute_rule_takes_count_under_its_service(
    pods: Pods,
) -> None:
    """Each backendRef of a rule is a route of its own, in no list of routes either."""
    web, other = await pods.start(2)
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": "app", "namespace": "default"},
             "spec": {"parentRefs": [{"name": "web"}], "hostnames": ["app.test"],
                      "rules": [{"backendRefs": [{"name": "web", "port": 80},
                                                 {"name": "other", "port": 80}]}]}}  # fmt: skip
    objects = [*GATEWAY, route, service("web"), service("other"),
               endpoint_slice([web]), endpoint_slice([other], service_name="other")]  # fmt: skip
    loopback = Address("127.0.0.1", 0)
    server = ProxyServer(ServeSettings(listen=loopback, metrics_listen=loopback),
                         translate(objects, TranslateOptions()))  # fmt: skip
    await server.start()
    try:
        sent = 0
        while not (web.requests and other.requests):  # equal weights: each one's turn comes
            assert sent < 200, "a backend never answered"
            assert (await get(server)).status == 200
            sent += 1
        families = await scrape(server)
    finally:
        await server.stop(grace=0.5)
    by_service = values(families["sticky_proxy_requests"], "_total", "service")
    assert by_service == {"web": web.requests, "other": other.requests}
    assert sum(by_service.values()) == sent
