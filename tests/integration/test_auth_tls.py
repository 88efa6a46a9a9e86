"""Client certificate authentication through a real proxy from manifest files: ingress-nginx's
e2e cases (test/e2e/annotations/authtls.go), each named after the Go test it mirrors, then the
hostile cases of issue 18 (docs/behaviour.md, "Client certificate authentication").

The Go tests' CreateIngressMASecret makes a CA, a server certificate and a client certificate
whose subject is CN=authtls; so do these, with real TLS clients over loopback.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from proxy.app.runtime import ProxyServer
from tests.certs import Authority, self_signed
from tests.integration.cluster import (
    NAMESPACE,
    Obj,
    Pods,
    endpoint_slice,
    ingress,
    reload_after,
    rule,
    service,
    write_manifest,
)
from tests.integration.conftest import StartManifestProxy
from tests.integration.harness import Upstream
from tests.integration.test_external_auth import start_auth_service

HOST = "authtls.foo.com"  # the Go tests' authTLSFooHost
OTHER = "plain.foo.com"
SECRET = f"{NAMESPACE}/{HOST}"
SUBJECT = x509.Name(
    [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example, Inc."),
        x509.NameAttribute(NameOID.COMMON_NAME, "authtls"),
    ]
)


@dataclass(frozen=True)
class Client:
    """A client certificate and its key, as files for ssl.SSLContext.load_cert_chain."""

    cert: Path
    key: Path
    pem: bytes


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def upstream(self) -> dict[str, str]:
        """The request headers the pod saw (lower-case names)."""
        echoed = json.loads(self.body)
        return {name.lower(): value for name, value in echoed["headers"]}


@dataclass(frozen=True)
class Pki:
    ca: Authority
    server_chain: bytes
    server_key: bytes
    client: Client
    directory: Path

    def client_of(self, authority: Authority, name: str, subject: x509.Name = SUBJECT) -> Client:
        cert, key, _ = authority.issue(subject)
        return self.write(name, cert, key)

    def write(self, name: str, cert: bytes, key: bytes) -> Client:
        (self.directory / f"{name}.crt").write_bytes(cert)
        (self.directory / f"{name}.key").write_bytes(key)
        return Client(self.directory / f"{name}.crt", self.directory / f"{name}.key", cert)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return new_pki(tmp_path)


def new_pki(tmp_path: Path) -> Pki:
    """CreateIngressMASecret's CA, server certificate and client certificate, under `tmp_path`."""
    ca = Authority.new()
    chain, key = self_signed(HOST, OTHER)
    cert, client_key, _ = ca.issue(SUBJECT)
    client = Client(tmp_path / "client.crt", tmp_path / "client.key", cert)
    client.cert.write_bytes(cert)
    client.key.write_bytes(client_key)
    return Pki(ca, chain, key, client, tmp_path)


@pytest.fixture
async def pod(pods: Pods) -> Upstream:
    return (await pods.start(1))[0]


def secret(name: str, kind: str = "Opaque", **data: bytes) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "type": kind,
        "data": {key.replace("_", "."): base64.b64encode(v).decode() for key, v in data.items()},
    }


def world(pki: Pki, pod: Upstream, *extra: Obj, **annotations: str) -> list[Obj]:
    """The Go tests' NewSingleIngressWithTLS for HOST, its TLS Secret, and the CA Secret (as
    CreateIngressMASecret: ca.crt beside the server's tls.crt and tls.key)."""
    app = ingress("authtls", rule(HOST), **annotations)
    app["spec"]["tls"] = [{"hosts": [HOST], "secretName": HOST}]
    keys = {"tls_crt": pki.server_chain, "tls_key": pki.server_key, "ca_crt": pki.ca.pem}
    return [
        app,
        secret(HOST, "kubernetes.io/tls", **keys),
        service(),
        endpoint_slice([pod]),
        *extra,
    ]


def matching_cn(pki: Pki, pod: Upstream, pattern: str) -> list[Obj]:
    """The Go match-cn tests' Ingress: verify-client on, and auth-tls-match-cn `pattern`."""
    return world(pki, pod, auth_tls_secret=SECRET, auth_tls_verify_client="on",
                 auth_tls_match_cn=pattern)  # fmt: skip


async def serve(
    manifest: Path, manifest_proxy: StartManifestProxy, objects: list[Obj]
) -> ProxyServer:
    write_manifest(manifest, objects)
    return await manifest_proxy(manifest, tls=True)


async def https(
    server: ProxyServer,
    client: Client | None = None,
    *,
    host: str = HOST,
    sni: str | None = HOST,
    headers: tuple[tuple[str, str], ...] = (),
) -> Reply:
    """One GET / over TLS with server name `sni`, `client`'s certificate (if any) and Host."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    address = server.tls_address
    assert address is not None
    reader, writer = await asyncio.open_connection(
        address.host, address.port, ssl=context, server_hostname=sni
    )
    try:
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
        writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\n{lines}Connection: close\r\n\r\n".encode())
        raw = await reader.read()
    finally:
        writer.close()
    if not raw:
        raise ConnectionResetError("closed without an answer")
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in header_lines)
    return Reply(int(status_line.split()[1]), {k.lower(): v for k, v in fields.items()}, body)


async def refused_handshake(server: ProxyServer, client: Client) -> bool:
    """Whether the proxy ends the handshake over `client`'s certificate (a TLS alert, which
    TLS 1.3 clients see at their first read, or only a closed connection)."""
    try:
        await https(server, client)
    except (ssl.SSLError, ConnectionResetError):
        return True
    return False


def warnings(server: ProxyServer) -> tuple[str, ...]:
    snapshot = server.publisher.get()
    assert snapshot is not None
    return snapshot.warnings


# --- ingress-nginx's e2e cases ---------------------------------------------------------------


async def test_should_set_sslClientCertificate_sslVerifyClient_and_sslVerifyDepth_with_auth_tls_secret(  # noqa: E501 (the Go test's name)
    pki: Pki, pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(manifest, manifest_proxy, world(pki, pod))
    assert (await https(server)).status == 200  # without the annotation: no certificate asked

    changed = world(pki, pod, auth_tls_secret=SECRET)
    assert await reload_after(server, lambda: write_manifest(manifest, changed)) == "success"
    refused = await https(server)
    assert refused.status == 400
    assert refused.body == b"400 No required SSL certificate was sent\n"
    assert (await https(server, pki.client)).status == 200


async def test_should_set_valid_auth_tls_secret_sslVerify_to_off_and_sslVerifyDepth_to_2(
    pki: Pki, pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    annotations = {"auth_tls_secret": SECRET, "auth_tls_verify_client": "off",
                   "auth_tls_verify_depth": "2"}  # fmt: skip
    server = await serve(manifest, manifest_proxy, world(pki, pod, **annotations))
    reply = await https(server)
    assert reply.status == 200
    assert reply.upstream["ssl-client-verify"] == "NONE"  # (the CA is there: the headers are)


async def test_should_302_redirect_to_error_page_instead_of_400_when_auth_tls_error_page_is_set(
    pki: Pki, pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    error_page = "http://127.0.0.1/error"  # the Go test's f.GetURL(framework.HTTP) + "/error"
    annotations = {"auth_tls_secret": SECRET, "auth_tls_error_page": error_page}
    server = await serve(manifest, manifest_proxy, world(pki, pod, **annotations))
    reply = await https(server)
    assert reply.status == 302
    assert reply.headers["location"] == error_page
    assert (await https(server, pki.client)).status == 200


async def test_should_pass_URL_encoded_certificate_to_upstream(
    pki: Pki, pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    annotations = {"auth_tls_secret": SECRET, "auth_tls_pass_certificate_to_upstream": "true"}
    server = await serve(manifest, manifest_proxy, world(pki, pod, **annotations))
    assert (await https(server)).status == 400
    reply = await https(server, pki.client)
    assert reply.status == 200
    sent = reply.upstream["ssl-client-cert"]
    assert sent.startswith("-----BEGIN%20CERTIFICATE-----%0A")
    assert unquote(sent).encode() == pki.client.pem  # the leaf, whole


async def test_should_validate_auth_tls_verify_client(
    pki: Pki, pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    on = world(pki, pod, auth_tls_secret=SECRET, auth_tls_verify_client="on")
    server = await serve(manifest, manifest_proxy, on)
    assert (await https(server, pki.client)).status == 200
    assert (await https(server)).status == 400

    off = world(pki, pod, auth_tls_secret=SECRET, auth_tls_verify_client="off")
    assert await reload_after(server, lambda: write_manifest(manifest, off)) == "success"
    assert (await https(server, pki.client)).status == 200
    assert (await https(server)).status == 200


async def test_should_return_403_using_auth_tls_match_cn_with_no_matching_CN_from_client(
    pki: Pki, pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(manifest, manifest_proxy, matching_cn(pki, pod, "CN=notgonnamatch"))
    reply = await https(server, pki.client)
    assert reply.status == 403
    assert reply.body == b"client certificate unauthorized"
    assert pod.requests == 0


async def test_should_return_200_using_auth_tls_match_cn_with_matching_CN_from_client(
    pki: Pki, pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(manifest, manifest_proxy, matching_cn(pki, pod, "CN=authtls"))
    assert (await https(server, pki.client)).status == 200


async def test_should_reload_the_nginx_config_when_auth_tls_match_cn_is_updated(
    pki: Pki, pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(manifest, manifest_proxy, matching_cn(pki, pod, "CN=notvalid"))
    assert (await https(server, pki.client)).status == 403

    matching = matching_cn(pki, pod, "CN=authtls")
    assert await reload_after(server, lambda: write_manifest(manifest, matching)) == "success"
    assert (await https(server, pki.client)).status == 200


async def test_should_return_200_using_auth_tls_match_cn_where_atleast_one_of_the_regex_options_matches_CN_from_client(  # noqa: E501 (the Go test's name)
    pki: Pki, pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    options = "CN=(itwillmatch|withthenextoption|authtls)"
    server = await serve(manifest, manifest_proxy, matching_cn(pki, pod, options))
    assert (await https(server, pki.client)).status == 200


# --- beyond the Go tests: what reaches the upstream, and hostile clients ----------------------


async def test_the_upstream_gets_the_verified_names_and_never_a_clients_own(
    pki: Pki, pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    annotations = {"auth_tls_secret": SECRET, "auth_tls_verify_client": "optional"}
    server = await serve(manifest, manifest_proxy, world(pki, pod, **annotations))
    forged = (("SSL-Client-Verify", "SUCCESS"), ("ssl-client-subject-dn", "CN=admin"),
              ("ssl-client-issuer-dn", "CN=authtls-ca"), ("ssl-client-cert", "forged"))  # fmt: skip
    seen = (await https(server, pki.client, headers=forged)).upstream
    assert seen["ssl-client-verify"] == "SUCCESS"
    assert seen["ssl-client-subject-dn"] == r"CN=authtls,O=Example\, Inc."
    assert seen["ssl-client-issuer-dn"] == "CN=authtls-ca"
    assert "ssl-client-cert" not in seen  # not passed: and the forged one is gone too

    anonymous = (await https(server, headers=forged)).upstream  # optional: served without one
    assert anonymous["ssl-client-verify"] == "NONE"
    assert not {"ssl-client-subject-dn", "ssl-client-issuer-dn", "ssl-client-cert"} & set(anonymous)


async def test_a_certificate_of_another_ca_ends_the_handshake(
    pki: Pki, pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    """nginx answers 400 "The SSL certificate error"; Python's ssl can only end the handshake
    (docs/ingress-nginx-compat.md, "Client certificates"). Either way the pod never sees it."""
    server = await serve(manifest, manifest_proxy, world(pki, pod, auth_tls_secret=SECRET))
    stranger = pki.client_of(Authority.new("other-ca"), "stranger")
    assert await refused_handshake(server, stranger)
    assert pod.requests == 0
    assert (await https(server, pki.client)).status == 200  # the next client is served


async def test_a_revoked_certificate_ends_the_handshake(
    pki: Pki, pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    cert, key, serial = pki.ca.issue(SUBJECT)
    revoked = pki.write("revoked", cert, key)
    objects = world(pki, pod, auth_tls_secret=SECRET)
    objects[1]["data"]["ca.crl"] = base64.b64encode(pki.ca.revocation_list(serial)).decode()
    server = await serve(manifest, manifest_proxy, objects)
    assert await refused_handshake(server, revoked)
    assert (await https(server, pki.client)).status == 200
    assert pod.requests == 1


async def test_hosts_without_auth_tls_ask_for_no_certificate_and_cannot_stand_in(
    pki: Pki, pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    plain = ingress("plain", rule(OTHER))
    plain["spec"]["tls"] = [{"hosts": [OTHER], "secretName": HOST}]
    server = await serve(manifest, manifest_proxy, world(pki, pod, plain, auth_tls_secret=SECRET))
    served = await https(server, pki.client, host=OTHER, sni=OTHER)
    assert served.status == 200
    assert "ssl-client-verify" not in served.upstream  # a host without a CA sets none
    # a handshake for the plain host asked for no certificate: the auth-tls host refuses it,
    # as nginx's 421 for a Host other than the server name on a server that verifies clients
    assert (await https(server, pki.client, host=HOST, sni=OTHER)).status == 421
    assert (await https(server, pki.client)).status == 200


async def test_a_missing_or_unusable_ca_secret_refuses_the_host(
    pki: Pki, pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    """ingress-nginx's AuthTLSError: the server answers 403 to every request."""
    server = await serve(
        manifest, manifest_proxy, world(pki, pod, auth_tls_secret=f"{NAMESPACE}/missing")
    )
    assert (await https(server)).status == 403
    assert any("auth-tls-secret Secret default/missing not found" in w for w in warnings(server))

    no_ca = world(pki, pod, secret("no-ca", other=b"x"), auth_tls_secret=f"{NAMESPACE}/no-ca")
    assert await reload_after(server, lambda: write_manifest(manifest, no_ca)) == "success"
    assert (await https(server, pki.client)).status == 403
    bad_cn = world(pki, pod, auth_tls_secret=SECRET, auth_tls_match_cn="authtls")
    assert await reload_after(server, lambda: write_manifest(manifest, bad_cn)) == "success"
    assert (await https(server, pki.client)).status == 403
    assert pod.requests == 0


async def test_plain_http_to_an_auth_tls_host_is_redirected_or_refused(
    pki: Pki, pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(manifest, manifest_proxy, world(pki, pod, auth_tls_secret=SECRET))
    reader, writer = await asyncio.open_connection(server.address.host, server.address.port)
    writer.write(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
    assert (await reader.read()).startswith(b"HTTP/1.1 308")  # ssl-redirect first, as nginx
    writer.close()

    unredirected = world(pki, pod, auth_tls_secret=SECRET, ssl_redirect="false")
    assert await reload_after(server, lambda: write_manifest(manifest, unredirected)) == "success"
    reader, writer = await asyncio.open_connection(server.address.host, server.address.port)
    writer.write(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
    assert (await reader.read()).startswith(b"HTTP/1.1 400")  # no certificate over plain HTTP
    writer.close()
    assert pod.requests == 0


def resumed_elsewhere(address: tuple[str, int], client: Client, first: str, then: str) -> str:
    """A blocking client (run it in a thread): a request to `first`, then one to `then` on a new
    connection that offers the first one's TLS session; what the second got."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(client.cert, client.key)
    session = None
    for host in (first, then):
        try:
            with context.wrap_socket(
                socket.create_connection(address), server_hostname=host, session=session
            ) as tls:
                tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                answer = b""
                while chunk := tls.recv(65536):
                    answer += chunk
                session = tls.session
        except (ssl.SSLError, ConnectionResetError) as error:
            return f"refused: {error}"
        if not answer:
            return "refused: closed"  # (TLS 1.3: the alert came after the client's handshake)
    return answer.split(b"\r\n", 1)[0].decode()


async def test_a_tls_session_of_one_host_does_not_let_its_certificate_into_another(
    pki: Pki, pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    """A resumed session skips verification: with session tickets, a TLS 1.3 client could
    resume one host's session under another's server name, whose CA never saw the
    certificate. No tickets are issued; the second handshake verifies, and fails."""
    other_ca = Authority.new("other-ca")
    other = ingress("other", rule(OTHER), auth_tls_secret="other-ca")
    other["spec"]["tls"] = [{"hosts": [OTHER], "secretName": HOST}]
    objects = world(pki, pod, other, secret("other-ca", ca_crt=other_ca.pem),
                    auth_tls_secret=SECRET)  # fmt: skip
    server = await serve(manifest, manifest_proxy, objects)
    assert server.tls_address is not None
    address = (server.tls_address.host, server.tls_address.port)
    same = await asyncio.to_thread(resumed_elsewhere, address, pki.client, HOST, HOST)
    assert same == "HTTP/1.1 200 OK"
    second = await asyncio.to_thread(resumed_elsewhere, address, pki.client, HOST, OTHER)
    assert second.startswith("refused")
    assert pod.requests == 3  # both of the first pair, the first of the second


async def test_the_auth_service_gets_the_verified_names_and_never_a_clients_own(
    pki: Pki, pod: Upstream, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    """ingress-nginx sets the ssl-client-* headers on auth-url's subrequest too."""
    auth = await start_auth_service()
    try:
        annotations = {"auth_tls_secret": SECRET, "auth_tls_verify_client": "optional",
                       "auth_url": auth.url("/status/200")}  # fmt: skip
        server = await serve(manifest, manifest_proxy, world(pki, pod, **annotations))
        forged = (("ssl-client-verify", "SUCCESS"), ("ssl-client-subject-dn", "CN=admin"))
        assert (await https(server, pki.client, headers=forged)).status == 200
        seen = auth.headers()
        assert seen["ssl-client-verify"] == "SUCCESS"
        assert seen["ssl-client-subject-dn"] == r"CN=authtls,O=Example\, Inc."
        assert (await https(server, headers=forged)).status == 200
        anonymous = auth.headers()
        assert anonymous["ssl-client-verify"] == "NONE"
        assert "ssl-client-subject-dn" not in anonymous
    finally:
        await auth.stop()
