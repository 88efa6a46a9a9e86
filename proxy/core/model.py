"""The immutable routing snapshot the data plane reads.

A source (static URLs, manifests, the Kubernetes API) describes the whole world; translation turns
it into one `Snapshot`; the data plane reads `publisher.current` once per request and never sees a
half-built table. Everything here is frozen: a new world means a new snapshot.

Vocabulary follows Envoy: a *route* matches host and path and names a *cluster* (one Service port,
ingress-nginx's "backend"); a cluster has *endpoints* (pod address and port).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from proxy.core.cookies import SetCookieFormatter

if TYPE_CHECKING:
    from proxy.core.affinity import Balancer


class AffinityMode(StrEnum):
    BALANCED = "balanced"
    PERSISTENT = "persistent"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One upstream address. `node` is the ingress-nginx node text that affinity hashes."""

    address: str  # pod IP or host name, as connected to
    port: int
    pod: str | None = None
    draining: bool = False  # serving but terminating: keeps pinned sessions, gets no new ones
    # Computed once: tables, rings, metrics and the access log all ask, 50,000 endpoints at a time.
    node: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "node", node_text(self.address, self.port))

    @property
    def label(self) -> str:
        """How metrics and the status page name this endpoint."""
        return self.pod or self.node


def node_text(address: str, port: int) -> str:
    """`address:port`, brackets around anything that does not look like dotted IPv4.

    ingress-nginx's test is loose on purpose (four digit runs separated by any single character);
    the hashed text must match it byte for byte, so it is copied as is.
    """
    if _looks_like_ipv4(address):
        return f"{address}:{port}"
    return f"[{address}]:{port}"


def _looks_like_ipv4(address: str) -> bool:
    return _IPV4_LIKE.fullmatch(address) is not None


# four runs of ASCII digits, each pair separated by exactly one other character
_IPV4_LIKE = re.compile(r"[0-9]+[^0-9][0-9]+[^0-9][0-9]+[^0-9][0-9]+")


@dataclass(frozen=True, slots=True)
class CookieSettings:
    """The `session-cookie-*` annotations, already validated."""

    name: str = "INGRESSCOOKIE"
    path: str | None = None  # None: the matched Ingress path
    domain: str | None = None
    samesite: str | None = None  # emitted only when exactly Strict, Lax or None
    conditional_samesite_none: bool = False
    secure: bool = False
    max_age: int | None = None
    expires: int | None = None  # seconds from now
    change_on_failure: bool = False


@dataclass(frozen=True, slots=True)
class Affinity:
    mode: AffinityMode = AffinityMode.BALANCED
    cookie: CookieSettings = field(default_factory=CookieSettings)


@dataclass(frozen=True, slots=True)
class UpstreamPolicy:
    """The proxy-* annotations/flags that govern talking to a cluster."""

    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    send_timeout: float = 60.0
    body_size: int = 1024 * 1024  # 0 = unlimited
    next_upstream: frozenset[str] = frozenset({"error", "timeout"})
    next_upstream_tries: int = 3  # 0 = unlimited, as nginx


@dataclass(frozen=True, slots=True, eq=False)
class Cluster:
    """A Service port (ingress-nginx backend) and its endpoints.

    `affinity` is None when no Ingress enabled cookie affinity for this backend; then requests are
    spread uniformly at random over ready endpoints. The balancer (ring or persistent map) is built
    once, when the snapshot is built, never per request.
    """

    name: str
    endpoints: tuple[Endpoint, ...]
    affinity: Affinity | None
    balancer: Balancer

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Cluster):
            return NotImplemented
        return (self.name, self.endpoints, self.affinity) == (
            other.name,
            other.endpoints,
            other.affinity,
        )

    def __hash__(self) -> int:
        return hash((self.name, self.endpoints, self.affinity))


@dataclass(frozen=True, slots=True)
class TlsCertificate:
    """A certificate chain and its key (PEM) and the server names it answers for by SNI."""

    source: str  # "Secret shop/web-tls" or the --tls-cert path: how logs name it
    hosts: tuple[str, ...]  # exact or one-label "*." names; () for the default certificate
    chain: bytes
    key: bytes = field(repr=False)


class PathType(StrEnum):
    EXACT = "Exact"
    PREFIX = "Prefix"
    REGEX = "Regex"  # ImplementationSpecific with use-regex


@dataclass(frozen=True, slots=True)
class Route:
    """One Ingress path: where it matches, which cluster serves it, and whether it sets cookies.

    `sets_cookie` is the ingress-nginx "affinity location" test: a route whose own Ingress did not
    enable affinity still follows a cookie into a shared affinity cluster, but never issues one.
    """

    host: str | None  # None: every host; "*.example.com": one label wildcard
    path: str  # the path as written in the Ingress ("/" for an empty one)
    path_type: PathType
    cluster: Cluster
    sets_cookie: bool
    cookie_path: str  # session-cookie-path, else `path`
    upstream: UpstreamPolicy = field(default_factory=UpstreamPolicy)
    namespace: str = ""
    ingress: str = ""
    service: str = ""
    ssl_redirect: bool = False  # plain-HTTP requests get a 308 to https (ssl-redirect annotations)
    # Computed once per snapshot so requests only read them:
    # (namespace, ingress, service, host, path), the metric labels
    labels: tuple[str, ...] = field(init=False, repr=False, compare=False)
    # the Set-Cookie writer of this path; None when the route issues no cookies
    set_cookie: SetCookieFormatter | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        labels = (self.namespace, self.ingress, self.service, self.host or "*", self.path)
        object.__setattr__(self, "labels", labels)
        affinity = self.cluster.affinity
        formatter = (
            SetCookieFormatter(affinity.cookie, self.cookie_path)
            if self.sets_cookie and affinity is not None
            else None
        )
        object.__setattr__(self, "set_cookie", formatter)
