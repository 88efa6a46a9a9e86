"""proxy-redirect-* and proxy-cookie-* without I/O: the annotations read as ingress-nginx reads
them, the directive its template writes, and what nginx's rewrites do to header values
(docs/behaviour.md, "Location and cookie rewrites")."""

from __future__ import annotations

import pytest

from proxy.control.translate import TranslateOptions, translate
from proxy.control.translate.describe import describe
from proxy.core.response_edits import ResponseEdits, rewrite
from tests.unit.kube_fixtures import annotations_of, ingress_object, parsed

PREFIX = "nginx.ingress.kubernetes.io/"
ORIGIN = b"http://shop.example"


def _location(edits: ResponseEdits | None, value: bytes) -> bytes:
    assert edits is not None
    return dict(edits.applied([(b"Location", value)], ORIGIN))[b"Location"]


def test_neither_annotation_is_proxy_redirect_off() -> None:
    assert parsed().response_edits is None
    settings = parsed(proxy_redirect_to="goodbye.com")  # from stays off
    assert settings.response_edits is None
    assert settings.warnings == (
        f"{PREFIX}proxy-redirect-to is ignored with proxy-redirect-from off",
    )


def test_should_set_proxy_redirect_to_off() -> None:
    # the Go test of the name: from "off" writes `proxy_redirect off;` whatever `to` says
    assert parsed(proxy_redirect_from="off", proxy_redirect_to="goodbye.com").response_edits is None


def test_should_set_proxy_redirect_to_default() -> None:
    # `proxy_redirect default;`: proxy_pass http://upstream_balancer's own address becomes "/"
    edits = parsed(proxy_redirect_from="default", proxy_redirect_to="goodbye.com").response_edits
    assert _location(edits, b"http://upstream_balancer/a?b") == ORIGIN + b"/a?b"
    assert _location(edits, b"http://hello.com/a") == b"http://hello.com/a"


def test_default_with_backend_protocol_https_names_https() -> None:
    settings = parsed(proxy_redirect_from="default", backend_protocol="HTTPS")
    assert _location(settings.response_edits, b"https://upstream_balancer/x") == ORIGIN + b"/x"


def test_from_without_to_leaves_nginx_default() -> None:
    # `to` off: the template writes no proxy_redirect, and nginx's default is `default`
    settings = parsed(proxy_redirect_from="hello.com")
    assert settings.warnings == (
        f"{PREFIX}proxy-redirect-from is ignored without {PREFIX}proxy-redirect-to: nginx's"
        " proxy_redirect default applies",
    )
    edits = settings.response_edits
    assert _location(edits, b"http://upstream_balancer/") == ORIGIN + b"/"
    assert _location(edits, b"hello.com/x") == b"hello.com/x"


def test_should_set_proxy_redirect_to_hello_com_goodbye_com() -> None:
    edits = parsed(proxy_redirect_from="hello.com", proxy_redirect_to="goodbye.com").response_edits
    assert _location(edits, b"hello.com/path?q=1") == b"goodbye.com/path?q=1"
    # a prefix, compared byte for byte as nginx's ngx_rstrncmp
    assert _location(edits, b"http://hello.com/") == b"http://hello.com/"
    assert _location(edits, b"HELLO.com/x") == b"HELLO.com/x"


def test_a_rewrite_to_a_path_is_made_absolute_but_an_upstream_path_is_not() -> None:
    edits = parsed(
        proxy_redirect_from="http://internal:8080/", proxy_redirect_to="/"
    ).response_edits
    assert _location(edits, b"http://internal:8080/a/b") == b"http://shop.example/a/b"
    assert _location(edits, b"/elsewhere") == b"/elsewhere"  # no match: as the upstream sent it


def test_refresh_is_rewritten_after_url_and_not_made_absolute() -> None:
    edits = parsed(proxy_redirect_from="http://internal/", proxy_redirect_to="/").response_edits
    assert edits is not None
    headers = [(b"Refresh", b"5; URL=http://internal/next"), (b"Refresh", b"5")]
    assert edits.applied(headers, ORIGIN) == [(b"Refresh", b"5; URL=/next"), (b"Refresh", b"5")]


def test_a_regex_from_replaces_the_whole_value() -> None:
    edits = parsed(
        proxy_redirect_from="~internal.?:80", proxy_redirect_to="https://shop/"
    ).response_edits
    assert _location(edits, b"http://internal:80/deep/path") == b"https://shop/"
    assert _location(edits, b"http://other/") == b"http://other/"


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        ("proxy_redirect_from", "hello.com goodbye.com"),  # nginx would take three parameters
        ("proxy_redirect_from", "hello.com;"),
        ("proxy_redirect_from", "~?"),
        ("proxy_cookie_path", "/one/"),  # one word that is not off: nginx refuses it
        ("proxy_cookie_path", "/a /b /c"),
        ("proxy_cookie_domain", "localhost example.org;"),
        ("proxy_cookie_domain", "localhost"),
    ],
)
def test_a_value_nginx_could_not_read_is_ignored_with_a_warning(
    annotation: str, value: str
) -> None:
    settings = parsed(**{annotation: value})
    assert settings.response_edits is None
    name = annotation.replace("_", "-")
    assert len(settings.warnings) == 1
    assert settings.warnings[0].startswith(f"{PREFIX}{name}: ")
    assert settings.warnings[0].endswith("; ignored")


def test_should_setup_proxy_cookies() -> None:
    settings = parsed(proxy_cookie_domain="localhost example.org", proxy_cookie_path="/one/ /")
    edits = settings.response_edits
    assert edits is not None and settings.warnings == ()
    assert (
        edits.cookie(b"a=b; Path=/one/x; Domain=localhost") == b"a=b; Path=/x; Domain=example.org"
    )
    # Domain: the whole value in any case, a leading dot kept; Path: a prefix, case-sensitive
    assert (
        edits.cookie(b"a=b;domain=.LocalHost;path=/ONE/") == b"a=b; domain=.example.org; path=/ONE/"
    )
    assert edits.cookie(b"a=b; Domain=localhost.com") == b"a=b; Domain=localhost.com"


def test_a_cookie_untouched_keeps_its_spelling() -> None:
    edits = ResponseEdits(cookie_path=rewrite("/one/", "/"))
    for value in (b"a = b ;  Path=/two/ ;HttpOnly", b"noequals; Path=/one/", b"", b";;"):
        assert edits.cookie(value) == value


def test_a_rewritten_cookie_is_joined_as_nginx_joins_it() -> None:
    edits = ResponseEdits(cookie_path=rewrite("/one/", "/"))
    value = b" a = b ;  Path = /one/x ;HttpOnly;;Secure "
    assert edits.cookie(value) == b"a=b; Path=/x; HttpOnly; ; Secure"


def test_cookie_domain_off_and_regexes() -> None:
    assert parsed(proxy_cookie_domain="off", proxy_cookie_path="off").response_edits is None
    edits = ResponseEdits(
        cookie_domain=rewrite("~^internal\\.", "example.org", domain=True),
        cookie_path=rewrite("~*^/APP", "/"),
    )
    assert (
        edits.cookie(b"a=1; Domain=INTERNAL.svc; Path=/app/x") == b"a=1; Domain=example.org; Path=/"
    )


def test_only_location_refresh_and_set_cookie_change() -> None:
    edits = ResponseEdits(redirect=rewrite("x", "y"), cookie_path=rewrite("x", "y"))
    headers = [(b"Content-Location", b"x1"), (b"X-Location", b"x"), (b"LOCATION", b"x2")]
    assert edits.applied(headers, ORIGIN) == [*headers[:2], (b"LOCATION", b"y2")]


def test_a_huge_location_is_rewritten_once_at_its_start() -> None:
    edits = ResponseEdits(redirect=rewrite("http://a/", "http://b/"))
    value = b"http://a/" + b"http://a/" * 10_000
    assert _location(edits, value) == b"http://b/" + b"http://a/" * 10_000


def test_routes_shows_the_rewrites_and_satisfy() -> None:
    annotations = annotations_of(
        proxy_redirect_from="~internal",
        proxy_redirect_to="https://shop/",
        proxy_cookie_domain=".internal example.org",
        proxy_cookie_path="/app/ /",
        satisfy="any",
    )
    objects = [ingress_object("web", "app.test", annotations=annotations)]
    text = describe(translate(objects, TranslateOptions()))
    note = (
        "rewrites Location ~internal to https://shop/; rewrites cookie Domain internal to"
        " example.org; rewrites cookie Path /app/ to /; satisfy any"
    )
    assert [line for line in text.splitlines() if note in line]
