"""The values a routing snapshot is made of: endpoints, affinity and upstream settings,
certificates, path types. All frozen: a new world means a new snapshot.

A source (static URLs, manifests, the Kubernetes API) describes the whole world; translation turns
it into one `Snapshot` (`proxy.core.routing`); the data plane reads the current one once per
request and never sees a half-built table.

Vocabulary follows Envoy: a *route* (`proxy.core.routing`) matches host and path and names a
*cluster* (`proxy.core.affinity`: one Service port, ingress-nginx's "backend", with its balancer);
a cluster has *endpoints* (pod address and port).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from proxy.core.cookies import CookieSettings


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
class Affinity:
    mode: AffinityMode = AffinityMode.BALANCED
    cookie: CookieSettings = field(default_factory=CookieSettings)


@dataclass(frozen=True, slots=True)
class UpstreamTls:
    """How to speak TLS to an upstream (backend-protocol HTTPS with proxy-ssl-*): what an
    SSLContext is built from, once per value, in the data plane."""

    source: str = ""  # "Secret ns/name" of proxy-ssl-secret, "" without one: how logs name it
    ca: bytes | None = None  # trusted CA certificates (PEM); None: nothing to verify against
    chain: bytes | None = None  # client certificate chain (PEM), presented when asked
    key: bytes | None = field(default=None, repr=False)
    verify: bool = False  # proxy-ssl-verify
    name: str = "upstream_balancer"  # proxy-ssl-name: checked, and sent by SNI if `sni`
    sni: bool = False  # proxy-ssl-server-name
    # proxy-ssl-protocols: ingress-nginx's default with a Secret, nginx's without
    protocols: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
    ciphers: str = "DEFAULT"  # proxy-ssl-ciphers, OpenSSL's format (TLS 1.2 and older)


@dataclass(frozen=True, slots=True)
class UpstreamPolicy:
    """The proxy-* annotations/flags that govern talking to a cluster."""

    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    send_timeout: float = 60.0
    body_size: int = 1024 * 1024  # 0 = unlimited
    next_upstream: frozenset[str] = frozenset({"error", "timeout"})
    next_upstream_tries: int = 3  # 0 = unlimited, as nginx
    next_upstream_timeout: float = 0.0  # seconds from the first try; 0 = unlimited, as nginx
    # Beyond ingress-nginx (docs/behaviour.md, "Outlier ejection"): failures in a row that
    # eject an endpoint (0 = never), and the first back-off.
    eject_after_failures: int = 0
    eject_seconds: float = 10.0
    tls: UpstreamTls | None = None  # backend-protocol HTTPS (docs/behaviour.md, "Upstream TLS")


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
    REGEX = "Regex"  # ImplementationSpecific with use-regex: from the start, any case
    FULL_REGEX = "RegularExpression"  # Gateway API: the whole path, case-sensitive


@dataclass(frozen=True, slots=True)
class Condition:
    """One status condition as the Gateway API writes it (`metav1.Condition`)."""

    type: str
    status: bool
    reason: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class ObjectStatus:
    """What translation concluded about one object, as conditions: the object's own
    (`parent` ""), a listener's (`parent` "listener NAME", with the routes it holds), or an
    HTTPRoute's per parent Gateway (`parent` "Gateway ns/name")."""

    kind: str
    namespace: str
    name: str
    generation: int
    parent: str
    conditions: tuple[Condition, ...]
    attached_routes: int | None = None  # listeners only
    # an HTTPRoute's parentRef as written: its sectionName and port (None: not given)
    section: str | None = None
    port: int | None = None
