"""Clusters without affinity: the upstream-hash-by* and load-balance annotations as translation
applies them, and the per-worker load balancer (round robin, EWMA, hash-by retries)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from proxy.app.cli import parse_command
from proxy.control.translate import TranslateOptions, translate
from proxy.control.translate.describe import describe
from proxy.core.affinity import Cluster, build_cluster
from proxy.core.balancing import Balancing, HashBy, LoadBalance, decayed, ewma_pick
from proxy.core.hash_key import HashKey
from proxy.core.headers import Request, scan_request
from proxy.core.model import Endpoint
from proxy.core.routing import Snapshot
from proxy.dataplane.balancing import Loads
from tests.unit.kube_fixtures import ingress_object

PREFIX = "nginx.ingress.kubernetes.io/"
PODS = [f"10.0.0.{i}" for i in range(1, 4)]


def _ingress(name: str, service: str = "web", **annotations: str) -> dict[str, Any]:
    written = {PREFIX + key: value for key, value in annotations.items()}
    return ingress_object(name, f"{name}.example.com", ("/", service), annotations=written)


def _world(*ingresses: dict[str, Any]) -> Snapshot:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}]},
    }
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "web-1",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "ports": [{"port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [pod], "conditions": {"ready": True}} for pod in PODS],
    }
    return translate([*ingresses, service, slice_], TranslateOptions())


def _cluster(snapshot: Snapshot, host: str) -> Cluster:
    (route,) = [r for r in snapshot.routes if r.host == host]
    return route.cluster


def test_hash_by_with_subsets_is_the_backend_s_balancing() -> None:
    snapshot = _world(
        _ingress(
            "a",
            **{
                "upstream-hash-by": "$request_uri",
                "upstream-hash-by-subset": "true",
                "upstream-hash-by-subset-size": "2",
            },
        )
    )
    cluster = _cluster(snapshot, "a.example.com")
    assert cluster.balancing == Balancing(None, HashBy(HashKey("$request_uri"), 2))
    assert snapshot.warnings == ()
    assert (
        "cluster default-web-80: no affinity, upstream-hash-by $request_uri, subsets of 2"
        in describe(snapshot)
    )


@pytest.mark.parametrize(
    ("annotations", "balancing", "warning"),
    [
        ({"upstream-hash-by": "$request_uri|x"}, None, "upstream-hash-by: '$request_uri|x' holds"),
        (
            {"upstream-hash-by": "$host", "upstream-hash-by-subset": "true"},
            Balancing(None, HashBy(HashKey("$host"), 3)),  # the default size
            None,
        ),
        (
            {"upstream-hash-by": "$host", "upstream-hash-by-subset-size": "0"},
            Balancing(None, HashBy(HashKey("$host"))),
            "upstream-hash-by-subset-size: '0' is not a positive number",
        ),
        ({"upstream-hash-by-subset": "true"}, None, "subset is ignored without"),
        (
            {"upstream-hash-by": "$server_name"},
            Balancing(None, HashBy(HashKey("$server_name"))),
            "$server_name not known here, read as empty text",
        ),
        ({"load-balance": "ewma"}, Balancing(LoadBalance.EWMA), None),
        ({"load-balance": "chash"}, None, "'chash' is chosen here by affinity or upstream-hash"),
        ({"load-balance": "least_conn"}, None, "'least_conn' is not round_robin or ewma"),
    ],
)
def test_annotation_values(
    annotations: dict[str, str], balancing: Balancing | None, warning: str | None
) -> None:
    snapshot = _world(_ingress("a", **annotations))
    assert _cluster(snapshot, "a.example.com").balancing == balancing
    if warning is None:
        assert snapshot.warnings == ()
    else:
        assert any(warning in line for line in snapshot.warnings), snapshot.warnings


def test_a_shared_backend_takes_the_first_ingress_s_settings() -> None:
    # Without timestamps the processing order is namespace/name descending: "b" comes first.
    snapshot = _world(
        _ingress("a", **{"upstream-hash-by": "$uri"}),
        _ingress("b", **{"load-balance": "ewma"}),
    )
    for host in ("a.example.com", "b.example.com"):
        assert _cluster(snapshot, host).balancing == Balancing(LoadBalance.EWMA)
    assert any(
        "Ingress default/a: its upstream-hash-by and load-balance settings do not apply to backend"
        " default-web-80: those of Ingress default/b do" in line
        for line in snapshot.warnings
    ), snapshot.warnings


def test_a_default_backend_mention_makes_the_backend_anew() -> None:
    """ingress-nginx's createUpstreams re-creates an Ingress's default backend's upstream, with
    that Ingress's settings, even when a path of an earlier Ingress already made it."""
    later = _ingress("a", **{"load-balance": "ewma"})
    later["spec"]["defaultBackend"] = {"service": {"name": "web", "port": {"number": 80}}}
    snapshot = _world(_ingress("b", **{"upstream-hash-by": "$uri"}), later)
    assert _cluster(snapshot, "b.example.com").balancing == Balancing(LoadBalance.EWMA)
    assert any(
        "Ingress default/b: its upstream-hash-by and load-balance settings do not apply" in line
        for line in snapshot.warnings
    ), snapshot.warnings


def test_the_affinity_cookie_wins_over_hash_by() -> None:
    snapshot = _world(_ingress("a", affinity="cookie", **{"upstream-hash-by": "$uri"}))
    cluster = _cluster(snapshot, "a.example.com")
    assert cluster.affinity is not None
    assert cluster.balancing is None
    assert any("its affinity cookie picks the endpoint" in line for line in snapshot.warnings)


# --- the load balancer -------------------------------------------------------------------------


@dataclass
class Try:
    """What the load balancer reads of an exchange."""

    request: Request = field(
        default_factory=lambda: scan_request(b"GET", b"/cart?id=1", True, [(b"Host", b"a")])
    )
    client: bytes = b"10.9.9.9"
    tried: list[Endpoint] = field(default_factory=list)
    ewma_started: float = 0.0


ENDPOINTS = [Endpoint(pod, 8080) for pod in PODS]


def _plain(balancing: Balancing | None = None, endpoints: list[Endpoint] = ENDPOINTS) -> Cluster:
    return build_cluster("default-web-80", endpoints, None, balancing)


def test_round_robin_takes_each_endpoint_in_turn_from_a_random_start() -> None:
    """round_robin.go "should evenly distribute requests with round-robin (default algorithm)",
    for one worker: 600 requests over 3 endpoints, exactly 200 each."""
    loads = Loads(LoadBalance.ROUND_ROBIN, random.Random(7))
    cluster = _plain()
    picks = [loads.choose(cluster, Try(), 0.0) for _ in range(600)]
    endpoints = [d.endpoint for d in picks if d is not None]
    assert {e: endpoints.count(e) for e in ENDPOINTS} == dict.fromkeys(ENDPOINTS, 200)
    assert endpoints[:3] != endpoints[1:4]  # consecutive picks differ: a cycle, not a draw
    starts = {
        Loads(LoadBalance.ROUND_ROBIN, random.Random(seed)).choose(cluster, Try(), 0.0)
        for seed in range(40)
    }
    assert len(starts) == 3  # each worker starts somewhere else


def test_a_round_robin_retry_skips_the_endpoints_already_tried() -> None:
    loads = Loads(LoadBalance.ROUND_ROBIN, random.Random(8))
    cluster = _plain()
    attempt = Try()
    for _ in range(3):
        decision = loads.choose(cluster, attempt, 0.0)
        assert decision is not None and decision.endpoint not in attempt.tried
        attempt.tried.append(decision.endpoint)
    assert loads.choose(cluster, attempt, 0.0) is None


def test_a_hash_by_retry_goes_back_to_the_key_s_endpoint() -> None:
    """chash.lua balances the same key again on a retry: the same endpoint, tried or not."""
    loads = Loads(LoadBalance.ROUND_ROBIN, random.Random(9))
    cluster = _plain(Balancing(hash_by=HashBy(HashKey("$request_uri"))))
    attempt = Try()
    first = loads.choose(cluster, attempt, 0.0)
    assert first is not None
    attempt.tried.append(first.endpoint)
    again = loads.choose(cluster, attempt, 0.0)
    assert again is first
    by_client = _plain(Balancing(hash_by=HashBy(HashKey("$remote_addr"))))
    expected = by_client.balancer.choose_hashed("10.9.9.9", random.Random(0))
    assert loads.choose(by_client, Try(), 0.0) is expected


def test_ewma_sends_new_requests_to_the_faster_endpoints() -> None:
    """ewma.go "does not fail requests", and what EWMA is for: after one slow answer, an
    endpoint loses every two-way draw against endpoints that answered quickly."""
    loads = Loads(LoadBalance.ROUND_ROBIN, random.Random(10))
    cluster = _plain(Balancing(LoadBalance.EWMA))
    slow, *fast = ENDPOINTS
    loads.observe(slow, 0.5, 100.0)
    for endpoint in fast:
        loads.observe(endpoint, 0.01, 100.0)
    chosen = []
    for _ in range(300):
        attempt = Try()
        decision = loads.choose(cluster, attempt, 100.0)
        assert decision is not None and attempt.ewma_started > 0
        chosen.append(decision.endpoint)
    assert slow not in chosen
    assert set(chosen) == set(fast)


def test_ewma_is_the_default_with_the_flag() -> None:
    loads = Loads(LoadBalance.EWMA, random.Random(11))
    attempt = Try()
    assert loads.choose(_plain(), attempt, 0.0) is not None
    assert attempt.ewma_started > 0
    round_robin = Try()
    loads.choose(_plain(Balancing(LoadBalance.ROUND_ROBIN)), round_robin, 0.0)
    assert round_robin.ewma_started == 0.0  # the annotation wins over the flag


def test_ewma_starts_added_endpoints_at_the_mean_and_forgets_removed_ones() -> None:
    loads = Loads(LoadBalance.EWMA, random.Random(12))
    first, second, third = ENDPOINTS
    old = _plain(endpoints=[first, second])
    loads.choose(old, Try(), 0.0)
    loads.observe(first, 0.2, 50.0)
    loads.observe(second, 0.4, 50.0)
    scaled = _plain(endpoints=[second, third])
    loads.choose(scaled, Try(), 50.0)
    assert loads._score(third.node, 50.0) == pytest.approx(loads._score(second.node, 50.0))
    assert loads._score(first.node, 50.0) == 0.0  # forgotten


def test_scores_decay_towards_zero_and_two_draws_take_the_lower() -> None:
    assert decayed(1.0, 0.0, 0.0, 10.0) == pytest.approx(0.36787944)
    assert decayed(1.0, 5.0, 3.0, 5.0) == 1.0  # no time passed: the sample has no weight
    scores = {"a": 0.3, "b": 0.1}
    rng = random.Random(13)
    assert {ewma_pick(["a", "b"], scores.__getitem__, rng) for _ in range(20)} == {"b"}


def test_the_load_balance_flag_sets_the_default() -> None:
    serve = ["serve", "--backend", "http://127.0.0.1:8001"]
    assert parse_command(serve).settings.load_balance is LoadBalance.ROUND_ROBIN
    command = parse_command([*serve, "--load-balance", "ewma"])
    assert command.settings.load_balance is LoadBalance.EWMA


def test_a_worker_forgets_the_balancing_state_of_clusters_and_pods_that_left() -> None:
    """Each deleted Ingress, and each pod replaced under EWMA, would otherwise leave its round
    robin position or average behind for the life of the worker."""
    ewma = _world(_ingress("shop", **{"load-balance": "ewma"}))
    round_robin = _world(_ingress("blog"))
    loads = Loads(LoadBalance.ROUND_ROBIN, random.Random(14))
    decision = loads.choose(_cluster(ewma, "shop.example.com"), Try(), 10.0)
    assert decision is not None
    loads.observe(decision.endpoint, 0.2, 10.0)
    assert loads._score(decision.endpoint.node, 10.0) > 0
    loads.retain(ewma)
    assert loads._score(decision.endpoint.node, 10.0) > 0 and len(loads._synced) == 1
    assert loads.choose(_cluster(round_robin, "blog.example.com"), Try(), 10.0) is not None
    loads.retain(round_robin)
    assert len(loads._next) == 1
    loads.retain(Snapshot(routes=()))
    assert not loads._next and not loads._synced and not loads._ewma
