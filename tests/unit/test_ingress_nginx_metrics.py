"""ingress-nginx's series (proxy/observability/ingress_nginx.py) without a proxy: the controller
labels, the labels of a request's series, and pruning."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from proxy.observability.ingress_nginx import REQUEST_LABELS, Controller, IngressNginxMetrics
from proxy.observability.metrics import BYTES, SECONDS

ROUTE = ("shop", "front", "web", "shop.example", "/api")


def test_controller_labels_are_the_pods_namespace_and_name_and_the_ingress_class() -> None:
    env = {"POD_NAMESPACE": "ingress", "POD_NAME": "sticky-proxy-5f7-abc", "HOME": "/"}
    controller = Controller.from_environment("nginx", env)
    assert controller.labels == ("ingress", "nginx", "sticky-proxy-5f7-abc")
    # outside a pod (no downward API variables): empty, as ingress-nginx leaves them
    assert Controller.from_environment("sticky", {}).labels == ("", "sticky", "")


def test_a_requests_labels_are_ingress_nginx_names_and_values() -> None:
    metrics = IngressNginxMetrics(Controller("ns", "sticky", "pod"), CollectorRegistry(),
                                  SECONDS, BYTES)  # fmt: skip
    labels = dict(zip(REQUEST_LABELS, metrics.labels((ROUTE, b"DELETE", 503)), strict=True))
    assert labels == {
        "controller_namespace": "ns", "controller_class": "sticky", "controller_pod": "pod",
        "status": "503", "method": "DELETE", "path": "/api", "namespace": "shop",
        "ingress": "front", "service": "web", "canary": "", "host": "shop.example",
    }  # fmt: skip


def test_series_of_routes_that_left_the_table_go() -> None:
    registry = CollectorRegistry()
    metrics = IngressNginxMetrics(Controller("", "sticky", ""), registry, SECONDS, BYTES)
    gone = (("shop", "old", "web", "shop.example", "/"), b"GET", 200)
    kept = (ROUTE, b"GET", 200)
    for key in (gone, kept):
        requests, histograms = metrics.children(key)
        requests.inc(2)
        histograms[0].observe(0.01)

    metrics.prune(frozenset({ROUTE}), multiprocess=False)

    def ingresses(name: str) -> set[str]:
        return {
            sample.labels["ingress"]
            for family in registry.collect()
            for sample in family.samples
            if sample.name == name
        }

    assert ingresses("nginx_ingress_controller_requests") == {"front"}
    assert ingresses("nginx_ingress_controller_request_duration_seconds_count") == {"front"}
