"""--ingress-nginx-metrics (docs/behaviour.md, "ingress-nginx's metric names"): after known
traffic, ingress-nginx's series carry its names and labels and count what this proxy's own
series count; without the flag they are not there."""

from __future__ import annotations

from collections import defaultdict
from time import time

import aiohttp
import pytest
from prometheus_client.metrics_core import Metric

from proxy.app.runtime import ProxyServer
from proxy.app.settings import ServeSettings
from proxy.control.translate import TranslateOptions
from proxy.control.translate.pipeline import translate
from proxy.core.model import Affinity, UpstreamPolicy
from proxy.core.values import Address
from proxy.observability.metrics import BYTES, SECONDS
from tests.integration.cluster import Pods, endpoint_slice, get, ingress, path, rule, service
from tests.integration.conftest import StartProxy, StartUpstreams
from tests.integration.harness import url
from tests.integration.test_metrics import scrape

NGINX = "nginx_ingress_controller_"
CONTROLLER = {"controller_namespace": "ingress", "controller_class": "sticky",
              "controller_pod": "sticky-proxy-7d9c-x2b"}  # fmt: skip
ROUTE = ("namespace", "ingress", "service", "host", "path")
# Ours -> ingress-nginx's, for each histogram made from the same observations.
HISTOGRAMS = {
    "sticky_proxy_request_duration_seconds": NGINX + "request_duration_seconds",
    "sticky_proxy_upstream_response_seconds": NGINX + "response_duration_seconds",
    "sticky_proxy_request_size_bytes": NGINX + "request_size",
    "sticky_proxy_response_size_bytes": NGINX + "response_size",
}


@pytest.fixture
def pod_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment a Deployment gives the proxy's pod (its downward API fields)."""
    monkeypatch.setenv("POD_NAMESPACE", CONTROLLER["controller_namespace"])
    monkeypatch.setenv("POD_NAME", CONTROLLER["controller_pod"])


def summed(family: Metric, suffix: str, by: tuple[str, ...]) -> dict[tuple[str, ...], float]:
    """The samples named name+suffix, summed by the labels `by`."""
    sums: dict[tuple[str, ...], float] = defaultdict(float)
    for sample in family.samples:
        if sample.name == family.name + suffix:
            sums[tuple(sample.labels[label] for label in by)] += sample.value
    return dict(sums)


async def post(server: ProxyServer, target: str, body: bytes) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url(server, target), data=body, headers={"Host": "app.test"}) as response,
    ):
        await response.read()
        return response.status


async def test_ingress_nginx_series_count_the_same_requests_as_ours(
    pod_env: None, upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    ups = await upstreams(2)
    server = await proxy([u.endpoint for u in ups], Affinity(), UpstreamPolicy(body_size=1000),
                         ingress_nginx_metrics=True)  # fmt: skip
    for _ in range(7):
        assert (await get(server, "/a")).status == 200
    for _ in range(3):
        assert await post(server, "/sink", b"x" * 500) == 200
    assert await post(server, "/sink", b"x" * 5000) == 413  # refused before any upstream
    families = await scrape(server)

    requests = families[NGINX + "requests"]
    assert requests.type == "gauge"  # (named without _total, as ingress-nginx's counter)
    labels = {"status", "method", "path", "namespace", "ingress", "service", "canary", "host"}
    assert all(set(s.labels) == labels | set(CONTROLLER) for s in requests.samples)
    assert all(s.labels.items() >= CONTROLLER.items() for s in requests.samples)
    assert {s.labels["canary"] for s in requests.samples} == {""}
    by_request = (*ROUTE, "method", "status")
    ours = summed(families["sticky_proxy_requests"], "_total", by_request)
    route = ("", "", "", "*", "/")
    assert ours == {(*route, "GET", "200"): 7, (*route, "POST", "200"): 3,
                    (*route, "POST", "413"): 1}  # fmt: skip
    assert summed(requests, "", by_request) == ours

    for name, theirs in HISTOGRAMS.items():
        family = families[theirs]
        assert family.type == "histogram", theirs
        # Ours are by route only; theirs by method and status too, and add up to ours.
        for suffix in ("_count", "_sum"):
            assert summed(family, suffix, ROUTE) == summed(families[name], suffix, ROUTE), theirs
        assert summed(family, "_bucket", (*ROUTE, "le")) == summed(
            families[name], "_bucket", (*ROUTE, "le")
        ), theirs
        bounds = SECONDS if "seconds" in theirs else BYTES
        les = {float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket")}
        assert les == {*bounds, float("inf")}, theirs
    # by status as ingress-nginx's "Request Handling Performance" dashboard asks for them
    by_status = ("method", "status")
    durations = summed(families[NGINX + "request_duration_seconds"], "_count", by_status)
    assert durations == {("GET", "200"): 7, ("POST", "200"): 3, ("POST", "413"): 1}
    # the upstream's time only where an upstream answered, as nginx's $upstream_response_time
    # (the 413's series is there, at 0: made with its request count's)
    upstream = summed(families[NGINX + "response_duration_seconds"], "_count", by_status)
    assert upstream == {("GET", "200"): 7, ("POST", "200"): 3, ("POST", "413"): 0}
    sizes = summed(families[NGINX + "request_size"], "_sum", ("method",))
    assert sizes[("POST",)] > 3 * 500
    # bytes_sent: ingress-nginx's deprecated twin of response_size
    sent = families[NGINX + "bytes_sent"]
    response = families[NGINX + "response_size"]
    keys = (*ROUTE, "method", "status")
    for suffix, by in (("_count", keys), ("_sum", keys), ("_bucket", (*keys, "le"))):
        assert summed(sent, suffix, by) == summed(response, suffix, by)


async def test_without_the_flag_there_are_no_ingress_nginx_series(
    upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    (up,) = await upstreams(1)
    server = await proxy([up.endpoint], Affinity())
    assert (await get(server, "/")).status == 200
    families = await scrape(server)
    assert families["sticky_proxy_requests"].samples
    assert not [name for name in families if name.startswith(NGINX)]


async def test_reloads_as_ingress_nginx_counts_them(
    pod_env: None, upstreams: StartUpstreams, proxy: StartProxy
) -> None:
    (up,) = await upstreams(1)
    started = int(time())
    server = await proxy([up.endpoint], Affinity(), ingress_nginx_metrics=True)
    snapshot = server.publisher.current
    assert snapshot is not None

    def reload_series(families: dict[str, Metric]) -> dict[str, float]:
        found = {}
        for name in ("config_last_reload_successful", "config_hash", "success", "errors",
                     "config_last_reload_successful_timestamp_seconds"):  # fmt: skip
            (sample,) = families[NGINX + name].samples
            assert sample.labels == CONTROLLER, name
            found[name] = sample.value
        return found

    first = reload_series(await scrape(server))
    assert first["config_last_reload_successful"] == 1
    assert first["success"] == 1 and first["errors"] == 0
    assert first["config_hash"] > 0
    assert started <= first["config_last_reload_successful_timestamp_seconds"] <= time()

    server.publisher.reject("a table that does not load")
    failed = reload_series(families := await scrape(server))
    assert failed["config_last_reload_successful"] == 0
    assert failed["config_hash"] == 0  # as ingress-nginx after a failed reload
    assert (failed["success"], failed["errors"]) == (1, 1)
    ours = summed(families["sticky_proxy_config_reloads"], "_total", ("result",))
    assert ours == {("success",): failed["success"], ("failure",): failed["errors"]}

    server.publisher.publish(snapshot)
    again = reload_series(await scrape(server))
    assert again["config_last_reload_successful"] == 1
    assert (again["success"], again["errors"]) == (2, 1)
    assert again["config_hash"] not in (0, first["config_hash"])


async def test_a_canary_answer_counts_under_its_location_with_the_canary_upstream(
    pod_env: None, pods: Pods
) -> None:
    main_pod, canary_pod = await pods.start(2)
    objects = [
        ingress("foo", rule("foo", path("/info"))),
        ingress(
            "foo-canary",
            rule("foo", path("/info", service="canary")),
            canary="true",
            canary_by_header="Canary",
        ),
        service("web"),
        service("canary"),
        endpoint_slice([main_pod]),
        endpoint_slice([canary_pod], service_name="canary"),
    ]
    loopback = Address("127.0.0.1", 0)
    settings = ServeSettings(listen=loopback, metrics_listen=loopback, ingress_nginx_metrics=True)
    server = ProxyServer(settings, translate(objects, TranslateOptions()))
    await server.start()
    try:
        for _ in range(3):
            answer = await get(server, "/info", "foo", headers={"Canary": "always"})
            assert answer.pod == canary_pod.name
        assert (await get(server, "/info", "foo")).pod == main_pod.name
        families = await scrape(server)

        theirs = summed(families[NGINX + "requests"], "", ("ingress", "service", "canary", "host"))
        assert theirs == {("foo", "web", "", "foo"): 1,
                          ("foo", "web", "default-canary-80", "foo"): 3}  # fmt: skip
        # This proxy's own series name the canary's Ingress and Service.
        ours = summed(families["sticky_proxy_requests"], "_total", ("ingress", "service"))
        assert ours == {("foo", "web"): 1, ("foo-canary", "canary"): 3}
        durations = families[NGINX + "request_duration_seconds"]
        assert summed(durations, "_count", ("canary",)) == {("",): 1, ("default-canary-80",): 3}

        # The canary Ingress goes; its location stays. Its series go with it, though they carry
        # the location's labels: here removed, and what a scrape with workers leaves out of the
        # files (`is_current`) says so too.
        samples = {s.labels["canary"]: s.labels for s in families[NGINX + "requests"].samples}
        server.publisher.publish(translate([objects[0], *objects[2:]], TranslateOptions()))
        families = await scrape(server)
        assert summed(families[NGINX + "requests"], "", ("canary",)) == {("",): 1}
        assert server.metrics.is_current(samples[""])
        assert not server.metrics.is_current(samples["default-canary-80"])
    finally:
        await server.stop(grace=0.5)
