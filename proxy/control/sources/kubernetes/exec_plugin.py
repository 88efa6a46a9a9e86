"""Credential plugins (`users[].user.exec`): run the command, read the ExecCredential it prints.

What `aws eks get-token`, `gke-gcloud-auth-plugin` and `kubelogin` speak: the request goes in the
`KUBERNETES_EXEC_INFO` variable, a token or a client certificate comes back on stdout, with an
optional expiry after which the plugin is run again (and after any 401).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from proxy.control.sources.kubernetes.config import ClusterAccess, ExecConfig

# A plugin that opens a browser for a login is waiting for a human; one minute is plenty for
# any that is not, and a bound keeps a hung plugin from stopping the source for good.
EXEC_TIMEOUT = 60.0


class CredentialError(Exception):
    """No credentials could be had (a plugin failed, a token file is gone); one line."""


@dataclass(frozen=True, slots=True)
class ExecCredential:
    token: str | None = None
    client_cert: bytes | None = None  # PEM
    client_key: bytes | None = None
    expires: datetime | None = None  # None: valid until the server says otherwise (a 401)


def exec_info(config: ExecConfig, access: ClusterAccess) -> str:
    """The KUBERNETES_EXEC_INFO the plugin reads: what is asked, and of which cluster."""
    spec: dict[str, Any] = {"interactive": False}
    if config.provide_cluster_info:
        cluster: dict[str, Any] = {"server": access.server}
        if access.tls_server_name:
            cluster["tls-server-name"] = access.tls_server_name
        if access.insecure:
            cluster["insecure-skip-tls-verify"] = True
        ca = access.ca.read_bytes() if isinstance(access.ca, Path) else access.ca
        if ca:
            cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
        spec["cluster"] = cluster
    return json.dumps({"apiVersion": config.api_version, "kind": "ExecCredential", "spec": spec})


def parse_exec_credential(output: bytes, api_version: str) -> ExecCredential:
    """The credential in a plugin's stdout; CredentialError saying what is wrong with it."""
    try:
        document = json.loads(output)
    except ValueError:
        raise CredentialError("exec plugin: its output is not JSON") from None
    if not isinstance(document, dict) or document.get("kind") != "ExecCredential":
        raise CredentialError("exec plugin: its output is not an ExecCredential")
    if document.get("apiVersion") != api_version:
        raise CredentialError(
            f"exec plugin: answered {document.get('apiVersion')!r}, {api_version!r} was asked"
        )
    status = document.get("status")
    if not isinstance(status, dict):
        raise CredentialError("exec plugin: the ExecCredential has no status")
    token = status.get("token")
    cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
    if not isinstance(token, str | None) or not isinstance(cert, str | None):
        raise CredentialError("exec plugin: token and clientCertificateData must be strings")
    if not isinstance(key, str | None) or (cert is None) != (key is None):
        raise CredentialError("exec plugin: clientCertificateData and clientKeyData go together")
    if not token and not cert:
        raise CredentialError("exec plugin: the ExecCredential has neither token nor certificate")
    return ExecCredential(
        token=token or None,
        client_cert=cert.encode() if cert else None,
        client_key=key.encode() if key else None,
        expires=_expiry(status.get("expirationTimestamp")),
    )


def _expiry(value: object) -> datetime | None:
    if value is None:
        return None
    try:
        expires = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        expires = None
    if expires is None or expires.tzinfo is None:
        raise CredentialError(f"exec plugin: expirationTimestamp {value!r} is not RFC 3339")
    return expires


async def run_exec_plugin(config: ExecConfig, access: ClusterAccess) -> ExecCredential:
    env = {**os.environ, **dict(config.env), "KUBERNETES_EXEC_INFO": exec_info(config, access)}
    try:
        process = await asyncio.create_subprocess_exec(
            config.command,
            *config.args,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,  # never interactive: nobody is at a proxy's terminal
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as error:
        raise CredentialError(f"exec plugin {config.command}: {error.strerror or error}") from None
    try:
        async with asyncio.timeout(EXEC_TIMEOUT):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        raise CredentialError(
            f"exec plugin {config.command}: no answer within {EXEC_TIMEOUT:g} s"
        ) from None
    finally:
        if process.returncode is None:  # timed out, or the source is stopping
            process.kill()
            await process.wait()
    if process.returncode != 0:
        said = stderr.decode(errors="replace").strip().splitlines()
        reason = f": {said[-1]}" if said else ""
        raise CredentialError(
            f"exec plugin {config.command} exited with status {process.returncode}{reason}"
        )
    return parse_exec_credential(stdout, config.api_version)
