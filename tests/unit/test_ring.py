"""The consistent-hash ring against tests/fixtures/chash_vectors.json, every case of every set
(docs/ingress-nginx-compat.md, "Verification vectors")."""

from __future__ import annotations

import json
import random
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from proxy.core.model import Endpoint
from proxy.core.ring import POINTS_PER_WEIGHT, SORT_CHUNK, HashRing, key_bytes, node_points

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "fixtures" / "chash_vectors.json").read_text()
)
SETS: list[dict[str, Any]] = VECTORS["sets"]
SELF_CHECK: dict[str, Any] = VECTORS["library_self_check"]


def by_label(sets: list[dict[str, Any]]) -> Any:
    return pytest.mark.parametrize("vector_set", sets, ids=[s["label"] for s in sets])


def ring_of(vector_set: dict[str, Any]) -> HashRing:
    return HashRing(endpoint["node"] for endpoint in vector_set["endpoints"])


def test_all_vector_sets_are_present() -> None:
    assert len(SETS) == 8
    assert sum(len(s["cases"]) for s in SETS) == 1728


@by_label(SETS)
def test_node_text_matches_ingress_nginx(vector_set: dict[str, Any]) -> None:
    """model.Endpoint.node is the text that gets hashed, IPv6 brackets included
    (docs/ingress-nginx-compat.md, "Node text")."""
    for endpoint in vector_set["endpoints"]:
        assert Endpoint(endpoint["address"], int(endpoint["port"])).node == endpoint["node"]


@by_label(SETS)
def test_first_points_per_node(vector_set: dict[str, Any]) -> None:
    for node, expected in vector_set["first_points_per_node"].items():
        assert list(node_points(node, 3)) == expected, node


@by_label(SETS)
def test_ring_size_and_bounds(vector_set: dict[str, Any]) -> None:
    ring = ring_of(vector_set)
    assert len(ring) == vector_set["ring_points"] == 160 * len(vector_set["endpoints"])
    first, last = vector_set["ring_first_point"], vector_set["ring_last_point"]
    assert (ring.points[0], ring.owners[0]) == (first["hash"], first["node"])
    assert (ring.points[-1], ring.owners[-1]) == (last["hash"], last["node"])
    assert list(ring.points) == sorted(ring.points)


@by_label(SETS)
def test_cross_endpoint_ties(vector_set: dict[str, Any]) -> None:
    ring = ring_of(vector_set)
    points, owners = ring.points, ring.owners  # each built on demand: take them once
    ties = sum(
        1 for i in range(1, len(ring)) if points[i] == points[i - 1] and owners[i] != owners[i - 1]
    )
    assert ties == vector_set["cross_endpoint_ties"]


@by_label(SETS)
def test_key_crc32(vector_set: dict[str, Any]) -> None:
    wrong = [
        case["key"]
        for case in vector_set["cases"]
        if zlib.crc32(key_bytes(case["key"])) != case["key_crc32"]
    ]
    assert wrong == []


@by_label(SETS)
def test_every_case_lands_on_its_index_and_endpoint(vector_set: dict[str, Any]) -> None:
    ring = ring_of(vector_set)
    wrong = [
        (case["key"], case["key_kind"], ring.lookup_index(case["key"]), ring.lookup(case["key"]))
        for case in vector_set["cases"]
        if (ring.lookup_index(case["key"]), ring.lookup(case["key"]))
        != (case["ring_index"], case["endpoint"])
    ]
    assert wrong == []


@by_label(SETS)
def test_endpoint_order_and_duplicates_do_not_matter(vector_set: dict[str, Any]) -> None:
    """Only the set of distinct node strings counts (docs/ingress-nginx-compat.md, "Node text")."""
    nodes = [endpoint["node"] for endpoint in vector_set["endpoints"]]
    shuffled = nodes * 2
    random.Random(7).shuffle(shuffled)
    reference, other = HashRing(nodes), HashRing(shuffled)
    assert (other.points, other.owners) == (reference.points, reference.owners)


def test_library_self_check_weighted_counts() -> None:
    """lua-resty-balancer's own test: weights 10/2/1, keys "1".."100000"."""
    case = SELF_CHECK["case_1"]
    ring = HashRing(case["nodes"], weights=case["nodes"])
    assert len(ring) == case["expected_ring_points"]
    counts = Counter(ring.lookup(str(key)) for key in range(1, 100_001))
    assert dict(counts) == case["expected_counts"]


def test_library_self_check_foo() -> None:
    case = SELF_CHECK["case_2"]
    ring = HashRing(case["nodes"], weights=case["nodes"])
    index = ring.lookup_index(case["key"])
    assert (index, ring.lookup(case["key"])) == (
        case["expected_ring_index"],
        case["expected_endpoint"],
    )
    stepped = (index + 100) % len(ring)
    assert (stepped, ring.owners[stepped]) == (534, "server2")


def test_spec_example_lookup() -> None:
    """The example of docs/ingress-nginx-compat.md, "Looking up a key"."""
    ring = HashRing(["10.244.0.5:8080", "10.244.1.7:8080", "10.244.2.9:8080"])
    key = "1700000001.123.4242.777"
    assert zlib.crc32(key.encode()) == 2964581286
    assert (ring.lookup_index(key), ring.lookup(key)) == (341, "10.244.0.5:8080")


def test_spec_example_chain() -> None:
    """The example of docs/ingress-nginx-compat.md, "Building the ring", with point 1 spelled
    out as CRC-32(node ‖ LE32(point 0))."""
    node = "10.244.0.5:8080"
    assert list(node_points(node, 3)) == [2911519628, 299030018, 1463371242]
    assert zlib.crc32(node.encode() + bytes([0x8C, 0x43, 0x8A, 0xAD])) == 299030018


# Two nodes whose chains share the point 4051602466 (found by a search over 3,000 addresses), and
# a key whose CRC-32 lies between the previous point and the tie, so it lands on the tie.
TIE_NODES = ("10.1.227.1:8080", "10.2.50.1:8080")
TIE_POINT = 4051602466
TIE_KEY = "tie-942"


@pytest.mark.parametrize("order", [TIE_NODES, TIE_NODES[::-1]], ids=["sorted", "reversed"])
def test_ties_go_to_the_lower_node_text(order: tuple[str, str]) -> None:
    """ingress-nginx's tie order is not reproducible; ours is ascending node text
    (docs/ingress-nginx-compat.md, "Ties")."""
    assert all(TIE_POINT in node_points(node) for node in TIE_NODES)
    ring = HashRing(order)
    index = ring.lookup_index(TIE_KEY)
    assert ring.points[index - 1] < zlib.crc32(TIE_KEY.encode()) <= TIE_POINT
    assert ring.points[index] == ring.points[index + 1] == TIE_POINT
    assert (ring.owners[index], ring.owners[index + 1]) == TIE_NODES
    assert ring.lookup(TIE_KEY) == "10.1.227.1:8080"


def test_wraps_past_the_last_point() -> None:
    ring = HashRing(["10.244.0.5:8080"])
    above = next(k for k in map(str, range(10**6)) if zlib.crc32(k.encode()) > ring.points[-1])
    assert ring.lookup_index(above) == 0


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("plain", b"plain"),
        ("caf\xe9", b"caf\xe9"),  # a Latin-1 decoded header byte goes back to that byte
        ("\u20ac", "\u20ac".encode()),  # cannot come from a header: UTF-8, but no exception
        ("\ud800", b"\xed\xa0\x80"),  # a lone surrogate must not raise either
    ],
)
def test_key_bytes(key: str, expected: bytes) -> None:
    assert key_bytes(key) == expected


@pytest.mark.parametrize(
    ("nodes", "weights"),
    [([], None), (["a:1"], {"a:1": 0})],
    ids=["empty", "zero-weight"],
)
def test_rejects_invalid_rings(nodes: list[str], weights: dict[str, int] | None) -> None:
    with pytest.raises(ValueError):
        HashRing(nodes, weights)


def test_a_ring_sorted_in_chunks_is_the_ring_sorted_at_once() -> None:
    """Rings above SORT_CHUNK points sort in pieces and merge (so a thread building one lets
    the event loop run); every point must still land where one sort puts it."""
    nodes = [f"10.9.{i // 250}.{i % 250}:8080" for i in range(300)]  # 48,000 points
    assert len(nodes) * POINTS_PER_WEIGHT > 5 * SORT_CHUNK
    ring = HashRing(nodes)
    expected = sorted((point, node) for node in nodes for point in node_points(node))
    assert ring.points == tuple(point for point, _ in expected)
    assert ring.owners == tuple(node for _, node in expected)
