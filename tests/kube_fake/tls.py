"""A throwaway certificate authority, with server and client certificates, made by `openssl`.

The `openssl` command rather than the `cryptography` package: it is on every machine this
project runs on, while `cryptography` is not a dependency (the test venv does not have it). EC
P-256 keys, so the whole set takes a few tens of milliseconds.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

SERVER_NAME = "kubernetes.test"  # the only name of the `named` server certificate


@dataclass(frozen=True)
class Pki:
    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def _issue(pki: Pki, name: str, subject: str, extensions: str) -> None:
    directory = pki.directory
    (directory / f"{name}.ext").write_text(extensions)
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", pki.key(name), "-out", f"{name}.csr", "-subj", subject,
             cwd=directory)  # fmt: skip
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", pki.ca, "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-out", pki.cert(name), "-extfile", f"{name}.ext",
             cwd=directory)  # fmt: skip


def make_pki(directory: Path) -> Pki:
    """CA `ca`; server certificates `ip` (for 127.0.0.1 and ::1, as minikube's) and `named`
    (for kubernetes.test only: needs tls-server-name); client certificates `admin` (minikube's
    user) and `other` (a second identity)."""
    pki = Pki(directory)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", "ca.key", "-out", pki.ca, "-days", "2",
             "-subj", "/CN=fake-kubernetes-ca", cwd=directory)  # fmt: skip
    server = "extendedKeyUsage=serverAuth\nsubjectAltName="
    _issue(pki, "ip", "/CN=kube-apiserver", server + "IP:127.0.0.1,IP:::1\n")
    _issue(pki, "named", "/CN=kube-apiserver", server + f"DNS:{SERVER_NAME}\n")
    for name in ("admin", "other"):
        _issue(pki, name, f"/O=system:masters/CN={name}", "extendedKeyUsage=clientAuth\n")
    return pki
