"""The consistent-hash ring of balanced-mode affinity (lua-resty-balancer's `resty.chash`).

See docs/ingress-nginx-compat.md, "Balanced mode". Every node owns a chain of CRC-32 points; a key
belongs to the first point at or above its own CRC-32, wrapping to the first point of the ring.
Everything is computed once, at build time; a lookup is one CRC-32 and one bisect.
"""

from __future__ import annotations

import heapq
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from functools import lru_cache

POINTS_PER_WEIGHT = 160  # lua-resty-balancer's CONSISTENT_POINTS; ingress-nginx's weight is 1
# Sorting is one C call, and it holds the GIL throughout: a 1,000-endpoint ring's 160,000 points
# sorted at once (then copied into the array) held it 60 ms, and a ring built in a thread stopped
# the event loop that long. Larger rings sort in chunks of this many points (about 1.5 ms each)
# and merge them in Python, where the loop gets its turns; rings of up to 51 nodes are one chunk.
SORT_CHUNK = 8192


@lru_cache(maxsize=4096)  # pods outlive snapshots: a rebuilt ring reuses its chains (~0.7 KB each)
def node_points(node: str, count: int = POINTS_PER_WEIGHT) -> array[int]:
    """The first `count` points of `node`'s chain, in generation order
    (docs/ingress-nginx-compat.md, "Building the ring").

    The library carries the CRC register over from the node text into 4 little-endian bytes of
    the previous point (zero for the first), so each point is CRC-32(node ‖ LE32(previous)).
    Carrying the register is exactly `zlib.crc32(tail, crc32(node))`.

    An array of 32-bit values rather than a tuple: a tuple of 160 ints is walked by every
    garbage collection that finds it young, and warming 50,000 nodes' chains made those
    collections pause the event loop for 20-50 ms each.
    """
    base = zlib.crc32(node.encode())
    points = array("I")
    previous = 0
    for _ in range(count):
        previous = zlib.crc32(previous.to_bytes(4, "little"), base)
        points.append(previous)
    return points


def _sorted_array(values: list[int]) -> array[int]:
    if len(values) <= SORT_CHUNK:
        values.sort()
        return array("Q", values)
    chunks = [sorted(values[i : i + SORT_CHUNK]) for i in range(0, len(values), SORT_CHUNK)]
    return array("Q", heapq.merge(*chunks))


def key_bytes(key: str) -> bytes:
    """The bytes of a cookie key as they were on the wire.

    The data plane decodes header bytes as Latin-1 (one character per byte, lossless), so
    encoding back as Latin-1 gives the exact bytes ingress-nginx hashed. A character above U+00FF
    cannot come from such a header; it still needs *some* stable bytes, so it falls back to UTF-8
    (surrogatepass: never raises).
    """
    try:
        return key.encode("latin-1")
    except UnicodeEncodeError:
        return key.encode("utf-8", "surrogatepass")


class HashRing:
    """A sorted ring of CRC-32 points, each owned by a node (`address:port` text).

    Ties between points of different nodes are broken by ascending node text: ingress-nginx
    itself is not reproducible there, so any fixed rule will do; this is the reference one
    (docs/ingress-nginx-compat.md, "Ties").

    Stored as one sorted array of unsigned 64-bit ints, each a point shifted left with its node's
    rank in the low bits: a lookup bisects it directly (the first packed value >= CRC << shift is
    the first point >= CRC), and building needs no per-point tuples, which dominated rebuilding
    large tables. An array, not a list: 8 bytes a point instead of 40, and nothing for the garbage
    collector to walk (a list of 8M points cost every full collection tens of milliseconds).
    """

    __slots__ = ("_mask", "_packed", "_shift", "nodes")

    def __init__(self, nodes: Iterable[str], weights: Mapping[str, int] | None = None) -> None:
        """Build from node texts, duplicates merging (docs/ingress-nginx-compat.md, "Node text");
        `weights` (default 1 each) only exists to reproduce lua-resty-balancer's own self-check,
        ingress-nginx never sets one."""
        # Sorted: a node's index is its rank in ascending text order, the tie rule (code-point
        # order of str is the byte order of its UTF-8 encoding).
        distinct = sorted(set(nodes))
        if not distinct:
            raise ValueError("a hash ring needs at least one node")
        shift = len(distinct).bit_length()
        packed: list[int] = []
        for rank, node in enumerate(distinct):
            weight = 1 if weights is None else weights.get(node, 1)
            if weight < 1:
                raise ValueError(f"weight of {node!r} must be at least 1, got {weight}")
            points = node_points(node, POINTS_PER_WEIGHT * weight)
            packed.extend((point << shift) | rank for point in points)
        self._packed = _sorted_array(packed)
        self._shift = shift
        self._mask = (1 << shift) - 1
        self.nodes: tuple[str, ...] = tuple(distinct)  # by rank

    def __len__(self) -> int:
        return len(self._packed)

    def lookup_index(self, key: str) -> int:
        """Ring index of the first point >= CRC-32(key), wrapping to 0 past the last
        (docs/ingress-nginx-compat.md, "Looking up a key")."""
        packed = self._packed
        index = bisect_left(packed, zlib.crc32(key_bytes(key)) << self._shift)
        return index if index < len(packed) else 0

    def lookup_rank(self, key: str) -> int:
        """The rank (index in `nodes`) of the node that owns `key`: the hot-path form."""
        return self._packed[self.lookup_index(key)] & self._mask

    def lookup(self, key: str) -> str:
        """The node that owns `key`. Never fails: every key lands somewhere on a non-empty ring."""
        return self.nodes[self.lookup_rank(key)]

    @property
    def points(self) -> tuple[int, ...]:
        """Point values in ring order (ascending); built on demand, for tests and status."""
        return tuple(value >> self._shift for value in self._packed)

    @property
    def owners(self) -> tuple[str, ...]:
        """The node owning each point, aligned with `points`; built on demand."""
        nodes, mask = self.nodes, self._mask
        return tuple(nodes[value & mask] for value in self._packed)
