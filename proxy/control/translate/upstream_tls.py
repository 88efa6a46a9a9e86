"""What an Ingress's routes speak to their upstreams: HTTP, or HTTPS with the proxy-ssl-* settings
once its proxy-ssl-secret is looked up; or nothing, and why they answer 503
(docs/behaviour.md, "Upstream TLS"). Pure: no I/O, no logging."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from proxy.control.translate.annotations import IngressSettings
from proxy.control.translate.proxy_ssl import SPOKEN_PROTOCOLS, ProxySsl, SecretData
from proxy.core.model import UpstreamTls
from proxy.system.cert_chain import ca_load_error


def resolved(
    settings: IngressSettings, namespace: str, secrets: Mapping[tuple[str, str], SecretData]
) -> IngressSettings:
    """`settings` with the upstream TLS in its policy, or `denied` and a warning saying why."""
    tls, denied = upstream_tls(settings, namespace, secrets)
    if denied is not None:
        warning = f"{denied}; its paths answer 503"
        return dataclasses.replace(settings, denied=denied, warnings=(*settings.warnings, warning))
    if tls is None:
        return settings
    upstream = dataclasses.replace(settings.upstream, tls=tls)
    return dataclasses.replace(settings, upstream=upstream)


def upstream_tls(
    settings: IngressSettings, namespace: str, secrets: Mapping[tuple[str, str], SecretData]
) -> tuple[UpstreamTls | None, str | None]:
    """The TLS an Ingress's routes speak (None: HTTP), or why they answer 503 instead.

    As ingress-nginx: a proxy-ssl-secret that is not `namespace/name` of a usable Secret in the
    Ingress's own namespace denies its locations, whatever the protocol; without a CA
    certificate in it the other proxy-ssl-* settings are not applied, and a client certificate
    is presented only next to a CA certificate (it writes both to one file).
    """
    protocol = settings.backend_protocol
    if protocol not in SPOKEN_PROTOCOLS:
        return None, f"backend-protocol {protocol} is not supported"
    tls = UpstreamTls() if protocol == "HTTPS" else None
    proxy_ssl = settings.proxy_ssl
    if proxy_ssl is not None:
        data, problem = _secret(proxy_ssl.secret, namespace, secrets)
        if data is None:
            return None, problem
        if tls is not None:
            tls = _configured(proxy_ssl, data)
    return tls, None


def _secret(
    ref: str, namespace: str, secrets: Mapping[tuple[str, str], SecretData]
) -> tuple[SecretData | None, str]:
    parts = ref.split("/")
    if len(parts) != 2:
        return None, f"proxy-ssl-secret {ref!r} is not namespace/name"
    if parts[0] != namespace:
        return None, f"proxy-ssl-secret {ref}: Secrets of other namespaces are not allowed"
    data = secrets.get((parts[0], parts[1]))
    if data is None:
        # (the Kubernetes source reads kubernetes.io/tls and Opaque Secrets with a TLS listener)
        return None, (
            f"proxy-ssl-secret {ref} not found (from the API server only Secrets of type"
            " kubernetes.io/tls or Opaque are read, and only with a TLS listener)"
        )
    if data.ca is None and (data.chain is None or data.key is None):
        return None, f"proxy-ssl-secret {ref} has neither ca.crt nor tls.crt and tls.key"
    error = None if data.ca is None else ca_load_error(data.ca)
    if error is not None:
        return None, f"proxy-ssl-secret {ref}: ca.crt is not a PEM certificate ({error})"
    return data, ""


def _configured(proxy_ssl: ProxySsl, data: SecretData) -> UpstreamTls:
    name = proxy_ssl.name or UpstreamTls().name
    source = f"Secret {proxy_ssl.secret}"
    if data.ca is None:
        # ingress-nginx writes no proxy_ssl_* line but the name ones without ca.crt
        return UpstreamTls(source=source, name=name, sni=proxy_ssl.sni)
    return UpstreamTls(
        source=source,
        ca=data.ca,
        chain=data.chain,
        key=data.key,
        verify=proxy_ssl.verify,
        name=name,
        sni=proxy_ssl.sni,
        protocols=proxy_ssl.protocols,
        ciphers=proxy_ssl.ciphers,
    )
