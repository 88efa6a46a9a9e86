"""The active-session estimate: HyperLogLog accuracy, the sliding window, merging workers."""

from __future__ import annotations

import random

import pytest

from proxy.observability.active_sessions import BUCKETS, SessionSketch, estimate, merge


def keys(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.getrandbits(64):x}|44323fc27e2ab28b68735f281c5d85c6" for _ in range(count)]


def sketch(of: list[str], window: float = 80.0, now: float = 0.0) -> SessionSketch:
    made = SessionSketch(window, now)
    made.seen.update(of)
    made.fold()
    return made


def test_nothing_seen_is_zero() -> None:
    assert estimate(SessionSketch(60.0, 0.0).registers()) == 0


@pytest.mark.parametrize("count", [1, 2, 5])
def test_a_few_sessions_are_counted_almost_exactly(count: int) -> None:
    # linear counting: only two keys sharing one of 256 registers would make it one less
    assert estimate(sketch(keys(count, count)).registers()) in (count - 1, count)


@pytest.mark.parametrize("count", [100, 1000, 20000])
def test_many_sessions_within_the_sketch_error(count: int) -> None:
    # 256 registers: a standard error of 6.5 %; four of those bound every seed tried
    assert estimate(sketch(keys(count, 7)).registers()) == pytest.approx(count, rel=0.26)


def test_repeated_keys_count_once() -> None:
    assert estimate(sketch(keys(50, 1) * 20).registers()) == estimate(
        sketch(keys(50, 1)).registers()
    )


def test_sessions_are_forgotten_after_the_window() -> None:
    made = sketch(keys(3, 3), window=80.0)  # parts of 10 s
    made.rotate(70.0)  # seven parts on: still within the window
    assert estimate(made.registers()) in (2, 3)
    made.seen.update(keys(2, 4))
    made.rotate(80.0)  # the first part is forgotten, the later keys stay
    assert estimate(made.registers()) in (1, 2)
    made.rotate(80.0 + 80.0 * (BUCKETS - 1) / BUCKETS + 10)
    assert estimate(made.registers()) == 0


def test_merging_counts_shared_sessions_once() -> None:
    shared = keys(300, 5)
    one = sketch(shared + keys(100, 6)).registers()
    other = sketch(shared + keys(100, 8)).registers()
    # a sum would say ~800
    assert estimate(merge([one, other])) == pytest.approx(500, rel=0.26)
    assert merge([one]) == one


def test_sessions_seen_after_a_read_still_count() -> None:
    """The merged registers are kept between reads; new keys must not be hidden by that."""
    made = sketch(keys(5, 11))
    assert estimate(made.registers()) in (4, 5)  # hash() is seeded per process: rare collisions
    made.seen.update(keys(5, 12))
    made.fold()
    assert estimate(made.registers()) in (9, 10)


def test_a_sketch_left_alone_catches_up_on_its_next_rotation() -> None:
    """The metrics stop rotating a sketch once its window is empty, and rotate it again when
    it sees a key: the time in between must count, and the new keys must not be aged by it."""
    made = sketch(keys(3, 3), window=80.0)
    assert made.rotate(5.0) is True  # still holds the three
    made.seen.update(keys(2, 4))
    assert made.rotate(500.0) is True  # long after the window: the three are gone, the two are new
    assert estimate(made.registers()) in (1, 2)
    assert made.rotate(570.0) is True
    assert made.rotate(590.0) is False  # a whole window since the two: nothing left
    assert estimate(made.registers()) == 0


def test_a_sketch_that_never_saw_a_key_is_empty_through_rotations() -> None:
    made = SessionSketch(80.0, 0.0)
    assert made.rotate(10.0) is False
    assert made.rotate(1000.0) is False
    assert estimate(made.registers()) == 0
