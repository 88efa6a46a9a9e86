"""Exec credential plugins: what the plugin is told, and what its answer gives."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from proxy.control.sources.kubernetes.config import ClusterAccess, ExecConfig
from proxy.control.sources.kubernetes.exec_plugin import (
    CredentialError,
    ExecCredential,
    exec_info,
    parse_exec_credential,
)

V1 = "client.authentication.k8s.io/v1"
V1BETA1 = "client.authentication.k8s.io/v1beta1"


def answer(status: object, api_version: str = V1, kind: str = "ExecCredential") -> bytes:
    return json.dumps({"apiVersion": api_version, "kind": kind, "status": status}).encode()


def test_a_token_with_its_expiry() -> None:
    output = answer({"token": "k8s-aws-v1.abc", "expirationTimestamp": "2026-01-02T03:04:05Z"})
    assert parse_exec_credential(output, V1) == ExecCredential(
        token="k8s-aws-v1.abc", expires=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    )


def test_a_client_certificate_without_expiry() -> None:
    output = answer({"clientCertificateData": "CERT", "clientKeyData": "KEY"}, V1BETA1)
    assert parse_exec_credential(output, V1BETA1) == ExecCredential(
        client_cert=b"CERT", client_key=b"KEY"
    )


@pytest.mark.parametrize(
    ("output", "complaint"),
    [
        (b"Please log in at https://...", "not JSON"),
        (answer({"token": "t"}, kind="Secret"), "not an ExecCredential"),
        (answer({"token": "t"}, V1BETA1), "answered 'client.authentication.k8s.io/v1beta1'"),
        (answer(None), "has no status"),
        (answer({}), "neither token nor certificate"),
        (answer({"clientCertificateData": "C"}), "go together"),
        (answer({"token": 5}), "must be strings"),
        (answer({"token": "t", "expirationTimestamp": "tomorrow"}), "not RFC 3339"),
        (answer({"token": "t", "expirationTimestamp": "2026-01-02T03:04:05"}), "not RFC 3339"),
    ],
)
def test_unusable_answers(output: bytes, complaint: str) -> None:
    with pytest.raises(CredentialError, match=complaint):
        parse_exec_credential(output, V1)


def test_exec_info_carries_the_cluster_only_when_asked() -> None:
    plugin = ExecConfig(api_version=V1, command="x", interactive_mode="Never")
    access = ClusterAccess(server="https://k:6443", ca=b"PEM", tls_server_name="kubernetes")
    assert json.loads(exec_info(plugin, access)) == {
        "apiVersion": V1,
        "kind": "ExecCredential",
        "spec": {"interactive": False},
    }
    asked = ExecConfig(api_version=V1BETA1, command="x", provide_cluster_info=True)
    assert json.loads(exec_info(asked, access))["spec"] == {
        "interactive": False,
        "cluster": {
            "server": "https://k:6443",
            "tls-server-name": "kubernetes",
            "certificate-authority-data": base64.b64encode(b"PEM").decode(),
        },
    }
