"""HTTPRoutes attached to our Gateways, laid out as routes, and the status of every Gateway API
object we own (docs/gateway-api.md).

Each match of each rule becomes one `Route` per hostname it answers on. They are emitted oldest
HTTPRoute first, then by "namespace/name", then in rule and match order: the route table's sort
is stable, so that is the specification's tie-break after path, method, headers and query.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from proxy.control.translate.endpoints import endpoints_of
from proxy.control.translate.gateway.attach import NamespaceLabels, attach
from proxy.control.translate.gateway.resources import (
    GROUP,
    BackendRef,
    Gateway,
    GatewayClass,
    HTTPRoute,
    Listener,
    ReferenceGrant,
    RouteMatch,
    RouteRule,
)
from proxy.control.translate.ingresses import Backend
from proxy.control.translate.options import TranslateOptions
from proxy.control.translate.world import World
from proxy.core.affinity import Cluster, build_cluster
from proxy.core.filters import Filters, HeaderEdit
from proxy.core.model import Condition, ObjectStatus, PathType, TlsCertificate
from proxy.core.routing import Route
from proxy.core.sessions import SessionPolicy, generated_name

_GO_ZERO_TIME = datetime.min.replace(tzinfo=UTC)
_PATH_TYPES = {
    "Exact": PathType.EXACT,
    "PathPrefix": PathType.PREFIX,
    "RegularExpression": PathType.FULL_REGEX,
}
_ACCEPTED = Condition("Accepted", True, "Accepted")
_PROGRAMMED = Condition("Programmed", True, "Programmed")
_RESOLVED = Condition("ResolvedRefs", True, "ResolvedRefs")


@dataclass(frozen=True, slots=True)
class GatewayResult:
    routes: list[Route]
    statuses: list[ObjectStatus]
    certificates: list[TlsCertificate]  # of HTTPS listeners, chosen by SNI


def gateway_routes(world: World, options: TranslateOptions, warnings: list[str]) -> GatewayResult:
    controller = options.gateway_controller
    classes = [c for c in world.gateway_classes.values() if c.controller == controller]
    ours = {c.name for c in classes}
    gateways = {(g.namespace, g.name): g for g in world.gateways.values() if g.class_name in ours}
    labels = NamespaceLabels(world.namespace_labels)
    statuses = [_class_status(c) for c in classes]
    attached: dict[tuple[str, str, str], int] = {}  # (namespace, gateway, listener) -> routes
    routes: list[Route] = []
    backends = _Backends(world, options, warnings)
    for route in _in_order(world.http_routes.values()):
        attachments = attach(route, gateways, labels)
        if not attachments:
            continue
        rules = [backends.rule(route, rule, index) for index, rule in enumerate(route.rules)]
        resolved = next((r.problem for r in rules if r.problem is not None), _RESOLVED)
        unsupported = sorted({name for rule in route.rules for name in rule.unsupported})
        for attachment in attachments:
            accepted = attachment.accepted
            if accepted.status and unsupported:
                accepted = Condition(
                    "Accepted", False, "UnsupportedValue",
                    f"not implemented yet: {', '.join(unsupported)}",
                )  # fmt: skip
                warnings.append(f"{route.ref}: {accepted.message}; the route is not served")
            gateway = attachment.gateway
            statuses.append(
                ObjectStatus(
                    "HTTPRoute",
                    route.namespace,
                    route.name,
                    route.generation,
                    f"Gateway {gateway.namespace}/{gateway.name}",
                    (accepted, resolved),
                    section=attachment.parent.section,
                    port=attachment.parent.port,
                )
            )
            if not accepted.status:
                continue
            for listener, hostnames in attachment.listeners:
                key = (gateway.namespace, gateway.name, listener.name)
                attached[key] = attached.get(key, 0) + 1
                routes.extend(_routes(rules, hostnames, listener))
    certificates: list[TlsCertificate] = []
    for gateway in gateways.values():
        refs = {listener.name: _listener_certificates(gateway, listener, world, certificates)
                for listener in gateway.listeners}  # fmt: skip
        statuses.extend(_gateway_statuses(gateway, attached, refs))
    return GatewayResult(_distinct(routes), statuses, certificates)


def _listener_certificates(
    gateway: Gateway, listener: Listener, world: World, found: list[TlsCertificate]
) -> Condition:
    """Adds the certificates of an HTTPS listener to `found`; its ResolvedRefs condition,
    which also says when `allowedRoutes.kinds` names a kind this proxy does not serve."""
    foreign = [
        kind for group, kind in listener.kinds or () if (group, kind) != (GROUP, "HTTPRoute")
    ]
    if foreign and listener.routes_http:
        message = f"not served here: {', '.join(foreign)}"
        return Condition("ResolvedRefs", False, "InvalidRouteKinds", message)
    if listener.protocol != "HTTPS":
        return _RESOLVED
    if not listener.certificate_refs:
        return Condition("ResolvedRefs", False, "InvalidCertificateRef", "no certificateRefs")
    hosts = (listener.hostname,) if listener.hostname else ()
    for group, kind, namespace, name in listener.certificate_refs:
        where = f"Secret {namespace}/{name}"
        if (group, kind) != ("", "Secret"):
            return Condition("ResolvedRefs", False, "InvalidCertificateRef", f"{kind} {name}")
        source = (GROUP, "Gateway", gateway.namespace)
        if namespace != gateway.namespace and not _granted(
            world.reference_grants, source, ("", "Secret", namespace, name)
        ):
            return Condition("ResolvedRefs", False, "RefNotPermitted", where)
        secret = world.secrets.get((namespace, name))
        if secret is None:
            message = f"{where} not found or without tls.crt and tls.key"
            return Condition("ResolvedRefs", False, "InvalidCertificateRef", message)
        found.append(TlsCertificate(where, hosts, secret.chain, secret.key))
    return _RESOLVED


def _in_order(routes: Iterable[HTTPRoute]) -> list[HTTPRoute]:
    return sorted(routes, key=lambda r: (r.created or _GO_ZERO_TIME, f"{r.namespace}/{r.name}"))


@dataclass(frozen=True, slots=True)
class _Rule:
    """A rule with its backends resolved: the route of each (by weight), or why not."""

    rule: RouteRule
    split: tuple[tuple[int, Route], ...]  # cumulative weight, route template of the backend
    problem: Condition | None  # the ResolvedRefs condition when a reference does not resolve
    session: SessionPolicy | None = None
    session_backends: tuple[Route, ...] = ()  # route template of every resolved backend


class _Backends:
    def __init__(self, world: World, options: TranslateOptions, warnings: list[str]) -> None:
        self._world = world
        self._upstream = options.upstream
        self._session_key = options.session_key or _PROCESS_KEY
        self._warnings = warnings
        self._clusters: dict[tuple[str, str, int], Cluster] = {}

    def rule(self, route: HTTPRoute, rule: RouteRule, index: int) -> _Rule:
        split: list[tuple[int, Route]] = []
        resolved: list[Route] = []
        problem: Condition | None = None
        total = 0
        for ref in rule.backend_refs:
            reason = self._unresolved(route, ref)
            if reason is not None and problem is None:
                problem = Condition("ResolvedRefs", False, reason[0], f"{ref.text}: {reason[1]}")
            template = self._template(route, rule, ref, invalid=reason is not None)
            if reason is None:
                resolved.append(template)
            if ref.weight > 0:
                total += ref.weight
                split.append((total, template))
        if not split:  # no backend takes requests: every one is answered 500 (or redirected)
            split.append((1, self._template(route, rule, None, invalid=True)))
        if rule.session is None:
            return _Rule(rule, tuple(split), problem)
        session = self._session(route, rule, index, resolved)
        with_session = [(bound, dataclasses.replace(t, session=session)) for bound, t in split]
        backends = tuple(dataclasses.replace(t, session=session) for t in resolved)
        return _Rule(rule, tuple(with_session), problem, session, backends)

    def _session(
        self, route: HTTPRoute, rule: RouteRule, index: int, backends: list[Route]
    ) -> SessionPolicy:
        spec = rule.session
        assert spec is not None
        paths = {m.path.value for m in rule.matches if m.path.type != "RegularExpression"}
        return SessionPolicy(
            name=spec.name or generated_name(route.namespace, route.name, rule.name or index),
            kind=spec.kind,
            permanent=spec.permanent,
            absolute_timeout=spec.absolute_timeout,
            cookie_path=paths.pop() if len(paths) == 1 else "/",
            key=self._session_key,
            backends=tuple((b.cluster.name, b.cluster.endpoints) for b in backends),
        )

    def _unresolved(self, route: HTTPRoute, ref: BackendRef) -> tuple[str, str] | None:
        """(reason, message) when `ref` cannot be sent to, else None."""
        if (ref.group, ref.kind) != ("", "Service"):
            return "InvalidKind", "only Services are supported"
        source = (GROUP, "HTTPRoute", route.namespace)
        target = (ref.group, ref.kind, ref.namespace, ref.name)
        if ref.namespace != route.namespace and not _granted(
            self._world.reference_grants, source, target
        ):
            return "RefNotPermitted", "no ReferenceGrant allows this reference"
        if (ref.namespace, ref.name) not in self._world.services:
            return "BackendNotFound", "no such Service"
        if ref.port is None:
            return "UnsupportedValue", "a Service reference needs a port"
        return None

    def _template(
        self, route: HTTPRoute, rule: RouteRule, ref: BackendRef | None, *, invalid: bool
    ) -> Route:
        """The route to one backend, for every host and path of the rule to copy."""
        cluster = self._cluster(ref) if ref is not None and not invalid else _EMPTY
        upstream = self._upstream
        if rule.backend_timeout:
            upstream = dataclasses.replace(
                upstream,
                connect_timeout=min(upstream.connect_timeout, rule.backend_timeout),
                read_timeout=min(upstream.read_timeout, rule.backend_timeout),
            )
        if rule.request_timeout:
            connect = min(upstream.connect_timeout, rule.request_timeout)
            upstream = dataclasses.replace(upstream, connect_timeout=connect)
        return Route(
            host=None, path="/", path_type=PathType.PREFIX, cluster=cluster, sets_cookie=False,
            cookie_path="/", upstream=upstream, namespace=route.namespace, ingress=route.name,
            service=ref.name if ref is not None else "", suffix_wildcard=True,
            invalid_backend=invalid,
            filters=_merged(rule.filters, ref.filters if ref is not None else None),
            response_deadline=rule.request_timeout,
        )  # fmt: skip

    def _cluster(self, ref: BackendRef) -> Cluster:
        assert ref.port is not None
        key = (ref.namespace, ref.name, ref.port)
        cluster = self._clusters.get(key)
        if cluster is None:
            backend = Backend(ref.namespace, ref.name, ref.port)
            endpoints, problem = endpoints_of(
                backend, self._world, self._warnings, by_name_only=True
            )
            if problem is not None:
                self._warnings.append(f"{ref.text}: {problem}; requests to it are answered 503")
            name = f"gateway-{ref.namespace}-{ref.name}-{ref.port}"
            cluster = self._clusters[key] = build_cluster(name, endpoints, None)
        return cluster


_EMPTY = build_cluster("gateway-invalid-backend", (), None)
# Signs session tokens when no key is configured: sessions then hold only within this process.
_PROCESS_KEY = os.urandom(32)


def _granted(
    grants: Iterable[ReferenceGrant],
    source: tuple[str, str, str],
    target: tuple[str, str, str, str],
) -> bool:
    """Whether a ReferenceGrant in the target's namespace lets `source` (group, kind, namespace)
    refer to `target` (group, kind, namespace, name)."""
    group, kind, namespace, name = target
    return any(
        grant.namespace == namespace and grant.permits(source, group, kind, name)
        for grant in grants
    )


def _routes(
    rules: list[_Rule], hostnames: tuple[str | None, ...], listener: Listener
) -> list[Route]:
    return [
        _route(resolved, host, match, listener)
        for resolved in rules
        for host in hostnames
        for match in resolved.rule.matches
    ]


def _route(resolved: _Rule, host: str | None, match: RouteMatch, listener: Listener) -> Route:
    """The route of one match on one host of `listener` (its protocol picks the proxy's
    listener; its port goes into redirects)."""
    split = tuple(
        (bound, _replace(template, host, match, listener)) for bound, template in resolved.split
    )
    if resolved.session is not None:  # a session may name any backend: always a split
        backends = tuple(_replace(t, host, match, listener) for t in resolved.session_backends)
        return dataclasses.replace(_with_split(split[0][1], split), session_backends=backends)
    return split[0][1] if len(split) == 1 else _with_split(split[0][1], split)


def _replace(template: Route, host: str | None, match: RouteMatch, listener: Listener) -> Route:
    filters = template.filters
    if filters is not None and filters.redirect is not None:
        redirect = dataclasses.replace(filters.redirect, listener_port=listener.port)
        filters = dataclasses.replace(filters, redirect=redirect)
    tls = listener.protocol == "HTTPS"
    return dataclasses.replace(
        template, host=host, path=match.path.value, path_type=_PATH_TYPES[match.path.type],
        conditions=match.conditions, filters=filters, on_plain=not tls, on_tls=tls,
    )  # fmt: skip


def _merged(rule: Filters | None, backend: Filters | None) -> Filters | None:
    """A backend's header modifiers apply after its rule's."""
    if rule is None or backend is None:
        return rule or backend
    return dataclasses.replace(
        rule,
        request_headers=_joined(rule.request_headers, backend.request_headers),
        response_headers=_joined(rule.response_headers, backend.response_headers),
    )


def _joined(first: HeaderEdit | None, then: HeaderEdit | None) -> HeaderEdit | None:
    if first is None or then is None:
        return first or then
    return HeaderEdit(first.set + then.set, first.add + then.add, first.remove + then.remove)


def _with_split(first: Route, split: tuple[tuple[int, Route], ...]) -> Route:
    return dataclasses.replace(first, invalid_backend=False, split=split)


def _distinct(routes: list[Route]) -> list[Route]:
    """Without repeats (a route attached through two listeners with the same hostnames)."""
    seen: set[tuple[object, ...]] = set()
    found = []
    for route in routes:
        key = (route.host, route.path, route.path_type, route.conditions, id(route.cluster),
               route.namespace, route.ingress, route.filters, route.split,
               route.on_tls)  # fmt: skip
        if key not in seen:
            seen.add(key)
            found.append(route)
    return found


def _class_status(gateway_class: GatewayClass) -> ObjectStatus:
    return ObjectStatus(
        "GatewayClass", "", gateway_class.name, gateway_class.generation, "", (_ACCEPTED,)
    )


def _gateway_statuses(
    gateway: Gateway, attached: dict[tuple[str, str, str], int], refs: dict[str, Condition]
) -> list[ObjectStatus]:
    statuses = [
        ObjectStatus(
            "Gateway",
            gateway.namespace,
            gateway.name,
            gateway.generation,
            "",
            (_ACCEPTED, _PROGRAMMED),
        )
    ]
    for listener in gateway.listeners:
        resolved = refs[listener.name]
        conditions: tuple[Condition, ...] = (_ACCEPTED, _PROGRAMMED, resolved)
        if not resolved.status and resolved.reason != "InvalidRouteKinds":
            # (a listener that names a kind we do not serve still serves HTTPRoutes)
            conditions = (_ACCEPTED, Condition("Programmed", False, "Invalid"), resolved)
        if not listener.routes_http:
            conditions = (
                Condition("Accepted", False, "UnsupportedProtocol", listener.protocol),
                Condition("Programmed", False, "Invalid"),
                _RESOLVED,
            )
        statuses.append(
            ObjectStatus(
                "Gateway",
                gateway.namespace,
                gateway.name,
                gateway.generation,
                f"listener {listener.name}",
                conditions,
                attached_routes=attached.get((gateway.namespace, gateway.name, listener.name), 0),
            )
        )
    return statuses
