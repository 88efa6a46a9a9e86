"""How a cluster without cookie affinity picks its endpoint: ingress-nginx's load balancers as
pure code (docs/ingress-nginx-compat.md, "Load balancing" and "Hash-by keys").

What a cluster asks for is a `Balancing`: a hash-by key (chash, or chashsubset with subsets), else
an algorithm, round robin or EWMA (None: the proxy's --load-balance). The per-worker state those
two need (the round-robin position, the response-time averages) lives in the data plane
(proxy/dataplane/balancing.py); the choices made from it are here.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, TypeVar

from proxy.core.hash_key import HashKey
from proxy.core.model import Endpoint

DEFAULT_SUBSET_SIZE: Final = 3  # upstream-hash-by-subset-size's default
EWMA_DECAY_TIME: Final = 10.0  # seconds (ewma.lua DECAY_TIME)
EWMA_PICK_SET_SIZE: Final = 2  # endpoints drawn per pick, the better one taken (ewma.lua)

T = TypeVar("T")


class LoadBalance(StrEnum):
    """The load-balance annotation's and the --load-balance flag's algorithms."""

    ROUND_ROBIN = "round_robin"
    EWMA = "ewma"


@dataclass(frozen=True, slots=True)
class HashBy:
    """upstream-hash-by: the key, and the subset size when upstream-hash-by-subset is on (0: off,
    each key goes to one endpoint)."""

    key: HashKey
    subset_size: int = 0


@dataclass(frozen=True, slots=True)
class Balancing:
    """What one backend asks of its balancer when it has no cookie affinity."""

    algorithm: LoadBalance | None = None  # None: the proxy's default (--load-balance)
    hash_by: HashBy | None = None  # wins over `algorithm`, as in ingress-nginx


def balancing_text(balancing: Balancing | None) -> str:
    """How a cluster without affinity picks its pod, as `routes` and /status say it
    (docs/ingress-nginx-compat.md, "Load balancing")."""
    hash_by = balancing.hash_by if balancing is not None else None
    if hash_by is not None:
        subsets = f", subsets of {hash_by.subset_size}" if hash_by.subset_size else ""
        return f"upstream-hash-by {hash_by.key.text}{subsets}"
    if balancing is not None and balancing.algorithm is not None:
        return f"load-balance {balancing.algorithm.value}"
    return "load-balance of --load-balance (round_robin by default)"


def subsets(endpoints: Sequence[T], size: int) -> list[tuple[T, ...]]:
    """Endpoints cut into subsets of `size`, in order; the last one is filled up with the first
    endpoints again, so all subsets have `size` members (chashsubset.lua build_subset_map)."""
    count = math.ceil(len(endpoints) / size)
    padded = [*endpoints, *(endpoints[i] for i in range(count * size - len(endpoints)))]
    return [tuple(padded[i * size : (i + 1) * size]) for i in range(count)]


def subset_node(index: int) -> str:
    """The ring node text of subset `index` (from 0): chashsubset.lua names them set1, set2..."""
    return f"set{index + 1}"


def decayed(average: float, touched: float, sample: float, now: float) -> float:
    """An exponentially weighted moving average updated with `sample` at `now`, last updated at
    `touched`: the older the average, the less it counts (ewma.lua decay_ewma). With sample 0 this
    is an endpoint's score."""
    weight = math.exp(-max(now - touched, 0.0) / EWMA_DECAY_TIME)
    return average * weight + sample * (1.0 - weight)


def ewma_pick(candidates: Sequence[T], score: Callable[[T], float], rng: random.Random) -> T:
    """Of `EWMA_PICK_SET_SIZE` candidates drawn at random, the one with the lower score (the
    first drawn on a tie): the "power of two choices" of ewma.lua pick_and_score."""
    if len(candidates) == 1:
        return candidates[0]
    first, second = rng.sample(range(len(candidates)), EWMA_PICK_SET_SIZE)
    if score(candidates[second]) < score(candidates[first]):
        return candidates[second]
    return candidates[first]


def round_robin_index(ready: Sequence[Endpoint], start: int, tried: Collection[Endpoint]) -> int:
    """The index of the first endpoint at or after `start` (wrapping) not yet tried by this
    request; -1 when all are."""
    count = len(ready)
    for step in range(count):
        index = (start + step) % count
        if ready[index] not in tried:
            return index
    return -1
