"""backend-protocol and proxy-ssl-*, through a real proxy to real TLS upstreams with a test CA:
ports of ingress-nginx's e2e cases (test/e2e/annotations/backendprotocol.go, proxyssl.go), each
named after the Go test it mirrors, and what those only check in nginx.conf done for real
(docs/behaviour.md, "Upstream TLS")."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from proxy.app.runtime import ProxyServer
from proxy.system.cert_chain import load_cert_chain
from tests.certs import self_signed
from tests.integration.cluster import (
    NAMESPACE,
    Obj,
    endpoint_slice,
    ingress,
    rule,
    service,
    write_manifest,
)
from tests.integration.conftest import StartManifestProxy
from tests.integration.harness import Upstream, start_upstream, url

BACKEND_NAME = "backend.internal"  # the name in the upstream's certificate


@dataclass
class TlsPod:
    """An upstream pod on 127.0.0.2 speaking TLS with a certificate for BACKEND_NAME, signed by
    itself (its own CA); it records the SNI name of each handshake."""

    pod: Upstream
    ca: bytes  # its certificate: what a client trusts to verify it
    server_names: list[str | None] = field(default_factory=list)


async def start_tls_pod(
    client_ca: bytes | None = None, versions: tuple[ssl.TLSVersion, ssl.TLSVersion] | None = None
) -> TlsPod:
    """A TLS pod; with `client_ca`, one that requires a client certificate signed by it; with
    `versions`, one that speaks only those TLS versions (minimum, maximum)."""
    chain, key = self_signed(BACKEND_NAME)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load_cert_chain(context, chain, key)
    if versions is not None:
        context.minimum_version, context.maximum_version = versions
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=client_ca.decode())
    names: list[str | None] = []

    def record(_: ssl.SSLObject, name: str | None, __: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = record
    pod = await start_upstream("tls-pod", host="127.0.0.2", tls=context)
    return TlsPod(pod, chain, names)


@pytest.fixture
async def tls_pods() -> AsyncIterator[list[TlsPod]]:
    started: list[TlsPod] = []
    yield started
    for pod in started:
        await pod.pod.stop()


def secret(name: str = "backend-ca", **keys: bytes) -> Obj:
    """An Opaque Secret with `keys` (ca_crt= for ca.crt, tls_crt=, tls_key=)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "type": "Opaque",
        "stringData": {key.replace("_", "."): value.decode() for key, value in keys.items()},
    }


def world(pod: Upstream, *extra: Obj, **annotations: str) -> list[Obj]:
    return [
        ingress("web", rule("app.test"), **annotations),
        service(),
        endpoint_slice([pod]),
        *extra,
    ]


async def answer(server: ProxyServer) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url(server), headers={"Host": "app.test"}) as response,
    ):
        json = response.content_type == "application/json"
        return response.status, (await response.json()) if json else {}


def upstream_errors(server: ProxyServer) -> float:
    value = server.metrics.registry.get_sample_value(
        "sticky_proxy_upstream_errors_total", {"reason": "connect"}
    )
    assert value is not None
    return value


async def serve(
    tmp_path: Path, manifest_proxy: StartManifestProxy, objects: list[Obj]
) -> ProxyServer:
    manifest = tmp_path / "cluster.yaml"
    write_manifest(manifest, objects)
    return await manifest_proxy(manifest)


# --- backendprotocol.go ------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["HTTPS", "https"])
async def test_should_set_backend_protocol_to_https_and_use_proxy_pass(
    protocol: str, tmp_path: Path, manifest_proxy: StartManifestProxy, tls_pods: list[TlsPod]
) -> None:
    """(and "... with lowercase annotation"): the upstream is spoken to over TLS, unverified
    and without SNI, as nginx's proxy_pass https:// does by default."""
    tls_pods.append(pod := await start_tls_pod())
    server = await serve(tmp_path, manifest_proxy, world(pod.pod, backend_protocol=protocol))
    for _ in range(3):
        status, body = await answer(server)
        assert (status, body["name"]) == (200, "tls-pod")
    assert pod.server_names == [None]  # one handshake, kept alive; no SNI
    assert len(pod.pod.transports) == 1


async def test_without_backend_protocol_a_tls_upstream_is_spoken_to_in_plain_http(
    tmp_path: Path, manifest_proxy: StartManifestProxy, tls_pods: list[TlsPod]
) -> None:
    tls_pods.append(pod := await start_tls_pod())
    server = await serve(tmp_path, manifest_proxy, world(pod.pod))
    status, _ = await answer(server)
    assert status == 502


@pytest.mark.parametrize(
    "protocol",
    [
        pytest.param("AUTO_HTTP", id="should_set_backend_protocol_to_$scheme"),
        pytest.param("GRPC", id="should_set_backend_protocol_to_grpc_and_use_grpc_pass"),
        pytest.param("GRPCS", id="should_set_backend_protocol_to_grpcs_and_use_grpc_pass"),
        pytest.param("FCGI", id="should_set_backend_protocol_to_empty_and_use_fastcgi_pass"),
    ],
)
async def test_unsupported_backend_protocols_answer_503(
    protocol: str, tmp_path: Path, manifest_proxy: StartManifestProxy, tls_pods: list[TlsPod]
) -> None:
    """ingress-nginx passes these with grpc_pass, fastcgi_pass or $scheme; here they are not
    spoken, and the path answers 503 instead of reaching the upstream in the wrong protocol."""
    tls_pods.append(pod := await start_tls_pod())
    server = await serve(tmp_path, manifest_proxy, world(pod.pod, backend_protocol=protocol))
    status, _ = await answer(server)
    assert status == 503
    assert pod.pod.requests == 0


# --- proxyssl.go -------------------------------------------------------------------------------


async def test_should_set_valid_proxy_ssl_secret(
    tmp_path: Path, manifest_proxy: StartManifestProxy, tls_pods: list[TlsPod]
) -> None:
    """The Secret's tls.crt and tls.key are the client certificate a backend that requires one
    (mTLS) is shown; ca.crt is loaded, verify stays off."""
    client_chain, client_key = self_signed("sticky-proxy-client")
    tls_pods.append(pod := await start_tls_pod(client_ca=client_chain))
    wrong_ca, _ = self_signed("someone-else")
    objects = world(
        pod.pod,
        secret(ca_crt=wrong_ca, tls_crt=client_chain, tls_key=client_key),
        backend_protocol="HTTPS",
        proxy_ssl_secret=f"{NAMESPACE}/backend-ca",
    )
    server = await serve(tmp_path, manifest_proxy, objects)
    status, body = await answer(server)
    assert (status, body["client_cert"]) == (200, "sticky-proxy-client")


async def test_a_backend_that_requires_a_client_certificate_refuses_one_without(
    tmp_path: Path, manifest_proxy: StartManifestProxy, tls_pods: list[TlsPod]
) -> None:
    client_chain, _ = self_signed("sticky-proxy-client")
    tls_pods.append(pod := await start_tls_pod(client_ca=client_chain))
    server = await serve(tmp_path, manifest_proxy, world(pod.pod, backend_protocol="HTTPS"))
    status, _ = await answer(server)
    assert status == 502


async def test_should_set_valid_proxy_ssl_secret_proxy_ssl_verify_on_and_proxy_ssl_server_name_on(
    tmp_path: Path, manifest_proxy: StartManifestProxy, tls_pods: list[TlsPod]
) -> None:
    """Verified against the Secret's CA, checked for proxy-ssl-name, which SNI sends."""
    tls_pods.append(pod := await start_tls_pod())
    objects = world(
        pod.pod,
        secret(ca_crt=pod.ca),
        backend_protocol="HTTPS",
        proxy_ssl_secret=f"{NAMESPACE}/backend-ca",
        proxy_ssl_verify="on",
        proxy_ssl_verify_depth="2",
        proxy_ssl_server_name="on",
        proxy_ssl_name=BACKEND_NAME,
    )
    server = await serve(tmp_path, manifest_proxy, objects)
    status, body = await answer(server)
    assert (status, body["name"]) == (200, "tls-pod")
    assert pod.server_names == [BACKEND_NAME]


async def test_verify_on_with_the_name_but_sni_off_sends_no_name(
    tmp_path: Path, manifest_proxy: StartManifestProxy, tls_pods: list[TlsPod]
) -> None:
    tls_pods.append(pod := await start_tls_pod())
    objects = world(
        pod.pod,
        secret(ca_crt=pod.ca),
        backend_protocol="HTTPS",
        proxy_ssl_secret=f"{NAMESPACE}/backend-ca",
        proxy_ssl_verify="on",
        proxy_ssl_name=BACKEND_NAME,
    )
    server = await serve(tmp_path, manifest_proxy, objects)
    assert (await answer(server))[0] == 200
    assert pod.server_names == [None]


async def test_a_certificate_from_another_ca_is_a_502_logged_and_counted(
    tmp_path: Path,
    manifest_proxy: StartManifestProxy,
    tls_pods: list[TlsPod],
    caplog: pytest.LogCaptureFixture,
) -> None:
    tls_pods.append(pod := await start_tls_pod())
    wrong_ca, _ = self_signed(BACKEND_NAME)
    objects = world(
        pod.pod,
        secret(ca_crt=wrong_ca),
        backend_protocol="HTTPS",
        proxy_ssl_secret=f"{NAMESPACE}/backend-ca",
        proxy_ssl_verify="on",
        proxy_ssl_name=BACKEND_NAME,
    )
    server = await serve(tmp_path, manifest_proxy, objects)
    before = upstream_errors(server)
    with caplog.at_level(logging.INFO, "sticky_proxy"):
        status, _ = await answer(server)
    assert status == 502
    assert upstream_errors(server) == before + 1
    (line,) = [r.getMessage() for r in caplog.records if r.name == "sticky_proxy.upstream"]
    assert f"upstream 127.0.0.2:{pod.pod.port} (pod tls-pod" in line
    assert "failed (connect): TLS handshake failed: certificate verify failed" in line
    assert pod.pod.requests == 0


async def test_the_same_wrong_ca_with_verify_off_is_not_checked(
    tmp_path: Path, manifest_proxy: StartManifestProxy, tls_pods: list[TlsPod]
) -> None:
    tls_pods.append(pod := await start_tls_pod())
    wrong_ca, _ = self_signed(BACKEND_NAME)
    objects = world(
        pod.pod,
        secret(ca_crt=wrong_ca),
        backend_protocol="HTTPS",
        proxy_ssl_secret=f"{NAMESPACE}/backend-ca",
        proxy_ssl_verify="off",
    )
    server = await serve(tmp_path, manifest_proxy, objects)
    assert (await answer(server))[0] == 200


async def test_verify_on_without_proxy_ssl_name_checks_upstream_balancer_as_ingress_nginx(
    tmp_path: Path,
    manifest_proxy: StartManifestProxy,
    tls_pods: list[TlsPod],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """nginx checks $proxy_host, which is `upstream_balancer` in ingress-nginx's proxy_pass."""
    tls_pods.append(pod := await start_tls_pod())
    objects = world(
        pod.pod,
        secret(ca_crt=pod.ca),
        backend_protocol="HTTPS",
        proxy_ssl_secret=f"{NAMESPACE}/backend-ca",
        proxy_ssl_verify="on",
    )
    server = await serve(tmp_path, manifest_proxy, objects)
    with caplog.at_level(logging.INFO, "sticky_proxy"):
        assert (await answer(server))[0] == 502
    (line,) = [r.getMessage() for r in caplog.records if r.name == "sticky_proxy.upstream"]
    assert f"TLS certificate is for {BACKEND_NAME}, not upstream_balancer" in line


TLS_1_2 = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)
TLS_1_3 = (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3)


@pytest.mark.parametrize(
    ("pod_speaks", "protocols", "status"),
    [
        (TLS_1_2, {}, 200),
        (TLS_1_3, {}, 502),  # with a Secret, ingress-nginx's default is TLSv1.2 alone
        (TLS_1_3, {"proxy_ssl_protocols": "TLSv1.2 TLSv1.3"}, 200),
        (TLS_1_2, {"proxy_ssl_protocols": "TLSv1.3"}, 502),
    ],
)
async def test_should_set_valid_proxy_ssl_secret_proxy_ssl_protocols(
    pod_speaks: tuple[ssl.TLSVersion, ssl.TLSVersion],
    protocols: dict[str, str],
    status: int,
    *,
    tmp_path: Path,
    manifest_proxy: StartManifestProxy,
    tls_pods: list[TlsPod],
) -> None:
    tls_pods.append(pod := await start_tls_pod(versions=pod_speaks))
    objects = world(
        pod.pod,
        secret(ca_crt=pod.ca),
        backend_protocol="HTTPS",
        proxy_ssl_secret=f"{NAMESPACE}/backend-ca",
        **protocols,
    )
    server = await serve(tmp_path, manifest_proxy, objects)
    assert (await answer(server))[0] == status


async def test_a_missing_proxy_ssl_secret_denies_the_location_with_503(
    tmp_path: Path, manifest_proxy: StartManifestProxy, tls_pods: list[TlsPod]
) -> None:
    tls_pods.append(pod := await start_tls_pod())
    objects = world(
        pod.pod,
        backend_protocol="HTTPS",
        proxy_ssl_secret=f"{NAMESPACE}/nowhere",
    )
    server = await serve(tmp_path, manifest_proxy, objects)
    assert (await answer(server))[0] == 503
    assert pod.pod.requests == 0
