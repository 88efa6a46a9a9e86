"""Passive outlier ejection without I/O: the state machine on a fake clock, the choice of a
substitute, the annotations and flags that switch it on (docs/behaviour.md, "Outlier ejection")."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from proxy.app.cli import parse_command
from proxy.app.settings import ServeCommand
from proxy.control.translate.annotations import parse_annotations
from proxy.core.affinity import Balancer, Outcome
from proxy.core.cookies import CookieSettings
from proxy.core.model import Affinity, AffinityMode, Endpoint, UpstreamPolicy
from proxy.core.outliers import MAX_BACKOFF_FACTOR, AvoidedNodes, Outlier, substitute

PODS = tuple(Endpoint(f"10.0.0.{i}", 8080) for i in range(1, 6))
DEAD = PODS[0]


def test_an_endpoint_is_ejected_only_after_n_failures_in_a_row() -> None:
    outlier = Outlier(DEAD, "shop-web-80")
    assert [outlier.failed(3, 10.0, now=100.0) for _ in range(3)] == [False, False, True]
    assert outlier.ejected and outlier.until == 110.0 and outlier.backoff == 10.0
    # tries that began before the ejection and fail after it do not eject it again
    assert not outlier.failed(3, 10.0, now=101.0)
    assert outlier.until == 110.0


def test_the_back_off_doubles_on_each_re_ejection_up_to_the_cap() -> None:
    outlier = Outlier(DEAD, "c")
    outlier.failed(1, 2.0, now=0.0)
    backoffs = [outlier.backoff]
    now = 0.0
    for _ in range(6):
        now = outlier.until
        outlier.probe_failed(now)
        backoffs.append(outlier.backoff)
        assert outlier.until == now + outlier.backoff
    assert backoffs == [2.0, 4.0, 8.0, 16.0, 20.0, 20.0, 20.0]
    assert max(backoffs) == 2.0 * MAX_BACKOFF_FACTOR


def test_a_successful_probe_returns_the_endpoint_but_remembers_its_back_off() -> None:
    outlier = Outlier(DEAD, "c")
    outlier.failed(2, 5.0, now=0.0)
    outlier.failed(2, 5.0, now=0.0)
    outlier.probe_succeeded()
    assert not outlier.ejected and outlier.failures == 0
    # failing again soon after: the threshold counts from zero, and the back-off doubles
    assert not outlier.failed(2, 5.0, now=6.0)
    assert outlier.failed(2, 5.0, now=6.0)
    assert (outlier.backoff, outlier.until) == (10.0, 16.0)


def test_each_failure_is_judged_by_the_threshold_of_its_route() -> None:
    outlier = Outlier(DEAD, "c")
    assert not outlier.failed(5, 1.0, now=0.0)
    assert outlier.failed(2, 1.0, now=0.0)  # a stricter route sees two failures already


def test_avoided_nodes_match_by_node_text_not_by_value() -> None:
    draining_now = Endpoint(DEAD.address, DEAD.port, draining=True)
    avoid = AvoidedNodes([PODS[1]], [DEAD])
    assert draining_now in avoid and PODS[1] in avoid and PODS[2] not in avoid
    assert len(avoid) == 2 and set(avoid) == {DEAD, PODS[1]}
    assert "10.0.0.1:8080" not in avoid


def test_a_session_keeps_one_substitute_while_its_pod_is_ejected() -> None:
    avoid = AvoidedNodes([], [DEAD])
    first = substitute("abc|key", PODS, avoid)
    assert first is not None and first is not DEAD
    assert all(substitute("abc|key", PODS, avoid) is first for _ in range(10))


def test_substitutes_spread_sessions_evenly_and_move_only_when_needed() -> None:
    avoid = AvoidedNodes([], [DEAD])
    cookies = [f"{random.Random(i).getrandbits(64):x}|k" for i in range(4000)]
    chosen = {cookie: substitute(cookie, PODS, avoid) for cookie in cookies}
    counts = Counter(e.node for e in chosen.values() if e is not None)
    assert set(counts) == {e.node for e in PODS[1:]}
    fair = len(cookies) / 4
    sigma = (len(cookies) * 0.25 * 0.75) ** 0.5
    assert all(abs(n - fair) <= 4.5 * sigma for n in counts.values()), counts
    # ejecting a second pod moves only the sessions that stood in on it
    more = AvoidedNodes([], [DEAD, PODS[1]])
    for cookie, endpoint in chosen.items():
        after = substitute(cookie, PODS, more)
        assert after == endpoint or endpoint == PODS[1]
        assert after != PODS[1]


def test_no_substitute_when_every_other_pod_is_avoided() -> None:
    assert substitute("abc|key", PODS, AvoidedNodes(PODS[1:], [DEAD])) is None


@pytest.mark.parametrize("mode", list(AffinityMode))
def test_a_fresh_pick_passes_over_ejected_endpoints(mode: AffinityMode) -> None:
    affinity = Affinity(mode, CookieSettings(name="key"))
    balancer = Balancer.build("shop-web-80", PODS, affinity)
    avoid = AvoidedNodes([], PODS[:3])
    rng = random.Random(7)
    picks = Counter()
    for _ in range(600):
        decision = balancer.choose(None, avoid, False, False, rng, 1000.0, 1)
        assert decision is not None and decision.outcome is Outcome.NEW
        assert decision.new_key is not None
        picks[decision.endpoint] += 1
    assert set(picks) == set(PODS[3:])
    assert balancer.choose(None, AvoidedNodes(PODS, []), False, False, rng, 1.0, 1) is None


def test_annotations_switch_ejection_on_per_ingress_over_the_flags() -> None:
    defaults = UpstreamPolicy(eject_after_failures=0, eject_seconds=10.0)
    settings = parse_annotations(
        {"sticky-proxy.io/eject-after-failures": "3", "sticky-proxy.io/eject-seconds": "2.5"},
        defaults,
    )
    assert (settings.upstream.eject_after_failures, settings.upstream.eject_seconds) == (3, 2.5)
    assert settings.warnings == ()
    off = parse_annotations(
        {"sticky-proxy.io/eject-after-failures": "0"}, UpstreamPolicy(eject_after_failures=4)
    )
    assert off.upstream.eject_after_failures == 0
    inherited = parse_annotations({}, UpstreamPolicy(eject_after_failures=4))
    assert inherited.upstream is not None and inherited.upstream.eject_after_failures == 4


def test_invalid_ejection_annotations_warn_and_keep_the_defaults() -> None:
    defaults = UpstreamPolicy(eject_after_failures=2, eject_seconds=10.0)
    settings = parse_annotations(
        {"sticky-proxy.io/eject-after-failures": "-1", "sticky-proxy.io/eject-seconds": "0"},
        defaults,
    )
    assert settings.upstream == defaults
    assert len(settings.warnings) == 2
    assert settings.warnings[0].startswith("sticky-proxy.io/eject-after-failures: ")
    assert settings.warnings[1].startswith("sticky-proxy.io/eject-seconds: ")
    assert all(w.endswith("; ignored") for w in settings.warnings)


def test_the_flags_set_the_defaults_and_are_off_by_default() -> None:
    backend = ("serve", "--backend", "http://127.0.0.1:8001")
    plain = parse_command(backend)
    assert isinstance(plain, ServeCommand)
    upstream = plain.settings.upstream
    assert (upstream.eject_after_failures, upstream.eject_seconds) == (0, 10.0)
    command = parse_command([*backend, "--eject-after-failures", "2", "--eject-seconds", "1.5"])
    assert isinstance(command, ServeCommand)
    assert command.settings.upstream == UpstreamPolicy(eject_after_failures=2, eject_seconds=1.5)
