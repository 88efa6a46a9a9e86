"""upstream-hash-by: the key template against keys nginx itself expanded, the ring against the
compat vectors (tests/fixtures/hash_by_vectors.json, see its how_produced), and chashsubset's
own Lua tests (rootfs/etc/nginx/lua/test/balancer/chashsubset_test.lua) ported."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from proxy.core.affinity import build_cluster
from proxy.core.balancing import Balancing, HashBy, subsets
from proxy.core.hash_key import HashKey
from proxy.core.headers import Request, scan_request
from proxy.core.model import Endpoint
from proxy.core.uri import uri_path

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "hash_by_vectors.json").read_text()
)
CLIENT = VECTORS["client"].encode()


def _request(method: str, target: str, headers: list[list[str]]) -> Request:
    raw = [(name.encode(), value.encode("latin-1")) for name, value in headers]
    return scan_request(method.encode(), target.encode("latin-1"), True, raw)


def _hashed(endpoints: list[Endpoint], subset_size: int = 0) -> Any:
    balancing = Balancing(hash_by=HashBy(HashKey("$request_uri"), subset_size))
    return build_cluster("default-web-80", endpoints, None, balancing).balancer


def _endpoints(pairs: list[list[Any]]) -> list[Endpoint]:
    return [Endpoint(address, port) for address, port in pairs]


@pytest.mark.parametrize("case", VECTORS["requests"], ids=lambda case: case["target"])
def test_every_template_gives_the_key_nginx_gave(case: dict[str, Any]) -> None:
    request = _request(case["method"], case["target"], case["headers"])
    for template, expected in case["keys"].items():
        assert HashKey(template).evaluate(request, CLIENT) == expected, template


@pytest.mark.parametrize("name", sorted(VECTORS["sets"]))
def test_every_key_reaches_the_vector_s_endpoint(name: str) -> None:
    entry = VECTORS["sets"][name]
    balancer = _hashed(_endpoints(entry["endpoints"]))
    rng = random.Random(1)
    assert len(entry["lookups"]) > 100
    for key, node in entry["lookups"].items():
        decision = balancer.choose_hashed(key, rng)
        assert decision.endpoint.node == node, key
        assert decision.new_key is None and decision.outcome is None


@pytest.mark.parametrize("name", sorted(n for n, s in VECTORS["sets"].items() if "subsets" in s))
def test_every_key_reaches_its_vector_subset_and_all_of_it(name: str) -> None:
    entry = VECTORS["sets"][name]
    balancer = _hashed(_endpoints(entry["endpoints"]), entry["subset_size"])
    rng = random.Random(2)
    for key, subset in entry["subset_lookups"].items():
        members = set(entry["subsets"][subset])
        seen = {balancer.choose_hashed(key, rng).endpoint.node for _ in range(60)}
        assert seen == members, key  # 60 draws miss one of 3 members with p < 1e-10


def test_returns_peers_from_the_same_subset() -> None:
    """chashsubset_test.lua "returns peers from the same subset": 9 endpoints, subsets of 3."""
    endpoints = [Endpoint(f"10.184.7.{i}", 8080) for i in range(1, 10)]
    balancer = _hashed(endpoints, 3)
    rng = random.Random(3)
    first = balancer.choose_hashed("/alma/armud", rng).endpoint
    (subset,) = [s for s in subsets(endpoints, 3) if first in s]
    for _ in range(11):
        assert balancer.choose_hashed("/alma/armud", rng).endpoint in subset


def test_fills_last_subset_correctly() -> None:
    """chashsubset_test.lua "fills last subset correctly": 7 endpoints, every subset has 3, the
    last padded with the first endpoints."""
    endpoints = [Endpoint(f"10.184.7.{i}", 8080) for i in range(1, 8)]
    cut = subsets(endpoints, 3)
    assert [len(s) for s in cut] == [3, 3, 3]
    assert cut[2] == (endpoints[6], endpoints[0], endpoints[1])


def test_draining_endpoints_are_not_on_the_hash_ring() -> None:
    ready = [Endpoint("10.0.0.1", 80), Endpoint("10.0.0.2", 80)]
    balancer = _hashed([*ready, Endpoint("10.0.0.3", 80, draining=True)])
    rng = random.Random(4)
    reached = {balancer.choose_hashed(f"/page/{i}", rng).endpoint for i in range(200)}
    assert reached == set(ready)


def test_no_ready_endpoint_hashes_nowhere() -> None:
    assert _hashed([]).choose_hashed("/", random.Random(5)) is None


def test_keys_spread_evenly_over_the_endpoints() -> None:
    """Many keys over 6 endpoints: each gets its share within a wide statistical margin (160
    points per node keep the largest share under about 1.3 times the mean)."""
    endpoints = [Endpoint(f"10.1.0.{i}", 8080) for i in range(1, 7)]
    balancer = _hashed(endpoints)
    rng = random.Random(6)
    counts = dict.fromkeys(endpoints, 0)
    for i in range(12_000):
        counts[balancer.choose_hashed(f"/item/{i}?user={i * 7}", rng).endpoint] += 1
    assert all(1_300 < count < 2_700 for count in counts.values()), counts


def test_template_pieces_follow_util_lua_s_split() -> None:
    request = _request("GET", "/p?a=1", [["Host", "h.example"]])
    assert HashKey("$").evaluate(request, CLIENT) == "$"  # a lone `$` is text
    assert HashKey("${host").evaluate(request, CLIENT) == "${host"  # unclosed: text
    assert HashKey("x-$HOST-${ARG_A}").evaluate(request, CLIENT) == "x-h.example-1"
    unknown = HashKey("$server_name$1$http_$host")
    assert unknown.unknown == ("server_name", "1", "http_")
    assert unknown.evaluate(request, CLIENT) == "h.example"  # the unknown read as empty


def test_repeated_header_lines_are_joined_as_nginx_1_23_joins_them() -> None:
    request = _request("GET", "/", [["Host", "h"], ["X-Tenant", "a"], ["x-tenant", "b"]])
    assert HashKey("$http_x_tenant").evaluate(request, CLIENT) == "a, b"


def test_forwarded_for_and_request_id_are_read_where_they_are_noted() -> None:
    request = _request(
        "GET", "/", [["Host", "h"], ["X-Forwarded-For", "1.2.3.4"], ["X-Request-ID", "r1"]]
    )
    key = HashKey("$http_x_forwarded_for/$http_x_request_id/$remote_addr")
    assert key.evaluate(request, b"10.0.0.9") == "1.2.3.4/r1/10.0.0.9"


@pytest.mark.parametrize(
    ("target", "uri"),
    [
        (b"/plain/path?q=1", "/plain/path"),
        (b"/a/./b/.", "/a/b/"),
        (b"//x//y", "/x/y"),
        (b"/%2F", "/"),  # decoded `/` merges like a written one
    ],
)
def test_uri_is_decoded_and_normalised(target: bytes, uri: str) -> None:
    assert uri_path(target) == uri


def test_the_hash_ring_is_built_cold_and_warmed_with_the_others() -> None:
    endpoints = [Endpoint("10.2.0.1", 80), Endpoint("10.2.0.2", 80)]
    balancer = build_cluster("default-hashed-80", endpoints, None, Balancing()).balancer
    assert not balancer.cold  # round robin: no ring to build
    hashed = _hashed(endpoints)
    assert hashed.cold
    hashed.warm()
    assert not hashed.cold


@pytest.mark.parametrize(
    ("authorization", "user"),
    [
        ("Basic dXNlcjpwYXNzd29yZA==", "user"),  # user:password
        ("basic  dXNlcjo=", "user"),  # user: (any case, spaces skipped)
        ("Basic dXNlcg==", ""),  # user, without the colon nginx requires
        ("Bearer dXNlcjpwYXNzd29yZA==", ""),
        ("Basic not*base64", ""),
        (None, ""),
    ],
)
def test_remote_user_is_the_basic_credentials_user_name(
    authorization: str | None, user: str
) -> None:
    """nginx's $remote_user (the usual auth-cache-key: `$remote_user$http_authorization`)."""
    headers = [["Host", "app"], *([["Authorization", authorization]] if authorization else [])]
    assert HashKey("$remote_user").evaluate(_request("GET", "/", headers), CLIENT) == user
