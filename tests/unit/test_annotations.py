"""An Ingress's nginx.ingress.kubernetes.io/* annotations as translation applies them
(translate.annotations): what valid values set, and one warning and the default for each
invalid one."""

from __future__ import annotations

import pytest

from proxy.control.translate.annotations import PREFIX
from proxy.core.cookies import CookieSettings
from proxy.core.model import AffinityMode, PathType, UpstreamPolicy
from tests.unit.kube_fixtures import find, snapshot_of, warned


def test_valid_annotations() -> None:
    defaults = UpstreamPolicy(connect_timeout=2.0, body_size=0)
    snapshot = snapshot_of("annotations", upstream=defaults)
    route = find(snapshot, "valid.example.com", "/app")
    affinity = route.cluster.affinity
    assert affinity is not None
    assert affinity.mode is AffinityMode.PERSISTENT
    assert affinity.cookie == CookieSettings(
        name="route",
        path="/app",
        domain=".example.com",
        samesite="none",  # kept as written; the cookie writer emits exact spellings only
        conditional_samesite_none=True,
        secure=True,
        max_age=-1,
        expires=3600,
        change_on_failure=True,
    )
    assert route.upstream == UpstreamPolicy(
        connect_timeout=10.0,
        read_timeout=30.0,
        send_timeout=40.0,
        body_size=8 * 1024 * 1024,
        next_upstream=frozenset({"error", "timeout", "http_502"}),
        next_upstream_tries=0,
        next_upstream_timeout=7.0,
    )
    assert find(snapshot, "valid.example.org", "/app").sets_cookie  # the alias
    assert [line for line in snapshot.warnings if "default/valid:" in line] == [
        f"Ingress default/valid: {PREFIX}session-cookie-samesite: 'none' is sent as no SameSite"
        " at all, as by ingress-nginx; write None"
    ]
    # an Ingress without proxy annotations keeps the process-wide defaults
    assert find(snapshot, "no-affinity.example.com", "/").upstream is defaults


def test_invalid_annotations_fall_back_to_defaults() -> None:
    defaults = UpstreamPolicy(connect_timeout=2.0)
    snapshot = snapshot_of("annotations", upstream=defaults)
    route = find(snapshot, "invalid.example.com", "/")
    affinity = route.cluster.affinity
    assert affinity is not None
    assert affinity.mode is AffinityMode.BALANCED
    assert affinity.cookie == CookieSettings()
    assert route.upstream == defaults
    assert route.path_type is PathType.PREFIX
    assert [r for r in snapshot.routes if r.host == "ok.example.com"] == []


@pytest.mark.parametrize(
    ("annotation", "complaint"),
    [
        ("affinity-mode", ": 'Persistent' is not balanced or persistent; ignored"),
        ("session-cookie-name", ": 'bad name!' is not a cookie name"),
        ("session-cookie-path", ": '/api(.*)' is not a cookie path"),
        ("session-cookie-domain", " is empty; ignored"),
        ("session-cookie-samesite", ": 'sometimes' is not None, Lax or Strict; ignored"),
        ("session-cookie-conditional-samesite-none", ": 'maybe' is not a boolean"),
        ("session-cookie-secure", ": 'yes' is not a boolean"),
        ("session-cookie-max-age", ": 'abc' is not a number of seconds; ignored"),
        ("session-cookie-expires", ": '1.5' is not a number of seconds; ignored"),
        ("session-cookie-change-on-failure", ": '2' is not a boolean"),
        ("use-regex", ": 'yep' is not a boolean"),
        ("server-alias", r": '~^www\\d+\\.example\\.com$' is not a host name"),
        ("proxy-connect-timeout", ": '5s' is not a whole number above 0; ignored"),
        ("proxy-read-timeout", ": '0' is not a whole number above 0; ignored"),
        ("proxy-send-timeout", ": '1.5' is not a whole number above 0; ignored"),
        ("proxy-body-size", ": '1x' is not a size"),
        ("proxy-next-upstream", ": unknown condition 'http_418'"),
        ("proxy-next-upstream-tries", ": 'three' is not a whole number"),
        ("proxy-next-upstream-timeout", ": '-1' is not a whole number"),
        ("mirror-target", ": '/mirror' is not an http or https URL; ignored"),
        ("ssl-redirect", ": 'nope' is not a boolean"),
        (
            "session-cookie-partitioned",
            " is not supported (not an ingress-nginx annotation); ignored",
        ),
    ],
)
def test_each_invalid_annotation_is_warned_about(annotation: str, complaint: str) -> None:
    snapshot = snapshot_of("annotations")
    assert warned(snapshot, f"Ingress default/invalid: {PREFIX}{annotation}{complaint}")


def test_invalid_annotations_warn_once_each() -> None:
    snapshot = snapshot_of("annotations")
    invalid = [line for line in snapshot.warnings if line.startswith("Ingress default/invalid:")]
    assert len(invalid) == 22, invalid
    assert not warned(snapshot, "example.com/not-ours")


def test_cookie_annotations_without_affinity() -> None:
    snapshot = snapshot_of("annotations")
    route = find(snapshot, "no-affinity.example.com", "/")
    assert route.cluster.affinity is None
    assert not route.sets_cookie
    assert warned(
        snapshot, f"Ingress default/no-affinity: {PREFIX}affinity: 'Cookie' is not cookie"
    )
    for annotation in ("session-cookie-name", "session-cookie-max-age"):
        assert warned(
            snapshot,
            f"Ingress default/no-affinity: {PREFIX}{annotation} is ignored without"
            f" {PREFIX}affinity: cookie",
        )
