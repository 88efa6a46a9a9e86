"""Passive outlier ejection as pure code: one endpoint's failures in a row and its back-off, and
the pod that stands in for an ejected one (docs/behaviour.md, "Outlier ejection").

Beyond ingress-nginx, and off unless a route asks for it. The clock is the caller's (the event
loop's); the data plane (`proxy.dataplane.ejection`) keeps one `Outlier` per endpoint that failed,
schedules the probes and feeds the results in.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Iterator, Sequence
from typing import Final

from proxy.core.model import Endpoint

# A re-ejection doubles the back-off, up to this many times the first one.
MAX_BACKOFF_FACTOR: Final = 10.0
# What counts as the endpoint's failure: it refused or dropped the connect, or did not answer in
# time (`UpstreamError.reason`). A reset or an invalid answer says little about the pod.
EJECTING_REASONS: Final = frozenset({"connect", "timeout"})


class Outlier:
    """One endpoint's consecutive failures, and its ejection.

    Not ejected: `failures` counts up to the threshold, which ejects it for `backoff` seconds
    (`until`). When that time is up the caller probes it; a failed probe ejects it again for
    twice as long (at most `MAX_BACKOFF_FACTOR` times the first back-off), a successful one
    returns it to service but remembers the back-off, so that failing again doubles it. Only an
    answer from the endpoint (the caller then drops this object) forgets the back-off.
    """

    __slots__ = ("backoff", "base", "cluster", "endpoint", "failures", "until")

    def __init__(self, endpoint: Endpoint, cluster: str) -> None:
        self.endpoint = endpoint
        self.cluster = cluster  # the cluster of its first failure: how metrics name it
        self.failures = 0
        self.base = 0.0  # the first back-off of the route that ejected it
        self.backoff = 0.0  # the last back-off; 0: not ejected since it last answered
        self.until = 0.0  # ejected until then (a probe decides after); 0: in service

    @property
    def ejected(self) -> bool:
        return self.until > 0.0

    def failed(self, threshold: int, base: float, now: float) -> bool:
        """A failed try on this endpoint; True when it ejects the endpoint. Failures of tries
        that began before the ejection do not count again."""
        if self.ejected:
            return False
        self.failures += 1
        if self.failures < threshold:
            return False
        self.base = base
        self._eject(now)
        return True

    def probe_failed(self, now: float) -> None:
        """The probe at the end of the back-off failed: ejected again, for twice as long."""
        self._eject(now)

    def probe_succeeded(self) -> None:
        """The probe connected: back in service, its back-off remembered."""
        self.until = 0.0
        self.failures = 0

    def _eject(self, now: float) -> None:
        cap = self.base * MAX_BACKOFF_FACTOR
        self.backoff = min(self.backoff * 2, cap) if self.backoff else self.base
        self.until = now + self.backoff
        self.failures = 0


class AvoidedNodes:
    """Endpoints a choice must pass over, by node text: the tried and the ejected ones (what
    `Balancer.choose` takes as `tried`). By node text, not by value: a pod that turned draining
    since it was ejected is still the same pod."""

    __slots__ = ("_by_node",)

    def __init__(self, endpoints: Collection[Endpoint], more: Collection[Endpoint]) -> None:
        self._by_node = {e.node: e for e in endpoints}
        for endpoint in more:
            self._by_node[endpoint.node] = endpoint

    def __contains__(self, endpoint: object) -> bool:
        return isinstance(endpoint, Endpoint) and endpoint.node in self._by_node

    def __len__(self) -> int:
        return len(self._by_node)

    def __iter__(self) -> Iterator[Endpoint]:
        return iter(self._by_node.values())


def substitute(
    cookie_value: str, ready: Sequence[Endpoint], avoid: Collection[Endpoint]
) -> Endpoint | None:
    """The pod that serves a session while its own is ejected: the same one for every request of
    the session (so its state stays in one place), spread evenly over the sessions, and moved
    only when that pod is avoided too (the highest CRC-32 of cookie and node wins: rendezvous
    hashing). None when every ready pod is to be avoided."""
    best: Endpoint | None = None
    best_score = -1
    for endpoint in ready:
        if endpoint in avoid:
            continue
        score = zlib.crc32(f"{cookie_value}|{endpoint.node}".encode())
        if score > best_score:
            best, best_score = endpoint, score
    return best
