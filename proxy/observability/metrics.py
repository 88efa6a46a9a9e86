"""Prometheus metrics (docs/behaviour.md, "Metrics"): cheap counting, prometheus-client at scrape.

A prometheus-client update costs 0.5-1.5 µs (a lock; an mmap write with several workers) and a
histogram observation 1-3 µs, as much as the rest of a proxied request. So requests only bump
plain ints and lists here, and `sync()` moves what accumulated into the prometheus-client metrics
once a second and before every scrape: one `inc` per changed series instead of one per request.

With several workers (PROMETHEUS_MULTIPROC_DIR set before the process started), prometheus-client
keeps each worker's values in files of that directory and `registry` reads them all, so one scrape
sees the sum of the workers; see `proxy.app.workers`.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from time import perf_counter, time
from typing import Final, Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from proxy.core.affinity import Cluster, Outcome
from proxy.core.errors import UPSTREAM_ERROR_REASONS
from proxy.core.model import AffinityMode, Endpoint
from proxy.core.routing import Route, Snapshot
from proxy.observability.active_sessions import SessionSketch
from proxy.observability.ingress_nginx import Controller, IngressNginxMetrics, RequestKey
from proxy.observability.proxied_request import ProxiedRequest
from proxy.observability.session_share import SessionShare

MIRROR_RESULTS = ("answered", "failed", "dropped")  # what became of a mirror-target copy
# ingress-nginx exports no `_created` series, and prometheus-client's multiprocess mode cannot:
# without them one worker and several export the same series.
disable_created_metrics()  # type: ignore[no-untyped-call]

MULTIPROC_DIR: Final = "PROMETHEUS_MULTIPROC_DIR"
ROUTE_LABELS: Final = ("namespace", "ingress", "service", "host", "path")
REQUEST_LABELS: Final = (*ROUTE_LABELS, "method", "status")
ENDPOINT_LABELS: Final = ("cluster", "endpoint")
_NO_ROUTE: Final[tuple[str, ...]] = ("", "", "", "", "")
RELOAD_RESULTS: Final = ("success", "failure")
ENDPOINT_STATES: Final = ("ready", "draining")
# ingress-nginx's defaults: prometheus' DefBuckets for times, --size-buckets for sizes
# (typed as tuples of any length: compiled, a fixed-length tuple of floats is a C struct that
# every bisect call would box again, float by float)
SECONDS: Final[tuple[float, ...]] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FASTEST: Final = SECONDS[0]
BYTES: Final[tuple[float, ...]] = (10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7)
# Building a table: a few ms for a handful of Ingresses, seconds for 50,000 endpoints.
BUILD_SECONDS: Final[tuple[float, ...]] = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Sessions without a cookie lifetime (session cookies) count as active this long after a request.
DEFAULT_SESSION_WINDOW: Final = 30 * 60.0
_STATUS_FIELDS: Final = {
    "sticky_proxy_endpoint_requests_total": "requests",
    "sticky_proxy_endpoint_new_sessions_total": "new_sessions",
    "sticky_proxy_endpoint_active_sessions": "active_sessions",
    "sticky_proxy_endpoint_ejected": "ejected",
    "sticky_proxy_endpoint_ejections_total": "ejections",
}
# Process metrics as prometheus-client's ProcessCollector names them, and how workers combine.
_PROCESS_GAUGES: Final[dict[str, Literal["livesum", "livemax", "livemin"]]] = {
    "process_virtual_memory_bytes": "livesum",
    "process_resident_memory_bytes": "livesum",
    "process_open_fds": "livesum",
    "process_max_fds": "livemax",
    "process_start_time_seconds": "livemin",
}


class Answers:
    """The requests of one `RequestKey` since the last sync: their count, and histograms as bucket
    counts with the sum of observations in the last place (kept per method and status, not per
    route, for ingress-nginx's series: docs/behaviour.md, "ingress-nginx's metric names")."""

    __slots__ = ("count", "duration", "request_size", "response_size", "upstream")

    def __init__(self) -> None:
        self.count = 0
        self.duration = [0.0] * (len(SECONDS) + 2)
        self.upstream = [0.0] * (len(SECONDS) + 2)
        self.request_size = [0.0] * (len(BYTES) + 2)
        self.response_size = [0.0] * (len(BYTES) + 2)


class _EndpointStats:
    __slots__ = ("key", "new_sessions", "requests", "sessions", "touched")

    def __init__(self, key: tuple[str, str], sessions: SessionSketch) -> None:
        self.key = key
        self.requests = 0
        self.new_sessions = 0
        self.sessions = sessions
        self.touched = False  # counted since the last sync: in `Metrics._touched`


class ClusterView:
    """One cluster's endpoints by `id()`: the data path finds an endpoint's stats with an int
    lookup instead of hashing the dataclass (an exchange keeps its try's view, see
    `Metrics.count_try`). Keyed by the cluster's balancer, which tables share
    while a cluster's endpoints do not change (so do its endpoint objects): a new table only
    makes views for the clusters that changed. Holds the balancer so its ids stay unique."""

    __slots__ = ("balancer", "by_client", "endpoints")

    def __init__(self, cluster: Cluster, endpoints: dict[int, _EndpointStats]) -> None:
        self.balancer = cluster.balancer
        self.endpoints = endpoints
        # Persistent cookies name the pod, not the user: sessions are told apart by client.
        affinity = cluster.affinity
        self.by_client = affinity is not None and affinity.mode is AffinityMode.PERSISTENT


class Metrics:
    def __init__(self, ingress_nginx: Controller | None = None) -> None:
        """`ingress_nginx`: also export ingress-nginx's series, with these controller labels."""
        directory = os.environ.get(MULTIPROC_DIR)
        self.multiprocess = directory is not None
        own = CollectorRegistry()
        own.register(_Synced(self))  # first, so every scrape and sample read sees fresh values
        # The thread of the data path, whose counters `sync` reads: collecting from any other
        # thread (the admin listener renders scrapes in one) does not sync, its caller did.
        self.owner_thread = threading.get_ident()
        # With workers this process's metrics live in files; `registry` reads every worker's.
        registry = None if self.multiprocess else own
        self.registry = own
        if directory is not None:
            files = MultiProcessCollector(None, directory)  # type: ignore[no-untyped-call]
            own.register(_Current(self, files))
        self.share = SessionShare(directory)
        own.register(_ActiveSessions(self))

        self.requests = Counter(
            "sticky_proxy_requests",
            "Requests answered, by Ingress path and status",
            REQUEST_LABELS,
            registry=registry,
        )
        self.request_duration = _histogram(
            "sticky_proxy_request_duration_seconds",
            "Time from the request head to the end of the answer",
            SECONDS,
            registry,
        )
        self.upstream_response = _histogram(
            "sticky_proxy_upstream_response_seconds",
            "From the first upstream try to the end of the upstream's answer, retries included",
            SECONDS,
            registry,
        )
        self.request_size = _histogram(
            "sticky_proxy_request_size_bytes",
            "Request head as sent upstream, plus body",
            BYTES,
            registry,
        )
        self.response_size = _histogram(
            "sticky_proxy_response_size_bytes",
            "Response head and body relayed to the client",
            BYTES,
            registry,
        )
        self.affinity_decisions = Counter(
            "sticky_proxy_affinity_decisions",
            "How each request's endpoint was chosen: one per request, its last try's choice",
            ["outcome"],
            registry=registry,
        )
        self.upstream_errors = Counter(
            "sticky_proxy_upstream_errors",
            "Failed upstream attempts, by reason",
            ["reason"],
            registry=registry,
        )
        self.mirror_copies = Counter(
            "sticky_proxy_mirror_copies",
            "mirror-target's copies of requests: answered, failed, or dropped over the caps",
            ["result"],
            registry=registry,
        )
        self.endpoints = Gauge(
            "sticky_proxy_endpoints",
            "Endpoints in the routing table (per cluster), by state",
            ["state"],
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.endpoint_requests = Counter(
            "sticky_proxy_endpoint_requests",
            "Upstream tries sent to each endpoint",
            ENDPOINT_LABELS,
            registry=registry,
        )
        self.endpoint_new_sessions = Counter(
            "sticky_proxy_endpoint_new_sessions",
            "Affinity cookies sent to clients in answers of each endpoint: its new sessions",
            ENDPOINT_LABELS,
            registry=registry,
        )
        # Beyond ingress-nginx (docs/behaviour.md, "Outlier ejection"); an endpoint's series
        # appear with its first ejection.
        self.endpoint_ejections = Counter(
            "sticky_proxy_endpoint_ejections",
            "Times each endpoint was ejected after failures in a row, re-ejections included",
            ENDPOINT_LABELS,
            registry=registry,
        )
        self.endpoint_ejected = Gauge(
            "sticky_proxy_endpoint_ejected",
            "Whether each endpoint is ejected now (with workers: by how many of them)",
            ENDPOINT_LABELS,
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.config_reloads = Counter(
            "sticky_proxy_config_reloads",
            "Routing updates from the source, accepted (success) or refused (failure)",
            ["result"],
            registry=registry,
        )
        self.config_last_reload_successful = Gauge(
            "sticky_proxy_config_last_reload_successful",
            "Whether the last routing update was accepted",
            registry=registry,
            multiprocess_mode="livemin",  # 0 while any worker's last reload failed
        )
        self.config_last_reload_success = Gauge(
            "sticky_proxy_config_last_reload_success_timestamp_seconds",
            "When the last routing update was accepted (Unix time)",
            registry=registry,
            multiprocess_mode="livemin",  # the worker that took it last
        )
        self.config_build = Histogram(
            "sticky_proxy_config_build_seconds",
            "Time to build a routing table from the source's objects, reading included",
            registry=registry,
            buckets=BUILD_SECONDS,
        )
        self.table_routes = Gauge(
            "sticky_proxy_routes",
            "Routes (host and path) in the routing table",
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.ready = Gauge(
            "sticky_proxy_ready",
            "1 while /readyz answers 200: a routing table is in place and the proxy not stopping",
            registry=registry,
            multiprocess_mode="livemin",  # 0 while any worker is not ready
        )
        self.endpoint_draining = Gauge(
            "sticky_proxy_endpoint_draining",
            "1 for each endpoint that is draining (terminating): it keeps its pinned sessions",
            ENDPOINT_LABELS,
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.kubernetes_watch_restarts = Counter(
            "sticky_proxy_kubernetes_watch_restarts",
            "Kubernetes API watches started again, by resource and why (expired: relisted)",
            ["resource", "reason"],
            registry=registry,
        )
        self.ingress_nginx = (
            IngressNginxMetrics(ingress_nginx, registry, SECONDS, BYTES) if ingress_nginx else None
        )
        self._process_gauges = {
            name: Gauge(name, "As ProcessCollector's", registry=registry, multiprocess_mode=mode)
            for name, mode in _PROCESS_GAUGES.items()
        }
        self._process_cpu = Counter(
            "process_cpu_seconds", "Total user and system CPU time spent", registry=registry
        )
        self._cpu_seen = 0.0
        self._process = ProcessCollector(registry=None)

        self._reloads = _children(self.config_reloads, RELOAD_RESULTS)
        self._states = {state: self.endpoints.labels(state) for state in ENDPOINT_STATES}
        self._outcome_children = _children(self.affinity_decisions, [o.value for o in Outcome])
        self._upstream_errors = _children(self.upstream_errors, UPSTREAM_ERROR_REASONS)
        self._mirror_copies = _children(self.mirror_copies, MIRROR_RESULTS)
        self._watch_restarts: dict[tuple[str, str], Counter] = {}
        # What the data path bumps, moved into the metrics above by `sync`:
        self._routes: dict[RequestKey, Answers] = {}
        self._outcomes = dict.fromkeys(Outcome, 0)
        self._views: dict[int, ClusterView] = {}
        self._endpoint_stats: dict[tuple[str, str], _EndpointStats] = {}
        # Endpoints counted since the last sync, and those whose sketch holds sessions: a sync
        # walks these, not the 50,000 endpoints of a big table (20-50 ms every second).
        self._touched: list[_EndpointStats] = []
        self._sketching: set[_EndpointStats] = set()
        # Children already created, by the accumulators' keys:
        self._request_children: dict[tuple[tuple[str, ...], bytes, int], Counter] = {}
        self._histogram_children: dict[tuple[str, ...], tuple[Histogram, ...]] = {}
        # The routing table the series follow; set by `follow`.
        self._snapshot: Callable[[], Snapshot | None] = lambda: None
        self._ready: Callable[[], bool] = lambda: self._snapshot() is not None
        self._draining: frozenset[tuple[str, str]] = frozenset()  # the series at 1
        self._seen: Snapshot | None = None
        self.current_endpoints: frozenset[tuple[str, str]] = frozenset()
        self.current_routes: frozenset[tuple[str, ...]] = frozenset({_NO_ROUTE})
        self._current_clusters: frozenset[int] = frozenset()
        # Clusters of the current table whose endpoints' series are still to be made (`add_series`)
        self._unseen: deque[Cluster] = deque()
        # What the last prune saw: the table, and the sizes of what it prunes
        self._pruned_table: Snapshot | None = None
        self._pruned_sizes = (0, 0, 0, 0)
        # Called with each finished request and its end time when the access log is on.
        self.access_log: Callable[[ProxiedRequest, float], None] | None = None

    def follow(
        self, snapshot: Callable[[], Snapshot | None], ready: Callable[[], bool] | None = None
    ) -> None:
        """Where the current routing table comes from (endpoint gauges and series follow it),
        and whether the proxy is ready (`sticky_proxy_ready`)."""
        self._snapshot = snapshot
        if ready is not None:
            self._ready = ready

    # -- the data path ----------------------------------------------------------------------------

    def count_request(self, route: Route | None, method: bytes, status: int) -> None:
        """A request answered without an exchange (turned away before one began)."""
        self._answers((route.labels if route is not None else _NO_ROUTE, method, status)).count += 1

    def abandoned(self, exchange: ProxiedRequest) -> None:
        """A request whose client left before its answer was done: nginx's 499, and the affinity
        decision it made, if it made one."""
        self.count_request(exchange.route, exchange.request.method, 499)
        outcome = exchange.outcome
        if outcome is not None:
            self._outcomes[outcome] += 1

    def finished(self, exchange: ProxiedRequest) -> None:
        """One answered request: its count, durations and sizes (written out, not in helper
        calls: this runs for every request)."""
        end = perf_counter()
        route = exchange.route
        key = (route.labels if route is not None else _NO_ROUTE, exchange.request.method,
               exchange.status)  # fmt: skip
        stats = self._routes.get(key) or self._answers(key)
        stats.count += 1
        # `le` buckets: bisect_left finds the first bound >= the value; the sum is last. (Most
        # requests take under 5 ms: a comparison, not a call, finds their bucket.)
        seconds = end - exchange.started_at
        counts = stats.duration
        counts[0 if seconds <= FASTEST else bisect_left(SECONDS, seconds)] += 1
        counts[-1] += seconds
        if exchange.upstream_started_at:
            seconds = end - exchange.upstream_started_at
            counts = stats.upstream
            counts[0 if seconds <= FASTEST else bisect_left(SECONDS, seconds)] += 1
            counts[-1] += seconds
        size = len(exchange.upstream_head_bytes) + exchange.body_received
        counts = stats.request_size
        counts[bisect_left(BYTES, size)] += 1
        counts[-1] += size
        size = exchange.sent_head + exchange.sent_body
        counts = stats.response_size
        counts[bisect_left(BYTES, size)] += 1
        counts[-1] += size
        outcome = exchange.outcome
        if outcome is not None:
            self._outcomes[outcome] += 1  # the last try's: retried tries are upstream errors
        if self.access_log is not None:
            self.access_log(exchange, end)

    def _answers(self, key: RequestKey) -> Answers:
        stats = self._routes.get(key)
        if stats is None:
            stats = self._routes[key] = Answers()
        return stats

    def count_try(self, cluster: Cluster, endpoint: Endpoint) -> ClusterView:
        """One upstream try sent to `endpoint`: its load. The request's affinity decision counts
        once, when it ends (`finished`, `abandoned`); the view returned is for `answer_started`,
        which then need not look it up again."""
        balancer = cluster.balancer
        view = self._views.get(id(balancer))
        if view is None or view.balancer is not balancer:
            view = self._view(cluster)
        stats = view.endpoints[id(endpoint)]
        if not stats.touched:
            stats.touched = True
            self._touched.append(stats)
        stats.requests += 1
        return view

    def answer_started(self, view: ClusterView, exchange: ProxiedRequest) -> None:
        """The last try's endpoint began its answer to an affinity request: the session now
        lives there, and a new cookie left with the answer's head. Counted here, not per try: a
        failed try's session never reached its endpoint, nor its new cookie the client. `view`
        is what `count_try` returned for that try."""
        stats = view.endpoints[id(exchange.endpoint)]
        if not stats.touched:  # (a sync may have run since the try)
            stats.touched = True
            self._touched.append(stats)
        new_cookie = exchange.new_cookie
        if new_cookie is not None:
            stats.new_sessions += 1
        session: str | bytes | None = new_cookie or exchange.cookie_value
        if view.by_client:
            session = exchange.client  # (the one trusted proxies name, if any)
        if session is not None:
            stats.sessions.seen.add(session)

    def ejection(self, cluster: str, endpoint: str, ejected: bool) -> None:
        """An endpoint ejected (again), or back in service: rare, so counted at once."""
        if ejected:
            self.endpoint_ejections.labels(cluster, endpoint).inc()
        elif not self.multiprocess and (cluster, endpoint) not in self._endpoint_stats:
            return  # it left the table, and its series with it: not to be made again
        self.endpoint_ejected.labels(cluster, endpoint).set(1 if ejected else 0)

    def count_upstream_error(self, reason: str) -> None:
        self._upstream_errors[reason].inc()

    def count_mirror_copy(self, result: str) -> None:
        """One of MIRROR_RESULTS (docs/behaviour.md, "Mirroring")."""
        self._mirror_copies[result].inc()

    def count_watch_restarts_from_zero(self, labels: Iterable[tuple[str, str]]) -> None:
        """Export these (resource, reason) series at 0: the source that watches knows the fixed
        set it counts, and each series is there before its first restart."""
        for resource, reason in labels:
            self._watch_restart(resource, reason)

    def count_watch_restart(self, resource: str, reason: str) -> None:
        self._watch_restart(resource, reason).inc()

    def _watch_restart(self, resource: str, reason: str) -> Counter:
        child = self._watch_restarts.get((resource, reason))
        if child is None:
            child = self.kubernetes_watch_restarts.labels(resource, reason)
            self._watch_restarts[resource, reason] = child
        return child

    def count_reload(self, accepted: bool, build_seconds: float | None = None) -> None:
        """A routing update, and how long the source took to build it (None: not measured)."""
        self._reloads["success" if accepted else "failure"].inc()
        self.config_last_reload_successful.set(1 if accepted else 0)
        if accepted:
            self.config_last_reload_success.set(time())
        if build_seconds is not None:
            self.config_build.observe(build_seconds)
        if self.ingress_nginx is not None:
            self.ingress_nginx.count_reload(accepted)

    # -- once a second and at every scrape ------------------------------------------------------

    def sync(self, series: int | None = None) -> None:
        """Move what the data path counted into the prometheus-client metrics, follow the routing
        table, age the session sketches and sample the process. New endpoints' series are made
        for about `series` endpoints (None: all of them; see `add_series`)."""
        self._flush()
        snapshot = self._snapshot()
        if snapshot is not None and snapshot is not self._seen:
            self._seen = snapshot
            self._follow_table(snapshot)
        self.ready.set(1 if self._ready() else 0)
        self.add_series(series)
        self._prune()
        now = time()
        for stats in list(self._sketching):
            if not stats.sessions.rotate(now):
                self._sketching.discard(stats)  # back once it sees a session
        if self.share.enabled:
            self.share.publish(self.sessions())
        self._sample_process()

    def close(self) -> None:
        self.sync()
        self.share.withdraw()

    def sessions(self) -> dict[tuple[str, str], bytes]:
        """This process's session sketch of every current endpoint."""
        # list(): a scrape's thread reads this while the event loop may add endpoints
        stats = list(self._endpoint_stats.items())
        return {key: endpoint.sessions.registers() for key, endpoint in stats}

    def endpoint_totals(self) -> dict[tuple[str, str], dict[str, float]]:
        """Requests, new sessions and active sessions of every current endpoint, as scraped
        (so summed over workers): what the status page shows."""
        totals: dict[tuple[str, str], dict[str, float]] = {}
        for family in self.registry.collect():
            for sample in family.samples:
                field = _STATUS_FIELDS.get(sample.name)
                if field is not None:
                    key = (sample.labels["cluster"], sample.labels["endpoint"])
                    totals.setdefault(key, {})[field] = sample.value
        return totals

    def _flush(self) -> None:
        routes, self._routes = self._routes, {}
        compat = self.ingress_nginx
        if compat is not None:
            compat.follow(self._snapshot())  # before labelling what it counted
        for key, stats in routes.items():
            self._request_child(key).inc(stats.count)
            histograms = (stats.duration, stats.upstream, stats.request_size, stats.response_size)
            for child, counts in zip(self._histogram_child(key[0]), histograms, strict=True):
                add_counts(child, counts)
            if compat is not None:  # the same counts again, as ingress-nginx's series
                requests, children = compat.children(key)
                requests.inc(stats.count)
                for child, counts in zip(children, (*histograms, stats.response_size), strict=True):
                    add_counts(child, counts)
        for outcome, count in self._outcomes.items():
            if count:
                self._outcome_children[outcome].inc(count)
                self._outcomes[outcome] = 0
        touched, self._touched = self._touched, []
        for endpoint in touched:
            endpoint.touched = False
            if self._endpoint_stats.get(endpoint.key) is not endpoint:
                # Answered after its endpoint left the table, and its series with it: counting
                # now would bring the series back, with nothing left to remove it.
                continue
            if endpoint.requests:
                self.endpoint_requests.labels(*endpoint.key).inc(endpoint.requests)
                endpoint.requests = 0
            if endpoint.new_sessions:
                self.endpoint_new_sessions.labels(*endpoint.key).inc(endpoint.new_sessions)
                endpoint.new_sessions = 0
            if endpoint.sessions.seen:
                self._sketching.add(endpoint)

    def _request_child(self, key: RequestKey) -> Counter:
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(*_request_labels(key))
        return child

    def _histogram_child(self, labels: tuple[str, ...]) -> tuple[Histogram, ...]:
        children = self._histogram_children.get(labels)
        if children is None:
            families = self._histograms()
            children = self._histogram_children[labels] = tuple(f.labels(*labels) for f in families)
        return children

    def _histograms(self) -> tuple[Histogram, ...]:
        return (self.request_duration, self.upstream_response, self.request_size,
                self.response_size)  # fmt: skip

    def _view(self, cluster: Cluster) -> ClusterView:
        window = _session_window(cluster)
        now = time()
        endpoints: dict[int, _EndpointStats] = {}
        for endpoint in cluster.endpoints:
            key = (cluster.name, endpoint.label)
            stats = self._endpoint_stats.get(key)
            if stats is None:
                stats = self._endpoint_stats[key] = _EndpointStats(key, SessionSketch(window, now))
                # Exported from the endpoint's first appearance, so a new pod reads 0, not absent.
                self.endpoint_requests.labels(*key)
                self.endpoint_new_sessions.labels(*key)
            endpoints[id(endpoint)] = stats
        view = self._views[id(cluster.balancer)] = ClusterView(cluster, endpoints)
        return view

    def _follow_table(self, snapshot: Snapshot) -> None:
        clusters = snapshot.clusters
        for cluster in clusters:
            if not self._has_view(cluster):
                self._unseen.append(cluster)  # a changed cluster: its series start at 0
        self._states["ready"].set(snapshot.endpoint_count - snapshot.draining)
        self._states["draining"].set(snapshot.draining)
        self._follow_draining(snapshot.draining_labels)
        self.table_routes.set(len(snapshot.routes))
        routes = snapshot.routes
        if snapshot.default_route is not None:
            routes = (*routes, snapshot.default_route)
        # A request the canary or one backend of an HTTPRoute rule takes is counted under that
        # route, which is in no list of routes: its series are current too.
        taken = [route.canary for route in routes if route.canary is not None]
        taken += [part for route in routes for _, part in route.split]
        taken += [part for route in routes for part in route.session_backends]
        self.current_routes = frozenset({_NO_ROUTE, *(r.labels for r in (*routes, *taken))})
        self.current_endpoints = snapshot.endpoint_labels
        self._current_clusters = frozenset(id(cluster.balancer) for cluster in clusters)

    def _follow_draining(self, draining: frozenset[tuple[str, str]]) -> None:
        """A series at 1 per draining endpoint, gone (0 with workers, whose files cannot drop
        one) once it stops draining or leaves: as many series as endpoints draining."""
        for key in self._draining - draining:
            if self.multiprocess:
                self.endpoint_draining.labels(*key).set(0)
            else:
                self.endpoint_draining.remove(*key)
        for key in draining - self._draining:
            self.endpoint_draining.labels(*key).set(1)
        self._draining = draining

    def _has_view(self, cluster: Cluster) -> bool:
        view = self._views.get(id(cluster.balancer))
        return view is not None and view.balancer is cluster.balancer

    @property
    def series_pending(self) -> bool:
        """Whether endpoints of the current table still wait for their series."""
        return bool(self._unseen)

    def add_series(self, endpoints: int | None = None) -> None:
        """Make the series (at 0) and session sketches of the current table's new endpoints: all
        of them, or the clusters of about `endpoints` endpoints. Making one costs 12-30 µs
        (prometheus-client's children), so a new table of 20,000 endpoints held the event loop
        for 250-600 ms at once; the runtime makes them a slice per loop turn instead."""
        unseen = self._unseen
        if not unseen:
            return
        pruned = self._seen is self._pruned_table and self._sizes() == self._pruned_sizes
        budget = endpoints
        while unseen and (budget is None or budget > 0):
            cluster = unseen.popleft()
            if id(cluster.balancer) not in self._current_clusters:
                continue  # its table was replaced meanwhile
            if not self._has_view(cluster):
                self._view(cluster)
            if budget is not None:
                budget -= len(cluster.endpoints) or 1
        if pruned:
            # All it made belongs to the current table: no reason for the next sync to walk
            # every endpoint again (at 50,000, 10-25 ms a second until the last slice).
            self._pruned_sizes = self._sizes()

    def _prune(self) -> None:
        """Endpoints and routes that left the table take their series with them (pods come and
        go; their names must not pile up), and cluster views of older tables go. After a new
        table, and after anything was added since the last prune: a request still on the old
        table may bring an endpoint back. (Nothing else changes these, and walking 50,000
        endpoints every second cost milliseconds for nothing.)"""
        if self._seen is self._pruned_table and self._sizes() == self._pruned_sizes:
            return
        self._pruned_table = self._seen
        for view in [k for k in self._views if k not in self._current_clusters]:
            del self._views[view]
        for key in [k for k in self._endpoint_stats if k not in self.current_endpoints]:
            self._sketching.discard(self._endpoint_stats.pop(key))
            self._forget(key, self._endpoint_families())
        for request in [k for k in self._request_children if k[0] not in self.current_routes]:
            del self._request_children[request]
            self._forget(_request_labels(request), (self.requests,))
        for labels in [k for k in self._histogram_children if k not in self.current_routes]:
            del self._histogram_children[labels]
            self._forget(labels, self._histograms())
        if self.ingress_nginx is not None:
            self.ingress_nginx.prune(self.current_routes, self.multiprocess)
        self._pruned_sizes = self._sizes()

    def _endpoint_families(self) -> tuple[Counter | Gauge, ...]:
        return (self.endpoint_requests, self.endpoint_new_sessions, self.endpoint_ejections,
                self.endpoint_ejected)  # fmt: skip

    def _sizes(self) -> tuple[int, int, int, int]:
        return (len(self._views), len(self._endpoint_stats), len(self._request_children),
                len(self._histogram_children))  # fmt: skip

    def _forget(
        self, labels: Iterable[str], families: Iterable[Counter | Gauge | Histogram]
    ) -> None:
        # Worker files keep every series ever written (prometheus-client cannot remove them):
        # there `_Current` leaves the stale ones out of each scrape instead.
        if not self.multiprocess:
            for family in families:
                family.remove(*tuple(labels))

    def _sample_process(self) -> None:
        for family in self._process.collect():
            for sample in family.samples:
                gauge = self._process_gauges.get(sample.name)
                if gauge is not None:
                    gauge.set(sample.value)
                elif sample.name == "process_cpu_seconds_total":
                    # A counter that each worker feeds with its own CPU time, so the sum
                    # keeps the time of workers that have exited.
                    self._process_cpu.inc(max(0.0, sample.value - self._cpu_seen))
                    self._cpu_seen = max(self._cpu_seen, sample.value)

    def is_current(self, labels: dict[str, str]) -> bool:
        """Whether a series belongs to the current routing table (or to no route at all)."""
        if "endpoint" in labels:
            return (labels["cluster"], labels["endpoint"]) in self.current_endpoints
        if "path" in labels:
            route = tuple(labels[name] for name in ROUTE_LABELS)
            if labels.get("canary") and self.ingress_nginx is not None:
                # ingress-nginx's series of a canary's answers: labelled with its location
                return self.ingress_nginx.canary_is_current(route, labels["canary"])
            return route in self.current_routes
        return True


def _histogram(
    name: str, documentation: str, buckets: tuple[float, ...], registry: CollectorRegistry | None
) -> Histogram:
    return Histogram(name, documentation, ROUTE_LABELS, registry=registry, buckets=buckets)


def _request_labels(key: RequestKey) -> tuple[str, ...]:
    labels, method, status = key
    return (*labels, method.decode("ascii", "replace"), str(status))


def add_counts(child: Histogram, counts: list[float]) -> None:
    """Add bucket counts gathered by `finished` to a histogram child in one `inc` per bucket.

    prometheus-client only offers `observe(value)`, one at a time; its per-bucket values
    (`_buckets`, `_sum`) have been the same since its first releases."""
    if not any(counts[:-1]):
        return
    for bucket, count in zip(child._buckets, counts, strict=False):
        if count:
            bucket.inc(count)
    child._sum.inc(counts[-1])


def _session_window(cluster: Cluster) -> float:
    """How long a session counts as active after its last request: the cookie's lifetime."""
    cookie = cluster.affinity.cookie if cluster.affinity is not None else None
    if cookie is not None and (cookie.max_age or cookie.expires):
        return float(cookie.max_age or cookie.expires or 0)
    return DEFAULT_SESSION_WINDOW


def _children(metric: Counter, values: list[str] | tuple[str, ...]) -> dict[str, Counter]:
    """Create every child up front: a series that exists from startup reads as 0, not absent."""
    return {value: metric.labels(value) for value in values}


class _Synced:
    """Registered first: a scrape (or a test's sample read) first brings the metrics up to date."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        if threading.get_ident() == self._metrics.owner_thread:
            self._metrics.sync()
        return iter(())


class _Current:
    """Every worker's series from the files, less those of endpoints and routes that left the
    routing table: the files keep all a worker ever wrote."""

    def __init__(self, metrics: Metrics, inner: MultiProcessCollector) -> None:
        self._metrics = metrics
        self._inner = inner

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        for family in self._inner.collect():  # type: ignore[no-untyped-call]
            family.samples = [s for s in family.samples if self._metrics.is_current(s.labels)]
            yield family


class _ActiveSessions:
    """sticky_proxy_endpoint_active_sessions: this process's sketches merged with the other
    workers' (shared through files), one estimate per current endpoint."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "sticky_proxy_endpoint_active_sessions",
            "Estimated distinct sessions (affinity cookies; clients in persistent mode) with a "
            "request to each endpoint within the cookie's lifetime (else 30 min)",
            labels=ENDPOINT_LABELS,
        )
        metrics = self._metrics
        for key, count in metrics.share.estimates(metrics.sessions()).items():
            if key in metrics.current_endpoints:
                family.add_metric(key, count)
        yield family
