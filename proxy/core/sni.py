"""Which certificate answers a TLS handshake's server name (SNI): pure, run per handshake."""

from __future__ import annotations

from collections.abc import Sequence

from proxy.core.model import TlsCertificate


def covers(pattern: str, host: str) -> bool:
    """Does server name `pattern` (exact or one-label `*.`) answer for `host`?"""
    if pattern.startswith("*."):
        dot = host.find(".")
        return dot > 0 and host[dot + 1 :] == pattern[2:]
    return pattern == host


def certificate_for(
    certificates: Sequence[TlsCertificate], server_name: str | None
) -> TlsCertificate | None:
    """The certificate for an SNI name: an exact name first, then a wildcard, then the default
    (one with no hosts); None when nothing answers for it."""
    default = None
    wildcard = None
    for certificate in certificates:
        if not certificate.hosts:
            default = default or certificate
        elif server_name is not None:
            for pattern in certificate.hosts:
                if pattern == server_name:
                    return certificate
                if wildcard is None and covers(pattern, server_name):
                    wildcard = certificate
    return wildcard or default
