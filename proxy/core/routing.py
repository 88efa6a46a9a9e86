"""Route matching (docs/behaviour.md, "Route precedence"): host first, then the longest path.

Like nginx's server blocks: a request whose host has rules of its own (exactly, through a
one-label `*.` wildcard of an Ingress, or through the longest `*.` suffix of a Gateway API
route) is matched only against those, and is 404 when none matches; hosts without rules fall to
the rules that name no host, then to the default route, else 404. Among one host's rules, exact
paths come first, then the longest; Gateway API routes then order by their `RequestMatch`
(docs/gateway-api.md, "Matching").
A `Route` is one Ingress path or HTTPRoute match and the cluster it sends to; a `Snapshot` is
the whole table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from random import Random

from proxy.core.access import AccessList
from proxy.core.affinity import Cluster
from proxy.core.basic_auth import BasicAuth
from proxy.core.canary import CanaryPolicy
from proxy.core.client_auth import ClientAuth
from proxy.core.cookies import SetCookieFormatter
from proxy.core.cors import CorsPolicy
from proxy.core.custom_headers import ResponseHeaders
from proxy.core.error_pages import About
from proxy.core.external_auth import ExternalAuth
from proxy.core.filters import Filters
from proxy.core.headers import Request
from proxy.core.matches import NO_CONDITIONS, RequestMatch
from proxy.core.mirror import Mirror
from proxy.core.model import ObjectStatus, PathType, TlsCertificate, UpstreamPolicy
from proxy.core.ratelimit import RateLimits
from proxy.core.response_edits import ResponseEdits
from proxy.core.send_rate import SendRate
from proxy.core.sessions import SessionPolicy


@dataclass(frozen=True, slots=True)
class Route:
    """One Ingress path: where it matches, which cluster serves it, and whether it sets cookies.

    `sets_cookie` is the ingress-nginx "affinity location" test: a route whose own Ingress did not
    enable affinity still follows a cookie into a shared affinity cluster, but never issues one.
    """

    host: str | None  # None: every host; "*.example.com": a wildcard (see `suffix_wildcard`)
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
    keeps_trailing_slash: bool = False  # preserve-trailing-slash: else the redirect drops it
    access: AccessList | None = None  # *-source-range: the clients it serves (None: all)
    basic_auth: BasicAuth | None = None  # auth-type basic: the users it serves (None: all)
    # satisfy: any: one of the address lists and authentications letting a request through is
    # enough (docs/behaviour.md, "satisfy"); else all
    satisfy_any: bool = False
    client_auth: ClientAuth | None = None  # auth-tls-*: its host's client certificates
    # Gateway API routes: the match's method, header and query conditions (None: none), and
    # wildcard hosts that match any number of labels, not just one as an Ingress's do
    conditions: RequestMatch | None = None
    suffix_wildcard: bool = False
    invalid_backend: bool = False  # a Gateway API backendRef that does not resolve: 500
    # Gateway API routes answer only on the listeners they attach to: plain HTTP, TLS, or both
    on_plain: bool = True
    on_tls: bool = True
    filters: Filters | None = None  # a Gateway API rule's filters, or an Ingress's rewrites
    # sessionPersistence: the policy, and (on the route of the whole rule) the route of each
    # backend a session may be pinned to, as `session.backends` lists them
    session: SessionPolicy | None = None
    session_backends: tuple[Route, ...] = ()
    response_deadline: float = 0.0  # timeouts.request: seconds for the answer to start; 0: none
    # Gateway API backendRefs with weights: (cumulative weight, the route to that backend); a
    # request takes one by weight (`pick`), and `cluster` is the first one's
    split: tuple[tuple[int, Route], ...] = ()
    # A canary Ingress's backend for this location (docs/ingress-nginx-compat.md, "Canaries"):
    # the route a request takes instead when `canary_policy` and the cookies say so
    canary: Route | None = None
    canary_policy: CanaryPolicy | None = None
    cors: CorsPolicy | None = None  # enable-cors: the headers, and preflights answered here
    limits: RateLimits | None = None  # limit-rps, limit-rpm, limit-connections (None: none)
    send_rate: SendRate | None = None  # limit-rate: the answer's pace to the client (None: none)
    mirror: Mirror | None = None  # mirror-target: where a copy of each request goes (None: none)
    external_auth: ExternalAuth | None = None  # auth-url: each request is asked about first
    # custom-http-errors and default-backend (docs/behaviour.md, "Custom error pages")
    errors: ErrorPages | None = None
    # custom-headers: set on every answer (docs/behaviour.md, "Custom response headers")
    response_headers: ResponseHeaders | None = None
    # proxy-redirect-*, proxy-cookie-*: the upstream's Location, Refresh and Set-Cookie headers
    # rewritten (docs/behaviour.md, "Location and cookie rewrites"); None: as they come
    response_edits: ResponseEdits | None = None
    # Computed once per snapshot so requests only read them:
    # (namespace, ingress, service, host, path), the metric labels
    labels: tuple[str, ...] = field(init=False, repr=False, compare=False)
    # the Set-Cookie writer of this path; None when the route issues no cookies
    set_cookie: SetCookieFormatter | None = field(init=False, repr=False, compare=False)
    # any of split, filters, invalid_backend, response_deadline, session: one check on the
    # request path of every Ingress route instead of five
    gateway_extras: bool = field(init=False, repr=False, compare=False)

    def pick(self, rng: Random) -> Route:
        """The route of one backend of a split, drawn by weight."""
        draw = rng.randrange(self.split[-1][0])
        for bound, route in self.split:
            if draw < bound:
                return route
        return self.split[-1][1]  # (not reached: the last bound is the total)

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
        extras = bool(self.split) or self.filters is not None or self.invalid_backend
        extras = extras or bool(self.response_deadline) or self.session is not None
        object.__setattr__(self, "gateway_extras", extras)


@dataclass(frozen=True, slots=True)
class ErrorPages:
    """A route's custom-http-errors and default-backend, decided when the snapshot is built
    (docs/behaviour.md, "Custom error pages"): which answers its default backend gives instead."""

    codes: frozenset[int]  # custom-http-errors: the proxy's own answers with these codes
    # the upstream's answers handed over: `codes`, or none with disable-proxy-intercept-errors
    intercepted: frozenset[int]
    # the default-backend's route for error pages (plain HTTP, no errors of its own); None: the
    # built-in default backend, which answers 404 (ingress-nginx without --default-backend-service)
    backend: Route | None
    # X-Namespace, X-Ingress-Name, X-Service-Name, X-Service-Port: the location's (its Ingress's
    # Service, whichever backend answers)
    about: About
    # the route's Service had no ready endpoint: its cluster is the default backend's, and every
    # request carries X-Code: 503 (ingress-nginx's custom-default-backend- upstream)
    stands_in: bool = False


class RouteTable:
    __slots__ = ("_any_host", "_default", "_exact", "_suffixes", "_wildcard")

    def __init__(self, routes: Iterable[Route], default: Route | None) -> None:
        # (host, whether a wildcard of any depth): Ingress and Gateway API rules for one exact
        # host share its server block; their wildcards differ, so theirs do not
        by_host: dict[tuple[str | None, bool], list[Route]] = {}
        for route in routes:
            host = route.host
            deep = route.suffix_wildcard and host is not None and host.startswith("*.")
            by_host.setdefault((host, deep), []).append(route)
        self._exact: dict[str, tuple[_Matcher, ...]] = {}
        self._wildcard: dict[str, tuple[_Matcher, ...]] = {}  # one label, by the rest
        # any number of labels: (".example.com", matchers), the longest suffix first
        suffixes: list[tuple[str, tuple[_Matcher, ...]]] = []
        self._any_host: tuple[_Matcher, ...] = ()
        for (host, deep), host_routes in by_host.items():
            matchers = tuple(_Matcher(r) for r in sorted(host_routes, key=_priority))
            if host is None:
                self._any_host = matchers
            elif deep:
                suffixes.append((host[1:], matchers))
            elif host.startswith("*."):
                self._wildcard[host[2:]] = matchers
            else:
                self._exact[host] = matchers
        suffixes.sort(key=lambda entry: -len(entry[0]))
        self._suffixes = tuple(suffixes)
        self._default = default

    def match(
        self, host: str, path: str, request: Request | None = None, tls: bool = False
    ) -> Route | None:
        """The route for a request; without `request`, routes with conditions never match."""
        matchers = self._exact.get(host)
        if matchers is None:
            dot = host.find(".")
            if dot > 0:
                matchers = self._wildcard.get(host[dot + 1 :])
            if matchers is None and self._suffixes:
                matchers = self._by_suffix(host)
        if matchers is not None:
            # A host with rules of its own is a server block of its own: what its paths do not
            # match is 404 there (translation gives it a `/` route for an Ingress defaultBackend).
            for matcher in matchers:
                if matcher.matches(path) and (matcher.simple or matcher.accepts(request, tls)):
                    return matcher.route
            return None
        for matcher in self._any_host:
            if matcher.matches(path) and (matcher.simple or matcher.accepts(request, tls)):
                return matcher.route
        return self._default

    def _by_suffix(self, host: str) -> tuple[_Matcher, ...] | None:
        for suffix, matchers in self._suffixes:
            if host.endswith(suffix) and len(host) > len(suffix):
                return matchers
        return None


def _priority(route: Route) -> tuple[int, int, int, int, int]:
    # Exact paths first, then the longest path, then a RequestMatch's own order; sorted() keeps
    # the translation's order among equals (Ingress order; HTTPRoute age, name and rule order).
    conditions = route.conditions
    return (
        0 if route.path_type is PathType.EXACT else 1,
        -len(route.path),
        *(conditions.precedence if conditions is not None else NO_CONDITIONS),
    )


class _Matcher:
    __slots__ = ("_conditions", "_exact", "_on_plain", "_on_tls", "_prefix", "_regex", "route",
                 "simple")  # fmt: skip

    def __init__(self, route: Route) -> None:
        self.route = route
        self._conditions = route.conditions
        self._on_plain = route.on_plain
        self._on_tls = route.on_tls
        # no conditions, every listener: read first, so Ingress routes make no call
        self.simple = route.conditions is None and route.on_plain and route.on_tls
        self._exact = route.path if route.path_type is PathType.EXACT else None
        self._regex: re.Pattern[str] | None = None
        if route.path_type is PathType.REGEX:
            self._regex = re.compile(route.path, re.IGNORECASE)
        elif route.path_type is PathType.FULL_REGEX:
            self._regex = re.compile(f"(?:{route.path})\\Z")
        self._prefix = route.path.rstrip("/") if route.path_type is PathType.PREFIX else None

    def accepts(self, request: Request | None, tls: bool) -> bool:
        """Whether the request, on a TLS connection or not, meets the route's conditions."""
        if not (self._on_tls if tls else self._on_plain):
            return False
        conditions = self._conditions
        return conditions is None or (request is not None and conditions.accepts(request))

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
    statuses: tuple[ObjectStatus, ...] = ()  # Gateway API objects' conditions
    # per Ingress served ("Ingress ns/name"), each ingress-nginx annotation and what is done with
    # it, for `sticky-proxy routes`
    annotations: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    # auth-tls-*: each host's client certificate setting, by Ingress rule host (None: the
    # catch-all server), for the TLS handshake
    # (docs/behaviour.md, "Client certificate authentication")
    client_auths: tuple[tuple[str | None, ClientAuth], ...] = ()
    table: RouteTable = field(init=False, repr=False, compare=False)
    # Derived once, where the snapshot is built (a source's thread), not on the event loop that
    # reads them each time a table comes in: at 50,000 endpoints each pass costs milliseconds.
    clusters: tuple[Cluster, ...] = field(init=False, repr=False, compare=False)
    nodes: frozenset[str] = field(init=False, repr=False, compare=False)  # address:port
    endpoint_labels: frozenset[tuple[str, str]] = field(init=False, repr=False, compare=False)
    draining: int = field(init=False, repr=False, compare=False)  # endpoints draining
    draining_labels: frozenset[tuple[str, str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_field = object.__setattr__
        set_field(self, "table", RouteTable(self.routes, self.default_route))
        every = [*self.routes, *(part for route in self.routes for _, part in route.split)]
        mains = [*self.routes, *([self.default_route] if self.default_route else [])]
        every.extend(route.canary for route in mains if route.canary is not None)
        every.extend(
            route.errors.backend
            for route in mains
            if route.errors is not None and route.errors.backend is not None
        )  # (a default backend's cluster, for error pages)
        seen = {r.cluster.name: r.cluster for r in every if not r.invalid_backend}
        if self.default_route is not None:
            seen.setdefault(self.default_route.cluster.name, self.default_route.cluster)
        clusters = tuple(seen.values())
        endpoints = [e for c in clusters for e in c.endpoints]
        set_field(self, "clusters", clusters)
        set_field(self, "nodes", frozenset(e.node for e in endpoints))
        set_field(self, "endpoint_labels",
                  frozenset((c.name, e.label) for c in clusters for e in c.endpoints))  # fmt: skip
        draining = frozenset((c.name, e.label) for c in clusters for e in c.endpoints if e.draining)
        set_field(self, "draining_labels", draining)
        set_field(self, "draining", sum(e.draining for e in endpoints))

    @property
    def endpoint_count(self) -> int:
        return sum(len(cluster.endpoints) for cluster in self.clusters)
