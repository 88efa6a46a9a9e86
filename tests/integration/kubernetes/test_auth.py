"""Credentials against the fake API server over TLS: tokens (rotated), client certificates by
path and by data (minikube), exec plugins (v1 and v1beta1, token and certificate, expiry and
re-exec on 401), the pod's service account (IPv6 too), and the TLS options of a kubeconfig."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from proxy.control.sources.kubernetes.auth import Credentials
from proxy.control.sources.kubernetes.client import ApiError, Disconnected, KubeClient
from proxy.control.sources.kubernetes.config import (
    ClusterAccess,
    ExecConfig,
    UserAuth,
    find_access,
)
from proxy.control.sources.kubernetes.exec_plugin import CredentialError
from proxy.control.sources.kubernetes.resources import SERVICES
from tests.integration.kubernetes.conftest import TOKEN
from tests.kube_fake import exec_plugin, kubeconfig
from tests.kube_fake.server import FakeApiServer
from tests.kube_fake.tls import SERVER_NAME, Pki

V1 = "client.authentication.k8s.io/v1"
V1BETA1 = "client.authentication.k8s.io/v1beta1"


async def who(access: ClusterAccess, fake: FakeApiServer, **options: Any) -> str | None:
    """The user the fake saw for one list (after any renewal)."""
    async with KubeClient(access, Credentials(access, **options)) as client:
        await client.get(SERVICES.collection())
    return fake.requests[-1].user


def plugin(state: Path, api_version: str = V1, **config: Any) -> ExecConfig:
    state.mkdir(exist_ok=True)
    return ExecConfig(api_version, sys.executable, (exec_plugin.__file__, str(state)), **config)


def calls(state: Path) -> list[dict[str, Any]]:
    path = state / "calls"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_bearer_token(fake: FakeApiServer, pki: Pki) -> None:
    access = ClusterAccess(fake.url, ca=pki.ca, user=UserAuth(token=TOKEN))
    assert await who(access, fake) == "system:serviceaccount:ingress:proxy"
    assert fake.requests[-1].path == "/api/v1/services"


async def test_an_unknown_token_is_a_401_after_one_renewal(fake: FakeApiServer, pki: Pki) -> None:
    access = ClusterAccess(fake.url, ca=pki.ca, user=UserAuth(token="wrong"))
    with pytest.raises(ApiError) as raised:
        await who(access, fake)
    assert (raised.value.code, raised.value.reason) == (401, "Unauthorized")
    assert len(fake.requests) == 2, "tried again once with renewed credentials"


async def test_a_rotated_token_file_is_read_again_on_401(
    fake: FakeApiServer, pki: Pki, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("old\n")
    fake.tokens = {"old": "before"}
    access = ClusterAccess(fake.url, ca=pki.ca, user=UserAuth(token_file=token_file))
    credentials = Credentials(access)
    async with KubeClient(access, credentials) as client:
        await client.get(SERVICES.collection())
        fake.tokens = {"new": "after"}  # the kubelet rotated it: the old one is refused now
        token_file.write_text("new\n")
        await client.get(SERVICES.collection())
    assert [(r.user) for r in fake.requests] == ["before", None, "after"]


async def test_a_token_file_is_read_again_every_minute(
    fake: FakeApiServer, pki: Pki, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("old")
    fake.tokens = {"old": "before", "new": "after"}
    now = [1000.0]
    access = ClusterAccess(fake.url, ca=pki.ca, user=UserAuth(token_file=token_file))
    async with KubeClient(access, Credentials(access, clock=lambda: now[0])) as client:
        await client.get(SERVICES.collection())
        token_file.write_text("new")
        now[0] += 59
        await client.get(SERVICES.collection())
        now[0] += 1
        await client.get(SERVICES.collection())
    assert [r.user for r in fake.requests] == ["before", "before", "after"]


async def test_minikube_client_certificates_by_path(fake: FakeApiServer, pki: Pki) -> None:
    user = UserAuth(client_cert=pki.cert("admin"), client_key=pki.key("admin"))
    assert await who(ClusterAccess(fake.url, ca=pki.ca, user=user), fake) == "admin"


async def test_client_certificate_and_ca_as_data_in_a_kubeconfig(
    fake: FakeApiServer, pki: Pki, tmp_path: Path
) -> None:
    user = {
        "client-certificate-data": kubeconfig.data(pki.cert("other")),
        "client-key-data": kubeconfig.data(pki.key("other")),
    }
    cluster = {"certificate-authority-data": kubeconfig.data(pki.ca)}
    path = kubeconfig.write(
        tmp_path / "config", kubeconfig.kubeconfig(fake.url, user, cluster=cluster)
    )
    assert await who(find_access(path, None, {}, tmp_path), fake) == "other"


async def test_exec_plugin_v1_token_renewed_when_it_expires_and_after_a_401(
    fake: FakeApiServer, pki: Pki, tmp_path: Path
) -> None:
    state = tmp_path / "plugin"
    config = plugin(state, V1, interactive_mode="Never", env=(("REGION", "eu"),))
    (state / "token").write_text("exec-1")
    fake.tokens = {"exec-1": "exec-user"}
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    (state / "expires").write_text((now[0] + timedelta(minutes=15)).isoformat())
    access = ClusterAccess(fake.url, ca=pki.ca, user=UserAuth(exec=config))
    credentials = Credentials(access, wall_clock=lambda: now[0])
    async with KubeClient(access, credentials) as client:
        await client.get(SERVICES.collection())
        await client.get(SERVICES.collection())
        assert len(calls(state)) == 1, "cached while valid"
        (state / "token").write_text("exec-2")
        fake.tokens["exec-2"] = "exec-user-2"
        now[0] += timedelta(minutes=15)  # expired: the plugin runs again before the request
        await client.get(SERVICES.collection())
        assert (len(calls(state)), fake.requests[-1].user) == (2, "exec-user-2")
        # The server revokes it early: a 401 runs the plugin again, once.
        (state / "token").write_text("exec-3")
        fake.tokens = {"exec-3": "exec-user-3"}
        await client.get(SERVICES.collection())
    assert len(calls(state)) == 3
    assert fake.requests[-1].user == "exec-user-3"
    assert calls(state)[0] == {
        "apiVersion": V1,
        "kind": "ExecCredential",
        "spec": {"interactive": False},
    }


async def test_exec_plugin_v1beta1_client_certificate_with_cluster_info(
    fake: FakeApiServer, pki: Pki, tmp_path: Path
) -> None:
    state = tmp_path / "plugin"
    config = plugin(state, V1BETA1, provide_cluster_info=True)
    (state / "cert.pem").write_text(pki.cert("other").read_text())
    (state / "key.pem").write_text(pki.key("other").read_text())
    access = ClusterAccess(fake.url, ca=pki.ca, user=UserAuth(exec=config))
    assert await who(access, fake) == "other"
    (info,) = calls(state)
    assert info["apiVersion"] == V1BETA1
    assert info["spec"]["cluster"]["server"] == fake.url
    assert "certificate-authority-data" in info["spec"]["cluster"]


async def test_a_failing_exec_plugin_says_why_in_one_line(
    fake: FakeApiServer, pki: Pki, tmp_path: Path
) -> None:
    state = tmp_path / "plugin"
    config = plugin(state)
    (state / "fail").write_text("error: You must be logged in to the server (run `login`)\n")
    access = ClusterAccess(fake.url, ca=pki.ca, user=UserAuth(exec=config))
    with pytest.raises(CredentialError) as raised:
        await who(access, fake)
    assert str(raised.value) == (
        f"exec plugin {sys.executable} exited with status 1: "
        "error: You must be logged in to the server (run `login`)"
    )
    assert not fake.requests, "nothing is sent without credentials"


async def test_insecure_skip_tls_verify_and_the_system_trust(fake: FakeApiServer) -> None:
    insecure = ClusterAccess(fake.url, insecure=True, user=UserAuth(token=TOKEN))
    assert await who(insecure, fake) is not None
    with pytest.raises(Disconnected, match="certificate verify failed"):
        await who(ClusterAccess(fake.url, user=UserAuth(token=TOKEN)), fake)


@pytest.fixture
async def named(pki: Pki) -> AsyncIterator[FakeApiServer]:
    """An API server whose certificate names only kubernetes.test, reached at 127.0.0.1."""
    server = FakeApiServer(pki, certificate="named")
    server.tokens[TOKEN] = "proxy"
    await server.start()
    yield server
    await server.stop()


async def test_tls_server_name(named: FakeApiServer, pki: Pki) -> None:
    access = ClusterAccess(named.url, ca=pki.ca, user=UserAuth(token=TOKEN))
    with pytest.raises(Disconnected, match="certificate"):
        await who(access, named)
    renamed = ClusterAccess(
        named.url, ca=pki.ca, tls_server_name=SERVER_NAME, user=UserAuth(token=TOKEN)
    )
    assert await who(renamed, named) == "proxy"


def _ipv6_loopback() -> bool:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        return False
    return True


@pytest.fixture
async def fake_v6(pki: Pki) -> AsyncIterator[FakeApiServer]:
    if not _ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    server = FakeApiServer(pki)
    await server.start("::1")
    yield server
    await server.stop()


async def test_in_a_pod_with_an_ipv6_service_address(
    fake_v6: FakeApiServer, pki: Pki, tmp_path: Path
) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("pod-token")
    (account / "ca.crt").write_text(pki.ca.read_text())
    fake_v6.tokens["pod-token"] = "system:serviceaccount:ingress:proxy"
    port = fake_v6.url.rsplit(":", 1)[1]
    env = {"KUBERNETES_SERVICE_HOST": "::1", "KUBERNETES_SERVICE_PORT": port}
    access = find_access(None, None, env, tmp_path, account)
    assert access.server == f"https://[::1]:{port}"
    assert await who(access, fake_v6) == "system:serviceaccount:ingress:proxy"
