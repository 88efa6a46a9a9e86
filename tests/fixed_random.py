"""A random.Random whose new-key draws are fixed: new balanced keys become predictable."""

from __future__ import annotations

import random


class FixedRandom(random.Random):
    """Draws `value` from 1..999999 for every new key (proxy.core.cookies.new_balanced_key draws
    20 random bits until they are below 999999), and counts the draws."""

    def __init__(self, value: int) -> None:
        super().__init__(0)
        self.value = value
        self.draws = 0

    def getrandbits(self, k: int) -> int:
        assert k == 20  # (999999 < 2**20)
        self.draws += 1
        return self.value - 1
