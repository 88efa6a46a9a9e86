"""custom-headers without I/O: the annotation's value, the ConfigMap's entries checked as
ingress-nginx checks them, and the header lines a route sets
(docs/behaviour.md, "Custom response headers")."""

from __future__ import annotations

import pytest

from proxy.control.translate import TranslateOptions, translate
from proxy.control.translate.custom_headers import with_response_headers
from proxy.control.translate.describe import describe
from proxy.core.custom_headers import ResponseHeaders
from tests.unit.kube_fixtures import annotations_of, ingress_object, parsed

PREFIX = "nginx.ingress.kubernetes.io/"
MAPS = {
    ("shop", "headers"): {"X-B": "2", "x-a": "1; mode=block", "Set-Cookie": "a=b"},
    ("shop", "bad-name"): {"X A": "1"},
    ("shop", "bad-value"): {"X-A": "1\r\nX-B: 2"},
    ("other", "headers"): {"X-A": "1"},
}


def test_an_annotation_outside_basic_characters_is_ignored() -> None:
    settings = parsed(custom_headers="shop/head ers")
    assert settings.custom_headers is None
    assert settings.warnings == (
        f"{PREFIX}custom-headers: 'shop/head ers' is not a ConfigMap's namespace/name; ignored",
    )


def test_valid_entries_are_set_in_key_order_and_owned_ones_dropped() -> None:
    settings = with_response_headers(parsed(custom_headers="shop/headers"), "shop", MAPS)
    assert settings.denied is None
    assert settings.response_headers == ResponseHeaders(
        frozenset({b"x-a", b"x-b"}), b"X-B: 2\r\nx-a: 1; mode=block\r\n"
    )
    assert settings.warnings == (
        "custom-headers ConfigMap shop/headers: Set-Cookie is the proxy's own to write; ignored",
    )


@pytest.mark.parametrize(
    ("ref", "why"),
    [
        ("headers", "custom-headers 'headers' is not namespace/name"),
        ("shop/missing", "custom-headers ConfigMap shop/missing not found"),
        ("other/headers", "ConfigMaps of other namespaces are not allowed"),
        ("shop/bad-name", "'X A' is not a header name"),
        ("shop/bad-value", "the value of X-A holds characters a header value may not"),
    ],
)
def test_an_unusable_config_map_denies_the_paths(ref: str, why: str) -> None:
    settings = with_response_headers(parsed(custom_headers=ref), "shop", MAPS)
    assert settings.denied is not None and why in settings.denied
    assert settings.response_headers is None
    assert settings.warnings[-1].endswith("; its paths answer 503")


def test_only_set_cookie_leaves_no_headers_and_no_denial() -> None:
    maps = {("shop", "cookie"): {"Set-Cookie": "a=b"}}
    settings = with_response_headers(parsed(custom_headers="shop/cookie"), "shop", maps)
    assert (settings.denied, settings.response_headers) == (None, None)


def test_replaced_drops_the_upstream_s_copies_in_any_case() -> None:
    headers = ResponseHeaders.of({"X-A": "1"})
    upstream = [(b"x-a", b"old"), (b"X-A", b"older"), (b"X-Kept", b"yes")]
    assert headers.replaced(upstream) == [(b"X-Kept", b"yes")]


def test_routes_names_the_headers_a_path_sets() -> None:
    ingress = ingress_object(
        "shop", "shop.test", annotations=annotations_of(custom_headers="default/headers")
    )
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "headers", "namespace": "default"},
        "data": {"X-B": "2", "X-A": "1"},
    }
    text = describe(translate([ingress, config_map], TranslateOptions()))
    assert "    sets headers X-A, X-B" in text.splitlines()


def test_an_own_answer_gets_the_headers_in_place_of_its_own() -> None:
    answer = (
        b"HTTP/1.1 308 Permanent Redirect\r\nLocation: https://shop.test/\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 23\r\n\r\n"
        b"308 Permanent Redirect\n"
    )
    headers = ResponseHeaders.of({"location": "https://elsewhere.test/", "X-A": "1"})
    assert headers.on_own_answer(answer) == (
        b"HTTP/1.1 308 Permanent Redirect\r\nX-A: 1\r\nlocation: https://elsewhere.test/\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 23\r\n\r\n"
        b"308 Permanent Redirect\n"
    )


def test_strip_drops_the_lines_the_headers_override() -> None:
    headers = ResponseHeaders.of({"Access-Control-Allow-Origin": "https://shop.test"})
    lines = b"Access-Control-Allow-Origin: *\r\nAccess-Control-Max-Age: 5\r\n"
    assert headers.strip(lines) == b"Access-Control-Max-Age: 5\r\n"
