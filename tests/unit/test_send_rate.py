"""limit-rate and limit-rate-after: the annotations, and the pacing arithmetic of one answer
(docs/behaviour.md, "Response rate")."""

from __future__ import annotations

import pytest

from proxy.control.translate.annotations import PREFIX
from proxy.core.send_rate import TICK, SendRate, allowed, pause
from tests.unit.kube_fixtures import parsed

# --- the annotations ---------------------------------------------------------------------------


def test_limit_rate_in_kilobytes() -> None:
    assert parsed(limit_rate="256", limit_rate_after="64").send_rate == SendRate(262144, 65536)
    assert parsed(limit_rate="1").send_rate == SendRate(1024, 0)
    assert parsed(limit_rate="+3").send_rate == SendRate(3072, 0)  # (Go's Atoi takes a sign)


@pytest.mark.parametrize("value", ["0", "-5"])
def test_zero_or_less_is_full_speed(value: str) -> None:
    """ingress-nginx writes no limit_rate for them; nginx's limit_rate 0 is no limit."""
    settings = parsed(limit_rate=value)
    assert settings.send_rate is None
    assert settings.warnings == ()


@pytest.mark.parametrize("value", ["fast", "1.5", "10k", "0x10"])
def test_garbage_rate_warns_and_is_full_speed(value: str) -> None:
    settings = parsed(limit_rate=value)
    assert settings.send_rate is None
    assert settings.warnings == (f"{PREFIX}limit-rate: {value!r} is not a whole number; ignored",)


def test_garbage_after_is_zero() -> None:
    settings = parsed(limit_rate="8", limit_rate_after="lots")
    assert settings.send_rate == SendRate(8192, 0)
    warning = f"{PREFIX}limit-rate-after: 'lots' is not a whole number; ignored"
    assert settings.warnings == (warning,)


def test_after_without_a_rate_is_ignored() -> None:
    settings = parsed(limit_rate_after="100")
    assert settings.send_rate is None
    assert settings.warnings == (
        f"{PREFIX}limit-rate-after is ignored without {PREFIX}limit-rate above 0",
    )


# --- the pacing --------------------------------------------------------------------------------


def test_full_speed_part_then_a_tick_at_a_time() -> None:
    rate = SendRate(10_000, after=5_000)
    assert rate.quantum == int(10_000 * TICK)
    # the full-speed part and one tick's worth go at once; the tick's worth costs its time
    assert allowed(rate, 0, 100_000) == 5_000 + 1_000
    assert pause(rate, 0, 6_000) == pytest.approx(0.1)
    # within the full-speed part: no wait
    assert allowed(rate, 0, 3_000) == 3_000
    assert pause(rate, 0, 3_000) == 0.0
    # past it: a tick's worth, then its time
    assert allowed(rate, 7_000, 50_000) == 1_000
    assert pause(rate, 7_000, 1_000) == pytest.approx(0.1)
    assert allowed(rate, 7_000, 400) == 400
    assert pause(rate, 7_000, 400) == pytest.approx(0.04)


def test_a_slow_rate_still_sends() -> None:
    """Below ten bytes a second a tick's worth rounds to one byte, not none."""
    rate = SendRate(5)
    assert rate.quantum == 1
    assert allowed(rate, 0, 10) == 1
    assert pause(rate, 0, 1) == pytest.approx(0.2)


def test_the_pace_adds_up_to_the_rate() -> None:
    """Sending a body share by share, the waits add up to (body - full-speed part) / rate."""
    rate = SendRate(262_144, after=262_144)
    sent, waited, body = 300, 0.0, 1_048_576  # (a 300-byte head counts toward the part)
    while sent < body + 300:
        count = allowed(rate, sent, body + 300 - sent)
        waited += pause(rate, sent, count)
        sent += count
    assert waited == pytest.approx((body + 300 - 262_144) / 262_144)
