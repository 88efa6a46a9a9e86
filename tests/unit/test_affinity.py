"""The per-request decision (docs/ingress-nginx-compat.md, "The per-request decision"):
vectors through the Balancer, the decision table,
draining, bad cookies, rebalancing and the spread of new sessions."""

from __future__ import annotations

import gc
import json
import math
import random
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from proxy.core.affinity import (
    PINNED_CACHE_SIZE,
    Balancer,
    Cluster,
    Decision,
    Outcome,
    _persistent_key,
    build_cluster,
)
from proxy.core.cookies import backend_key
from proxy.core.model import Affinity, AffinityMode, Endpoint
from proxy.core.ring import HashRing
from tests.fixed_random import FixedRandom

FIXTURES = Path(__file__).parent.parent / "fixtures"
CHASH: dict[str, Any] = json.loads((FIXTURES / "chash_vectors.json").read_text())
PERSISTENT: dict[str, Any] = json.loads((FIXTURES / "persistent_vectors.json").read_text())

BALANCED = Affinity(mode=AffinityMode.BALANCED)
PERSISTENT_MODE = Affinity(mode=AffinityMode.PERSISTENT)
NOW = 1700000000.123
PID = 4242
BACKEND = "default-web-80"
WEB_KEY = "6cde5721ec2c7e2bce07cff7d0e4ac37"

A = Endpoint("10.244.0.5", 8080)
B = Endpoint("10.244.1.7", 8080)
C = Endpoint("10.244.2.9", 8080)
THREE = (A, B, C)
# Known landings on the ring of A, B and C (chash_vectors.json set n3, and the example in
# docs/ingress-nginx-compat.md, "Looking up a key").
KEY_ON_A = "1700000001.123.4242.777"
PERSISTENT_KEY = {  # md5hex("default-web-80" + node), persistent_vectors.json set n3
    A: "a4218db18517898613a5b988c1d68087",
    B: "f80e698df1ee02ab3cbfca44f7769f63",
    C: "14b39e16b47200d60fa233790cd75e71",
}
KEY_OF_NODE = {e.node: key for e, key in PERSISTENT_KEY.items()}


def endpoints_of(vector_set: dict[str, Any]) -> list[Endpoint]:
    return [Endpoint(e["address"], int(e["port"])) for e in vector_set["endpoints"]]


def choose(
    balancer: Balancer,
    cookie: str | None,
    tried: Sequence[Endpoint] = (),
    previous_failed: bool = False,
    change_on_failure: bool = False,
    *,
    rng: random.Random | None = None,
) -> Decision | None:
    return balancer.choose(
        cookie, tried, previous_failed, change_on_failure, rng or random.Random(0), NOW, PID
    )


def ring_of(balancer: Balancer) -> HashRing:
    assert balancer.ring is not None
    return balancer.ring


def assert_fresh_pick(balancer: Balancer, decision: Decision | None, mode: AffinityMode) -> None:
    """A new pick's key must lead back to its endpoint, or the next request would go elsewhere."""
    assert decision is not None and decision.new_key is not None
    follow_up = choose(balancer, f"{decision.new_key}|{balancer.backend_key}")
    assert follow_up is not None and follow_up.endpoint == decision.endpoint
    if mode is AffinityMode.PERSISTENT and decision.endpoint.node in KEY_OF_NODE:
        assert decision.new_key == KEY_OF_NODE[decision.endpoint.node]


# --- the vectors, through the Balancer ---------------------------------------------------------


@pytest.mark.parametrize("vector_set", CHASH["sets"], ids=[s["label"] for s in CHASH["sets"]])
def test_chash_vectors_through_balancer(vector_set: dict[str, Any]) -> None:
    """Every chash case as a real cookie, new format and legacy: the vector's endpoint, sticky."""
    balancer = Balancer.build(vector_set["backend_name"], endpoints_of(vector_set), BALANCED)
    assert balancer.backend_key == vector_set["backend_key"]
    expected = {
        case["key"]: (case["endpoint"], None, Outcome.STICKY) for case in vector_set["cases"]
    }
    wrong = []
    for key, want in expected.items():
        for cookie in (f"{key}|{balancer.backend_key}", key):
            decision = choose(balancer, cookie)
            got = decision and (decision.endpoint.node, decision.new_key, decision.outcome)
            if got != want:
                wrong.append((cookie, got))
    assert wrong == []


@pytest.mark.parametrize(
    "vector_set", PERSISTENT["sets"], ids=[s["label"] for s in PERSISTENT["sets"]]
)
def test_persistent_map_through_balancer(vector_set: dict[str, Any]) -> None:
    """Every map entry resolves to its node, and a new pick's key is that node's map entry."""
    balancer = Balancer.build(vector_set["backend_name"], endpoints_of(vector_set), PERSISTENT_MODE)
    assert balancer.backend_key == vector_set["backend_key"]
    key_of = {entry["node"]: entry["key"] for entry in vector_set["map"]}
    for node, key in key_of.items():
        decision = choose(balancer, f"{key}|{balancer.backend_key}")
        assert decision is not None
        assert (decision.endpoint.node, decision.new_key, decision.outcome) == (
            node,
            None,
            Outcome.STICKY,
        )
    rng = random.Random(3)
    picked = set()
    for _ in range(20 * len(key_of)):
        decision = choose(balancer, None, rng=rng)
        assert decision is not None and decision.outcome is Outcome.NEW
        assert decision.new_key == key_of[decision.endpoint.node]
        picked.add(decision.endpoint.node)
    assert len(picked) > len(key_of) // 2  # the picks really spread


@pytest.mark.parametrize(
    "vector_set", PERSISTENT["sets"], ids=[s["label"] for s in PERSISTENT["sets"]]
)
def test_persistent_lookups_through_balancer(vector_set: dict[str, Any]) -> None:
    """Hits stay; misses (removed pod, other backend, upper case, balanced key, junk) re-pick."""
    balancer = Balancer.build(vector_set["backend_name"], endpoints_of(vector_set), PERSISTENT_MODE)
    for lookup in vector_set["lookups"]:
        decision = choose(balancer, f"{lookup['key']}|{balancer.backend_key}")
        assert decision is not None, lookup
        if lookup["endpoint"] is not None:
            assert (decision.endpoint.node, decision.outcome) == (
                lookup["endpoint"],
                Outcome.STICKY,
            )
            assert decision.new_key is None
        else:
            assert decision.outcome is Outcome.REPICKED, lookup
            assert decision.new_key is not None and decision.new_key != lookup["key"]
            assert_fresh_pick(balancer, decision, AffinityMode.PERSISTENT)


# --- the decision table (docs/ingress-nginx-compat.md, "The per-request decision") -------------


@dataclass(frozen=True)
class Case:
    name: str
    mode: AffinityMode
    cookie: str | None
    tried: tuple[Endpoint, ...] = ()
    previous_failed: bool = False
    change_on_failure: bool = False
    draining: tuple[Endpoint, ...] = ()
    # expectations
    outcome: Outcome | None = None
    endpoint: Endpoint | None = None  # None: any endpoint the rules allow
    fresh: bool = False  # a new pick with a cookie to issue
    none: bool = False  # no endpoint can be picked


BAL, PER = AffinityMode.BALANCED, AffinityMode.PERSISTENT
ON_A_BAL = f"{KEY_ON_A}|{WEB_KEY}"
ON_A_PER = f"{PERSISTENT_KEY[A]}|{WEB_KEY}"
UNKNOWN_PER = f"d3f4f0b132c3022d46e656c50b3a66ce|{WEB_KEY}"  # a pod that is not in the set

CASES = [
    Case("bal-sticky", BAL, ON_A_BAL, outcome=Outcome.STICKY, endpoint=A),
    Case("bal-legacy-sticky", BAL, KEY_ON_A, outcome=Outcome.STICKY, endpoint=A),
    Case("bal-foreign-backend-key", BAL, f"{KEY_ON_A}|x", outcome=Outcome.STICKY, endpoint=A),
    Case("bal-no-cookie", BAL, None, outcome=Outcome.NEW, fresh=True),
    Case("bal-empty-cookie", BAL, "", outcome=Outcome.NEW, fresh=True),
    Case("bal-only-bars", BAL, "||", outcome=Outcome.NEW, fresh=True),
    Case(
        "bal-failover",
        BAL,
        ON_A_BAL,
        tried=(A,),
        previous_failed=True,
        change_on_failure=True,
        outcome=Outcome.FAILOVER,
        fresh=True,
    ),
    Case(
        "bal-retry-same-without-change-on-failure",
        BAL,
        ON_A_BAL,
        tried=(A,),
        previous_failed=True,
        outcome=Outcome.STICKY,
        endpoint=A,
    ),
    Case(
        "bal-no-cookie-retry",
        BAL,
        None,
        tried=(B,),
        previous_failed=True,
        outcome=Outcome.FAILOVER,
        fresh=True,
    ),
    Case(
        "bal-all-tried",
        BAL,
        ON_A_BAL,
        tried=THREE,
        previous_failed=True,
        change_on_failure=True,
        none=True,
    ),
    Case("bal-all-tried-no-cookie", BAL, None, tried=THREE, previous_failed=True, none=True),
    Case(
        "bal-all-tried-cookie-still-wins",
        BAL,
        ON_A_BAL,
        tried=THREE,
        previous_failed=True,
        outcome=Outcome.STICKY,
        endpoint=A,
    ),
    Case(
        "bal-draining-keeps-session",
        BAL,
        ON_A_BAL,
        draining=(A,),
        outcome=Outcome.DRAINING,
        endpoint=A,
    ),
    Case(
        "bal-draining-failover",
        BAL,
        ON_A_BAL,
        tried=(A,),
        previous_failed=True,
        change_on_failure=True,
        draining=(A,),
        outcome=Outcome.FAILOVER,
        fresh=True,
    ),
    Case(
        "bal-all-draining-sticky",
        BAL,
        ON_A_BAL,
        draining=THREE,
        outcome=Outcome.DRAINING,
        endpoint=A,
    ),
    Case(
        "bal-draining-retry-without-change-on-failure",
        BAL,
        ON_A_BAL,
        tried=(A,),
        previous_failed=True,
        draining=(A,),
        outcome=Outcome.DRAINING,
        endpoint=A,
    ),
    Case("bal-all-draining-new", BAL, None, draining=THREE, none=True),
    Case("per-sticky", PER, ON_A_PER, outcome=Outcome.STICKY, endpoint=A),
    Case("per-legacy-sticky", PER, PERSISTENT_KEY[A], outcome=Outcome.STICKY, endpoint=A),
    Case("per-no-cookie", PER, None, outcome=Outcome.NEW, fresh=True),
    Case("per-removed-pod", PER, UNKNOWN_PER, outcome=Outcome.REPICKED, fresh=True),
    Case("per-balanced-key", PER, ON_A_BAL, outcome=Outcome.REPICKED, fresh=True),
    Case("per-upper-case", PER, ON_A_PER.upper(), outcome=Outcome.REPICKED, fresh=True),
    Case(
        "per-failover",
        PER,
        ON_A_PER,
        tried=(A,),
        previous_failed=True,
        change_on_failure=True,
        outcome=Outcome.FAILOVER,
        fresh=True,
    ),
    Case(
        "per-retry-same-without-change-on-failure",
        PER,
        ON_A_PER,
        tried=(A,),
        previous_failed=True,
        outcome=Outcome.STICKY,
        endpoint=A,
    ),
    Case(
        "per-unknown-key-retry",
        PER,
        UNKNOWN_PER,
        tried=(B,),
        previous_failed=True,
        outcome=Outcome.FAILOVER,
        fresh=True,
    ),
    Case(
        "per-all-tried",
        PER,
        ON_A_PER,
        tried=THREE,
        previous_failed=True,
        change_on_failure=True,
        none=True,
    ),
    Case("per-all-tried-unknown", PER, UNKNOWN_PER, tried=THREE, previous_failed=True, none=True),
    Case(
        "per-draining-keeps-session",
        PER,
        ON_A_PER,
        draining=(A,),
        outcome=Outcome.DRAINING,
        endpoint=A,
    ),
    Case(
        "per-draining-retry-without-change-on-failure",
        PER,
        ON_A_PER,
        tried=(A,),
        previous_failed=True,
        draining=(A,),
        outcome=Outcome.DRAINING,
        endpoint=A,
    ),
    Case(
        "per-draining-failover",
        PER,
        ON_A_PER,
        tried=(A,),
        previous_failed=True,
        change_on_failure=True,
        draining=(A,),
        outcome=Outcome.FAILOVER,
        fresh=True,
    ),
    Case(
        "per-all-draining-sticky",
        PER,
        ON_A_PER,
        draining=THREE,
        outcome=Outcome.DRAINING,
        endpoint=A,
    ),
    Case("per-all-draining-new", PER, None, draining=THREE, none=True),
]


def with_draining(endpoints: Sequence[Endpoint], draining: Sequence[Endpoint]) -> list[Endpoint]:
    return [Endpoint(e.address, e.port, draining=e in draining) for e in endpoints]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_decision_rules(case: Case) -> None:
    endpoints = with_draining(THREE, case.draining)
    balancer = Balancer.build(BACKEND, endpoints, Affinity(mode=case.mode))
    tried = with_draining(case.tried, case.draining)  # as the caller saw them in this snapshot
    for seed in range(20):  # the random part must never break a rule
        decision = choose(
            balancer,
            case.cookie,
            tried,
            case.previous_failed,
            case.change_on_failure,
            rng=random.Random(seed),
        )
        if case.none:
            assert decision is None
            continue
        assert decision is not None
        assert decision.outcome is case.outcome
        if case.endpoint is not None:
            assert decision.endpoint.node == case.endpoint.node
        if case.fresh:
            assert decision.endpoint not in tried
            assert not decision.endpoint.draining
            assert_fresh_pick(balancer, decision, case.mode)
        else:
            assert decision.new_key is None


def test_failover_picks_every_other_endpoint_over_time() -> None:
    """With change-on-failure, the failover pick is spread over the untried endpoints."""
    for affinity in (BALANCED, PERSISTENT_MODE):
        balancer = Balancer.build(BACKEND, THREE, affinity)
        cookie = ON_A_BAL if affinity is BALANCED else ON_A_PER
        rng = random.Random(11)
        seen = Counter(
            d.endpoint
            for d in (choose(balancer, cookie, (A,), True, True, rng=rng) for _ in range(300))
            if d is not None
        )
        assert set(seen) == {B, C}


def test_balanced_key_is_ingress_nginx_format() -> None:
    """Draw 1 uses `now + 1`, the pid and R (docs/ingress-nginx-compat.md, "New keys"): the
    first key of the Set-Cookie layout examples comes out of the balancer."""
    balancer = Balancer.build(BACKEND, THREE, BALANCED)
    decision = balancer.choose(None, (), False, False, FixedRandom(698852), NOW, PID)
    assert decision is not None and decision.new_key == "1700000001.123.4242.698852"
    assert decision.endpoint.node == ring_of(balancer).lookup(decision.new_key)


def landings(balancer: Balancer, r: int) -> list[str]:
    """The nodes that attempts 1..20 land on when every draw of R answers `r`."""
    ring = ring_of(balancer)
    return [ring.lookup(f"{NOW + attempt:.14g}.{PID}.{r}") for attempt in range(1, 21)]


def test_balanced_redraws_past_draining_endpoints_without_spending_the_twenty() -> None:
    """One ready endpoint among ten: draws go on while keys land on draining ones, T = now + i
    (docs/ingress-nginx-compat.md, "New keys"), beyond ingress-nginx's 20, so new sessions are
    not turned away."""
    endpoints = [Endpoint(f"10.244.7.{i}", 8080, draining=i > 0) for i in range(10)]
    balancer = Balancer.build(BACKEND, endpoints, BALANCED)
    ready = endpoints[0].node
    hit_at: dict[int | None, int] = {}  # first attempt that lands on `ready` -> an R doing it
    for r in range(1, 5000):
        nodes = landings(balancer, r)
        first = nodes.index(ready) + 1 if ready in nodes else None
        hit_at.setdefault(first, r)
    assert {None, 1, 5}.issubset(hit_at)

    for attempt in (1, 5):
        rng = FixedRandom(hit_at[attempt])
        decision = balancer.choose(None, (), False, False, rng, NOW, PID)
        assert decision is not None and decision.endpoint == endpoints[0]
        assert decision.new_key == f"{NOW + attempt:.14g}.{PID}.{hit_at[attempt]}"
        assert rng.draws == attempt

    rng = FixedRandom(hit_at[None])  # 20 draws all on draining endpoints: drawing goes on
    decision = balancer.choose(None, (), False, False, rng, NOW, PID)
    assert decision is not None and decision.endpoint == endpoints[0] and rng.draws > 20

    seeded = random.Random(7)
    for _ in range(2000):
        decision = balancer.choose(None, (), False, False, seeded, NOW, PID)
        assert decision is not None and decision.endpoint == endpoints[0]


def test_balanced_gives_up_after_twenty_draws_on_tried_endpoints() -> None:
    balancer = Balancer.build(BACKEND, THREE, BALANCED)
    ring = ring_of(balancer)
    tried = [e for e in THREE if e.node != THREE[2].node]
    # an R whose first 20 keys all land on tried endpoints (A or B)
    r = next(
        r for r in range(1, 100_000)
        if all(ring.lookup(f"{NOW + i:.14g}.{PID}.{r}") != THREE[2].node for i in range(1, 21))
    )  # fmt: skip
    rng = FixedRandom(r)
    assert balancer.choose(None, tried, True, True, rng, NOW, PID) is None
    assert rng.draws == 20


def test_balanced_does_not_draw_when_nothing_is_left() -> None:
    balancer = Balancer.build(BACKEND, THREE, BALANCED)
    rng = FixedRandom(1)
    assert balancer.choose(None, THREE, True, True, rng, NOW, PID) is None
    assert rng.draws == 0


# --- no affinity, no endpoints -----------------------------------------------------------------


def test_no_affinity_is_uniform_and_cookie_blind() -> None:
    endpoints = [A, B, C, Endpoint("10.244.3.1", 8080, draining=True)]
    balancer = Balancer.build(BACKEND, endpoints, None)
    assert balancer.ready == THREE
    rng = random.Random(1)
    counts: Counter[Endpoint] = Counter()
    for _ in range(3_000):
        decision = choose(balancer, ON_A_BAL, rng=rng)
        assert decision is not None and decision.new_key is None and decision.outcome is None
        counts[decision.endpoint] += 1
    assert set(counts) == set(THREE)
    assert all(abs(n - 1_000) < 150 for n in counts.values())
    decision = choose(balancer, None, (A, B), True, True)
    assert decision is not None and decision.endpoint == C
    assert choose(balancer, None, THREE, True) is None


@pytest.mark.parametrize("affinity", [None, BALANCED, PERSISTENT_MODE], ids=["none", "bal", "per"])
@pytest.mark.parametrize("cookie", [None, "", ON_A_BAL, ON_A_PER, "junk"])
def test_no_endpoints_builds_and_never_picks(affinity: Affinity | None, cookie: str | None) -> None:
    cluster = build_cluster(BACKEND, [], affinity)
    assert cluster.endpoints == () and cluster.balancer.ready == ()
    assert choose(cluster.balancer, cookie) is None
    assert choose(cluster.balancer, cookie, (), True, True) is None


# --- bad cookies -------------------------------------------------------------------------------

BAD_COOKIES = [
    "",
    "|",
    "||||",
    "x" * 4096,
    ("ab|" * 1400)[:4096],
    "\xe9t\xe9|\xff",  # Latin-1 bytes as decoded from the header
    "\u20ac\U0001f600",  # cannot come from a Latin-1 header, must not crash anyway
    "\x00\x01\x7f",
    '"quoted"',
    "a;b c=d",
    PERSISTENT_KEY[A].upper(),  # forged: upper-case copy of a valid key
    "82c64b2309c9d025c04588dcc93b33a0",  # forged: md5 salted with another backend
    f"{PERSISTENT_KEY[A]}|{'0' * 32}",  # a valid key with a wrong backend key still counts
    "-1",
    "1700000001.123.4242.777.extra",
]


@pytest.mark.parametrize("cookie", BAD_COOKIES, ids=[f"bad{i}" for i in range(len(BAD_COOKIES))])
def test_bad_cookies_still_decide(cookie: str) -> None:
    balanced = Balancer.build(BACKEND, THREE, BALANCED)
    decision = choose(balanced, cookie)
    assert decision is not None
    if cookie.strip("|"):
        # a ring resolves every key: the session is kept, no cookie is issued
        assert (decision.outcome, decision.new_key) == (Outcome.STICKY, None)
    else:
        assert decision.outcome is Outcome.NEW and decision.new_key is not None

    persistent = Balancer.build(BACKEND, THREE, PERSISTENT_MODE)
    decision = choose(persistent, cookie)
    assert decision is not None
    if cookie.startswith(PERSISTENT_KEY[A] + "|"):
        assert (decision.endpoint, decision.outcome) == (A, Outcome.STICKY)
    elif cookie.strip("|"):
        assert decision.outcome is Outcome.REPICKED
        assert_fresh_pick(persistent, decision, AffinityMode.PERSISTENT)
    else:
        assert decision.outcome is Outcome.NEW


# --- building ----------------------------------------------------------------------------------


def test_duplicates_merge_and_ready_wins() -> None:
    """A pod listed twice (two slices) counts once; if any copy is ready it is ready."""
    endpoints = [
        Endpoint("10.244.0.5", 8080, draining=True),
        B,
        Endpoint("10.244.0.5", 8080, pod="web-a"),
        B,
    ]
    balancer = Balancer.build(BACKEND, endpoints, BALANCED)
    assert [e.node for e in balancer.endpoints] == [A.node, B.node]
    assert balancer.ready == (Endpoint("10.244.0.5", 8080, pod="web-a"), B)
    assert len(balancer.ring or ()) == 320


def test_build_cluster() -> None:
    cluster = build_cluster(BACKEND, [A, B, A], PERSISTENT_MODE)
    assert isinstance(cluster, Cluster) and isinstance(cluster.balancer, Balancer)
    assert (cluster.name, cluster.endpoints, cluster.affinity) == (BACKEND, (A, B), PERSISTENT_MODE)
    assert cluster.balancer.backend_key == backend_key(BACKEND) == WEB_KEY
    assert cluster == build_cluster(BACKEND, [A, B], PERSISTENT_MODE)


def test_sticky_decisions_are_prebuilt() -> None:
    """The hot path hands out a precomputed Decision, not a new object per request."""
    for affinity, cookie in ((BALANCED, ON_A_BAL), (PERSISTENT_MODE, ON_A_PER)):
        balancer = Balancer.build(BACKEND, THREE, affinity)
        assert choose(balancer, cookie) is choose(balancer, cookie)


# --- rebalancing (docs/ingress-nginx-compat.md, "Scaling") -------------------------------------


def cluster_endpoints(count: int) -> list[Endpoint]:
    return [Endpoint(f"10.244.{i}.{10 + i}", 8080) for i in range(count)]


SESSION_KEYS = [
    f"{NOW + 1:.14g}.{PID}.{r}" for r in random.Random(99).sample(range(1, 10**6), 10_000)
]


def resolve_all(balancer: Balancer, cookies: Sequence[str]) -> list[Endpoint]:
    decisions = [choose(balancer, cookie) for cookie in cookies]
    assert all(d is not None and d.outcome is Outcome.STICKY for d in decisions)
    return [d.endpoint for d in decisions if d is not None]


def test_balanced_scale_up_moves_about_half_and_only_onto_new_pods() -> None:
    before = resolve_all(Balancer.build(BACKEND, cluster_endpoints(3), BALANCED), SESSION_KEYS)
    after = resolve_all(Balancer.build(BACKEND, cluster_endpoints(6), BALANCED), SESSION_KEYS)
    moved = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert 0.40 <= len(moved) / len(SESSION_KEYS) <= 0.60
    assert {new for _, new in moved} <= set(cluster_endpoints(6)[3:])


def test_balanced_scale_down_moves_only_sessions_of_removed_pods() -> None:
    before = resolve_all(Balancer.build(BACKEND, cluster_endpoints(6), BALANCED), SESSION_KEYS)
    after = resolve_all(Balancer.build(BACKEND, cluster_endpoints(3), BALANCED), SESSION_KEYS)
    removed = set(cluster_endpoints(6)[3:])
    for old, new in zip(before, after, strict=True):
        assert new == old if old not in removed else new not in removed


def test_balanced_draining_moves_nothing() -> None:
    """A draining pod keeps its ring points, so no session moves anywhere."""
    endpoints = cluster_endpoints(4)
    draining = with_draining(endpoints, endpoints[:2])
    before = resolve_all(Balancer.build(BACKEND, endpoints, BALANCED), SESSION_KEYS[:2000])
    balancer = Balancer.build(BACKEND, draining, BALANCED)
    after = [d.endpoint for d in (choose(balancer, k) for k in SESSION_KEYS[:2000]) if d]
    assert [e.node for e in after] == [e.node for e in before]


def test_persistent_scale_up_moves_nothing() -> None:
    small = Balancer.build(BACKEND, cluster_endpoints(3), PERSISTENT_MODE)
    big = Balancer.build(BACKEND, cluster_endpoints(6), PERSISTENT_MODE)
    rng = random.Random(4)
    cookies = []
    for _ in range(300):
        decision = choose(small, None, rng=rng)
        assert decision is not None and decision.new_key is not None
        cookies.append(decision.new_key)
    assert resolve_all(big, cookies) == resolve_all(small, cookies)


# --- spread of new sessions (docs/ingress-nginx-compat.md, "New keys"; "Persistent mode") ------

PICKS = 2_000
# Four endpoints whose ring shares are far from equal (0.233, 0.315, 0.200, 0.253), so a balancer
# that spread new sessions uniformly instead of by ring position would fail the balanced test.
SKEWED = [
    Endpoint("10.244.14.2", 8080),
    Endpoint("10.244.14.3", 8080),
    Endpoint("10.244.14.4", 8080),
    Endpoint("10.244.14.5", 8080),
]


def ring_shares(ring: HashRing) -> dict[str, float]:
    """The exact fraction of the 2^32 CRC space each node owns: a lower-bound lookup gives point i
    every hash in (point[i-1], point[i]], and point 0 also everything above the last point."""
    owned: Counter[str] = Counter()
    points = ring.points
    for i, node in enumerate(ring.owners):
        owned[node] += points[i] - points[i - 1] if i else points[0] + 2**32 - points[-1]
    assert sum(owned.values()) == 2**32
    return {node: size / 2**32 for node, size in owned.items()}


def within_binomial(count: int, share: float, trials: int = PICKS, sigmas: float = 4.0) -> bool:
    return abs(count - trials * share) <= sigmas * math.sqrt(trials * share * (1 - share))


def new_pick_counts(balancer: Balancer, seed: int) -> Counter[str]:
    rng = random.Random(seed)
    counts: Counter[str] = Counter()
    for _ in range(PICKS):
        decision = choose(balancer, None, rng=rng)
        assert decision is not None and decision.outcome is Outcome.NEW
        counts[decision.endpoint.node] += 1
    return counts


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_balanced_new_sessions_follow_ring_shares(seed: int) -> None:
    balancer = Balancer.build(BACKEND, SKEWED, BALANCED)
    assert balancer.ring is not None
    shares = ring_shares(balancer.ring)
    counts = new_pick_counts(balancer, seed)
    assert all(within_binomial(counts[node], share) for node, share in shares.items()), (
        counts,
        shares,
    )


def test_balanced_spread_test_can_fail() -> None:
    """The tolerance is tight enough that uniform expectations would be rejected."""
    balancer = Balancer.build(BACKEND, SKEWED, BALANCED)
    assert balancer.ring is not None
    shares = ring_shares(balancer.ring)
    uniform_counts = dict.fromkeys(shares, PICKS // 4)
    assert not all(within_binomial(uniform_counts[node], share) for node, share in shares.items())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_persistent_new_sessions_are_uniform(seed: int) -> None:
    counts = new_pick_counts(Balancer.build(BACKEND, SKEWED, PERSISTENT_MODE), seed)
    fair = PICKS / len(SKEWED)
    assert all(abs(counts[e.node] - fair) <= 0.15 * fair for e in SKEWED), counts


@pytest.mark.parametrize("affinity", [BALANCED, PERSISTENT_MODE], ids=["bal", "per"])
def test_draining_endpoint_gets_no_new_sessions(affinity: Affinity) -> None:
    endpoints = with_draining(SKEWED, SKEWED[1:2])  # the biggest ring share is draining
    counts = new_pick_counts(Balancer.build(BACKEND, endpoints, affinity), seed=8)
    assert SKEWED[1].node not in counts
    assert set(counts) == {e.node for e in SKEWED} - {SKEWED[1].node}


def test_a_balancer_still_in_use_is_reused_and_a_changed_one_rebuilt() -> None:
    """A snapshot rebuild must not rebuild the rings of clusters that did not change."""
    first = build_cluster(BACKEND, THREE, BALANCED)
    again = build_cluster(BACKEND, list(THREE), BALANCED)
    assert again.balancer is first.balancer
    assert build_cluster(BACKEND, THREE[:2], BALANCED).balancer is not first.balancer
    assert build_cluster(BACKEND, THREE, PERSISTENT_MODE).balancer is not first.balancer
    draining = [Endpoint(A.address, A.port, draining=True), *THREE[1:]]
    assert build_cluster(BACKEND, draining, BALANCED).balancer is not first.balancer
    gone = weakref.ref(first.balancer)
    del first, again
    gc.collect()
    assert gone() is None  # nothing keeps a balancer no snapshot uses


def test_a_ring_is_built_on_first_use_and_answers_as_if_built_eagerly() -> None:
    """Rings are lazy (a 50,000-endpoint table must not wait for 8M points); laziness must not
    change a single answer."""
    endpoints = [Endpoint(f"10.7.0.{i}", 8080) for i in range(1, 9)]
    cold = Balancer(BACKEND, tuple(endpoints), AffinityMode.BALANCED)
    warmed = Balancer(BACKEND, tuple(endpoints), AffinityMode.BALANCED)
    assert cold.cold and warmed.cold
    warmed.warm()
    assert not warmed.cold
    first = choose(cold, "1795765304.4169.20098.91221|" + backend_key(BACKEND))
    assert not cold.cold  # the first cookie lookup built it
    assert first == choose(warmed, "1795765304.4169.20098.91221|" + backend_key(BACKEND))
    keys = [f"{i}.1.1.1|x" for i in range(200)]
    assert [choose(cold, k) for k in keys] == [choose(warmed, k) for k in keys]


def test_only_balanced_clusters_with_endpoints_have_a_ring_to_build() -> None:
    assert not Balancer(BACKEND, (), AffinityMode.BALANCED).cold
    assert not Balancer(BACKEND, THREE, AffinityMode.PERSISTENT).cold
    assert not Balancer(BACKEND, THREE, None).cold
    assert Balancer(BACKEND, (), AffinityMode.BALANCED).ring is None


@pytest.mark.parametrize("affinity", [BALANCED, PERSISTENT_MODE], ids=["bal", "per"])
def test_remembered_cookies_resolve_as_fresh_ones_past_the_cache_size(affinity: Affinity) -> None:
    """Returning cookies are answered from a bounded memo; overflowing it changes no answer."""
    remembering = Balancer(BACKEND, THREE, affinity.mode)
    keys = (
        [f"{i}.5.5.5|x" for i in range(2 * PINNED_CACHE_SIZE + 3)]
        if affinity is BALANCED
        else [_persistent_key(BACKEND, e) for e in THREE] + ["unknown"]
    )
    first = [choose(remembering, key) for key in keys]
    again = [choose(remembering, key) for key in reversed(keys)]
    fresh = [choose(Balancer(BACKEND, THREE, affinity.mode), key) for key in keys]
    assert first == fresh
    assert again == fresh[::-1]
    assert all(d is not None and d.outcome is Outcome.STICKY for d in first[:3])
