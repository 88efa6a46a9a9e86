"""Jittered exponential backoff: how long to wait before asking the API server again."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# A server's Retry-After is honoured up to this (seconds), even beyond `cap`: it knows its load
# better than our doubling does; but a broken header must not stop the source for hours.
RETRY_AFTER_LIMIT = 60.0


@dataclass
class Backoff:
    """Delays that double from `base` up to `cap`, each drawn from [d/2, d] ("equal jitter").

    The jitter keeps many proxies that lost the API server at the same moment from coming back
    at the same moment. A server's own Retry-After is a floor.
    """

    base: float = 0.25
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def next_delay(self, retry_after: float | None = None) -> float:
        ceiling = min(self.cap, self.base * 2**self.failures)
        self.failures = min(self.failures + 1, 32)  # 2**32 * base is far past any cap
        delay = self.rng.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, RETRY_AFTER_LIMIT))
        return delay

    def reset(self) -> None:
        self.failures = 0
