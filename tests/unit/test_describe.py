"""`sticky-proxy routes` text: the key facts are there, in a stable order (not byte for byte)."""

from __future__ import annotations

from proxy.control.translate import TranslateOptions, translate
from proxy.control.translate.describe import describe
from proxy.core.model import UpstreamPolicy
from proxy.core.routing import Snapshot
from tests.unit.kube_fixtures import annotations_of, ingress_object, load, snapshot_of


def lines_with(text: str, *fragments: str) -> list[str]:
    return [line for line in text.splitlines() if all(f in line for f in fragments)]


def test_seed_routes() -> None:
    text = describe(snapshot_of("seed"))
    assert "host sticky.info" in text
    assert lines_with(text, "/", "Prefix", "default-sticky-d-8080", "balanced, sets key (Path=/)")
    assert lines_with(text, "cluster default-sticky-d-8080", "affinity balanced", "Max-Age=60")
    assert lines_with(text, "10.244.0.5:8080", "ready", "sticky-d-6d8f7c9b5-q2w7r")
    assert lines_with(text, "10.244.0.6:8080", "draining", "sticky-d-6d8f7c9b5-x9k4m")
    assert "10.244.0.7" not in text
    assert "proxy:" not in text  # the defaults are not repeated
    assert "warnings" not in text


def test_cookie_setting_and_following_routes() -> None:
    text = describe(snapshot_of("shared_backend"))
    assert lines_with(text, "/a", "Prefix", "persistent, sets gamma-cookie (Path=/shop)")
    assert lines_with(text, "/b", "persistent, reads gamma-cookie, never sets it", "default/beta")
    assert lines_with(text, "/plain", "default-plain-80", "none")
    assert lines_with(text, "cluster default-shared-80", "Path=/shop", "Secure", "HttpOnly")
    assert lines_with(text, "cluster default-plain-80", "no affinity")
    assert "no endpoints: requests answer 503" in text
    assert lines_with(text, "warnings (2)")


def test_upstream_differences_and_cookie_attributes() -> None:
    text = describe(snapshot_of("annotations"))
    assert lines_with(
        text,
        "proxy:",
        "connect-timeout 10s",
        "read-timeout 30s",
        "send-timeout 40s",
        "body-size 8m",
        "next-upstream error http_502 timeout",
        "next-upstream-tries unlimited",
        "next-upstream-timeout 7s",
    )
    valid = lines_with(text, "cluster default-valid-80")[0]
    for attribute in ("Expires=now+3600s", "Max-Age=-1", "Domain=.example.com", "Path=/app"):
        assert attribute in valid
    assert "SameSite" not in valid  # `none` is not a spelling the cookie writer emits
    assert lines_with(
        text, "Ingress default/invalid:", "session-cookie-partitioned is not supported"
    )


def test_hosts_in_order_then_default_backend_clusters_and_warnings() -> None:
    text = describe(snapshot_of("default_backend"))
    headings = [line for line in text.splitlines() if line and not line.startswith(" ")]
    assert headings[:6] == [
        "host blog.example.com",
        "host shop.example.com",
        "host status.example.com",
        "every other host (rules without host)",
        "default backend (when no route matches)",
        "cluster default-blog-80: no affinity, load-balance of --load-balance (round_robin by"
        " default)",
    ]
    assert headings[-1] == "warnings (4)"
    assert lines_with(text, "/", "default-fallback-80", "default/catch-all")


def test_stable_for_the_same_objects() -> None:
    objects = load("endpoints")
    first = describe(translate(objects, TranslateOptions()))
    assert describe(translate(objects[::-1], TranslateOptions())) == first


def test_nothing_to_route() -> None:
    assert describe(Snapshot(routes=())).startswith("no routes")


def test_upstream_policy_of_global_defaults_is_shown_when_not_built_in() -> None:
    snapshot = snapshot_of("seed", upstream=UpstreamPolicy(body_size=0, next_upstream=frozenset()))
    assert lines_with(describe(snapshot), "proxy: body-size unlimited, next-upstream off")


def test_external_auth_is_shown_with_its_signin() -> None:
    annotations = annotations_of(auth_url="http://auth/$host", auth_signin="https://login/")
    objects = [ingress_object("web", "app.test", annotations=annotations)]
    text = describe(translate(objects, TranslateOptions()))
    assert lines_with(text, "auth: GET http://auth/$host, 401 redirects to https://login/")


def test_external_auth_names_the_headers_its_config_map_sets() -> None:
    annotations = annotations_of(auth_url="http://auth/", auth_proxy_set_headers="default/h")
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "h", "namespace": "default"},
        "data": {"X-Tenant": "shop", "X-Zone": "a"},
    }
    objects = [ingress_object("web", "app.test", annotations=annotations), config_map]
    text = describe(translate(objects, TranslateOptions()))
    assert lines_with(text, "auth: GET http://auth/, sets X-Tenant, X-Zone")


def test_access_lists_are_shown_in_the_order_they_are_checked() -> None:
    objects = [
        ingress_object(
            "web",
            "app.test",
            annotations=annotations_of(
                denylist_source_range="10.1.0.0/16", whitelist_source_range="10.0.0.0/8, ::1"
            ),
        )
    ]  # (no Service: its path answers 503, and is described all the same)
    text = describe(translate(objects, TranslateOptions()))
    assert lines_with(text, "clients: deny 10.1.0.0/16; allow 10.0.0.0/8, ::1/128, deny the rest")


def test_rate_and_connection_limits_are_shown_with_their_zone() -> None:
    objects = [
        ingress_object(
            "web",
            "app.test",
            annotations=annotations_of(
                limit_rps="10", limit_rpm="100", limit_connections="4", limit_allowlist="10.0.0.0/8"
            ),
        )
    ]
    text = describe(translate(objects, TranslateOptions()))
    assert lines_with(
        text,
        "limits per client of Ingress default/web: 10r/s burst 50, 100r/m burst 500, 4 at once"
        " (not 10.0.0.0/8)",
    )


def test_response_rate_is_shown() -> None:
    objects = [
        ingress_object(
            "web", "app.test", annotations=annotations_of(limit_rate="256", limit_rate_after="64")
        )
    ]
    text = describe(translate(objects, TranslateOptions()))
    assert lines_with(text, "answers at 256 KB/s after 64 KB")


def test_mirror_is_shown() -> None:
    annotations = annotations_of(
        mirror_target="https://shadow.test$request_uri", mirror_request_body="off"
    )
    text = describe(translate([ingress_object("web", "app.test", annotations=annotations)],
                              TranslateOptions()))  # fmt: skip
    assert lines_with(
        text, "copies each request to https://shadow.test$request_uri (Host shadow.test, without"
    )


def test_basic_authentication_names_its_secret() -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "users", "namespace": "default"},
        "stringData": {"auth": "foo:{PLAIN}a\nbar:{PLAIN}b\n"},
    }
    annotations = annotations_of(auth_type="basic", auth_secret="users")
    objects = [ingress_object("web", "app.test", annotations=annotations), secret]
    text = describe(translate(objects, TranslateOptions()))
    assert lines_with(text, "basic auth: 2 users of Secret default/users (401)")
