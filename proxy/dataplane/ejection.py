"""One worker's ejected endpoints (docs/behaviour.md, "Outlier ejection"): fed by the exchanges'
failed tries and answers, read by their endpoint choices, and probed when a back-off ends.

Each worker process keeps its own, as it keeps its own pools: a pod that died is found out by
every worker within its first few failures. Nothing here runs for a request while no endpoint
has failed: the exchange checks one dict first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from functools import partial

from proxy.core.errors import UpstreamError
from proxy.core.model import Endpoint, UpstreamPolicy
from proxy.core.outliers import AvoidedNodes, Outlier
from proxy.dataplane.upstream import Pools, UpstreamConnection
from proxy.observability.metrics import Metrics

log = logging.getLogger("sticky_proxy.upstream")


class Ejections:
    """Endpoints with failures in a row, and those of them ejected now, by node text."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pools: Pools, metrics: Metrics) -> None:
        self._loop = loop
        self._pools = pools
        self._metrics = metrics
        # Endpoints that failed since they last answered: what an answer has to clear.
        self.watched: dict[str, Outlier] = {}
        # Those of them ejected now: what choices avoid (empty: nothing to check per request).
        self.ejected: dict[str, Outlier] = {}
        self._probes: dict[str, asyncio.TimerHandle] = {}
        self._probe_timeout: dict[str, float] = {}
        self._nodes: Collection[str] = ()  # of the current routing table (`retain`)

    def failed(self, cluster: str, endpoint: Endpoint, policy: UpstreamPolicy) -> None:
        """A try on `endpoint` failed in a way that counts (`EJECTING_REASONS`), on a route
        with ejection on."""
        node = endpoint.node
        outlier = self.watched.get(node)
        if outlier is None:
            if node not in self._nodes:
                return  # a try on an older table: the endpoint is gone, and so is its state
            outlier = self.watched[node] = Outlier(endpoint, cluster)
        if outlier.failed(policy.eject_after_failures, policy.eject_seconds, self._loop.time()):
            self._probe_timeout[node] = policy.connect_timeout
            self.ejected[node] = outlier
            self._metrics.ejection(outlier.cluster, endpoint.label, True)
            log.warning(
                "ejected %s (cluster %s) for %gs after %d failures in a row",
                endpoint.label, outlier.cluster, outlier.backoff, policy.eject_after_failures,
            )  # fmt: skip
            self._schedule(outlier)

    def served(self, endpoint: Endpoint) -> None:
        """`endpoint` answered: its failures and back-off are forgotten, and if ejected it is
        back in service. Called only while `watched` is not empty."""
        outlier = self.watched.pop(endpoint.node, None)
        if outlier is not None and outlier.ejected:
            self._restore(outlier, "it answered")

    def avoiding(self, tried: Collection[Endpoint]) -> AvoidedNodes:
        """What a choice passes over: the endpoints `tried` and every ejected one."""
        return AvoidedNodes(tried, [outlier.endpoint for outlier in self.ejected.values()])

    def retain(self, nodes: Collection[str]) -> None:
        """Forget endpoints that left the routing table (their metrics series go with them)."""
        self._nodes = nodes
        for node in [node for node in self.watched if node not in nodes]:
            self._forget(node)

    def close(self) -> None:
        for node in list(self.watched):
            self._forget(node)

    def _forget(self, node: str) -> None:
        self.watched.pop(node, None)
        outlier = self.ejected.pop(node, None)
        if outlier is not None:
            # (with workers its gauge lives on in a file: at 1 it would show again if it came back)
            self._metrics.ejection(outlier.cluster, outlier.endpoint.label, False)
        self._probe_timeout.pop(node, None)
        probe = self._probes.pop(node, None)
        if probe is not None:
            probe.cancel()

    def _restore(self, outlier: Outlier, why: str) -> None:
        node = outlier.endpoint.node
        self.ejected.pop(node, None)
        probe = self._probes.pop(node, None)
        if probe is not None:
            probe.cancel()
        self._metrics.ejection(outlier.cluster, outlier.endpoint.label, False)
        log.warning("%s (cluster %s) back in service: %s", outlier.endpoint.label,
                    outlier.cluster, why)  # fmt: skip

    def _schedule(self, outlier: Outlier) -> None:
        delay = max(0.0, outlier.until - self._loop.time())
        self._probes[outlier.endpoint.node] = self._loop.call_later(delay, self._probe, outlier)

    def _probe(self, outlier: Outlier) -> None:
        """The back-off is over: a TCP connect decides whether the endpoint serves again.
        Requests keep avoiding it until then."""
        node = outlier.endpoint.node
        self._probes.pop(node, None)
        timeout = self._probe_timeout.get(node)
        if timeout is None or self.ejected.get(node) is not outlier:
            return
        pool = self._pools.get(outlier.endpoint)
        pool.connect(timeout, partial(self._probed, outlier))

    def _probed(
        self, outlier: Outlier, conn: UpstreamConnection | None, error: UpstreamError | None
    ) -> None:
        node = outlier.endpoint.node
        if self.ejected.get(node) is not outlier:  # answered or left the table meanwhile
            if conn is not None:
                conn.release()
            return
        if conn is not None:
            conn.release()  # a fresh connection: the next request may as well use it
            outlier.probe_succeeded()
            self._restore(outlier, "a probe connected")
            return
        outlier.probe_failed(self._loop.time())
        self._metrics.ejection(outlier.cluster, outlier.endpoint.label, True)
        log.warning("%s (cluster %s) still failing (%s): ejected again for %gs",
                    outlier.endpoint.label, outlier.cluster, error, outlier.backoff)  # fmt: skip
        self._schedule(outlier)
