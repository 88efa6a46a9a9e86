"""TLS from Ingress objects (pure): certificates from Secrets with tls.crt and tls.key, and which
routes redirect plain HTTP to https (the ssl-redirect annotations)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from proxy.control.translate.annotations import IngressSettings
from proxy.core.model import TlsCertificate
from proxy.core.routing import Route
from proxy.core.sni import covers


@dataclass(frozen=True, slots=True)
class TlsEntry:
    """One `spec.tls[]` item of an Ingress."""

    hosts: tuple[str, ...]  # as written; () means the Ingress's own rule hosts
    secret: str | None  # secretName; None means the default certificate


@dataclass(frozen=True, slots=True)
class TlsSecret:
    chain: bytes
    key: bytes


@dataclass(frozen=True, slots=True)
class IngressTls:
    """What TLS-related facts translation needs of one selected Ingress."""

    ref: str  # "Ingress ns/name"
    namespace: str
    rule_hosts: tuple[str, ...]
    entries: tuple[TlsEntry, ...]


def certificates(
    ingresses: Iterable[IngressTls],
    secrets: Mapping[tuple[str, str], TlsSecret],
    warnings: list[str],
) -> tuple[tuple[TlsCertificate, ...], frozenset[str]]:
    """The certificates the Ingresses name, and every host they configure TLS for (with or
    without a usable Secret: such a host is served with the default certificate, as by nginx)."""
    found: list[TlsCertificate] = []
    tls_hosts: set[str] = set()
    for ingress in ingresses:
        for entry in ingress.entries:
            hosts = entry.hosts or ingress.rule_hosts
            tls_hosts.update(hosts)
            if entry.secret is None or not hosts:
                continue
            secret = secrets.get((ingress.namespace, entry.secret))
            if secret is None:
                warnings.append(
                    f"{ingress.ref}: tls: Secret {ingress.namespace}/{entry.secret} not found or"
                    f" without tls.crt and tls.key; {', '.join(hosts)} get the default"
                    " certificate"
                )
                continue
            source = f"Secret {ingress.namespace}/{entry.secret}"
            found.append(TlsCertificate(source, tuple(hosts), secret.chain, secret.key))
    return tuple(sorted(set(found), key=lambda c: (c.source, c.hosts))), frozenset(tls_hosts)


def with_redirects(
    route: Route, settings: Mapping[str, IngressSettings], tls_hosts: frozenset[str]
) -> Route:
    """`route` with `ssl_redirect` set as ingress-nginx would: hosts with TLS redirect unless
    their Ingress says `ssl-redirect: "false"`; `force-ssl-redirect` redirects regardless."""
    ingress = settings.get(f"Ingress {route.namespace}/{route.ingress}")
    if ingress is None:
        return route
    has_tls = route.host is not None and any(covers(p, route.host) for p in tls_hosts)
    redirect = ingress.force_ssl_redirect or (has_tls and ingress.ssl_redirect)
    if not redirect:
        return route
    return replace(route, ssl_redirect=True, keeps_trailing_slash=ingress.preserve_trailing_slash)
