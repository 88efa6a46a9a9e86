"""backend-protocol, proxy-ssl-* and service-upstream without sockets: the annotation values as
ingress-nginx's parsers take them (annotations/backendprotocol, proxyssl, serviceupstream and
their main_test.go), what translation makes of them, and the upstream pools kept per TLS setting
(docs/behaviour.md, "Upstream TLS" and "service-upstream")."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from proxy.control.translate import TranslateOptions, translate
from proxy.control.translate.annotations import PREFIX
from proxy.control.translate.describe import describe
from proxy.control.translate.proxy_ssl import ProxySsl
from proxy.core.model import Endpoint, UpstreamPolicy, UpstreamTls
from proxy.core.routing import Route, Snapshot
from proxy.dataplane.upstream import Pools
from proxy.dataplane.upstream_tls import certificate_names, client_tls, matches
from tests.certs import self_signed
from tests.unit.kube_fixtures import ingress_object, parsed, warned

NAMESPACE = "shop"


# --- backend-protocol --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "protocol"),
    [("HTTPS", "HTTPS"), ("https", "HTTPS"), ("Grpc", "GRPC"), ("auto_http", "AUTO_HTTP")],
)
def test_backend_protocol_is_one_of_ingress_nginx_s_options_in_any_case(
    written: str, protocol: str
) -> None:
    settings = parsed(backend_protocol=written)
    assert (settings.backend_protocol, settings.warnings) == (protocol, ())


def test_an_unknown_backend_protocol_is_http_with_a_warning() -> None:
    settings = parsed(backend_protocol="h2c")
    assert settings.backend_protocol == "HTTP"
    assert settings.warnings == (
        f"{PREFIX}backend-protocol: 'h2c' is not one of AUTO_HTTP, FCGI, GRPC, GRPCS, HTTP, HTTPS;"
        " ignored",
    )


def test_parse_annotations() -> None:
    """backendprotocol/main_test.go: the value is trimmed."""
    assert parsed(backend_protocol="  HTTPS  ").backend_protocol == "HTTPS"


def test_parse_invalid_annotations() -> None:
    assert parsed().backend_protocol == "HTTP"
    assert parsed(backend_protocol="INVALID").backend_protocol == "HTTP"


# --- service-upstream (serviceupstream/main_test.go) -------------------------------------------


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        pytest.param("true", True, id="ServiceUpstreamEnabled"),
        pytest.param("false", False, id="ServiceUpstreamSetFalse"),
        pytest.param(None, False, id="WithDefaultConfig"),
    ],
)
def test_ingress_annotation_service_upstream(written: str | None, expected: bool) -> None:
    settings = parsed(**({} if written is None else {"service_upstream": written}))
    assert (settings.service_upstream, settings.warnings) == (expected, ())


# --- proxy-ssl-* (proxyssl/main_test.go) -------------------------------------------------------


def test_annotations() -> None:
    settings = parsed(
        proxy_ssl_secret="default/demo-secret",
        proxy_ssl_ciphers="HIGH:-SHA",
        proxy_ssl_protocols="TLSv1.3 TLSv1.2",
        proxy_ssl_server_name="on",
        proxy_ssl_verify="on",
        proxy_ssl_name="backend.internal",
    )
    assert settings.proxy_ssl == ProxySsl(
        secret="default/demo-secret",
        verify=True,
        name="backend.internal",
        sni=True,
        protocols=("TLSv1.2", "TLSv1.3"),  # sorted, as there
        ciphers="HIGH:-SHA",
    )
    assert settings.warnings == ()


def test_invalid_annotations() -> None:
    """Each invalid value falls back to its default with a warning; the Secret still counts."""
    settings = parsed(
        proxy_ssl_secret="default/demo-secret",
        proxy_ssl_protocols="TLSv111 SSLv1",
        proxy_ssl_server_name="w00t",
        proxy_ssl_verify="w00t",
        proxy_ssl_ciphers="HIGH;rm -rf",
        proxy_ssl_name="$host",
    )
    assert settings.proxy_ssl == ProxySsl(secret="default/demo-secret")
    assert ProxySsl("x").protocols == ("TLSv1.2",)  # ingress-nginx's default with a Secret
    assert len(settings.warnings) == 5
    assert (
        f"{PREFIX}proxy-ssl-name: '$host' is not a host name (nginx variables are not"
        in (settings.warnings[1])
    )


def test_proxy_ssl_settings_need_a_secret_as_in_ingress_nginx() -> None:
    settings = parsed(proxy_ssl_verify="on", proxy_ssl_name="backend.internal")
    assert settings.proxy_ssl is None
    assert settings.warnings == (
        f"{PREFIX}proxy-ssl-verify is ignored without {PREFIX}proxy-ssl-secret",
        f"{PREFIX}proxy-ssl-name is ignored without {PREFIX}proxy-ssl-secret",
    )


# --- translation -------------------------------------------------------------------------------


def objects(*extra: dict[str, Any], ingresses: int = 1, **annotations: str) -> list[Any]:
    """Ingress `web` (app.test) with `annotations`, more Ingresses `other-N` without (other
    hosts, same backend), Service `web` with a cluster IP, a slice of one pod, and `extra`."""
    written = {PREFIX + name.replace("_", "-"): value for name, value in annotations.items()}
    hosts = {"web": "app.test", **{f"other-{n}": f"other{n}.test" for n in range(1, ingresses)}}
    return [
        *(
            ingress(name, host, index, written if name == "web" else {})
            for index, (name, host) in enumerate(hosts.items())
        ),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": NAMESPACE},
            "spec": {
                "clusterIP": "10.96.0.7",
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            },
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "web-1",
                "namespace": NAMESPACE,
                "labels": {"kubernetes.io/service-name": "web"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": ["10.244.0.5"]}],
        },
        *extra,
    ]


def ingress(name: str, host: str, age: int, annotations: dict[str, str]) -> dict[str, Any]:
    """Ingress `name` for `host`, its `/` to Service web port 80; older for a lower `age`."""
    created = f"2024-01-0{age + 1}T00:00:00Z"
    return ingress_object(name, host, namespace=NAMESPACE, created=created, annotations=annotations)


def secret(name: str = "backend", namespace: str = NAMESPACE, **keys: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": {key.replace("_", "."): value.decode() for key, value in keys.items()},
    }


def route_of(snapshot: Snapshot, host: str = "app.test") -> Route:
    route = snapshot.table.match(host, "/")
    assert route is not None
    return route


CA, _ = self_signed("backend-ca")
CLIENT_CHAIN, CLIENT_KEY = self_signed("client")


def test_https_without_a_secret_is_tls_unverified_without_sni() -> None:
    route = route_of(translate(objects(backend_protocol="HTTPS"), TranslateOptions()))
    assert route.upstream.tls == UpstreamTls()
    assert UpstreamTls().name == "upstream_balancer"  # nginx's $proxy_host in ingress-nginx
    assert [e.node for e in route.cluster.endpoints] == ["10.244.0.5:8080"]


def test_https_with_a_secret_takes_its_ca_and_client_certificate() -> None:
    snapshot = translate(
        objects(
            secret(ca_crt=CA, tls_crt=CLIENT_CHAIN, tls_key=CLIENT_KEY),
            backend_protocol="HTTPS",
            proxy_ssl_secret=f"{NAMESPACE}/backend",
            proxy_ssl_verify="on",
            proxy_ssl_name="backend.internal",
            proxy_ssl_server_name="on",
        ),
        TranslateOptions(),
    )
    assert route_of(snapshot).upstream.tls == UpstreamTls(
        source=f"Secret {NAMESPACE}/backend",
        ca=CA,
        chain=CLIENT_CHAIN,
        key=CLIENT_KEY,
        verify=True,
        name="backend.internal",
        sni=True,
        protocols=("TLSv1.2",),
    )
    assert snapshot.warnings == ()


def test_without_ca_crt_only_the_name_settings_apply_as_in_ingress_nginx() -> None:
    """ingress-nginx writes proxy_ssl_verify, the protocols and the client certificate only
    when the Secret has a ca.crt."""
    snapshot = translate(
        objects(
            secret(tls_crt=CLIENT_CHAIN, tls_key=CLIENT_KEY),
            backend_protocol="HTTPS",
            proxy_ssl_secret=f"{NAMESPACE}/backend",
            proxy_ssl_verify="on",
            proxy_ssl_server_name="on",
            proxy_ssl_name="backend.internal",
        ),
        TranslateOptions(),
    )
    assert route_of(snapshot).upstream.tls == UpstreamTls(
        source=f"Secret {NAMESPACE}/backend", name="backend.internal", sni=True
    )


def test_routes_shows_what_the_upstream_is_spoken_to_in() -> None:
    snapshot = translate(
        objects(
            secret(ca_crt=CA, tls_crt=CLIENT_CHAIN, tls_key=CLIENT_KEY),
            backend_protocol="HTTPS",
            proxy_ssl_secret=f"{NAMESPACE}/backend",
            proxy_ssl_verify="on",
            proxy_ssl_name="backend.internal",
            proxy_ssl_server_name="on",
        ),
        TranslateOptions(),
    )
    assert (
        "proxy: https (verified for backend.internal, SNI backend.internal, client certificate,"
        f" Secret {NAMESPACE}/backend)"
    ) in describe(snapshot)


def test_a_secret_with_plain_http_changes_nothing() -> None:
    snapshot = translate(
        objects(secret(ca_crt=CA), proxy_ssl_secret=f"{NAMESPACE}/backend"), TranslateOptions()
    )
    assert route_of(snapshot).upstream == UpstreamPolicy()


@pytest.mark.parametrize(
    ("ref", "extra", "why"),
    [
        ("backend", [], "proxy-ssl-secret 'backend' is not namespace/name"),
        ("other/backend", [secret(namespace="other", ca_crt=CA)],
         "proxy-ssl-secret other/backend: Secrets of other namespaces are not allowed"),
        (f"{NAMESPACE}/backend", [], f"proxy-ssl-secret {NAMESPACE}/backend not found"),
        (f"{NAMESPACE}/backend", [secret(tls_crt=CLIENT_CHAIN)],
         f"proxy-ssl-secret {NAMESPACE}/backend has neither ca.crt nor tls.crt and tls.key"),
        (f"{NAMESPACE}/backend", [secret(ca_crt=b"not a certificate")],
         f"proxy-ssl-secret {NAMESPACE}/backend: ca.crt is not a PEM certificate"),
    ],
)  # fmt: skip
def test_an_unusable_secret_denies_the_ingress_s_paths_with_503(
    ref: str, extra: list[dict[str, Any]], why: str
) -> None:
    """ingress-nginx's LocationDenied: the location answers 503, whatever the protocol; another
    Ingress's path to the same backend keeps its endpoints."""
    snapshot = translate(objects(*extra, ingresses=2, proxy_ssl_secret=ref), TranslateOptions())
    assert route_of(snapshot).cluster.endpoints == ()
    assert warned(snapshot, f"Ingress {NAMESPACE}/web: {why}", "its paths answer 503")
    assert [e.node for e in route_of(snapshot, "other1.test").cluster.endpoints] == [
        "10.244.0.5:8080"
    ]
    assert snapshot.nodes == {"10.244.0.5:8080"}  # its pool stays


@pytest.mark.parametrize("protocol", ["GRPC", "GRPCS", "AUTO_HTTP", "FCGI"])
def test_protocols_not_spoken_here_deny_the_paths(protocol: str) -> None:
    snapshot = translate(objects(backend_protocol=protocol), TranslateOptions())
    assert route_of(snapshot).cluster.endpoints == ()
    assert warned(snapshot, f"backend-protocol {protocol} is not supported; its paths answer 503")


# --- service-upstream --------------------------------------------------------------------------


def test_service_upstream_dials_the_cluster_ip_and_service_port() -> None:
    snapshot = translate(objects(service_upstream="true"), TranslateOptions())
    route = route_of(snapshot)
    assert route.cluster.endpoints == (Endpoint("10.96.0.7", 80),)
    assert snapshot.warnings == ()


def test_service_upstream_is_the_setting_of_the_ingress_that_creates_the_backend() -> None:
    """`web` is processed first (oldest), so its service-upstream holds for the shared backend;
    the other Ingress, which does not ask for it, is told."""
    snapshot = translate(objects(ingresses=2, service_upstream="true"), TranslateOptions())
    assert route_of(snapshot, "other1.test").cluster.endpoints == (Endpoint("10.96.0.7", 80),)
    assert warned(
        snapshot,
        f"Ingress {NAMESPACE}/other-1: service-upstream does not apply to backend"
        f" {NAMESPACE}-web-80: Ingress {NAMESPACE}/web sets it up (on)",
    )


def test_a_headless_service_falls_back_to_its_endpoints_with_a_warning() -> None:
    world = objects(service_upstream="true")
    world[1]["spec"]["clusterIP"] = "None"
    snapshot = translate(world, TranslateOptions())
    assert [e.node for e in route_of(snapshot).cluster.endpoints] == ["10.244.0.5:8080"]
    assert warned(snapshot, "service-upstream cannot be used: it has no cluster IP")


# --- the data plane's side ---------------------------------------------------------------------


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_pools_keep_plain_and_each_tls_setting_apart(loop: asyncio.AbstractEventLoop) -> None:
    pools = Pools(loop)
    endpoint = Endpoint("10.0.0.1", 8443)
    https, verified = UpstreamTls(), UpstreamTls(ca=CA, verify=True)
    plain = pools.get(endpoint)
    first = pools.get(endpoint, https)
    assert len({id(plain), id(first), id(pools.get(endpoint, verified))}) == 3
    assert pools.get(endpoint, UpstreamTls()) is first  # by value: one context per setting
    assert plain.tls is None and first.tls is not None and first.tls.context is not None


def test_retain_closes_the_pools_of_tls_settings_no_route_has(
    loop: asyncio.AbstractEventLoop,
) -> None:
    pools = Pools(loop)
    endpoint = Endpoint("10.0.0.1", 8443)
    old, new = UpstreamTls(), UpstreamTls(sni=True)
    kept_plain, dropped = pools.get(endpoint), pools.get(endpoint, old)
    route = route_of(translate(objects(backend_protocol="HTTPS"), TranslateOptions()))
    snapshot = Snapshot((route,))
    kept = pools.get(route.cluster.endpoints[0], route.upstream.tls)
    pools.get(endpoint, new)
    pools.retain(snapshot)
    assert dropped.closed and kept_plain.closed  # 10.0.0.1 is in no route
    assert not kept.closed
    assert pools.get(route.cluster.endpoints[0], UpstreamTls()) is kept


def test_a_client_key_that_does_not_load_fails_every_connection_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tls = UpstreamTls(source="Secret shop/broken", ca=CA, chain=CLIENT_CHAIN, key=b"no key")
    with caplog.at_level(logging.ERROR, "sticky_proxy"):
        built = client_tls(tls)
    assert built.context is None
    assert built.problem.startswith("TLS settings of Secret shop/broken do not load")
    assert [r.levelno for r in caplog.records] == [logging.ERROR]


@pytest.mark.parametrize(
    ("peercert", "wanted", "expected"),
    [
        ({"subjectAltName": (("DNS", "backend.internal"),)}, "backend.internal", True),
        ({"subjectAltName": (("DNS", "*.internal"),)}, "backend.internal", True),
        ({"subjectAltName": (("DNS", "*.internal"),)}, "a.backend.internal", False),
        ({"subjectAltName": (("IP Address", "10.0.0.1"),)}, "10.0.0.1", True),
        ({"subjectAltName": (("DNS", "other"),)}, "upstream_balancer", False),
        # the common name counts only without DNS names, as in OpenSSL's X509_check_host
        ({"subject": ((("commonName", "backend.internal"),),)}, "backend.internal", True),
        (
            {
                "subject": ((("commonName", "backend.internal"),),),
                "subjectAltName": (("DNS", "other"),),
            },
            "backend.internal",
            False,
        ),
    ],
)
def test_the_name_a_verified_certificate_must_carry(
    peercert: dict[str, Any], wanted: str, expected: bool
) -> None:
    assert matches(certificate_names(peercert), wanted) is expected
