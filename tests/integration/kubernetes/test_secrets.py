"""proxy-ssl-secret from the API server: Opaque Secrets are watched next to kubernetes.io/tls ones
(with a TLS listener), so a CA-only Secret verifies an HTTPS upstream, follows rotation and
deletion, and what the source holds of a Secret is only what routing reads of it
(docs/behaviour.md "Upstream TLS", "Kubernetes API")."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from proxy.app.runtime import ProxyServer
from proxy.control.sources.kubernetes.resources import AUTH_SECRETS, OPAQUE_SECRETS, TLS_SECRETS
from proxy.core.client_auth import ClientAuth
from proxy.core.routing import Snapshot
from proxy.dataplane.basic_auth import check
from tests.certs import Authority, self_signed
from tests.integration.cluster import (
    NAMESPACE,
    Obj,
    Pods,
    endpoint_slice,
    ingress,
    rule,
    service,
    until,
    web_app,
)
from tests.integration.harness import url
from tests.integration.kubernetes.conftest import StartKubeProxy, StartReflector, restarts
from tests.integration.kubernetes.test_source import tls_secret
from tests.integration.test_auth_tls import HOST as AUTH_TLS_HOST
from tests.integration.test_auth_tls import SUBJECT as AUTH_TLS_SUBJECT
from tests.integration.test_auth_tls import https, new_pki, refused_handshake
from tests.integration.test_basic_auth import APR1, basic, bcrypt_hash
from tests.integration.test_upstream_tls import (
    BACKEND_NAME,
    TlsPod,
    answer,
    secret,
    start_tls_pod,
    world,
)
from tests.kube_fake.server import FakeApiServer

VERIFY = {
    "backend_protocol": "HTTPS",
    "proxy_ssl_secret": f"{NAMESPACE}/backend-ca",
    "proxy_ssl_verify": "on",
    "proxy_ssl_name": BACKEND_NAME,
}


@pytest.fixture
async def tls_pod() -> AsyncIterator[TlsPod]:
    pod = await start_tls_pod()
    yield pod
    await pod.pod.stop()


def current(server: ProxyServer) -> Snapshot:
    snapshot = server.publisher.current
    assert snapshot is not None
    return snapshot


async def published_after(server: ProxyServer, change: Obj | None, fake: FakeApiServer) -> None:
    """Apply `change` (None: delete the Secret backend-ca) and wait for the next snapshot."""
    before = current(server)
    if change is None:
        fake.delete({"kind": "Secret", "metadata": {"name": "backend-ca", "namespace": NAMESPACE}})
    else:
        fake.apply(change)
    await until(lambda: server.publisher.current is not before, "the next snapshot")


async def test_an_opaque_ca_secret_verifies_the_backend_rotates_and_its_deletion_denies(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, tls_pod: TlsPod
) -> None:
    pod = tls_pod
    wrong_ca, _ = self_signed(BACKEND_NAME)
    for obj in world(pod.pod, secret(ca_crt=wrong_ca), **VERIFY):
        fake.apply(obj)
    server, _ = await kube_proxy(tls=True)
    await until(server.ready, "ready")
    assert (await answer(server))[0] == 502  # read from the Opaque Secret: verified, and refused
    assert pod.pod.requests == 0

    await published_after(server, secret(ca_crt=pod.ca), fake)  # the CA rotated to the right one
    status, body = await answer(server)
    assert (status, body["name"]) == (200, "tls-pod")
    assert set(pod.server_names) == {None}  # proxy-ssl-server-name is off: no SNI

    await published_after(server, None, fake)
    requests = pod.pod.requests
    assert (await answer(server))[0] == 503
    assert pod.pod.requests == requests
    missing = [w for w in current(server).warnings if "proxy-ssl-secret" in w]
    assert len(missing) == 1 and "default/backend-ca not found" in missing[0]

    asked = fake.list_requests("secrets") + fake.watch_requests("secrets")
    selectors = {r.query.get("fieldSelector") for r in asked}
    assert selectors == {"type=kubernetes.io/tls", "type=Opaque"}
    assert restarts(server, "secrets-opaque", "error") == 0  # its own series, from startup


async def test_a_secret_is_held_only_for_the_keys_routing_reads(
    fake: FakeApiServer, reflect: StartReflector
) -> None:
    big = base64.b64encode(bytes(range(256)) * 4096).decode()  # 1 MiB of something else
    ca, _ = self_signed("some-ca")
    annotations = {"kubectl.kubernetes.io/last-applied-configuration": big}
    fake.apply(
        {
            "kind": "Secret",
            "metadata": {"name": "mixed", "namespace": "default", "annotations": annotations},
            "type": "Opaque",
            "data": {"ca.crt": base64.b64encode(ca).decode(), "dump.bin": big},
        }
    )
    fake.apply({"kind": "Secret", "metadata": {"name": "unrelated"}, "data": {"dump.bin": big}})
    fake.apply(tls_secret(*self_signed("app.test")))  # of the other type: not in this watch

    opaque = await reflect(OPAQUE_SECRETS)
    assert opaque.names() == {"mixed"}  # "unrelated" holds nothing routing reads: not kept
    held = opaque.reflector.objects["default", "mixed"]
    assert held["data"] == {"ca.crt": base64.b64encode(ca).decode()}
    assert set(held["metadata"]) == {"name", "namespace", "resourceVersion"}
    assert (held["kind"], held["type"]) == ("Secret", "Opaque")

    # Watched: a Secret that comes to hold a CA is kept, one that stops holding any is dropped.
    changes = opaque.changes
    fake.apply({"kind": "Secret", "metadata": {"name": "unrelated"},
                "data": {"dump.bin": big, "ca.crt": held["data"]["ca.crt"]}})  # fmt: skip
    await until(lambda: opaque.names() == {"mixed", "unrelated"}, "the CA added")
    assert opaque.reflector.objects["default", "unrelated"]["data"].keys() == {"ca.crt"}
    fake.apply({"kind": "Secret", "metadata": {"name": "mixed"}, "data": {"dump.bin": big}})
    await until(lambda: opaque.names() == {"unrelated"}, "the CA removed")
    fake.apply({"kind": "Secret", "metadata": {"name": "other"}, "data": {"dump.bin": big}})
    fake.delete({"kind": "Secret", "metadata": {"name": "unrelated"}})
    await until(lambda: not opaque.names(), "the deletion")
    assert opaque.changes == changes + 3  # the Secret without any of the keys changed nothing

    tls = await reflect(TLS_SECRETS)
    assert tls.names() == {"web-tls"}
    assert tls.reflector.objects["default", "web-tls"]["data"].keys() == {"tls.crt", "tls.key"}


# --- basic authentication's Secrets ----------------------------------------------------------


def auth_secret(name: str = "users", **data: str) -> Obj:
    return {
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "type": "Opaque",
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }


def secret_names(server: ProxyServer) -> set[str]:
    """The Secrets the current routes' basic authentication came from."""
    return {
        route.basic_auth.source.rpartition("/")[2]
        for route in current(server).routes
        if route.basic_auth is not None
    }


def status_ok(server: ProxyServer, user: str, password: str) -> bool:
    """Whether the current routes' users include `user` with `password` (no request made)."""
    return any(
        route.basic_auth is not None
        and route.basic_auth.stored(user.encode()) is not None
        and check(route.basic_auth, basic(user, password).encode())
        for route in current(server).routes
    )


async def status_with(server: ProxyServer, user: str | None = None, password: str = "") -> int:
    headers = {"Host": "app.test"}
    if user is not None:
        headers["Authorization"] = basic(user, password)
    async with (
        aiohttp.ClientSession() as session,
        session.get(url(server), headers=headers) as response,
    ):
        return response.status


async def test_an_auth_secret_arriving_after_the_ingress_then_changed_then_deleted(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods
) -> None:
    """Without a TLS listener: the Opaque Secret an Ingress names is read all the same."""
    for obj in web_app(await pods.start(1), auth_type="basic", auth_secret="users"):
        fake.apply(obj)
    server, _ = await kube_proxy()
    await until(server.ready, "ready")
    assert await status_with(server, "foo", "bar") == 503  # no Secret yet: never unauthenticated

    fake.apply(auth_secret(auth=f"foo:{APR1}\n"))
    await until(lambda: "users" in secret_names(server), "the Secret read")
    assert await status_with(server) == 401
    assert await status_with(server, "foo", "bar") == 200

    fake.apply(auth_secret(auth=f"foo:{bcrypt_hash('new')}\n"))  # the password changed
    await until(lambda: status_ok(server, "foo", "new"), "the new password")
    assert await status_with(server, "foo", "bar") == 401

    fake.delete({"kind": "Secret", "metadata": {"name": "users", "namespace": NAMESPACE}})
    await until(lambda: "users" not in secret_names(server), "the deletion")
    assert await status_with(server, "foo", "new") == 503


async def test_an_ingress_that_comes_to_name_an_auth_map_secret_finds_all_its_keys(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods
) -> None:
    """The Secret was held without its users (no Ingress named it): naming it lists it again."""
    fake.apply(auth_secret(foo=APR1))
    for obj in web_app(await pods.start(1)):
        fake.apply(obj)
    server, _ = await kube_proxy(tls=True)
    await until(server.ready, "ready")
    assert await status_with(server) == 200
    lists = len(fake.list_requests("secrets"))

    fake.apply(ingress("web", rule("app.test"), auth_type="basic", auth_secret="users",
                       auth_secret_type="auth-map"))  # fmt: skip
    await until(lambda: status_ok(server, "foo", "bar"), "the users of the Secret")
    assert await status_with(server) == 401
    assert len(fake.list_requests("secrets")) >= lists + 2  # both Secret watches listed again


async def test_only_named_secrets_are_held_whole(
    fake: FakeApiServer, reflect: StartReflector
) -> None:
    big = base64.b64encode(b"x" * 4096).decode()
    fake.apply(auth_secret("users", foo=APR1, other="y"))
    fake.apply(auth_secret("unnamed", auth=f"foo:{APR1}", dump=big))
    named = {("default", "users")}
    opaque = await reflect(AUTH_SECRETS, named=named.__contains__)
    assert opaque.names() == {"users"}  # "unnamed" holds nothing kept here: not at all
    held = opaque.reflector.objects["default", "users"]
    assert held["data"].keys() == {"foo", "other"}

    named.add(("default", "unnamed"))
    opaque.reflector.relist()
    await until(lambda: opaque.names() == {"users", "unnamed"}, "the relist")
    assert opaque.reflector.objects["default", "unnamed"]["data"].keys() == {"auth", "dump"}
    assert sum(opaque.restarts.values()) == 0  # asked for: not a restart
    named.clear()
    opaque.reflector.relist()
    await until(lambda: not opaque.names(), "the relist without names")


async def test_an_auth_tls_secret_arriving_after_the_ingress_then_changed(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods, tmp_path: Path
) -> None:
    """The host answers 403 until its CA Secret arrives; a new CA and an added ca.crl (a key
    held only because the Ingress names the Secret) apply at the next table."""
    pki = new_pki(tmp_path)
    app = ingress("authtls", rule(AUTH_TLS_HOST), auth_tls_secret="client-ca")
    app["spec"]["tls"] = [{"hosts": [AUTH_TLS_HOST], "secretName": "web-tls"}]
    for obj in (app, service(), endpoint_slice(await pods.start(1)),
                tls_secret(pki.server_chain, pki.server_key)):  # fmt: skip
        fake.apply(obj)
    server, _ = await kube_proxy(tls=True, https=True)
    await until(server.ready, "ready")
    assert (await https(server, pki.client)).status == 403  # no CA yet: closed, not open

    fake.apply(auth_tls_ca(pki.ca.pem))
    await until(lambda: client_auth_of(server) is not None, "the CA Secret")
    assert (await https(server)).status == 400
    assert (await https(server, pki.client)).status == 200

    cert, key, serial = pki.ca.issue(AUTH_TLS_SUBJECT)
    revoked = pki.write("revoked", cert, key)
    assert (await https(server, revoked)).status == 200
    fake.apply(auth_tls_ca(pki.ca.pem, pki.ca.revocation_list(serial)))
    await until(lambda: getattr(client_auth_of(server), "crl", None) is not None, "ca.crl")
    assert await refused_handshake(server, revoked)
    assert (await https(server, pki.client)).status == 200

    fake.apply(auth_tls_ca(Authority.new("rotated-ca").pem))
    await until(lambda: getattr(client_auth_of(server), "crl", 1) is None, "the new CA")
    assert await refused_handshake(server, pki.client)  # of the CA no longer trusted


def auth_tls_ca(ca: bytes, crl: bytes | None = None) -> Obj:
    data = {"ca.crt": ca, **({"ca.crl": crl} if crl is not None else {})}
    return {
        "kind": "Secret",
        "metadata": {"name": "client-ca", "namespace": NAMESPACE},
        "type": "Opaque",
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }


def client_auth_of(server: ProxyServer) -> ClientAuth | None:
    found = dict(current(server).client_auths).get(AUTH_TLS_HOST)
    return found if found is not None and found.refused is None else None
