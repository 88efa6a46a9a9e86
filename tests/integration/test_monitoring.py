"""k8s/monitoring/ against a real Prometheus: every dashboard query returns data for traffic
that touches every panel, and the alert rules load and go pending for what they watch.

The Kubernetes watch-restart panel needs the Kubernetes source: it is checked in
tests/integration/kubernetes/test_source.py.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest
import yaml

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
from tests.integration.harness import Upstream
from tests.integration.prometheus import Prometheus, prometheus, prometheus_binary

pytestmark = pytest.mark.skipif(
    prometheus_binary() is None,
    reason="Prometheus is not installed here (apt-get install prometheus; .ci/run does it)",
)

MONITORING = Path(__file__).resolve().parents[2] / "k8s" / "monitoring"
# Grafana's variables as an "All" selection and a rate window these short scrapes fill.
VARIABLES = {"$namespace": ".*", "$ingress": ".*", "$__rate_interval": "1m"}
KUBERNETES_ONLY = {"Kubernetes watch restarts per minute"}


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", ()):
            expr = target["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            queries.append((panel["title"], expr))
    return queries


def alert_rules() -> list[dict[str, str]]:
    rules = yaml.safe_load((MONITORING / "sticky-proxy.rules.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def world(web: list[Upstream], draining: list[Upstream]) -> list[Obj]:
    """Ingress `web` (sticky, pods ejected after one failure) and Ingress `api`, whose Service
    has no endpoints: it answers 503."""
    sticky = ingress("web", rule("app.test"), affinity="cookie")
    sticky["metadata"]["annotations"]["sticky-proxy.io/eject-after-failures"] = "1"
    return [
        sticky,
        service(),
        endpoint_slice(web, draining=draining),
        ingress("api", rule("api.test", path(service="api"))),
        service("api"),
    ]


async def until_alerts(prom: Prometheus, wanted: set[tuple[str, str]]) -> None:
    """Wait (10 s at most) until these (alert, its ingress or endpoint) are pending or firing."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        seen = {
            (s.labels["alertname"], s.labels.get("ingress") or s.labels.get("endpoint", ""))
            for s in await prom.query("ALERTS")
        }
        if wanted <= seen:
            return
        assert asyncio.get_running_loop().time() < deadline, seen
        await asyncio.sleep(0.25)


async def test_every_dashboard_query_returns_data_and_the_alerts_go_pending(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy, tmp_path: Path
) -> None:
    a, b, leaving, dead = await pods.start(4)
    write_manifest(manifest, world([a, b, leaving, dead], draining=[]))
    server = await manifest_proxy(manifest)
    assert server.metrics_address is not None
    rules = [MONITORING / "sticky-proxy.rules.yml"]
    async with prometheus([str(server.metrics_address)], tmp_path, rules) as prom:
        # a first request per route, scraped, so rate() has a sample from before the traffic
        assert (await get(server)).status == 200
        assert (await get(server, host="api.test")).status == 503
        await prom.scraped()

        cookies: dict[str, list[str]] = {}  # by pod
        sessions = 0
        while sessions < 24 or len(cookies) < 4:  # every pod holds sessions (100 at most)
            sessions += 1
            assert sessions <= 100
            first = await get(server)
            assert first.pod is not None
            cookies.setdefault(first.pod, []).append(
                "INGRESSCOOKIE=" + first.value("INGRESSCOOKIE")
            )
            assert (await get(server, cookie=cookies[first.pod][-1])).pod == first.pod
        await dead.stop()  # refuses connections: its sessions fail over, and it is ejected
        for i in range(24):  # the alerts' 5-minute rates need some volume
            dead_session = cookies[dead.name][i % len(cookies[dead.name])]
            assert (await get(server, cookie=dead_session)).status == 200
        # a pod leaving: it keeps its sessions, takes no new ones
        change = lambda: write_manifest(manifest, world([a, b, dead], draining=[leaving]))  # noqa: E731
        assert await reload_after(server, change) == "success"
        for cookie in cookies[leaving.name]:
            assert (await get(server, cookie=cookie)).pod == leaving.name
        for _ in range(40):
            assert (await get(server, host="api.test")).status == 503
        await prom.scraped()
        await prom.scraped()

        for title, expr in dashboard_queries():
            if title in KUBERNETES_ONLY:
                continue
            found = await prom.query(expr)
            assert found, f"{title}: no data for {expr}"
            assert any(not math.isnan(s.value) for s in found), f"{title}: only NaN: {expr}"

        pinned = await prom.values(
            "sum by (endpoint) (sticky_proxy_endpoint_active_sessions"
            " * on (cluster, endpoint) sticky_proxy_endpoint_draining)",
            "endpoint",
        )
        assert pinned.keys() == {leaving.name}
        # its own sessions, and any of the dead pod's it stood in for before it began to leave
        assert pinned[leaving.name] >= len(cookies[leaving.name])
        ejected = await prom.values("max by (endpoint) (sticky_proxy_endpoint_ejected)", "endpoint")
        assert ejected == {dead.name: 1}
        share = await prom.values(
            'sum by (ingress) (rate(sticky_proxy_requests_total{status=~"5.."}[1m]))'
            " / sum by (ingress) (rate(sticky_proxy_requests_total[1m]))",
            "ingress",
        )
        assert share == {"api": 1.0}  # web's failovers were served: no 5xx there
        assert await prom.values("sticky_proxy_routes", "") == {"": 2}
        assert await prom.values("sticky_proxy_ready", "") == {"": 1}
        builds = await prom.values("sticky_proxy_config_build_seconds_count", "")
        assert builds == {"": 2}  # the first table and the draining one

        for rule in alert_rules():  # each one's expression runs on this Prometheus
            await prom.query(rule["expr"])
        # those this traffic meets are pending (their `for`), the others quiet
        await until_alerts(
            prom,
            {
                ("StickyProxyHigh5xxShare", "api"),
                ("StickyProxySessionsFailingOver", ""),
                ("StickyProxyPodEjected", dead.name),
            },
        )
        quiet = {s.labels["alertname"] for s in await prom.query("ALERTS")}
        assert not quiet & {
            "StickyProxyNotReady",
            "StickyProxyDown",
            "StickyProxyRoutingUpdatesFailing",
            "StickyProxyWatchRestartsLooping",
        }
