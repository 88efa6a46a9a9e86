"""The rate limit of upstream failure lines, on a clock the tests move by hand."""

from __future__ import annotations

import logging

import pytest

from proxy.core.errors import UpstreamError, UpstreamTimeout
from proxy.core.model import Endpoint
from proxy.observability.failure_log import FailureLog, RateLimit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_event_a_second_per_key_and_the_next_says_how_many_were_held_back() -> None:
    clock = Clock()
    limit = RateLimit(clock, interval=1.0)
    assert limit.admit("a") == 0
    clock.now += 0.4
    assert limit.admit("a") is None
    clock.now += 0.5
    assert limit.admit("a") is None  # 0.9 s after the line: still held back
    clock.now += 0.1
    assert limit.admit("a") == 2  # a second after the line: said, with the two held back
    assert limit.admit("a") is None
    clock.now += 5.0
    assert limit.admit("a") == 1
    clock.now += 1.0
    assert limit.admit("a") == 0  # nothing held back since


def test_keys_are_limited_each_on_their_own() -> None:
    limit = RateLimit(Clock())
    assert [limit.admit(key) for key in ("a", "b", "a", "c", "b")] == [0, 0, None, 0, None]


def test_keys_not_seen_for_a_while_are_forgotten() -> None:
    clock = Clock()
    limit = RateLimit(clock, forget_after=60.0)
    for key in ("a", "b", "c"):
        limit.admit(key)
    clock.now += 30.0
    limit.admit("b")  # seen again: kept 60 s from now
    assert len(limit) == 3
    clock.now += 30.0
    limit.admit("d")
    assert len(limit) == 2  # a and c went; b and d stay
    assert limit.admit("a") == 0  # back as a new key, said at once


def test_memory_is_bounded_however_many_keys_fail_at_once() -> None:
    clock = Clock()
    limit = RateLimit(clock, max_keys=100)
    for number in range(1000):
        limit.admit(f"10.0.{number // 256}.{number % 256}:8080")
        assert len(limit) <= 100
    assert len(limit) == 100
    assert limit.admit("10.0.3.231:8080") is None  # among the latest: still limited
    assert limit.admit("10.0.0.0:8080") == 0  # the least recently seen went first


def test_the_line_names_the_endpoint_what_failed_and_what_was_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    failures = FailureLog(clock)
    pod = Endpoint("10.0.0.5", 8080, pod="web-7d9f-abcde")
    plain = Endpoint("10.0.0.6", 8080)
    with caplog.at_level(logging.WARNING, "sticky_proxy.upstream"):
        failures.failed("default-web-80", pod, UpstreamError("connect", "Connection refused"))
        failures.failed("default-web-80", pod, UpstreamTimeout("connect timed out"))
        failures.failed("default-web-80", pod, UpstreamError("reset", "upstream closed"))
        failures.failed("default-web-80", plain, UpstreamError("protocol", "invalid response"))
        clock.now += 1.0
        failures.failed("default-web-80", pod, UpstreamTimeout("upstream read timed out"))
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "upstream 10.0.0.5:8080 (pod web-7d9f-abcde, cluster default-web-80) "
                          "failed (connect): Connection refused"),
        (logging.WARNING, "upstream 10.0.0.6:8080 (cluster default-web-80) "
                          "failed (protocol): invalid response"),
        (logging.WARNING, "upstream 10.0.0.5:8080 (pod web-7d9f-abcde, cluster default-web-80) "
                          "failed (timeout): upstream read timed out "
                          "(2 more since the last line, not logged)"),
    ]  # fmt: skip
