"""Estimated active sessions per endpoint: distinct session keys seen within a sliding window.

A HyperLogLog sketch per endpoint, in time buckets: 256 one-byte registers (±6.5 %) per bucket,
`BUCKETS` buckets per window, so an endpoint costs 2 KiB however many sessions it has. HyperLogLog
rather than a capped set of keys because its memory does not depend on traffic and because two
sketches merge exactly (register-wise max): the workers of one proxy each see part of a session's
requests, and the union of their sketches counts that session once where a sum would count it in
every worker. Small counts go through linear counting, close to exact below a few dozen.

Keys are hashed with Python's `hash()`: cheap, and the same in every worker because the worker
supervisor gives them one PYTHONHASHSEED (sketches from differently seeded processes would not
merge).
"""

from __future__ import annotations

import math

PRECISION = 8
REGISTERS = 1 << PRECISION
_INDEX = REGISTERS - 1
_RANK_BITS = 32  # hash bits after the index that set a register's rank
_RANK_MASK = (1 << _RANK_BITS) - 1
_ALPHA = 0.7213 / (1 + 1.079 / REGISTERS)
BUCKETS = 8  # a key is remembered for between 7/8 and all of the window


class SessionSketch:
    """Distinct keys of one endpoint over the last `window` seconds, in `BUCKETS` rotating parts."""

    __slots__ = ("_buckets", "_merged", "_next_rotation", "_slice", "seen")

    def __init__(self, window: float, now: float) -> None:
        self._slice = window / BUCKETS
        # Newest part first. None until the first key: most endpoints of a big table see no
        # session in a given window (metrics for 50,000 endpoints: 225 MB with them, 90 without).
        self._buckets: list[bytearray] | None = None
        self._next_rotation = now + self._slice
        # Keys since the last fold: a request only adds its key here (a set add, where a sketch
        # update costs four times as much), and a session's repeated requests fold in once.
        self.seen: set[object] = set()
        # The window's merged registers, kept until a fold or rotation changes them: most
        # endpoints see no new session in a given second, and merging is the costly part.
        self._merged: bytes | None = _NOTHING

    def fold(self) -> None:
        if not self.seen:
            return
        if self._buckets is None:
            self._buckets = [bytearray(REGISTERS) for _ in range(BUCKETS)]
        self._merged = None
        registers = self._buckets[0]
        for key in self.seen:
            hashed = hash(key)
            rank = _RANK_BITS + 1 - ((hashed >> PRECISION) & _RANK_MASK).bit_length()
            index = hashed & _INDEX
            registers[index] = max(registers[index], rank)
        self.seen.clear()

    def rotate(self, now: float) -> bool:
        """Forget the parts whose time is up (about once a second), then fold in the keys seen.
        False when the window holds no session: the caller may stop rotating this sketch until
        it sees a key again (the next rotation catches up on the time in between)."""
        buckets = self._buckets
        if now >= self._next_rotation:
            elapsed = int((now - self._next_rotation) // self._slice) + 1
            self._next_rotation += elapsed * self._slice
            if buckets is not None:
                for _ in range(min(elapsed, BUCKETS)):
                    oldest = buckets.pop()
                    oldest[:] = bytes(REGISTERS)
                    buckets.insert(0, oldest)
                self._merged = None
        self.fold()
        buckets = self._buckets
        return buckets is not None and any(part != _NOTHING for part in buckets)

    def registers(self) -> bytes:
        """The whole window as one sketch: what merges with other workers' sketches."""
        merged = self._merged
        if merged is None:
            buckets = self._buckets
            merged = self._merged = bytes(map(max, *buckets)) if buckets else _NOTHING
        return merged


_NOTHING = bytes(REGISTERS)


def merge(sketches: list[bytes]) -> bytes:
    if len(sketches) == 1:
        return sketches[0]
    return bytes(map(max, *sketches))


def estimate(registers: bytes) -> int:
    """HyperLogLog's estimate, with linear counting for the small range."""
    zeros = registers.count(0)
    if zeros == REGISTERS:
        return 0
    raw = _ALPHA * REGISTERS * REGISTERS / math.fsum(2.0**-r for r in registers)
    if raw <= 2.5 * REGISTERS and zeros:
        return round(REGISTERS * math.log(REGISTERS / zeros))
    return round(raw)
