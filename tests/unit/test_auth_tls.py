"""The auth-tls-* annotations as ingress-nginx reads them (annotations/authtls/main.go), the CA
Secret they name, and which Ingress sets them for a host (controller.go's createServers):
translation only, no I/O."""

from __future__ import annotations

import base64
from typing import Any

from proxy.control.translate import TranslateOptions, translate
from proxy.control.translate.basic_auth import named_secrets
from proxy.control.translate.describe import describe
from proxy.core.client_auth import VERIFY_OFF, VERIFY_ON, VERIFY_OPTIONAL_NO_CA, ClientAuth
from proxy.core.routing import Snapshot
from proxy.dataplane.tls_contexts import TlsContexts
from tests.certs import Authority
from tests.unit.kube_fixtures import annotations_of, ingress_object, parsed

CA = Authority.new().pem


def test_defaults_are_ingress_nginxs() -> None:
    spec = parsed(auth_tls_secret="default/ca").auth_tls
    assert spec is not None
    assert (spec.secret, spec.verify, spec.error_page) == ("default/ca", VERIFY_ON, "")
    assert not spec.pass_certificate and spec.match_cn is None and spec.problem is None


def test_values_read() -> None:
    settings = parsed(
        auth_tls_secret="ca",
        auth_tls_verify_client="optional_no_ca",
        auth_tls_error_page="https://errors.example.com/cert",
        auth_tls_pass_certificate_to_upstream="true",
        auth_tls_match_cn="CN=(a|b)",
    )
    spec = settings.auth_tls
    assert spec is not None and not settings.warnings
    assert spec.verify == VERIFY_OPTIONAL_NO_CA
    assert spec.error_page == "https://errors.example.com/cert"
    assert spec.pass_certificate
    assert spec.match_cn is not None and spec.match_cn.search("CN=b,O=x")


def test_invalid_values_take_the_default_with_a_warning() -> None:
    settings = parsed(
        auth_tls_secret="ca",
        auth_tls_verify_client="maybe",
        auth_tls_error_page="/error",  # an nginx internal redirect: not built
        auth_tls_pass_certificate_to_upstream="yes",
        auth_tls_verify_depth="2",
    )
    spec = settings.auth_tls
    assert spec is not None and spec.problem is None
    assert (spec.verify, spec.error_page, spec.pass_certificate) == (VERIFY_ON, "", False)
    text = "\n".join(settings.warnings)
    assert "auth-tls-verify-client: 'maybe' is not on, off" in text
    assert "auth-tls-error-page: '/error' is no http(s) URL" in text
    assert "auth-tls-pass-certificate-to-upstream" in text
    assert "auth-tls-verify-depth is not supported" in text


def test_an_invalid_match_cn_is_a_problem_not_an_open_door() -> None:
    for value in ("authtls", "CN=(unclosed"):
        settings = parsed(auth_tls_secret="ca", auth_tls_match_cn=value)
        assert settings.auth_tls is not None and settings.auth_tls.problem is not None
        assert any("its hosts answer 403" in line for line in settings.warnings)


def test_without_a_secret_the_others_are_ignored() -> None:
    settings = parsed(auth_tls_verify_client="off", auth_tls_match_cn="CN=x")
    assert settings.auth_tls is None
    assert sum("is ignored without" in line for line in settings.warnings) == 2


def secret(name: str, namespace: str = "default", **data: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {k.replace("_", "."): base64.b64encode(v).decode() for k, v in data.items()},
    }


def app(
    name: str, host: str | None, created: str, path: str = "/", **annotations: str
) -> dict[str, Any]:
    return ingress_object(
        name, host, (path, "web"), created=created, annotations=annotations_of(**annotations)
    )


def snapshot(*objects: dict[str, Any]) -> Snapshot:
    return translate(objects, TranslateOptions())


def auths(snap: Snapshot) -> dict[str | None, Any]:
    return dict(snap.client_auths)


OFF = {"auth_tls_secret": "ca", "auth_tls_verify_client": "off"}


def test_the_first_ingress_of_a_host_with_a_ca_sets_it_for_every_path_of_the_host() -> None:
    snap = snapshot(
        app("plain", "a.test", "2024-01-01T00:00:00Z", path="/plain"),  # oldest, sets none
        app("first", "a.test", "2024-01-02T00:00:00Z", path="/first", auth_tls_secret="ca"),
        app("second", "a.test", "2024-01-03T00:00:00Z", path="/second", **OFF),
        app("other", "b.test", "2024-01-04T00:00:00Z"),
        secret("ca", ca_crt=CA),
    )
    auth = auths(snap)["a.test"]
    assert (auth.verify, auth.source, auth.refused) == (VERIFY_ON, "Secret default/ca", None)
    paths = {route.ingress for route in snap.routes if route.host == "a.test"}
    assert paths == {"plain", "first", "second"}
    assert all(r.client_auth == auth for r in snap.routes if r.host == "a.test")
    assert all(r.client_auth is None for r in snap.routes if r.host == "b.test")
    assert any("Ingress default/second: auth-tls-* for a.test ignored" in w for w in snap.warnings)


def test_an_unusable_auth_tls_of_any_ingress_refuses_the_host() -> None:
    cases = {
        "missing": ("missing", "auth-tls-secret Secret default/missing not found"),
        "other namespace": ("elsewhere/ca", "Secrets of other namespaces are not allowed"),
        "no ca.crt": ("no-ca", "has no ca.crt"),
        "garbage ca.crt": ("garbage", "ca.crt holds no PEM certificate"),
        "garbage ca.crl": ("bad-crl", "ca.crl holds no PEM X509 CRL"),
    }
    for name, warning in cases.values():
        snap = snapshot(
            app("good", "a.test", "2024-01-01T00:00:00Z", auth_tls_secret="ca"),
            app("bad", "a.test", "2024-01-02T00:00:00Z", auth_tls_secret=name),
            secret("ca", ca_crt=CA),
            secret("ca", "elsewhere", ca_crt=CA),
            secret("no-ca", tls_crt=CA),
            secret("garbage", ca_crt=b"-----BEGIN CERTIFICATE-----\nnope\n"),
            secret("bad-crl", ca_crt=CA, ca_crl=b"not a CRL"),
        )
        auth = auths(snap)["a.test"]
        assert auth.refused is not None and warning in auth.refused, name
        assert not auth.asks
        assert any(warning in w and "its hosts answer 403" in w for w in snap.warnings), name


def test_aliases_and_the_catch_all_server() -> None:
    snap = snapshot(
        app("a", "a.test", "2024-01-01T00:00:00Z", auth_tls_secret="ca", server_alias="alias.test"),
        app(
            "any", None, "2024-01-02T00:00:00Z", auth_tls_secret="ca", auth_tls_verify_client="off"
        ),
        secret("ca", ca_crt=CA, ca_crl=Authority.new().revocation_list()),
    )
    found = auths(snap)
    assert found["alias.test"] == found["a.test"] and found["a.test"].crl is not None
    assert found[None].verify == VERIFY_OFF
    hosts = {route.host: route.client_auth for route in snap.routes}
    assert hosts["alias.test"] == found["a.test"] and hosts[None] == found[None]


def test_the_api_source_keeps_auth_tls_secrets_whole() -> None:
    objects = [
        ingress_object("a", "a.test", annotations=annotations_of(auth_tls_secret="ca")),
        ingress_object(
            "b", "b.test", namespace="b", annotations=annotations_of(auth_tls_secret="other/ca")
        ),
    ]
    assert named_secrets(objects) == {("default", "ca"), ("other", "ca")}


def test_routes_describe_the_hosts_client_certificates() -> None:
    snap = snapshot(
        app("a", "a.test", "2024-01-01T00:00:00Z", auth_tls_secret="ca",
            auth_tls_match_cn="CN=authtls", auth_tls_pass_certificate_to_upstream="true"),
        app("b", "b.test", "2024-01-02T00:00:00Z", auth_tls_secret="missing"),
        secret("ca", ca_crt=CA),
    )  # fmt: skip
    text = describe(snap)
    assert "client certificates of Secret default/ca: verify on, subject matching 'CN=authtls'," \
        " passed to the pod" in text  # fmt: skip
    assert "client certificates: auth-tls-secret Secret default/missing not found (403)" in text


def test_which_listening_context_a_server_name_gets() -> None:
    current = snapshot(
        app("a", "a.test", "2024-01-01T00:00:00Z", auth_tls_secret="ca"),
        app("wild", "*.wild.test", "2024-01-01T00:00:00Z", auth_tls_secret="crl"),
        app("off", "off.test", "2024-01-01T00:00:00Z", **OFF),
        app("plain", "plain.test", "2024-01-01T00:00:00Z"),
        app("any", None, "2024-01-01T00:00:00Z", auth_tls_secret="ca"),
        secret("ca", ca_crt=CA),
        secret("crl", ca_crt=CA, ca_crl=Authority.new().revocation_list()),
    )
    contexts = TlsContexts(lambda: current, None)
    assert contexts.peeks()
    chosen = {
        name: contexts.for_server_name(name)
        for name in ("a.test", "x.wild.test", "off.test", "plain.test", "other.test", None)
    }
    assert chosen["a.test"] is contexts.asking and chosen["x.wild.test"] is contexts.asking_crl
    assert chosen["off.test"] is contexts.listening  # asks nothing
    assert chosen["plain.test"] is contexts.listening  # a host of its own, without a setting
    assert chosen["other.test"] is contexts.asking and chosen[None] is contexts.asking  # catch-all

    on = ClientAuth("Secret default/ca", CA)
    asking = contexts.asking
    current = Snapshot(routes=(), client_auths=(("a.test", on),))
    contexts.peeks()
    assert contexts.asking is not asking  # a changed setting: a new session cache
    asking = contexts.asking
    current = Snapshot(routes=(), client_auths=(("a.test", ClientAuth("Secret default/ca", CA)),))
    contexts.peeks()
    assert contexts.asking is asking  # an equal one keeps it
    off = ClientAuth("Secret default/ca", CA, verify=VERIFY_OFF)
    current = Snapshot(routes=(), client_auths=(("off.test", off),))
    assert not contexts.peeks()  # nothing asks: connections are not looked at
