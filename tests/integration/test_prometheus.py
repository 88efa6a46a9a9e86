"""A real Prometheus scrapes a proxy: the PromQL operators run returns the traffic sent.

Each query here is one a user writes against `/metrics` (and the dashboard and alerts in
k8s/monitoring/ reuse them, see test_monitoring.py): counts by status, outcome and endpoint,
sessions per pod, upstream errors, reloads and latency quantiles from the histograms.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from proxy.app.runtime import ProxyServer
from proxy.app.settings import ServeSettings
from proxy.control.translate import TranslateOptions, translate
from proxy.core.values import Address
from tests.e2e.serve_process import serve_process
from tests.integration.cluster import (
    Pods,
    endpoint_slice,
    get,
    ingress,
    path,
    reload_after,
    rule,
    service,
    web_app,
    write_manifest,
)
from tests.integration.conftest import StartManifestProxy
from tests.integration.harness import url
from tests.integration.prometheus import prometheus, prometheus_binary

pytestmark = pytest.mark.skipif(
    prometheus_binary() is None,
    reason="Prometheus is not installed here (apt-get install prometheus; .ci/run does it)",
)

SESSIONS = 12
REPEATS = 3  # requests each session sends after its first


def target(server: ProxyServer) -> str:
    assert server.metrics_address is not None
    return str(server.metrics_address)


async def sessions_traffic(server: ProxyServer) -> None:
    """SESSIONS new visitors, each back REPEATS times with its cookie; 4 requests for a host
    nobody serves."""
    for _ in range(SESSIONS):
        first = await get(server)
        assert first.status == 200
        cookie = "INGRESSCOOKIE=" + first.value("INGRESSCOOKIE")
        for _ in range(REPEATS):
            assert (await get(server, cookie=cookie)).status == 200
    for _ in range(4):
        assert (await get(server, host="nobody.test")).status == 404


async def test_requests_outcomes_and_sessions_as_prometheus_sees_them(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy, tmp_path: Path
) -> None:
    started = await pods.start(3)
    write_manifest(manifest, web_app(started, affinity="cookie"))
    server = await manifest_proxy(manifest)
    async with prometheus([target(server)], tmp_path) as prom:
        await sessions_traffic(server)
        await prom.scraped()
        served = SESSIONS * (1 + REPEATS)
        by_status = await prom.values(
            'sum by (status) (sticky_proxy_requests_total{namespace="default", ingress="web"})',
            "status",
        )
        assert by_status == {"200": served}
        unrouted = await prom.values('sum(sticky_proxy_requests_total{ingress=""})', "")
        assert unrouted == {"": 4}
        outcomes = await prom.values(
            "sum by (outcome) (sticky_proxy_affinity_decisions_total)", "outcome"
        )
        assert {k: v for k, v in outcomes.items() if v} == {
            "new": SESSIONS,
            "sticky": SESSIONS * REPEATS,
        }
        sessions = await prom.values(
            "sum by (endpoint) (sticky_proxy_endpoint_active_sessions)", "endpoint"
        )
        assert sorted(sessions) == sorted(pod.name for pod in started)  # the pods' names
        # Linear counting: sessions whose keys share one of a sketch's 256 registers count once.
        # Over these three pods one is lost in 9 % of runs, two in 0.3 %, three in 0.007 %.
        assert SESSIONS - 2 <= sum(sessions.values()) <= SESSIONS
        requests = await prom.values(
            "sum by (endpoint) (sticky_proxy_endpoint_requests_total)", "endpoint"
        )
        assert sum(requests.values()) == served
        assert await prom.values("sticky_proxy_endpoints", "state") == {
            "ready": 3,
            "draining": 0,
        }


async def test_latency_quantiles_come_from_the_histograms(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy, tmp_path: Path
) -> None:
    (pod,) = await pods.start(1)
    pod.slow_seconds = 0.3
    write_manifest(manifest, web_app([pod]))
    server = await manifest_proxy(manifest)
    async with prometheus([target(server)], tmp_path) as prom:
        # rate() needs a sample from before the traffic: a route's series appear with its
        # first request, as ingress-nginx's do
        assert (await get(server)).status == 200
        await prom.scraped()
        for _ in range(15):
            assert (await get(server)).status == 200
        for _ in range(4):
            assert (await get(server, "/slow")).status == 200
        await prom.scraped()
        await prom.scraped()  # two samples since the traffic: rate() sees all of it

        async def quantile(q: float, histogram: str) -> float:
            (series,) = await prom.query(
                f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket[1m])))"
            )
            return series.value

        for histogram in (
            "sticky_proxy_request_duration_seconds",
            "sticky_proxy_upstream_response_seconds",
        ):
            # 15 fast answers and 4 of 0.3 s in the window: the median is in the fastest
            # buckets, the 95th percentile in the 0.25-0.5 s bucket
            assert await quantile(0.5, histogram) <= 0.1, histogram
            assert 0.25 <= await quantile(0.95, histogram) <= 0.5, histogram
        counted = await prom.values("sum(sticky_proxy_request_duration_seconds_count)", "")
        assert counted == {"": 20}


async def test_upstream_errors_and_reloads_as_prometheus_sees_them(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy, tmp_path: Path
) -> None:
    live, doomed = await pods.start(2)
    write_manifest(manifest, web_app([live, doomed]))
    server = await manifest_proxy(manifest)
    async with prometheus([target(server)], tmp_path) as prom:
        await doomed.stop()  # its port refuses connections; requests fail over to `live`
        for _ in range(20):
            assert (await get(server)).status == 200
        assert await reload_after(server, lambda: write_manifest(manifest, web_app([live])))
        await prom.scraped()
        errors = await prom.values("sum by (reason) (sticky_proxy_upstream_errors_total)", "reason")
        assert errors["connect"] >= 1  # round robin: every other new request tries `doomed`
        failovers = await prom.values(
            'sum(sticky_proxy_affinity_decisions_total{outcome="failover"})', ""
        )
        assert failovers == {"": 0}  # no affinity here: a retry is not a session's failover
        reloads = await prom.values("sum by (result) (sticky_proxy_config_reloads_total)", "result")
        assert reloads == {"success": 2, "failure": 0}
        assert await prom.values("sticky_proxy_config_last_reload_successful", "") == {"": 1}
        assert await prom.values("sticky_proxy_endpoints", "state") == {
            "ready": 1,
            "draining": 0,
        }


async def test_prometheus_reports_a_proxy_it_cannot_scrape_as_down(tmp_path: Path) -> None:
    """The `up` series the readiness alert reads: 0 for a target that does not answer."""
    async with prometheus(["127.0.0.1:9"], tmp_path) as prom:
        with pytest.raises(AssertionError, match="down"):
            await prom.scraped()
        assert await prom.values("up", "instance") == {"127.0.0.1:9": 0}


async def test_two_workers_add_up_in_prometheus(pods: Pods, manifest: Path, tmp_path: Path) -> None:
    """`serve --workers 2`: each request on its own connection, so both workers serve; the
    sums Prometheus computes are the traffic sent, once each."""
    started = await pods.start(2)
    write_manifest(manifest, web_app(started, affinity="cookie"))
    async with (
        serve_process("--workers", "2", "--manifests", str(manifest)) as served,
        prometheus([served.admin.removeprefix("http://")], tmp_path) as prom,
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client,
    ):

        async def visit(cookie: str | None = None) -> str | None:
            headers = {"Host": "app.test", **({"Cookie": cookie} if cookie else {})}
            async with client.get(served.proxy, headers=headers) as response:
                assert response.status == 200
                return response.cookies["INGRESSCOOKIE"].value if not cookie else None

        for _ in range(SESSIONS):
            value = await visit()
            for _ in range(REPEATS):
                await visit(f"INGRESSCOOKIE={value}")
        served_count = SESSIONS * (1 + REPEATS)
        # the worker that answers a scrape counts up to then, the other writes once a second
        expected = {"new": SESSIONS, "sticky": SESSIONS * REPEATS}
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            await prom.scraped()
            outcomes = await prom.values(
                "sum by (outcome) (sticky_proxy_affinity_decisions_total)", "outcome"
            )
            if {k: v for k, v in outcomes.items() if v} == expected:
                break
            assert asyncio.get_running_loop().time() < deadline, outcomes
        total = await prom.values("sum(sticky_proxy_requests_total)", "")
        assert total == {"": served_count}
        sessions = await prom.values("sum(sticky_proxy_endpoint_active_sessions)", "")
        # merged sketches count each session once; and as above, keys sharing a register count
        # once (in one sketch of 12 keys: one lost in 21 % of runs, two in 2 %, four in 0.003 %)
        assert SESSIONS - 3 <= sessions[""] <= SESSIONS
        assert await prom.values("sticky_proxy_endpoints", "state") == {
            "ready": 2,
            "draining": 0,
        }


# The main request-rate and latency panels of ingress-nginx's Grafana dashboards
# (deploy/grafana/dashboards/nginx.json and request-handling-performance.json), as written there,
# with their variables at "All".
INGRESS_NGINX_PANELS = {
    "Controller Request Volume": 'round(sum(irate(nginx_ingress_controller_requests{controller_pod=~".*",controller_class=~".*",namespace=~".*"}[2m])), 0.001)',  # noqa: E501
    "Controller Success Rate": 'sum(rate(nginx_ingress_controller_requests{controller_pod=~".*",controller_class=~".*",namespace=~".*",status!~"[4-5].*"}[2m])) / sum(rate(nginx_ingress_controller_requests{controller_pod=~".*",controller_class=~".*",namespace=~".*"}[2m]))',  # noqa: E501
    "Ingress Request Volume": 'round(sum(irate(nginx_ingress_controller_requests{controller_pod=~".*",controller_class=~".*",controller_namespace=~".*",exported_namespace=~".*",ingress=~".*"}[2m])) by (ingress), 0.001)',  # noqa: E501
    "Ingress Success Rate": 'sum(rate(nginx_ingress_controller_requests{controller_pod=~".*",controller_class=~".*",namespace=~".*",exported_namespace=~".*",ingress=~".*",status!~"[4-5].*"}[2m])) by (ingress) / sum(rate(nginx_ingress_controller_requests{controller_pod=~".*",controller_class=~".*",namespace=~".*",exported_namespace=~".*",ingress=~".*"}[2m])) by (ingress)',  # noqa: E501
    **{
        f"Ingress Percentile Response Times p{q}": f'histogram_quantile(0.{q}, sum(rate(nginx_ingress_controller_request_duration_seconds_bucket{{ingress!="",controller_pod=~".*",controller_class=~".*",controller_namespace=~".*",ingress=~".*",exported_namespace=~".*"}}[2m])) by (le, ingress))'  # noqa: E501
        for q in ("50", "90", "99")
    },
    "Request Latency Percentiles p95": 'histogram_quantile(0.95, sum by (le)(rate(nginx_ingress_controller_request_duration_seconds_bucket{ingress =~ ".*"}[5m])))',  # noqa: E501
}
APP = {"Host": "app.test"}
OURS = {
    "nginx_ingress_controller_requests": "sticky_proxy_requests_total",
    "nginx_ingress_controller_request_duration_seconds": "sticky_proxy_request_duration_seconds",
}


async def traffic(server: ProxyServer, fast: int, refused: int, slow: int) -> None:
    """`fast` answers of web, `refused` 413s of web (over its proxy-body-size), `slow` answers
    of 0.3 s of Ingress slow."""
    for _ in range(fast):
        assert (await get(server)).status == 200
    async with aiohttp.ClientSession() as client:
        for _ in range(refused):
            big = client.post(url(server, "/sink"), data=b"x" * 5000, headers=APP)
            async with big as answer:
                assert answer.status == 413
    for _ in range(slow):
        assert (await get(server, "/slow", host="slow.test")).status == 200


async def test_ingress_nginx_dashboard_queries_read_the_same_traffic_with_the_flag(
    pods: Pods, tmp_path: Path
) -> None:
    """--ingress-nginx-metrics: ingress-nginx's own dashboard queries, unchanged, return what
    the same queries over sticky_proxy_* return, evaluated at the same scrape."""
    fast, slow = await pods.start(2)
    slow.slow_seconds = 0.3
    objects = [
        *web_app([fast], proxy_body_size="1k"),
        ingress("slow", rule("slow.test", path(service="slow"))),
        service("slow"),
        endpoint_slice([slow], service_name="slow"),
    ]
    loopback = Address("127.0.0.1", 0)
    settings = ServeSettings(listen=loopback, metrics_listen=loopback, ingress_nginx_metrics=True)
    server = ProxyServer(settings, translate(objects, TranslateOptions()))
    await server.start()
    try:
        async with prometheus([target(server)], tmp_path) as prom:
            # one request of each kind, scraped before the traffic: ingress-nginx's series are
            # per method and status, and rate() misses a series' first sample
            await traffic(server, fast=1, refused=1, slow=1)
            await prom.scraped()
            began = time.time()
            await traffic(server, fast=30, refused=5, slow=4)
            await prom.scraped()
            ended = time.time()

            # Every point of each panel from before the traffic to after it: irate() reads the
            # last two scrapes at each, so the traffic shows at some points and not at others.
            for panel, theirs in INGRESS_NGINX_PANELS.items():
                ours = theirs
                for name, own in OURS.items():
                    ours = ours.replace(name, own)
                answer = await prom.over_time(theirs, "ingress", began, ended)
                assert answer, f"{panel}: no data"
                # equal up to rate()'s extrapolation, which Prometheus does per series: theirs
                # are split by method and status, ours by route
                expected = await prom.over_time(ours, "ingress", began, ended)
                assert answer.keys() == expected.keys(), panel
                for ingress_name, points in answer.items():
                    assert points == pytest.approx(expected[ingress_name], rel=0.02, nan_ok=True), (
                        panel,
                        ingress_name,
                    )
            panels = INGRESS_NGINX_PANELS
            volume = await prom.over_time(panels["Ingress Request Volume"], "ingress", began, ended)
            assert max(volume["web"]) > 0 and max(volume["slow"]) > 0
            success = await prom.values(panels["Ingress Success Rate"], "ingress")
            assert success["slow"] == 1.0 and success["web"] < 1.0  # web's 5 answers of 413
            (p95,) = await prom.query(panels["Request Latency Percentiles p95"])
            assert 0.25 <= p95.value <= 0.5  # the 0.3 s answers of `slow`
    finally:
        await server.stop(grace=0.5)
