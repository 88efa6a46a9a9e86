"""TLS from Ingress objects: certificates by SNI, and which routes redirect to https."""

from __future__ import annotations

import pytest

from proxy.control.translate import ManifestError, TranslateOptions, translate
from proxy.control.translate.describe import describe
from proxy.core.model import TlsCertificate
from proxy.core.sni import certificate_for, covers
from tests.unit.kube_fixtures import snapshot_of


def test_certificates_come_from_tls_secrets_named_by_ingresses() -> None:
    snapshot = snapshot_of("tls")
    by_source = {c.source: c for c in snapshot.certificates}
    assert set(by_source) == {"Secret shop/a-tls", "Secret shop/wild-tls"}
    assert by_source["Secret shop/a-tls"].hosts == ("a.example.com",)
    assert by_source["Secret shop/a-tls"].chain.startswith(b"-----BEGIN CERTIFICATE-----")
    wild = by_source["Secret shop/wild-tls"]
    assert (wild.hosts, wild.chain, wild.key) == (
        ("*.wild.example.com",),
        b"wild chain",
        b"wild key",
    )


def test_missing_or_non_tls_secrets_are_warned_about() -> None:
    warnings = snapshot_of("tls").warnings
    assert any("Ingress shop/b: tls: Secret shop/missing-tls not found" in w for w in warnings)
    assert any(
        "Ingress shop/d: tls: Secret shop/opaque not found or without tls.crt and" in w
        for w in warnings
    )


@pytest.mark.parametrize(
    ("host", "redirect"),
    [
        ("a.example.com", True),  # TLS host, ssl-redirect defaults to true
        ("b.example.com", True),  # TLS without a usable Secret still redirects, as nginx does
        ("c.example.com", True),  # force-ssl-redirect without TLS here
        ("d.example.com", False),  # ssl-redirect: "false"
        ("*.wild.example.com", True),
        ("plain.example.com", False),  # same Ingress, but no TLS for this host
    ],
)
def test_ssl_redirect(host: str, redirect: bool) -> None:
    (route,) = [r for r in snapshot_of("tls").routes if r.host == host]
    assert route.ssl_redirect is redirect


def test_bad_base64_in_a_tls_secret_is_a_manifest_error() -> None:
    secret = {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "bad", "namespace": "shop"},
        "data": {"tls.crt": "!!!", "tls.key": "a2V5"},
    }  # fmt: skip
    with pytest.raises(ManifestError, match=r"^Secret shop/bad: data\.tls\.crt: is not base64"):
        translate([secret], TranslateOptions())


def _secret(name: str, kind: str, **data: str) -> dict[str, object]:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": kind,
        "metadata": {"name": name, "namespace": "shop"},
        "stringData": {key.replace("_", "."): value for key, value in data.items()},
    }  # fmt: skip


def _tls_ingress(*secrets: str) -> dict[str, object]:
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "a", "namespace": "shop"},
        "spec": {
            "tls": [{"hosts": [f"{name}.test"], "secretName": name} for name in secrets],
            "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}},
        },
    }  # fmt: skip


def test_any_secret_type_with_tls_crt_and_tls_key_serves_spec_tls() -> None:
    """As ingress-nginx's getPemCertificate: the keys matter, not the type (an Opaque Secret a
    certificate tool writes serves as well); one without both is warned about."""
    objects = [
        _secret("opaque", "Opaque", tls_crt="chain", tls_key="key", ca_crt="ca"),
        _secret("half", "Opaque", tls_crt="chain"),
        _tls_ingress("opaque", "half"),
    ]
    snapshot = translate(objects, TranslateOptions())
    certificate = next(c for c in snapshot.certificates if c.source == "Secret shop/opaque")
    assert (certificate.hosts, certificate.chain, certificate.key) == (
        ("opaque.test",),
        b"chain",
        b"key",
    )
    assert all(c.source != "Secret shop/half" for c in snapshot.certificates)
    assert any("Secret shop/half not found or without tls.crt and tls.key" in w
               for w in snapshot.warnings)  # fmt: skip


def test_a_kubernetes_io_tls_secret_without_its_key_is_a_manifest_error() -> None:
    with pytest.raises(ManifestError, match=r"^Secret shop/k: data\.tls\.key: missing"):
        translate([_secret("k", "kubernetes.io/tls", tls_crt="chain")], TranslateOptions())


CERTS = (
    TlsCertificate("default", (), b"d", b"d"),
    TlsCertificate("wild", ("*.example.com",), b"w", b"w"),
    TlsCertificate("exact", ("shop.example.com", "alt.test"), b"e", b"e"),
)


@pytest.mark.parametrize(
    ("server_name", "chosen"),
    [
        ("shop.example.com", "exact"),
        ("alt.test", "exact"),
        ("cart.example.com", "wild"),
        ("a.b.example.com", "default"),  # one label only
        ("example.com", "default"),
        (None, "default"),  # no SNI
    ],
)
def test_certificate_for(server_name: str | None, chosen: str) -> None:
    certificate = certificate_for(CERTS, server_name)
    assert certificate is not None and certificate.source == chosen


def test_no_certificate_without_a_default() -> None:
    assert certificate_for(CERTS[1:], "other.test") is None
    assert not covers("*.example.com", "example.com")


def test_routes_table_shows_certificates_and_redirects() -> None:
    text = describe(snapshot_of("tls"))
    assert "TLS certificates (chosen by SNI)\n  a.example.com: Secret shop/a-tls" in text
    assert "*.wild.example.com: Secret shop/wild-tls" in text
    assert text.count("plain HTTP redirects to https (308)") == 4  # a, b, c and *.wild


def test_preserve_trailing_slash_reaches_the_redirecting_route() -> None:
    def ingress(annotations: dict[str, str]) -> dict[str, object]:
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
            "spec": {"tls": [{"hosts": ["a.test"]}], "rules": [{"host": "a.test", "http": {
                "paths": [{"path": "/", "pathType": "Prefix", "backend": {
                    "service": {"name": "web", "port": {"number": 80}}}}]}}]},
        }  # fmt: skip

    plain = translate([ingress({})], TranslateOptions()).routes[0]
    assert (plain.ssl_redirect, plain.keeps_trailing_slash) == (True, False)
    keeping = ingress({"nginx.ingress.kubernetes.io/preserve-trailing-slash": "true"})
    route = translate([keeping], TranslateOptions()).routes[0]
    assert (route.ssl_redirect, route.keeps_trailing_slash) == (True, True)
