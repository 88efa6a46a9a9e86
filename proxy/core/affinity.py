"""Which endpoint serves a request: ingress-nginx's sticky-cookie decision, as pure code.

Described in docs/ingress-nginx-compat.md, "The per-request decision". A `Balancer` is built
once per cluster per snapshot; `choose` runs on every upstream attempt, and for a cookie that
resolves it does one bisect on the ring (or one dict hit on the persistent map) and hands back a
precomputed `Decision`. Randomness, the clock and the pid come from the caller.

A ring is built when first needed, not with its snapshot: 50,000 endpoints are 8 million CRC-32
points, seconds of work that would hold back the whole table. The publisher warms the rings in a
thread right after the swap, so requests rarely find one cold (a 50-pod ring takes a few ms).

A `Cluster` (one Service port, ingress-nginx's backend) is its endpoints, its affinity settings
and the `Balancer` built for them by `build_cluster`.
"""

from __future__ import annotations

import hashlib
import random
import weakref
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from mypy_extensions import mypyc_attr

from proxy.core.balancing import Balancing, subset_node, subsets
from proxy.core.cookies import backend_key, new_balanced_key, upstream_key
from proxy.core.model import Affinity, AffinityMode, Endpoint
from proxy.core.ring import HashRing

NEW_KEY_ATTEMPTS: Final = 20  # ingress-nginx's MAX_UPSTREAM_CHECKS_COUNT (sticky_balanced.lua)
# Draws that land on draining endpoints do not use up those 20: with one ready pod among ten,
# 20 draws would still turn away 12% of new sessions. This caps the redraws instead: with a ready
# share of 2% or more, fewer than one pick in 20,000 fails.
MAX_DRAWS: Final = 500
# Cookie values remembered per balancer with the decision they resolve to: a returning client
# then costs one dict hit instead of splitting its cookie, a CRC-32 and a bisect. Cleared when
# full, so a flood of made-up cookies costs at most ~40 KB per cluster (a page's requests come
# in a burst, so even a busy cluster's clients hit it before it clears).
PINNED_CACHE_SIZE: Final = 256


class Outcome(StrEnum):
    """Why an endpoint was chosen; the `outcome` label of affinity_decisions_total
    (docs/behaviour.md, "Metrics")."""

    STICKY = "sticky"  # the cookie resolved to a ready endpoint
    NEW = "new"  # no usable cookie: a fresh pick
    REPICKED = "repicked"  # persistent key unknown, or its pod gone: a fresh pick
    FAILOVER = "failover"  # a fresh pick after a failed try
    DRAINING = "draining"  # the cookie resolved to a draining endpoint, which keeps its sessions


class Decision:
    """Where to send one upstream attempt.

    `new_key` is set only for a fresh pick in an affinity cluster: the caller then issues the
    cookie `<new_key>|<backend_key>` (if the route sets cookies). `outcome` is None for clusters
    without affinity. A value, immutable (Final, checked by mypy), but a plain class rather than
    a frozen dataclass: mypyc compiles this __init__, not a dataclass's, and new clients get one
    each.
    """

    __slots__ = ("endpoint", "new_key", "outcome")

    def __init__(self, endpoint: Endpoint, new_key: str | None, outcome: Outcome | None) -> None:
        self.endpoint: Final = endpoint
        self.new_key: Final = new_key
        self.outcome: Final = outcome

    def _fields(self) -> tuple[Endpoint, str | None, Outcome | None]:
        return self.endpoint, self.new_key, self.outcome

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Decision) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return "Decision(endpoint={!r}, new_key={!r}, outcome={!r})".format(*self._fields())


# A plain Python class when compiled with mypyc: `_LIVE` holds balancers by weak reference, and
# mypyc's native classes cannot be weakly referenced.
@mypyc_attr(native_class=False)
class Balancer:
    """One cluster's endpoint choice: a CRC-32 ring (balanced), an md5 map (persistent), or a
    plain list (no affinity). Build with `Balancer.build`."""

    __slots__ = (
        "__weakref__",
        "_by_key",
        "_by_node",
        "_hash_subset",
        "_hashed",
        "_mode",
        "_pinned_by_cookie",
        "_ready_keys",
        "_ring_lookup",
        "backend_key",
        "endpoints",
        "plain",
        "ready",
    )

    def __init__(
        self,
        backend_name: str,
        endpoints: tuple[Endpoint, ...],
        mode: AffinityMode | None,
        hash_subset: int | None = None,
    ) -> None:
        self.backend_key: str = backend_key(backend_name)
        self.endpoints: tuple[Endpoint, ...] = endpoints  # distinct by node, ready and draining
        self.ready: tuple[Endpoint, ...] = tuple(e for e in endpoints if not e.draining)
        self._mode = mode
        # Draining endpoints stay in the ring and the map: their sessions must still resolve to
        # them. Only new picks skip them.
        self._by_node: dict[str, Decision] = {}  # balanced: the cookie-hit decision per node
        # balanced, once built: the ring and the cookie-hit decision of each ring node, by rank
        # (one attribute, so a thread building it concurrently never shows half of it)
        self._ring_lookup: tuple[HashRing, tuple[Decision, ...]] | None = None
        self._by_key: dict[str, Decision] = {}  # persistent key -> cookie-hit decision
        self._ready_keys: tuple[str, ...] = ()  # persistent key of each `ready` endpoint
        self.plain: tuple[Decision, ...] = ()  # no affinity: one decision per ready endpoint
        # upstream-hash-by (None: not hashed; 0: one endpoint per key; else the subset size) and,
        # once built, its ring and the decisions of each ring node, by rank
        self._hash_subset = hash_subset
        self._hashed: tuple[HashRing, tuple[tuple[Decision, ...], ...]] | None = None
        self._pinned_by_cookie: dict[str, Decision | None] = {}  # see PINNED_CACHE_SIZE
        if mode is None:
            self.plain = tuple(Decision(e, None, None) for e in self.ready)
        elif mode is AffinityMode.BALANCED and endpoints:
            self._by_node = {e.node: _pinned(e) for e in endpoints}
        elif mode is AffinityMode.PERSISTENT:
            keys = {e: _persistent_key(backend_name, e) for e in endpoints}
            self._by_key = {key: _pinned(e) for e, key in keys.items()}
            self._ready_keys = tuple(keys[e] for e in self.ready)

    @classmethod
    def build(
        cls,
        backend_name: str,
        endpoints: Sequence[Endpoint],
        affinity: Affinity | None,
        hash_subset: int | None = None,
    ) -> Balancer:
        """Everything a request needs, precomputed. Endpoints are deduplicated by node text
        (docs/ingress-nginx-compat.md, "Node text").

        A balancer that a live snapshot already holds for the same name, endpoints and mode is
        reused: a change to one Service must not rebuild the rings of all the others (a 50-pod
        ring is 8,000 points).
        """
        mode = affinity.mode if affinity is not None else None
        key = (backend_name, _distinct(endpoints), mode, hash_subset)
        balancer = _LIVE.get(key)
        if balancer is None:
            balancer = _LIVE[key] = cls(*key)
        return balancer

    @property
    def ring(self) -> HashRing | None:
        """The balanced-mode ring (None otherwise, or with no endpoints), built if still cold."""
        lookup = self._lookup()
        return lookup[0] if lookup is not None else None

    @property
    def cold(self) -> bool:
        """Whether this balancer still has a ring to build before it can answer."""
        if self._hash_subset is not None:
            return self._hashed is None and bool(self.ready)
        return self._ring_lookup is None and bool(self._by_node)

    def warm(self) -> None:
        """Build the ring now, so that no request has to."""
        self._lookup()
        self._hash_lookup()

    def _hash_lookup(self) -> tuple[HashRing, tuple[tuple[Decision, ...], ...]] | None:
        """upstream-hash-by's ring, built on first use (None: not hashed, or no ready endpoint):
        the ready endpoints' node texts, or with subsets the subsets' names, each with the
        decisions it stands for (docs/ingress-nginx-compat.md, "Hash-by keys")."""
        if self._hashed is not None or self._hash_subset is None or not self.plain:
            return self._hashed
        if self._hash_subset:
            groups = {
                subset_node(i): s for i, s in enumerate(subsets(self.plain, self._hash_subset))
            }
        else:
            groups = {d.endpoint.node: (d,) for d in self.plain}
        ring = HashRing(groups)
        hashed = self._hashed = (ring, tuple(groups[node] for node in ring.nodes))
        return hashed

    def choose_hashed(self, key: str, rng: random.Random) -> Decision | None:
        """The endpoint `key` hashes to, whatever this request already tried: ingress-nginx
        retries a key on the endpoint it hashes to. With subsets, one of its subset at random.
        None: no ready endpoint."""
        hashed = self._hash_lookup()
        if hashed is None:
            return None
        ring, groups = hashed
        group = groups[ring.lookup_rank(key)]
        return group[0] if len(group) == 1 else group[rng.randrange(len(group))]

    def _lookup(self) -> tuple[HashRing, tuple[Decision, ...]] | None:
        """The ring and its decisions by rank, built on first use (None: not a balanced cluster
        with endpoints). Two threads may race to build it: both build the same ring, and either
        result is the right one."""
        if self._ring_lookup is not None or not self._by_node:
            return self._ring_lookup
        ring = HashRing(self._by_node)
        lookup = self._ring_lookup = (ring, tuple(self._by_node[node] for node in ring.nodes))
        return lookup

    def choose(  # noqa: PLR0917 - the data plane's positional call; one hot call, no kwargs
        self,
        cookie_value: str | None,
        tried: Collection[Endpoint],
        previous_failed: bool,
        change_on_failure: bool,
        rng: random.Random,
        now: float,
        pid: int,
    ) -> Decision | None:
        """The endpoint for one upstream attempt, or None when none can be picked
        (docs/ingress-nginx-compat.md, "The per-request decision").

        `cookie_value` is the raw affinity cookie value (None: no cookie). `tried` holds the
        endpoints this request already tried, as returned in earlier decisions. None means the
        caller answers 503 (nothing to pick) or 502 (every candidate already tried).
        """
        if self._mode is None:
            return self._pick_plain(tried, rng)
        if cookie_value:
            try:
                pinned = self._pinned_by_cookie[cookie_value]
            except KeyError:
                pinned = self._pinned(cookie_value)
            if pinned is not None and not (previous_failed and change_on_failure):
                # The cookie wins, even for a draining endpoint and, without change-on-failure,
                # even on a retry of the endpoint that just failed (ingress-nginx's default).
                return pinned
        key = upstream_key(cookie_value) if cookie_value else None
        if previous_failed:
            outcome = Outcome.FAILOVER
        elif key is None:
            outcome = Outcome.NEW
        else:
            outcome = Outcome.REPICKED  # only persistent mode: a ring resolves every key
        if self._mode is AffinityMode.BALANCED:
            ring_lookup = self._lookup()
            if ring_lookup is None:
                return None  # no endpoints at all
            return self._pick_balanced(ring_lookup, tried, outcome, rng=rng, now=now, pid=pid)
        return self._pick_persistent(tried, outcome, rng)

    def _pinned(self, cookie_value: str) -> Decision | None:
        """The decision a cookie resolves to (None: it holds no key, or names no endpoint)."""
        key = upstream_key(cookie_value)
        pinned: Decision | None = None
        if key is not None:
            if self._mode is AffinityMode.BALANCED:
                ring_lookup = self._lookup()
                if ring_lookup is not None:
                    pinned = ring_lookup[1][ring_lookup[0].lookup_rank(key)]
            else:
                pinned = self._by_key.get(key)
        cache = self._pinned_by_cookie
        if len(cache) >= PINNED_CACHE_SIZE:
            cache.clear()
        cache[cookie_value] = pinned
        return pinned

    def _pick_balanced(
        self,
        ring_lookup: tuple[HashRing, tuple[Decision, ...]],
        tried: Collection[Endpoint],
        outcome: Outcome,
        *,
        rng: random.Random,
        now: float,
        pid: int,
    ) -> Decision | None:
        """Draw keys until one lands on a ready, untried endpoint
        (docs/ingress-nginx-compat.md, "New keys")."""
        if not self._has_candidate(tried):
            return None  # doomed draws would only burn time
        ring, by_rank = ring_lookup
        landed_on_tried = 0
        for attempt in range(1, MAX_DRAWS + 1):
            key = new_balanced_key(now, attempt, pid, rng)
            endpoint = by_rank[ring.lookup_rank(key)].endpoint
            if endpoint.draining:
                continue
            if endpoint not in tried:
                return Decision(endpoint, key, outcome)
            landed_on_tried += 1
            if landed_on_tried == NEW_KEY_ATTEMPTS:
                break
        return None

    def _pick_persistent(
        self, tried: Collection[Endpoint], outcome: Outcome, rng: random.Random
    ) -> Decision | None:
        """Uniform over ready, untried endpoints; the cookie key is the pick's map key
        (docs/ingress-nginx-compat.md, "Persistent mode")."""
        if not tried:
            if not self.ready:
                return None
            index = rng.randrange(len(self.ready))
            return Decision(self.ready[index], self._ready_keys[index], outcome)
        candidates = [i for i, e in enumerate(self.ready) if e not in tried]
        if not candidates:
            return None
        index = candidates[rng.randrange(len(candidates))]
        return Decision(self.ready[index], self._ready_keys[index], outcome)

    def _pick_plain(self, tried: Collection[Endpoint], rng: random.Random) -> Decision | None:
        """No affinity: uniform over ready, untried endpoints, no cookie, no outcome (a Gateway
        API session's first pick; other requests go through the data plane's load balancer)."""
        candidates = [d for d in self.plain if d.endpoint not in tried] if tried else self.plain
        if not candidates:
            return None
        return candidates[rng.randrange(len(candidates))]

    def _has_candidate(self, tried: Collection[Endpoint]) -> bool:
        if not tried:
            return bool(self.ready)
        return any(e not in tried for e in self.ready)


# Balancers still referenced by some snapshot, by what they were built from. Weak values: once no
# snapshot holds one, it goes, so the cache never outgrows the routing tables in use.
_LIVE: weakref.WeakValueDictionary[
    tuple[str, tuple[Endpoint, ...], AffinityMode | None, int | None], Balancer
] = weakref.WeakValueDictionary()


def build_cluster(
    name: str,
    endpoints: Sequence[Endpoint],
    affinity: Affinity | None,
    balancing: Balancing | None = None,
) -> Cluster:
    """A `Cluster` with its `Balancer`; the cluster keeps the deduplicated endpoint list.
    `balancing` only counts without `affinity`: the cookie wins, as in ingress-nginx."""
    if affinity is not None:
        balancing = None
    hash_by = balancing.hash_by if balancing is not None else None
    balancer = Balancer.build(
        name, endpoints, affinity, hash_by.subset_size if hash_by is not None else None
    )
    return Cluster(name, balancer.endpoints, affinity, balancer, balancing)


def _distinct(endpoints: Sequence[Endpoint]) -> tuple[Endpoint, ...]:
    """One endpoint per node text, first-seen order. If one copy is ready, the node is ready: a
    pod listed by two slices is serving as long as one of them says so."""
    by_node: dict[str, Endpoint] = {}
    for endpoint in endpoints:
        seen = by_node.get(endpoint.node)
        if seen is None or (seen.draining and not endpoint.draining):
            by_node[endpoint.node] = endpoint
    return tuple(by_node.values())


def _pinned(endpoint: Endpoint) -> Decision:
    """The decision for a cookie resolving to `endpoint`: the same every time, so built once."""
    return Decision(endpoint, None, Outcome.DRAINING if endpoint.draining else Outcome.STICKY)


def _persistent_key(backend_name: str, endpoint: Endpoint) -> str:
    """md5hex(backend name + node): docs/ingress-nginx-compat.md, "Persistent mode"."""
    return hashlib.md5((backend_name + endpoint.node).encode()).hexdigest()


@dataclass(frozen=True, slots=True, eq=False)
class Cluster:
    """A Service port (ingress-nginx backend) and its endpoints.

    `affinity` is None when no Ingress enabled cookie affinity for this backend; then `balancing`
    says how requests are spread (None: round robin or the --load-balance default; see
    proxy/core/balancing.py). The balancer (ring or persistent map) is built once, when the
    snapshot is built, never per request.
    """

    name: str
    endpoints: tuple[Endpoint, ...]
    affinity: Affinity | None
    balancer: Balancer
    balancing: Balancing | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Cluster):
            return NotImplemented
        return (self.name, self.endpoints, self.affinity, self.balancing) == (
            other.name,
            other.endpoints,
            other.affinity,
            other.balancing,
        )

    def __hash__(self) -> int:
        return hash((self.name, self.endpoints, self.affinity, self.balancing))
