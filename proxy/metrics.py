"""Prometheus metrics (DESIGN §7), with the hot-path children cached so a request costs a dict hit.

Each `Metrics` owns its registry, so several proxies can live in one test process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from proxy.core.affinity import Outcome
from proxy.core.errors import UPSTREAM_ERROR_REASONS
from proxy.core.model import Route
from proxy.sources.kubernetes.resources import ALL_RESOURCES, RESTART_REASONS

REQUEST_LABELS = ("namespace", "ingress", "service", "host", "path", "method", "status")
_NO_ROUTE = ("", "", "", "", "")
RELOAD_RESULTS = ("success", "failure")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "sticky_proxy_requests",
            "Requests answered, by Ingress path and status",
            REQUEST_LABELS,
            registry=self.registry,
        )
        self.affinity_decisions = Counter(
            "sticky_proxy_affinity_decisions",
            "How each request's endpoint was chosen",
            ["outcome"],
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "sticky_proxy_upstream_errors",
            "Failed upstream attempts, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.config_reloads = Counter(
            "sticky_proxy_config_reloads",
            "Routing updates from the source, accepted (success) or refused (failure)",
            ["result"],
            registry=self.registry,
        )
        self.config_last_reload_successful = Gauge(
            "sticky_proxy_config_last_reload_successful",
            "Whether the last routing update was accepted",
            registry=self.registry,
        )
        self.kubernetes_watch_restarts = Counter(
            "sticky_proxy_kubernetes_watch_restarts",
            "Kubernetes API watches started again, by resource and why (expired: relisted)",
            ["resource", "reason"],
            registry=self.registry,
        )
        restarts = self.kubernetes_watch_restarts
        self._watch_restarts = {
            (resource.plural, reason): restarts.labels(resource.plural, reason)
            for resource in ALL_RESOURCES
            for reason in RESTART_REASONS
        }
        self._reloads = _children(self.config_reloads, RELOAD_RESULTS)
        self._outcomes = _children(self.affinity_decisions, [o.value for o in Outcome])
        self._upstream_errors = _children(self.upstream_errors, UPSTREAM_ERROR_REASONS)
        self._requests: dict[tuple[tuple[str, ...], bytes, int], Counter] = {}

    def count_request(self, route: Route | None, method: bytes, status: int) -> None:
        labels = route.labels if route is not None else _NO_ROUTE
        key = (labels, method, status)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.requests.labels(
                *labels, method.decode("ascii", "replace"), str(status)
            )
        child.inc()

    def count_decision(self, outcome: Outcome) -> None:
        self._outcomes[outcome].inc()

    def count_upstream_error(self, reason: str) -> None:
        self._upstream_errors[reason].inc()

    def count_watch_restart(self, resource: str, reason: str) -> None:
        self._watch_restarts[resource, reason].inc()

    def count_reload(self, accepted: bool) -> None:
        self._reloads["success" if accepted else "failure"].inc()
        self.config_last_reload_successful.set(1 if accepted else 0)


def _children(metric: Counter, values: list[str] | tuple[str, ...]) -> dict[str, Counter]:
    """Create every child up front: a series that exists from startup reads as 0, not absent."""
    return {value: metric.labels(value) for value in values}
