"""The load balancer of clusters without cookie affinity, with the per-worker state it keeps:
each cluster's round-robin position and each endpoint's response-time average (EWMA).

docs/ingress-nginx-compat.md, "Load balancing". As in ingress-nginx, where every nginx worker
runs its own round robin, the state is per worker process; EWMA averages, which ingress-nginx
shares between workers, are per worker here too. The choices themselves are proxy/core/balancing.py.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from time import perf_counter
from typing import Protocol

from proxy.core.affinity import Balancer, Cluster, Decision
from proxy.core.balancing import LoadBalance, decayed, ewma_pick, round_robin_index
from proxy.core.headers import Request
from proxy.core.model import Endpoint
from proxy.core.routing import Snapshot


class Balanced(Protocol):
    """What the load balancer reads of a request's exchange, and the one thing it writes."""

    request: Request
    client: bytes  # the client's address, as $remote_addr in a hash-by key
    tried: list[Endpoint]
    ewma_started: float  # perf_counter of an EWMA pick, so that its answer's time is fed back


class Loads:
    """One worker's load balancing state, shared by all its connections."""

    def __init__(self, default: LoadBalance, rng: random.Random) -> None:
        self.default = default  # --load-balance: for clusters whose Ingresses set none
        self._rng = rng
        self._next: dict[str, int] = {}  # round robin: cluster name -> index of the next pick
        # EWMA: node -> [average response time, when last updated], as ewma.lua keys them
        self._ewma: dict[str, list[float]] = {}
        self._synced: dict[str, Balancer] = {}  # EWMA: the balancer each cluster was last seen with

    def choose(self, cluster: Cluster, exchange: Balanced, now: float) -> Decision | None:
        """The endpoint for one try of `exchange` (None: no ready endpoint it has not tried). An
        EWMA pick stamps `exchange.ewma_started`, so that its answer's time is fed back."""
        balancer = cluster.balancer
        balancing = cluster.balancing
        algorithm = self.default
        if balancing is not None:
            hash_by = balancing.hash_by
            if hash_by is not None:
                key = hash_by.key.evaluate(exchange.request, exchange.client)
                return balancer.choose_hashed(key, self._rng)
            algorithm = balancing.algorithm or algorithm
        if algorithm is LoadBalance.EWMA:
            decision = self._least_loaded(cluster.name, balancer, exchange.tried, now)
            if decision is not None:
                exchange.ewma_started = perf_counter()
            return decision
        return self._round_robin(cluster.name, balancer, exchange.tried)

    def _round_robin(
        self, name: str, balancer: Balancer, tried: Sequence[Endpoint]
    ) -> Decision | None:
        """The next ready endpoint in turn, skipping those this request tried. Each worker starts
        at a random one, as resty.roundrobin does."""
        plain = balancer.plain
        if not plain:
            return None
        start = self._next.get(name)
        if start is None:
            start = self._rng.randrange(len(plain))
        if tried:
            index = round_robin_index(balancer.ready, start, tried)
            if index < 0:
                return None
        else:
            index = start % len(plain)
        self._next[name] = index + 1
        return plain[index]

    def _least_loaded(
        self, name: str, balancer: Balancer, tried: Sequence[Endpoint], now: float
    ) -> Decision | None:
        plain = balancer.plain
        if self._synced.get(name) is not balancer:
            self._sync(name, balancer, now)
        candidates = [d for d in plain if d.endpoint not in tried] if tried else plain
        if not candidates:
            return None
        return ewma_pick(candidates, lambda d: self._score(d.endpoint.node, now), self._rng)

    def _score(self, node: str, now: float) -> float:
        stats = self._ewma.get(node)
        return decayed(stats[0], stats[1], 0.0, now) if stats is not None else 0.0

    def _sync(self, name: str, balancer: Balancer, now: float) -> None:
        """A cluster's endpoints changed: forget the averages of those gone, and start those
        added at the mean of the others, so that they are not swamped (ewma.lua sync)."""
        previous = self._synced.get(name)
        self._synced[name] = balancer
        if previous is None:
            return
        old = {e.node for e in previous.ready}
        new = {e.node for e in balancer.ready}
        for node in old - new:
            self._ewma.pop(node, None)
        known = [self._ewma[node][0] for node in new if node in self._ewma]
        if known:
            mean = sum(known) / len(known)
            for node in new - old:
                self._ewma[node] = [mean, now]

    def retain(self, snapshot: Snapshot) -> None:
        """Forget the clusters and endpoints that left the routing table: without it, each
        deleted Ingress and each pod replaced under EWMA would leave its entry behind."""
        names = {cluster.name for cluster in snapshot.clusters}
        for table in (self._next, self._synced):
            for name in [name for name in table if name not in names]:
                del table[name]
        nodes = snapshot.nodes
        for node in [node for node in self._ewma if node not in nodes]:
            del self._ewma[node]

    def observe(self, endpoint: Endpoint, seconds: float, now: float) -> None:
        """An EWMA-picked try took `seconds` from its pick to the end of its answer."""
        stats = self._ewma.get(endpoint.node)
        if stats is None:
            self._ewma[endpoint.node] = [decayed(0.0, 0.0, seconds, now), now]
        else:
            stats[0] = decayed(stats[0], stats[1], seconds, now)
            stats[1] = now
