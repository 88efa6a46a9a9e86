"""ingress-nginx's request and reload series under its own names and labels, for dashboards and
alerts written against it (--ingress-nginx-metrics):
docs/behaviour.md, "ingress-nginx's metric names".

Nothing here counts on the data path: `Metrics` hands over what it gathered for its own series
at each sync, and these series are made from the same numbers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from time import time
from typing import Final

from prometheus_client import CollectorRegistry, Gauge, Histogram

from proxy.core.routing import Route, Snapshot

PREFIX: Final = "nginx_ingress_controller_"
# ingress-nginx's const labels (collectors/socket.go, controller.go) and request tags, host
# included as with its default --metrics-per-host.
CONTROLLER_LABELS: Final = ("controller_namespace", "controller_class", "controller_pod")
REQUEST_LABELS: Final = (*CONTROLLER_LABELS, "status", "method", "path", "namespace", "ingress",
                         "service", "canary", "host")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Controller:
    """The values of ingress-nginx's controller_* labels."""

    namespace: str
    ingress_class: str
    pod: str

    @classmethod
    def from_environment(
        cls, ingress_class: str, env: Mapping[str, str] = os.environ
    ) -> Controller:
        """As ingress-nginx: the pod's namespace and name from $POD_NAMESPACE and $POD_NAME
        (empty when unset); the class is --ingress-class."""
        return cls(env.get("POD_NAMESPACE", ""), ingress_class, env.get("POD_NAME", ""))

    @property
    def labels(self) -> tuple[str, str, str]:
        return (self.namespace, self.ingress_class, self.pod)


# What requests are counted by: their route's labels (namespace, ingress, service, host, path),
# method and status.
RequestKey = tuple[tuple[str, ...], bytes, int]
# The histograms, named as ingress-nginx's, in the order `children` returns them.
HISTOGRAMS: Final = ("request_duration_seconds", "response_duration_seconds", "request_size",
                     "response_size", "bytes_sent")  # fmt: skip


class IngressNginxMetrics:
    """The families, created in `registry` (None: prometheus-client's worker files)."""

    def __init__(
        self,
        controller: Controller,
        registry: CollectorRegistry | None,
        seconds: tuple[float, ...],
        sizes: tuple[float, ...],
    ) -> None:
        self.controller = controller.labels
        # prometheus-client's text format names every counter's samples `<name>_total`, while
        # ingress-nginx's counters have no suffix: so these counters are gauges that only grow
        # ("sum" over workers, like a counter: exited workers' counts stay).
        self.requests = Gauge(
            PREFIX + "requests", "The total number of client requests", REQUEST_LABELS,
            registry=registry, multiprocess_mode="sum",
        )  # fmt: skip
        helps = (
            "The request processing time in seconds",
            "The time spent on receiving the response from the upstream server",
            "The request length (including request line, header, and request body)",
            "The response length (including request line, header, and request body)",
            "The number of bytes sent to a client",
        )
        self.histograms = tuple(
            Histogram(PREFIX + name, doc, REQUEST_LABELS, registry=registry, buckets=buckets)
            for name, doc, buckets in zip(
                HISTOGRAMS, helps, (seconds, seconds, sizes, sizes, sizes), strict=True
            )
        )
        self.last_reload_successful = Gauge(
            PREFIX + "config_last_reload_successful",
            "Whether the last configuration reload attempt was successful",
            CONTROLLER_LABELS, registry=registry, multiprocess_mode="livemin",
        )  # fmt: skip
        self.last_success_time = Gauge(
            PREFIX + "config_last_reload_successful_timestamp_seconds",
            "Timestamp of the last successful configuration reload.",
            CONTROLLER_LABELS, registry=registry, multiprocess_mode="livemax",
        )  # fmt: skip
        self.config_hash = Gauge(
            PREFIX + "config_hash",
            "Running configuration hash actually running",
            CONTROLLER_LABELS, registry=registry, multiprocess_mode="livemax",
        )  # fmt: skip
        self.reloads = Gauge(
            PREFIX + "success", "Cumulative number of Ingress controller reload operations",
            CONTROLLER_LABELS, registry=registry, multiprocess_mode="sum",
        )  # fmt: skip
        self.reload_errors = Gauge(
            PREFIX + "errors", "Cumulative number of Ingress controller errors during reload "
            "operations", CONTROLLER_LABELS, registry=registry, multiprocess_mode="sum",
        )  # fmt: skip
        for family in (self.reloads, self.reload_errors, self.last_reload_successful,
                       self.last_success_time, self.config_hash):  # fmt: skip
            family.labels(*self.controller)  # exported from the start, at 0
        self._accepted = 0
        # A canary route's labels -> its location's labels and the canary's backend name: ingress-
        # nginx counts a request the canary answers under the location's Ingress and Service,
        # with the canary's upstream in `canary` (docs/ingress-nginx-compat.md, "Canaries").
        self._canaries: dict[tuple[str, ...], tuple[tuple[str, ...], str]] = {}
        self._current_canaries: frozenset[tuple[tuple[str, ...], str]] = frozenset()
        self._table: Snapshot | None = None  # the routing table `_canaries` is of
        self._children: dict[RequestKey, tuple[Gauge, tuple[Histogram, ...]]] = {}
        # the labels each was made with (the canaries may have moved since)
        self._labels: dict[RequestKey, tuple[str, ...]] = {}

    def follow(self, snapshot: Snapshot | None) -> None:
        """The current routing table: where its canary routes' requests are counted."""
        if snapshot is None or snapshot is self._table:
            return
        self._table = snapshot
        mains: list[Route] = [*snapshot.routes]
        if snapshot.default_route is not None:
            mains.append(snapshot.default_route)
        self._canaries = {
            route.canary.labels: (route.labels, route.canary.cluster.name)
            for route in mains
            if route.canary is not None
        }
        self._current_canaries = frozenset(self._canaries.values())

    def canary_is_current(self, location: tuple[str, ...], canary: str) -> bool:
        """Whether the table still has this canary at this location (with workers, the files
        keep the series of one removed since: see `Metrics.is_current`)."""
        return (location, canary) in self._current_canaries

    def children(self, key: RequestKey) -> tuple[Gauge, tuple[Histogram, ...]]:
        """The series of the requests of `key`: their count, and HISTOGRAMS in that order."""
        children = self._children.get(key)
        if children is None:
            labels = self.labels(key)
            children = (self.requests.labels(*labels),
                        tuple(h.labels(*labels) for h in self.histograms))  # fmt: skip
            self._children[key] = children
            self._labels[key] = labels
        return children

    def labels(self, key: RequestKey) -> tuple[str, ...]:
        """The series labels of `key` in the current table."""
        route, method, status = key
        location, canary = self._canaries.get(route, (route, ""))
        namespace, ingress, service, host, path = location
        return (*self.controller, str(status), method.decode("ascii", "replace"), path,
                namespace, ingress, service, canary, host)  # fmt: skip

    def prune(self, current_routes: frozenset[tuple[str, ...]], multiprocess: bool) -> None:
        """Series of routes that left the table go, as `Metrics._prune` does with its own."""
        for key in [k for k in self._children if k[0] not in current_routes]:
            del self._children[key]
            labels = self._labels.pop(key)
            if not multiprocess:  # (there `_Current` filters what the files keep)
                for family in (self.requests, *self.histograms):
                    family.remove(*labels)

    def count_reload(self, accepted: bool) -> None:
        """As ingress-nginx's ConfigSuccess, IncReloadCount and IncReloadErrorCount. The "hash"
        is the number of tables accepted, not a digest of one: what dashboards read from it is
        its labels (and that it changes)."""
        labels = self.controller
        self.last_reload_successful.labels(*labels).set(1 if accepted else 0)
        if accepted:
            self._accepted += 1
            self.reloads.labels(*labels).inc()
            self.last_success_time.labels(*labels).set(int(time()))
            self.config_hash.labels(*labels).set(self._accepted)
        else:
            self.reload_errors.labels(*labels).inc()
            self.config_hash.labels(*labels).set(0)
