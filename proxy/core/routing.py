"""Route matching (docs/behaviour.md, "Route precedence"): host first, then the longest path.

Like nginx's server blocks: a request whose host has rules of its own (exactly, or through a
one-label `*.` wildcard) is matched only against those, and is 404 when none matches; hosts
without rules fall to the rules that name no host, then to the default route, else 404.
A `Route` is one Ingress path and the cluster it sends to; a `Snapshot` is the whole table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from proxy.core.affinity import Cluster
from proxy.core.cookies import SetCookieFormatter
from proxy.core.model import PathType, TlsCertificate, UpstreamPolicy


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


class RouteTable:
    __slots__ = ("_any_host", "_default", "_exact", "_wildcard")

    def __init__(self, routes: Iterable[Route], default: Route | None) -> None:
        by_host: dict[str | None, list[Route]] = {}
        for route in routes:
            by_host.setdefault(route.host, []).append(route)
        self._exact: dict[str, tuple[_Matcher, ...]] = {}
        self._wildcard: dict[str, tuple[_Matcher, ...]] = {}
        self._any_host: tuple[_Matcher, ...] = ()
        for host, host_routes in by_host.items():
            matchers = tuple(_Matcher(r) for r in sorted(host_routes, key=_priority))
            if host is None:
                self._any_host = matchers
            elif host.startswith("*."):
                self._wildcard[host[2:]] = matchers
            else:
                self._exact[host] = matchers
        self._default = default

    def match(self, host: str, path: str) -> Route | None:
        matchers = self._exact.get(host)
        if matchers is None:
            dot = host.find(".")
            if dot > 0:
                matchers = self._wildcard.get(host[dot + 1 :])
        if matchers is not None:
            # A host with rules of its own is a server block of its own: what its paths do not
            # match is 404 there (translation gives it a `/` route for an Ingress defaultBackend).
            for matcher in matchers:
                if matcher.matches(path):
                    return matcher.route
            return None
        for matcher in self._any_host:
            if matcher.matches(path):
                return matcher.route
        return self._default


def _priority(route: Route) -> tuple[int, int]:
    # Exact paths first, then the longest path; sorted() keeps Ingress order among equals.
    return (0 if route.path_type is PathType.EXACT else 1, -len(route.path))


class _Matcher:
    __slots__ = ("_exact", "_prefix", "_regex", "route")

    def __init__(self, route: Route) -> None:
        self.route = route
        self._exact = route.path if route.path_type is PathType.EXACT else None
        self._regex = (
            re.compile(route.path, re.IGNORECASE) if route.path_type is PathType.REGEX else None
        )
        self._prefix = route.path.rstrip("/") if route.path_type is PathType.PREFIX else None

    def matches(self, path: str) -> bool:
        if self._prefix is not None:
            # Element-wise: /foo matches /foo, /foo/ and /foo/bar, never /foobar.
            prefix = self._prefix
            return (
                not prefix
                or path == prefix
                or (path.startswith(prefix) and path[len(prefix)] == "/")
            )
        if self._exact is not None:
            return path == self._exact
        assert self._regex is not None
        return self._regex.match(path) is not None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The whole routing table, with its matcher built once so requests only look things up."""

    routes: tuple[Route, ...]
    default_route: Route | None = None
    warnings: tuple[str, ...] = ()
    certificates: tuple[TlsCertificate, ...] = ()  # from Ingress spec.tls, for SNI
    table: RouteTable = field(init=False, repr=False, compare=False)
    # Derived once, where the snapshot is built (a source's thread), not on the event loop that
    # reads them each time a table comes in: at 50,000 endpoints each pass costs milliseconds.
    clusters: tuple[Cluster, ...] = field(init=False, repr=False, compare=False)
    nodes: frozenset[str] = field(init=False, repr=False, compare=False)  # address:port
    endpoint_labels: frozenset[tuple[str, str]] = field(init=False, repr=False, compare=False)
    draining: int = field(init=False, repr=False, compare=False)  # endpoints draining

    def __post_init__(self) -> None:
        set_field = object.__setattr__
        set_field(self, "table", RouteTable(self.routes, self.default_route))
        seen = {route.cluster.name: route.cluster for route in self.routes}
        if self.default_route is not None:
            seen.setdefault(self.default_route.cluster.name, self.default_route.cluster)
        clusters = tuple(seen.values())
        endpoints = [e for c in clusters for e in c.endpoints]
        set_field(self, "clusters", clusters)
        set_field(self, "nodes", frozenset(e.node for e in endpoints))
        set_field(self, "endpoint_labels",
                  frozenset((c.name, e.label) for c in clusters for e in c.endpoints))  # fmt: skip
        set_field(self, "draining", sum(e.draining for e in endpoints))

    @property
    def endpoint_count(self) -> int:
        return sum(len(cluster.endpoints) for cluster in self.clusters)
