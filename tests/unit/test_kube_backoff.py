"""Backoff between attempts at the API server (doubling, jittered, capped, Retry-After first),
and the pause between table rebuilds."""

from __future__ import annotations

import random

import pytest

from proxy.control.sources.kubernetes.backoff import RETRY_AFTER_LIMIT, Backoff
from proxy.control.sources.kubernetes.source import rebuild_pause


def test_delays_double_within_their_jitter_up_to_the_cap() -> None:
    backoff = Backoff(base=0.25, cap=4.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == len(delays), "jittered: no two alike"


def test_retry_after_is_a_floor_even_beyond_the_cap_within_a_limit() -> None:
    backoff = Backoff(base=0.25, cap=2.0, rng=random.Random(2))
    assert backoff.next_delay(retry_after=5) == 5
    assert backoff.next_delay(retry_after=6000) == RETRY_AFTER_LIMIT
    assert backoff.next_delay(retry_after=0) < 1


def test_reset_starts_from_the_base_again() -> None:
    backoff = Backoff(base=1.0, cap=60.0, rng=random.Random(3))
    for _ in range(10):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_many_failures_do_not_overflow() -> None:
    backoff = Backoff(base=0.25, cap=30.0, rng=random.Random(4))
    for _ in range(5000):
        assert backoff.next_delay() <= 30.0


@pytest.mark.parametrize(
    ("took", "since", "pause"),
    [
        (0.01, 0.0, 0.05),  # a quick rebuild: changes are gathered for the coalesce time
        (0.4, 0.1, 0.3),  # a long one: until as long has passed as it took
        (0.4, 0.38, 0.05),  # ... but never less than the coalesce time
        (0.4, 30.0, 0.05),  # the first change after a quiet while: no extra wait
    ],
)
def test_rebuilds_are_spaced_by_as_long_as_they_take(
    took: float, since: float, pause: float
) -> None:
    assert rebuild_pause(0.05, took, since) == pytest.approx(pause)
