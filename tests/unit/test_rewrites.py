"""rewrite-target, the redirects, app-root, x-forwarded-prefix and upstream-vhost without I/O:
the values (core.rewrites), their parsing as ingress-nginx validates them, and the routes they
give (docs/behaviour.md, "Rewrites and redirects")."""

from __future__ import annotations

import re

import pytest

from proxy.control.translate import TranslateOptions, translate
from proxy.control.translate.annotations import PREFIX
from proxy.control.translate.describe import describe
from proxy.control.translate.rewrite_annotations import RewriteSettings
from proxy.core.filters import HeaderEdit, Rewrite
from proxy.core.model import PathType
from proxy.core.rewrites import FixedRedirect, RegexRewrite
from tests.unit.kube_fixtures import annotations_of, ingress_object, parsed, warned


@pytest.mark.parametrize(
    ("pattern", "target", "path", "result"),
    [
        ("/something(/|$)(.*)", "/$2", "/something/new", "/new"),
        ("/something(/|$)(.*)", "/$2", "/something", "/"),
        ("/something(/|$)(.*)", "/$2", "/elsewhere", "/elsewhere"),  # not found: unchanged
        ("/foo/bar/(.+)", "/new/backend/$1", "/FOO/bar/Baz", "/new/backend/Baz"),  # (?i)
        ("/a(x)?/(.*)", "/$1-$2-$9", "/a/b", "/-b-"),  # groups absent or unmatched: empty
        ("/api", "/", "/api/users", "/"),  # the whole path is replaced, as by nginx
        ("/api", "/v2$0", "/prefix/api/x", "/v2/api"),  # searched anywhere; $0 the match
    ],
)
def test_regex_rewrite(pattern: str, target: str, path: str, result: str) -> None:
    assert RegexRewrite(re.compile(pattern, re.IGNORECASE), target).apply(path) == result


def test_fixed_redirect_location() -> None:
    assert FixedRedirect("https://x.test/a?b=c", 301).location("http", "h", "80", "/t") == (
        "https://x.test/a?b=c"
    )
    app_root = FixedRedirect("/app", 302, on_own_host=True)
    assert app_root.location("https", "h:8443", "443", "/?q") == "https://h:8443/app"
    www = FixedRedirect("x.test", 308, to_host=True)
    assert www.location("http", "www.x.test", "80", "/foo/?a=b") == "http://x.test:80/foo/?a=b"
    assert www.location("https", "www.x.test", "443", "/foo/") == "https://x.test:443/foo"
    assert www.location("https", "www.x.test", "443", "/") == "https://x.test:443"


def test_settings_from_valid_annotations() -> None:
    settings = parsed(
        rewrite_target="/new/$1",
        app_root="/app",
        permanent_redirect="https://example.com/x?a=b&c=d",
        permanent_redirect_code="308",
        x_forwarded_prefix="/prefix",
        upstream_vhost="internal.example.com:8080",
    )
    assert settings.warnings == ()
    assert settings.rewrites == RewriteSettings(
        target="/new/$1",
        redirect=FixedRedirect("https://example.com/x?a=b&c=d", 308),
        app_root="/app",
        x_forwarded_prefix="/prefix",
        upstream_vhost="internal.example.com:8080",
    )
    assert parsed(affinity="cookie").rewrites is None


@pytest.mark.parametrize(
    ("annotations", "redirect"),
    [
        ({"temporal_redirect": "http://t.test"}, FixedRedirect("http://t.test", 302)),
        (
            {"temporal_redirect": "http://t.test", "temporal_redirect_code": "307"},
            FixedRedirect("http://t.test", 307),
        ),
        (
            {"temporal_redirect": "http://t.test", "temporal_redirect_code": "308"},
            FixedRedirect("http://t.test", 302),  # ingress-nginx's range ends at 307
        ),
        (
            {"permanent_redirect": "http://p.test", "permanent_redirect_code": "299"},
            FixedRedirect("http://p.test", 301),
        ),
        (
            {"permanent_redirect": "http://p.test", "temporal_redirect": "http://t.test"},
            FixedRedirect("http://t.test", 302),  # temporal is read first
        ),
    ],
)
def test_redirect_codes_and_precedence(
    annotations: dict[str, str], redirect: FixedRedirect
) -> None:
    settings = parsed(**annotations).rewrites
    assert settings is not None and settings.redirect == redirect


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("rewrite-target", "$host/x", "names an nginx variable"),
        ("rewrite-target", "http://other.test/$1", "is an absolute URL"),
        ("rewrite-target", "/a b", "is not a path"),
        ("app-root", "app", "is not a path from the root"),
        ("app-root", "http://evil.test/", "is not a path from the root"),
        ("permanent-redirect", "/relative", "is not an http or https URL"),
        ("permanent-redirect", "javascript:alert", "is not an http or https URL"),
        ("permanent-redirect", "javascript:alert(1)", "holds characters other than"),
        ("temporal-redirect", "http://x.test/<script>", "holds characters other than"),
        ("x-forwarded-prefix", "/a$1", "is not a path"),
        ("upstream-vhost", "$http_x_target", "is not a host name"),
        ("upstream-vhost", "a.test\r\nX-Evil: 1", "is not a host name"),
    ],
)
def test_invalid_values_are_warned_about_and_ignored(name: str, value: str, complaint: str) -> None:
    settings = parsed(**{name.replace("-", "_"): value})
    assert settings.rewrites is None
    assert len(settings.warnings) == 1
    assert settings.warnings[0].startswith(f"{PREFIX}{name}: ")
    assert complaint in settings.warnings[0]


def test_codes_without_their_redirect_are_warned_about() -> None:
    settings = parsed(permanent_redirect_code="308", temporal_redirect_code="307")
    assert settings.rewrites is None
    assert settings.warnings == (
        f"{PREFIX}temporal-redirect-code is ignored without {PREFIX}temporal-redirect",
        f"{PREFIX}permanent-redirect-code is ignored without {PREFIX}permanent-redirect",
    )


def test_filters_of_a_path() -> None:
    settings = RewriteSettings(target="/$1", x_forwarded_prefix="/p", upstream_vhost="v.test")
    filters = settings.filters("/api/(.*)")
    assert filters is not None
    assert filters.request_headers == HeaderEdit(set=(("X-Forwarded-Prefix", "/p"),))
    assert filters.rewrite == Rewrite("v.test", None)
    assert filters.path_regex is not None and filters.path_regex.target == "/$1"
    # a target equal to the path rewrites nothing, and sends no X-Forwarded-Prefix
    same = settings.filters("/$1")
    assert same is not None and same.path_regex is None and same.request_headers is None
    assert RewriteSettings(target="/", x_forwarded_prefix="/p").filters("/") is None
    # a redirect ends the location: nothing else applies
    redirect = FixedRedirect("http://r.test", 301)
    only = RewriteSettings(target="/x", redirect=redirect, upstream_vhost="v").filters("/y")
    assert only is not None and only.fixed_redirect == redirect and only.rewrite is None


def test_a_rewritten_implementation_specific_path_is_a_regex() -> None:
    objects = [
        ingress_object("rw", "a.test", annotations=annotations_of(rewrite_target="/$1")),
        ingress_object("plain", "b.test"),
    ]
    for obj in objects:
        obj["spec"]["rules"][0]["http"]["paths"][0]["pathType"] = "ImplementationSpecific"
    snapshot = translate(objects, TranslateOptions())
    types = {route.host: route.path_type for route in snapshot.routes}
    assert types == {"a.test": PathType.REGEX, "b.test": PathType.PREFIX}


def test_app_root_is_an_exact_root_route_of_each_host_first_ingress_wins() -> None:
    first = ingress_object(
        "first",
        "a.test",
        ("/app", "web"),
        created="2024-01-01T00:00:00Z",
        annotations=annotations_of(app_root="/app"),
    )
    second = ingress_object(
        "second",
        "a.test",
        created="2024-02-01T00:00:00Z",
        annotations=annotations_of(app_root="/x"),
    )
    snapshot = translate([first, second], TranslateOptions())
    roots = [r for r in snapshot.routes if r.path_type is PathType.EXACT and r.path == "/"]
    assert len(roots) == 1
    (root,) = roots
    assert root.filters is not None
    assert root.filters.fixed_redirect == FixedRedirect("/app", 302, on_own_host=True)
    assert root.set_cookie is None and root.ingress == "first"
    assert warned(snapshot, "Ingress default/second: app-root for a.test ignored", "first")


def test_from_to_www_redirect_routes_the_other_name_unless_it_is_a_host() -> None:
    www = annotations_of(from_to_www_redirect="true")
    objects = [
        ingress_object("a", "a.test", annotations=www),
        ingress_object("b", "www.b.test", annotations=www),
        ingress_object("c", "c.test", annotations=www),
        ingress_object("www-c", "www.c.test"),
    ]
    snapshot = translate(objects, TranslateOptions())
    redirects = {
        r.host: r.filters.fixed_redirect.url
        for r in snapshot.routes
        if r.filters is not None and r.filters.fixed_redirect is not None
    }
    assert redirects == {"www.a.test": "a.test", "b.test": "www.b.test"}
    assert warned(snapshot, "Ingress default/c: from-to-www-redirect from www.c.test to c.test")


def test_routes_tells_each_routes_redirect_or_rewrite() -> None:
    objects = [
        ingress_object(
            "rw",
            "a.test",
            annotations=annotations_of(
                rewrite_target="/v2", x_forwarded_prefix="/api", upstream_vhost="in.test"
            ),
        ),
        ingress_object(
            "moved", "b.test", annotations=annotations_of(permanent_redirect="http://c.test")
        ),
    ]
    text = describe(translate(objects, TranslateOptions()))
    assert "rewrites the path to /v2, sends X-Forwarded-Prefix: /api, sends Host: in.test" in text
    assert "redirects 301 to http://c.test" in text
