"""custom-http-errors, default-backend and disable-proxy-intercept-errors without I/O: the
annotations' validation, the ErrorPages each route gets, and the requests the default backend is
sent (docs/behaviour.md, "Custom error pages")."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.control.translate import TranslateOptions, translate
from proxy.control.translate.describe import describe
from proxy.core.error_pages import error_request, stand_in_request
from proxy.core.headers import Request
from proxy.core.routing import Snapshot
from tests.unit.kube_fixtures import annotations_of, find, ingress_object, parsed, warned

PREFIX = "nginx.ingress.kubernetes.io/"


def test_codes_take_spaces_and_empty_items_as_ingress_nginx() -> None:
    settings = parsed(custom_http_errors=" 404, 503,,500 ,404")
    assert settings.error_codes == frozenset({404, 500, 503})
    assert settings.warnings == ()


@pytest.mark.parametrize("text", ["200", "404,abc", "600", "4044", "-404"])
def test_a_code_outside_400_to_599_refuses_the_annotation(text: str) -> None:
    settings = parsed(custom_http_errors=text)
    assert settings.error_codes == frozenset()
    assert len(settings.warnings) == 1
    assert settings.warnings[0].startswith(f"{PREFIX}custom-http-errors: ")


@pytest.mark.parametrize("name", ["Echo", "1echo", "echo_backend", "ns/echo", "a" * 64])
def test_default_backend_is_a_service_name(name: str) -> None:
    settings = parsed(default_backend=name)
    assert settings.default_backend is None
    assert settings.warnings == (
        f"{PREFIX}default-backend: {name!r} is not a Service name (a DNS-1035 label); ignored",
    )


def test_interception_is_on_unless_disabled() -> None:
    assert parsed(custom_http_errors="404").intercept_errors
    assert not parsed(
        custom_http_errors="404", disable_proxy_intercept_errors="true"
    ).intercept_errors


def service(name: str, *ports: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"ports": [{"name": f"p{port}", "port": port} for port in ports]},
    }


def endpoint_slice(service_name: str, port: int, *addresses: str, ready: bool = True) -> Any:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service_name}-{port}",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "ports": [{"name": f"p{port}", "port": port, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [address], "conditions": {"ready": ready}} for address in addresses
        ],
    }


def snapshot(*objects: dict[str, Any], **annotations: str) -> Snapshot:
    written = annotations_of(**annotations)
    return translate(
        [
            ingress_object("shop", "shop.test", annotations=written),
            service("web", 80),
            *objects,
        ],
        TranslateOptions(),
    )


def test_a_route_with_codes_and_a_default_backend_gets_both() -> None:
    world = (
        endpoint_slice("web", 80, "10.0.0.1"),
        service("errors", 8080, 9090),
        endpoint_slice("errors", 8080, "10.0.1.1"),
    )
    built = snapshot(*world, custom_http_errors="404,503", default_backend="errors")
    route = find(built, "shop.test", "/")
    assert route.cluster.name == "default-web-80"
    pages = route.errors
    assert pages is not None and not pages.stands_in
    assert pages.codes == pages.intercepted == frozenset({404, 503})
    assert pages.about == (
        (b"X-Namespace", b"default"),
        (b"X-Ingress-Name", b"shop"),
        (b"X-Service-Name", b"web"),
        (b"X-Service-Port", b"80"),
    )
    backend = pages.backend
    assert backend is not None and backend.errors is None
    # the Service's first port, named as ingress-nginx names the upstream
    assert backend.cluster.name == "custom-default-backend-default-errors"
    assert [e.node for e in backend.cluster.endpoints] == ["10.0.1.1:8080"]
    assert backend.service == "errors" and not backend.sets_cookie
    assert backend.cluster in built.clusters  # (so metrics and pools know it)


def test_disabled_interception_keeps_the_codes_for_the_proxy_s_own_answers() -> None:
    built = snapshot(
        endpoint_slice("web", 80, "10.0.0.1"),
        custom_http_errors="404",
        disable_proxy_intercept_errors="true",
    )
    pages = find(built, "shop.test", "/").errors
    assert pages is not None
    assert (pages.codes, pages.intercepted, pages.backend) == (frozenset({404}), frozenset(), None)


@pytest.mark.parametrize(
    ("objects", "why"),
    [
        ((), "default-backend default/errors not found"),
        ((service("errors"),), "default-backend default/errors has no ports"),
        ((service("errors", 80),), "default-backend default/errors: no ready endpoint"),
        (
            (service("errors", 80), endpoint_slice("errors", 80, "10.0.1.1", ready=False)),
            "default-backend default/errors: no ready endpoint",
        ),
    ],
)
def test_an_unusable_default_backend_leaves_the_built_in_404(
    objects: tuple[dict[str, Any], ...], why: str
) -> None:
    built = snapshot(
        endpoint_slice("web", 80, "10.0.0.1"),
        *objects,
        custom_http_errors="500",
        default_backend="errors",
    )
    pages = find(built, "shop.test", "/").errors
    assert pages is not None and pages.backend is None
    assert warned(built, "Ingress default/shop: ", why, "error pages are the built-in 404")


def test_a_default_backend_stands_in_for_a_service_without_ready_endpoints() -> None:
    built = snapshot(
        endpoint_slice("web", 80, "10.0.0.1", ready=False),
        service("errors", 80),
        endpoint_slice("errors", 80, "10.0.1.1"),
        default_backend="errors",
    )
    route = find(built, "shop.test", "/")
    assert route.cluster.name == "custom-default-backend-default-errors"
    pages = route.errors
    assert pages is not None and pages.stands_in
    assert pages.codes == pages.intercepted == frozenset()
    assert route.service == "web"  # (the location's, for X-Service-Name and the metrics)


def test_a_default_backend_alone_changes_nothing_while_the_service_has_endpoints() -> None:
    built = snapshot(
        endpoint_slice("web", 80, "10.0.0.1"),
        service("errors", 80),
        endpoint_slice("errors", 80, "10.0.1.1"),
        default_backend="errors",
    )
    route = find(built, "shop.test", "/")
    assert route.errors is None and route.cluster.name == "default-web-80"


def test_a_denied_path_is_not_stood_in_for() -> None:
    built = snapshot(
        endpoint_slice("web", 80, "10.0.0.1"),
        service("errors", 80),
        endpoint_slice("errors", 80, "10.0.1.1"),
        default_backend="errors",
        allowlist_source_range="not-an-address",
    )
    route = find(built, "shop.test", "/")
    assert route.cluster.name.endswith("(denied)")


def request(*headers: tuple[bytes, bytes], target: bytes = b"/a?b=c") -> Request:
    return Request(
        method=b"POST",
        target=target,
        http11=True,
        forward=list(headers),
        spliced=b"POST /a?b=c HTTP/1.1\r\n",
        host="shop.test",
        host_header=b"shop.test",
        cookie=None,
        user_agent=None,
        forwarded_for=None,
        request_id=b"rid",
        content_length=12,
        chunked=False,
        upgrade=None,
    )


ABOUT = ((b"X-Namespace", b"default"), (b"X-Ingress-Name", b"shop"))


def test_the_error_request_asks_for_the_root_without_a_body_and_names_the_error() -> None:
    sent = request(
        (b"Accept", b"text/html"), (b"x-code", b"200"), (b"X-Original-URI", b"/x"), (b"A", b"1")
    )
    asked = error_request(sent, 503, ABOUT)
    assert (asked.method, asked.target, asked.spliced) == (b"POST", b"/", None)
    assert (asked.content_length, asked.chunked, asked.has_body) == (None, False, False)
    assert asked.request_id == b"rid" and asked.host_header == b"shop.test"
    assert asked.forward == [
        (b"Accept", b"text/html"),
        (b"A", b"1"),
        (b"X-Code", b"503"),
        (b"X-Format", b"text/html"),
        (b"X-Original-URI", b"/a?b=c"),
        *ABOUT,
    ]


def test_no_accept_means_no_x_format() -> None:
    asked = error_request(request((b"Accept", b"")), 404, ())
    assert asked.forward == [(b"Accept", b""), (b"X-Code", b"404"), (b"X-Original-URI", b"/a?b=c")]


def test_a_stand_in_request_keeps_the_target_and_body() -> None:
    sent = request((b"X-Code", b"1"), (b"X-Original-URI", b"/kept"))
    asked = stand_in_request(sent, ABOUT)
    assert (asked.target, asked.content_length, asked.spliced) == (b"/a?b=c", 12, None)
    assert asked.forward == [(b"X-Original-URI", b"/kept"), (b"X-Code", b"503"), *ABOUT]


def test_routes_shows_the_error_pages() -> None:
    built = snapshot(
        endpoint_slice("web", 80, "10.0.0.1", ready=False),
        service("errors", 80),
        endpoint_slice("errors", 80, "10.0.1.1"),
        custom_http_errors="503,404",
        default_backend="errors",
    )
    assert (
        "    its Service has no ready endpoint: served by the default backend; errors 404,503"
        " answered by custom-default-backend-default-errors"
    ) in describe(built).splitlines()
    built = snapshot(custom_http_errors="500", disable_proxy_intercept_errors="true")
    assert (
        "    errors 500 (the proxy's own answers only) answered by the built-in 404"
    ) in describe(built).splitlines()


def test_a_stand_in_keeps_the_path_s_protocol_and_error_pages_speak_plain_http() -> None:
    built = snapshot(
        endpoint_slice("web", 80, "10.0.0.1", ready=False),
        service("errors", 80),
        endpoint_slice("errors", 80, "10.0.1.1"),
        default_backend="errors",
        custom_http_errors="502",
        backend_protocol="HTTPS",
    )
    route = find(built, "shop.test", "/")
    pages = route.errors
    assert pages is not None and pages.stands_in and pages.backend is not None
    assert route.upstream.tls is not None  # (nginx's proxy_pass https:// in the location)
    assert pages.backend.upstream.tls is None  # (its @custom_ location's proxy_pass http://)
