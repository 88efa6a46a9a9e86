"""Rate and connection limits without I/O: the limit-* annotations as ingress-nginx parses them
(internal/ingress/annotations/ratelimit/main_test.go: tests named after the Go ones), nginx's
limit_req leaky bucket with `nodelay` at explicit times in milliseconds, and one worker's
bounded tables (docs/behaviour.md, "Rate and connection limits")."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from proxy.control.translate.annotations import PREFIX
from proxy.core.ratelimit import (
    RateLimits,
    RequestRate,
    forgettable,
    leak,
    per_minute,
    per_second,
)
from proxy.dataplane.limits import Limiter
from tests.unit.kube_fixtures import parsed

# --- the annotations ---------------------------------------------------------------------------


def test_without_annotations() -> None:
    settings = parsed()
    assert settings.limits is None
    assert settings.denied is None


def test_rate_limiting() -> None:
    assert parsed(limit_connections="0", limit_rps="0", limit_rpm="0").limits is None
    limits = parsed(
        limit_connections="5", limit_rps="100", limit_rpm="10", limit_rate_after="100"
    ).limits
    assert limits == RateLimits(
        requests=(per_second(100, 100 * 5), per_minute(10, 10 * 5)), connections=5
    )
    limits = parsed(
        limit_connections="5", limit_rps="100", limit_rpm="10", limit_burst_multiplier="3"
    ).limits
    assert limits == RateLimits(
        requests=(per_second(100, 100 * 3), per_minute(10, 10 * 3)), connections=5
    )


def test_annotation_cidr() -> None:
    limits = parsed(limit_connections="5", limit_allowlist="192.168.0.5, 192.168.50.32/24").limits
    assert limits is not None
    assert len(limits.exempt) == 2
    limits = parsed(
        limit_connections="5", limit_whitelist="192.168.0.5, 192.168.50.32/24, 10.10.10.1"
    ).limits
    assert limits is not None
    assert len(limits.exempt) == 3
    # Parent annotation surpasses any alias
    limits = parsed(
        limit_connections="5",
        limit_whitelist="192.168.0.5, 192.168.50.32/24, 10.10.10.1",
        limit_allowlist="192.168.0.9",
    ).limits
    assert limits is not None
    assert limits.exempt == (ip_network("192.168.0.9/32"),)


def test_rates_are_kept_as_nginx_keeps_them() -> None:
    # nginx: rate=Nr/s is N * 1000 thousandths a second, Nr/m is N * 1000 / 60, rounded down
    assert per_second(10, 50) == RequestRate("rps", 10_000, 50_000, "10r/s")
    assert per_minute(10, 50) == RequestRate("rpm", 166, 50_000, "10r/m")


@pytest.mark.parametrize(
    ("annotations", "why"),
    [
        ({"limit_rps": "ten"}, "limit-rps: 'ten' is not a whole number"),
        ({"limit_rpm": "1.5"}, "limit-rpm: '1.5' is not a whole number"),
        ({"limit_connections": "8x"}, "limit-connections: '8x' is not a whole number"),
        (
            {"limit_rps": "5", "limit_allowlist": "10.0.0.0/8, example.com"},
            "limit-allowlist: 'example.com' is not an IP address or CIDR range",
        ),
    ],
)
def test_an_invalid_limit_refuses_the_paths_as_ingress_nginx_refuses_the_ingress(
    annotations: dict[str, str], why: str
) -> None:
    """ingress-nginx's parser returns a validation error and the Ingress is not served: here
    its paths answer 503 rather than serve without the limit."""
    settings = parsed(**annotations)
    assert settings.limits is None
    assert settings.denied == f"{PREFIX}{why}"
    assert f"{PREFIX}{why}; its paths answer 503" in settings.warnings


def test_a_bad_burst_multiplier_takes_the_default_five() -> None:
    for text in ("x", "0", "-2"):
        settings = parsed(limit_rps="2", limit_burst_multiplier=text)
        assert settings.limits == RateLimits(requests=(per_second(2, 10),))
        assert settings.denied is None
        assert any("limit-burst-multiplier" in line for line in settings.warnings)


def test_negative_limits_set_none_and_the_rest_needs_a_limit() -> None:
    assert parsed(limit_rps="-1").limits is None  # ingress-nginx writes limit_req for > 0 only
    settings = parsed(limit_allowlist="10.0.0.0/8", limit_burst_multiplier="2")
    assert settings.limits is None
    assert settings.warnings == (
        f"{PREFIX}limit-burst-multiplier is ignored without {PREFIX}limit-rps, limit-rpm or"
        " limit-connections",
        f"{PREFIX}limit-allowlist is ignored without {PREFIX}limit-rps, limit-rpm or"
        " limit-connections",
    )


def test_an_invalid_access_list_and_limit_are_both_told() -> None:
    settings = parsed(limit_rps="x", denylist_source_range="nope")
    assert settings.denied is not None
    assert "denylist-source-range" in settings.denied
    assert "limit-rps" in settings.denied


def test_the_allowlist_exempts_by_address_ipv4_mapped_too() -> None:
    limits = RateLimits(connections=1, exempt=(ip_network("10.0.0.0/8"),))
    assert not limits.counts(b"10.1.2.3")
    assert not limits.counts(b"::ffff:10.1.2.3")
    assert limits.counts(b"11.1.2.3")
    assert RateLimits(connections=1).counts(b"10.1.2.3")


# --- the leaky bucket --------------------------------------------------------------------------

RPS_1_BURST_5 = per_second(1, 5)


def test_a_burst_passes_at_once_and_the_next_request_is_refused() -> None:
    """With nodelay, a new client passes with excess 0, then each request adds one: the
    burst + 1st request passes, the next is over."""
    bucket = None
    for _ in range(6):
        bucket = leak(bucket, 1000, RPS_1_BURST_5)
        assert bucket is not None
    assert bucket == (5000, 1000)
    assert leak(bucket, 1000, RPS_1_BURST_5) is None


def test_the_bucket_drains_at_the_rate() -> None:
    full = (5000, 1000)
    assert leak(full, 1999, RPS_1_BURST_5) is None  # 999 ms drained 999 thousandths: not enough
    assert leak(full, 2000, RPS_1_BURST_5) == (5000, 2000)  # one whole request drained
    assert leak(full, 4500, RPS_1_BURST_5) == (2500, 4500)
    # nginx adds this request before it clamps at 0: a long idle client starts as a new one
    assert leak(full, 60_000, RPS_1_BURST_5) == (0, 60_000)


def test_a_refused_request_leaves_the_bucket_as_it_was() -> None:
    full = (5000, 1000)
    assert leak(full, 1500, RPS_1_BURST_5) is None
    assert leak(full, 2000, RPS_1_BURST_5) == (5000, 2000)  # the refusal took nothing away


def test_per_minute_rates_drain_in_nginx_s_integers() -> None:
    rate = per_minute(1, 1)  # 16 thousandths a second: a request takes 62.5 s to drain
    bucket = leak(leak(None, 0, rate), 0, rate)
    assert bucket == (1000, 0)
    assert leak(bucket, 62_000, rate) is None  # 992 thousandths drained
    assert leak(bucket, 62_500, rate) == (1000, 62_500)


def test_the_clock_going_back_counts_as_no_time() -> None:
    bucket = (2000, 10_000)
    assert leak(bucket, 9_000, RPS_1_BURST_5) == (3000, 10_000)  # last stays put
    assert leak(bucket, -70_000, RPS_1_BURST_5) == (2999, -70_000)  # over a minute: 1 ms


def test_a_bucket_is_forgettable_after_a_minute_drained() -> None:
    assert not forgettable((0, 0), 59_999, RPS_1_BURST_5)
    assert forgettable((0, 0), 60_000, RPS_1_BURST_5)
    slow = per_minute(1, 100)
    assert not forgettable((100_000, 0), 60_000, slow)  # 60 s drain 960 of 100,000
    assert forgettable((100_000, 0), 6_250_000, slow)


# --- one worker's tables -----------------------------------------------------------------------


def limits(*requests: RequestRate, connections: int = 0, zone: str = "ns/web") -> RateLimits:
    return RateLimits(requests=requests, connections=connections, zone=zone)


def test_every_rate_must_pass_and_a_refusal_counts_in_none() -> None:
    limiter = Limiter()
    both = limits(per_second(10, 10), per_minute(1, 1))
    assert limiter.admit(both, b"10.0.0.1", 0)
    assert limiter.admit(both, b"10.0.0.1", 0)
    # the per-minute rate is over; the per-second one would pass but must not count
    for _ in range(20):
        assert not limiter.admit(both, b"10.0.0.1", 0)
    per_second_alone = limits(per_second(10, 10))
    assert sum(limiter.admit(per_second_alone, b"10.0.0.1", 0) for _ in range(20)) == 9


def test_clients_and_zones_are_counted_apart() -> None:
    limiter = Limiter()
    one = limits(per_minute(1, 0))
    assert limiter.admit(one, b"10.0.0.1", 0)
    assert not limiter.admit(one, b"10.0.0.1", 0)
    assert limiter.admit(one, b"10.0.0.2", 0)
    assert limiter.admit(limits(per_minute(1, 0), zone="ns/other"), b"10.0.0.1", 0)


def test_a_full_zone_forgets_the_least_recently_seen_client() -> None:
    limiter = Limiter(capacity=3)
    rate = limits(per_minute(1, 0))
    for client in (b"a", b"b", b"c"):
        assert limiter.admit(rate, client, 0)
    assert not limiter.admit(rate, b"a", 0)  # seen again: now the most recent
    assert limiter.admit(rate, b"d", 0)  # full: b goes
    assert limiter.tracked() == 3
    assert limiter.admit(rate, b"b", 0)  # forgotten, so new again (c goes)
    assert not limiter.admit(rate, b"a", 0)
    assert not limiter.admit(rate, b"d", 0)


def test_drained_clients_idle_for_a_minute_are_dropped_early() -> None:
    limiter = Limiter()
    rate = limits(per_second(1, 0))
    for client in (b"a", b"b", b"c"):
        assert limiter.admit(rate, client, 0)
    assert limiter.admit(rate, b"d", 60_000)  # a and b drop; c (third oldest) stays
    assert limiter.tracked() == 2


def test_a_flood_of_distinct_clients_stays_within_the_capacity() -> None:
    limiter = Limiter(capacity=1000)
    rate = limits(per_second(1, 5))
    for n in range(100_000):
        limiter.admit(rate, b"10.%d.%d.%d" % (n >> 16, (n >> 8) & 255, n & 255), n // 100)
    assert limiter.tracked() == 1000


def test_connections_count_until_released() -> None:
    limiter = Limiter()
    two = limits(connections=2)
    assert limiter.take_connection(two, b"10.0.0.1")
    assert limiter.take_connection(two, b"10.0.0.1")
    assert not limiter.take_connection(two, b"10.0.0.1")
    assert limiter.take_connection(two, b"10.0.0.2")
    limiter.release_connection("ns/web", b"10.0.0.1")
    assert limiter.take_connection(two, b"10.0.0.1")
    for client in (b"10.0.0.1", b"10.0.0.1", b"10.0.0.2"):
        limiter.release_connection("ns/web", client)
    assert limiter.tracked() == 0  # nothing is kept for clients with nothing in flight


def test_a_zone_keeps_buckets_whole_at_any_monotonic_time() -> None:
    """(The table packs a bucket into one int: the excess and a clock of days or years.)"""
    limiter = Limiter()
    rate = limits(per_second(1, 1))
    late = 10 * 365 * 86_400_000  # ten years of uptime, in ms
    assert [limiter.admit(rate, b"a", late) for _ in range(3)] == [True, True, False]
    assert limiter.admit(rate, b"a", late + 1000)
    assert not limiter.admit(rate, b"a", late + 1999)
