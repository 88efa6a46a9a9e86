"""proxy-ssl-secret from the API server: Opaque Secrets are watched next to kubernetes.io/tls ones
(with a TLS listener), so a CA-only Secret verifies an HTTPS upstream, follows rotation and
deletion, and what the source holds of a Secret is only what routing reads of it
(docs/behaviour.md "Upstream TLS", "Kubernetes API")."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest

from proxy.app.runtime import ProxyServer
from proxy.control.sources.kubernetes.resources import OPAQUE_SECRETS, TLS_SECRETS
from proxy.core.routing import Snapshot
from tests.certs import self_signed
from tests.integration.cluster import NAMESPACE, Obj, until
from tests.integration.kubernetes.conftest import StartKubeProxy, StartReflector, restarts
from tests.integration.kubernetes.test_source import tls_secret
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
