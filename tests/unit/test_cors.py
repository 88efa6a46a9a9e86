"""CORS without I/O: the cors-* annotations as ingress-nginx's parser reads them (cors/main.go),
and which origins a policy allows with which header lines (docs/behaviour.md, "CORS")."""

from __future__ import annotations

import pytest

from proxy.control.translate import TranslateOptions, translate
from proxy.control.translate.describe import describe
from proxy.core.cors import CorsPolicy, preflight_response, request_origin, with_lines
from tests.unit.kube_fixtures import annotations_of, find, ingress_object, parsed


def test_enable_cors_alone_takes_ingress_nginx_s_defaults() -> None:
    settings = parsed(enable_cors="true")
    assert settings.cors == CorsPolicy()
    assert settings.warnings == ()


def test_without_enable_cors_there_is_no_policy_and_the_others_are_warned_about() -> None:
    settings = parsed(enable_cors="false", cors_max_age="5")
    assert settings.cors is None
    assert settings.warnings == (
        "nginx.ingress.kubernetes.io/cors-max-age is ignored without"
        ' nginx.ingress.kubernetes.io/enable-cors: "true"',
    )


def test_valid_values_are_taken() -> None:
    settings = parsed(
        enable_cors="true",
        cors_allow_origin="https://a.example, http://*.b.example:8080, null",
        cors_allow_methods="POST, GET",
        cors_allow_headers="X-One, X_Two",
        cors_allow_credentials="false",
        cors_expose_headers="X-Total, *",
        cors_max_age="-5",  # Go's Atoi takes a sign, and nginx sends it as it is
    )
    assert settings.cors == CorsPolicy(
        origins=("https://a.example", "http://*.b.example:8080", "null"),
        methods="POST, GET",
        headers="X-One, X_Two",
        credentials=False,
        expose="X-Total, *",
        max_age=-5,
    )
    assert settings.warnings == ()


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        ("cors-allow-methods", "GET;POST"),
        ("cors-allow-methods", "GET,\nXEvil"),  # no header splitting
        ("cors-expose-headers", "X-Total,\rXEvil"),
        ("cors-allow-methods", "GET,\u2028POST"),  # Go's \s is ASCII only
        ("cors-allow-headers", "X-One: 1"),
        ("cors-expose-headers", "X.Total"),
        ("cors-max-age", "1h"),
        ("cors-max-age", "9223372036854775808"),  # beyond Go's int
        ("cors-allow-origin", "https://example.com:\u0664\u0664\u0663"),  # ASCII digits only
        ("cors-allow-credentials", "yes"),
        ("cors-allow-origin", "https://example.com/path"),
        ("cors-allow-origin", "https://exa mple.com\nX-Evil: 1"),
    ],
)
def test_an_invalid_value_is_warned_about_and_takes_the_default(
    annotation: str, value: str
) -> None:
    settings = parsed(enable_cors="true", **{annotation.replace("-", "_"): value})
    assert settings.cors == CorsPolicy()
    assert len(settings.warnings) == 1 and annotation in settings.warnings[0]


def test_an_origin_without_a_scheme_is_skipped_with_a_warning() -> None:
    settings = parsed(enable_cors="true", cors_allow_origin="example.com, https://example.com")
    assert settings.cors is not None and settings.cors.origins == ("https://example.com",)
    assert "'example.com'" in settings.warnings[0] and "skipped" in settings.warnings[0]


def test_origins_that_are_all_skipped_allow_none() -> None:
    settings = parsed(enable_cors="true", cors_allow_origin="example.com")
    assert settings.cors is not None
    assert settings.cors.lines(b"example.com") == b""
    assert settings.cors.lines(None) == b""


def test_a_star_among_valid_origins_allows_every_origin() -> None:
    settings = parsed(enable_cors="true", cors_allow_origin="https://a.example,*")
    assert settings.cors is not None and settings.cors.origins is None


def test_the_header_lines_in_nginx_tmpl_s_order() -> None:
    policy = CorsPolicy(origins=("https://*.example.com",), expose="X-Total", max_age=60)
    assert policy.lines(b"https://shop.example.com") == (
        b"Access-Control-Allow-Origin: https://shop.example.com\r\n"
        b"Access-Control-Allow-Credentials: true\r\n"
        b"Access-Control-Allow-Methods: GET, PUT, POST, DELETE, PATCH, OPTIONS\r\n"
        b"Access-Control-Allow-Headers: DNT,Keep-Alive,User-Agent,X-Requested-With,"
        b"If-Modified-Since,Cache-Control,Content-Type,Range,Authorization\r\n"
        b"Access-Control-Expose-Headers: X-Total\r\n"
        b"Access-Control-Max-Age: 60\r\n"
    )


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (b"https://example.com", True),
        (b"https://shop.example.com", True),
        (b"https://SHOP.Example.com", True),
        (b"https://shop-2.example.com", True),
        (b"https://evil-example.com", False),
        (b"https://example.com.evil.net", False),
        (b"https://a.b.example.com", False),
        (b"https://shop_1.example.com", False),  # the wildcard is letters, digits and -
        (b"https://example.com.", False),
        (b"xhttps://example.com", False),
        (b"https://exampleXcom", False),
        (b"", False),
    ],
)
def test_which_origins_a_list_allows(origin: bytes, allowed: bool) -> None:
    policy = CorsPolicy(origins=("https://example.com", "https://*.example.com"))
    assert bool(policy.lines(origin)) is allowed


def test_every_origin_allowed_answers_star_even_without_an_origin() -> None:
    lines = CorsPolicy().lines(None)
    assert lines.startswith(b"Access-Control-Allow-Origin: *\r\n")
    assert CorsPolicy().lines(b"https://any.example") == lines


def test_the_first_origin_header_counts() -> None:
    headers = [(b"Accept", b"*/*"), (b"ORIGIN", b"https://a.example"), (b"Origin", b"x")]
    assert request_origin(headers) == b"https://a.example"
    assert request_origin([(b"Origins", b"x")]) is None


def test_a_preflight_answer_has_the_lines_after_its_status_line() -> None:
    answer = with_lines(preflight_response(False), b"A: 1\r\n")
    assert answer == b"HTTP/1.1 204 No Content\r\nA: 1\r\nConnection: keep-alive\r\n\r\n"


def test_each_path_of_the_ingress_takes_its_policy_and_routes_shows_it() -> None:
    written = annotations_of(enable_cors="true", cors_allow_origin="https://*.example.com")
    snapshot = translate(
        [
            ingress_object("api", "api.test", ("/", "web"), ("/v2", "web"), annotations=written),
            ingress_object("open", "open.test", annotations=annotations_of(enable_cors="true")),
            ingress_object("plain", "plain.test"),
        ],
        TranslateOptions(),
    )
    policy = CorsPolicy(origins=("https://*.example.com",))
    assert find(snapshot, "api.test", "/").cors == policy
    assert find(snapshot, "api.test", "/v2").cors == policy
    assert find(snapshot, "plain.test", "/").cors is None
    text = describe(snapshot)
    assert text.count("CORS: https://*.example.com") == 2
    assert text.count("CORS: every origin") == 1
