"""Gateway API objects read into values: GatewayClass, Gateway, HTTPRoute and ReferenceGrant
(docs/gateway-api.md, "Resources"), each field type-checked as the API server would, with the
defaults the CRDs fill in (a missing path match is `PathPrefix /`, a missing weight is 1).

A value the CRD's validation would have refused is a `ManifestError`; a valid value this proxy
does not implement is kept as it is, so the later steps can report it as UnsupportedValue.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import datetime

from proxy.control.translate.annotations import parse_server_name
from proxy.control.translate.fields import Fields
from proxy.core.filters import Filters, HeaderEdit, PathChange, Redirect, Rewrite
from proxy.core.matches import RequestMatch, ValueMatch
from proxy.core.sessions import SessionKind

GROUP = "gateway.networking.k8s.io"
_ROUTE_PROTOCOLS = ("HTTP", "HTTPS")  # the listener protocols an HTTPRoute attaches to
_VALUE_MATCH_TYPES = ("Exact", "RegularExpression")
PATH_MATCH_TYPES = ("Exact", "PathPrefix", "RegularExpression")


@dataclass(frozen=True, slots=True)
class GatewayClass:
    name: str
    controller: str
    generation: int = 0


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """matchLabels and matchExpressions, as Kubernetes evaluates them against labels."""

    labels: tuple[tuple[str, str], ...]
    expressions: tuple[tuple[str, str, tuple[str, ...]], ...]  # (key, operator, values)

    def accepts(self, labels: dict[str, str]) -> bool:
        if any(labels.get(key) != value for key, value in self.labels):
            return False
        for key, operator, values in self.expressions:
            present = key in labels
            if operator == "In" and not (present and labels[key] in values):
                return False
            if operator == "NotIn" and present and labels[key] in values:
                return False
            if operator == "Exists" and not present:
                return False
            if operator == "DoesNotExist" and present:
                return False
        return True


@dataclass(frozen=True, slots=True)
class Listener:
    name: str
    hostname: str | None
    port: int
    protocol: str
    namespaces_from: str  # Same, All, Selector or None
    selector: LabelSelector | None
    kinds: tuple[tuple[str, str], ...] | None  # (group, kind); None: the protocol's default
    certificate_refs: tuple[tuple[str, str, str, str], ...]  # (group, kind, namespace, name)

    @property
    def routes_http(self) -> bool:
        return self.protocol in _ROUTE_PROTOCOLS


@dataclass(frozen=True, slots=True)
class Gateway:
    namespace: str
    name: str
    ref: str
    generation: int
    class_name: str
    listeners: tuple[Listener, ...]


@dataclass(frozen=True, slots=True)
class ParentRef:
    group: str
    kind: str
    namespace: str
    name: str
    section: str | None
    port: int | None

    @property
    def text(self) -> str:
        where = f"{self.namespace}/{self.name}"
        if self.section is not None:
            where += f" listener {self.section}"
        if self.port is not None:
            where += f" port {self.port}"
        return f"{self.kind} {where}"


@dataclass(frozen=True, slots=True)
class BackendRef:
    group: str
    kind: str
    namespace: str
    name: str
    port: int | None
    weight: int
    filters: Filters | None = None  # header modifiers for the requests sent to this backend

    @property
    def text(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.kind} {self.namespace}/{self.name}{port}"


@dataclass(frozen=True, slots=True)
class PathMatch:
    type: str  # Exact, PathPrefix or RegularExpression
    value: str


@dataclass(frozen=True, slots=True)
class RouteMatch:
    path: PathMatch
    conditions: RequestMatch | None  # None: the path alone decides


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """sessionPersistence as written, defaults applied."""

    name: str | None
    kind: SessionKind
    permanent: bool  # cookieConfig.lifetimeType Permanent
    absolute_timeout: int  # seconds; 0: none


@dataclass(frozen=True, slots=True)
class RouteRule:
    name: str | None
    matches: tuple[RouteMatch, ...]
    backend_refs: tuple[BackendRef, ...]
    filters: Filters | None  # a redirect's listener port is filled in per listener
    request_timeout: float  # timeouts.request in seconds; 0: none
    backend_timeout: float  # timeouts.backendRequest in seconds; 0: none
    session: SessionSpec | None
    unsupported: tuple[str, ...]  # fields set on this rule that are not implemented yet


@dataclass(frozen=True, slots=True)
class HTTPRoute:
    namespace: str
    name: str
    ref: str
    created: datetime | None
    generation: int
    parent_refs: tuple[ParentRef, ...]
    hostnames: tuple[str, ...]
    rules: tuple[RouteRule, ...]


@dataclass(frozen=True, slots=True)
class ReferenceGrant:
    namespace: str
    sources: tuple[tuple[str, str, str], ...]  # (group, kind, namespace) allowed to refer
    targets: tuple[tuple[str, str, str | None], ...]  # (group, kind, name or None: any)

    def permits(self, source: tuple[str, str, str], group: str, kind: str, name: str) -> bool:
        return source in self.sources and any(
            (group, kind) == (g, k) and target in (None, name) for g, k, target in self.targets
        )


def read_gateway_class(fields: Fields, name: str, generation: int) -> GatewayClass:
    spec = _spec(fields)
    return GatewayClass(name, spec.required_text("controllerName"), generation)


def read_gateway(fields: Fields, metadata: Fields, ref: str, key: tuple[str, str]) -> Gateway:
    spec = _spec(fields)
    listeners = tuple(_read_listener(item, key[0]) for item in spec.children("listeners"))
    if not listeners:
        raise spec.error("listeners", "missing (a Gateway needs at least one)")
    return Gateway(
        namespace=key[0],
        name=key[1],
        ref=ref,
        generation=metadata.number("generation") or 0,
        class_name=spec.required_text("gatewayClassName"),
        listeners=listeners,
    )


def _read_listener(item: Fields, namespace: str) -> Listener:
    port = item.port("port")
    if port is None:
        raise item.error("port", "missing")
    allowed = item.child("allowedRoutes")
    namespaces = allowed.child("namespaces") if allowed is not None else None
    namespaces_from = (namespaces.text("from") if namespaces is not None else None) or "Same"
    if namespaces_from not in ("Same", "All", "Selector", "None"):
        raise item.error("allowedRoutes.namespaces.from", f"{namespaces_from!r} is not valid")
    selector_fields = namespaces.child("selector") if namespaces is not None else None
    kinds = None
    if allowed is not None and allowed.children("kinds"):
        kinds = tuple(
            (kind.text("group") or GROUP, kind.required_text("kind"))
            for kind in allowed.children("kinds")
        )
    tls = item.child("tls")
    refs = tuple(
        (
            ref.text("group") or "",
            ref.text("kind") or "Secret",
            ref.text("namespace") or namespace,
            ref.required_text("name"),
        )
        for ref in (tls.children("certificateRefs") if tls is not None else ())
    )
    return Listener(
        name=item.required_text("name"),
        hostname=_optional_host(item, "hostname"),
        port=port,
        protocol=item.required_text("protocol"),
        namespaces_from=namespaces_from,
        selector=_read_selector(selector_fields) if selector_fields is not None else None,
        kinds=kinds,
        certificate_refs=refs,
    )


def _read_selector(fields: Fields) -> LabelSelector:
    expressions = tuple(
        (item.required_text("key"), item.required_text("operator"), tuple(item.texts("values")))
        for item in fields.children("matchExpressions")
    )
    return LabelSelector(tuple(sorted(fields.string_map("matchLabels").items())), expressions)


def read_http_route(fields: Fields, metadata: Fields, ref: str, key: tuple[str, str]) -> HTTPRoute:
    namespace = key[0]
    spec = _spec(fields)
    return HTTPRoute(
        namespace=namespace,
        name=key[1],
        ref=ref,
        created=metadata.timestamp("creationTimestamp"),
        generation=metadata.number("generation") or 0,
        parent_refs=tuple(_read_parent(item, namespace) for item in spec.children("parentRefs")),
        hostnames=tuple(_host_name(spec, "hostnames", host) for host in spec.texts("hostnames")),
        rules=tuple(_read_rule(rule, namespace) for rule in spec.children("rules")),
    )


def _read_parent(item: Fields, namespace: str) -> ParentRef:
    return ParentRef(
        group=item.text("group") or GROUP,
        kind=item.text("kind") or "Gateway",
        namespace=item.text("namespace") or namespace,
        name=item.required_text("name"),
        section=item.text("sectionName"),
        port=item.port("port"),
    )


# What a rule may carry that is not implemented yet: routes using them say so (UnsupportedValue
# in status, a warning) instead of silently routing without them.
_LATER_RULE_FIELDS = ("retry",)


def _read_rule(rule: Fields, namespace: str) -> RouteRule:
    matches = tuple(_read_match(match) for match in rule.children("matches"))
    matches = matches or (RouteMatch(PathMatch("PathPrefix", "/"), None),)
    unsupported = [name for name in _LATER_RULE_FIELDS if rule.child(name) is not None]
    filters = _read_filters(rule.children("filters"), unsupported, "filters")
    prefix_matches = all(match.path.type == "PathPrefix" for match in matches)
    if filters is not None and _uses_prefix_rewrite(filters) and not prefix_matches:
        raise rule.error("filters", "ReplacePrefixMatch needs PathPrefix matches")
    backend_refs = []
    for index, ref in enumerate(rule.children("backendRefs")):
        backend = _read_backend(ref, namespace)
        where = f"backendRefs[{index}].filters"
        backend_filters = _read_filters(ref.children("filters"), unsupported, where)
        if backend_filters is not None and (backend_filters.redirect or backend_filters.rewrite):
            unsupported.append(f"{where} (only header modifiers)")
        backend_refs.append(dataclasses.replace(backend, filters=backend_filters))
    timeouts = rule.child("timeouts")
    request_timeout = _duration(timeouts, "request") if timeouts is not None else 0.0
    backend_timeout = _duration(timeouts, "backendRequest") if timeouts is not None else 0.0
    if request_timeout and backend_timeout > request_timeout:
        raise rule.error("timeouts", "backendRequest must not be longer than request")
    return RouteRule(
        name=rule.text("name"),
        matches=matches,
        backend_refs=tuple(backend_refs),
        filters=filters,
        request_timeout=request_timeout,
        backend_timeout=backend_timeout,
        session=_read_session(persistence)
        if (persistence := rule.child("sessionPersistence"))
        else None,
        unsupported=tuple(unsupported),
    )


def _read_session(fields: Fields) -> SessionSpec:
    kind = fields.text("type") or "Cookie"
    if kind not in ("Cookie", "Header"):
        raise fields.error("type", f"{kind!r} is not Cookie or Header")
    cookie = fields.child("cookieConfig")
    lifetime = (cookie.text("lifetimeType") if cookie is not None else None) or "Session"
    if lifetime not in ("Session", "Permanent"):
        raise fields.error("cookieConfig.lifetimeType", f"{lifetime!r} is not Session or Permanent")
    if cookie is not None and kind != "Cookie":
        raise fields.error("cookieConfig", "can only be set with type Cookie")
    timeout = _duration(fields, "absoluteTimeout")
    if lifetime == "Permanent" and not timeout:
        raise fields.error("absoluteTimeout", "must be set when lifetimeType is Permanent")
    name = fields.text("sessionName")
    if name is not None and _HEADER_NAME.fullmatch(name) is None:
        raise fields.error("sessionName", f"{name!r} cannot name a cookie or header")
    return SessionSpec(
        name=name,
        kind=SessionKind(kind),
        permanent=lifetime == "Permanent",
        absolute_timeout=max(1, round(timeout)) if timeout else 0,
    )


_DURATION = re.compile(r"(?:[0-9]{1,5}(?:h|ms|m|s)){1,4}")
_DURATION_PART = re.compile(r"([0-9]+)(h|ms|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def _duration(fields: Fields, key: str) -> float:
    """A Gateway API Duration ("1h30m", "500ms") in seconds; absent or "0s": 0, no limit."""
    text = fields.text(key)
    if text is None:
        return 0.0
    if _DURATION.fullmatch(text) is None:
        raise fields.error(key, f"{text!r} is not a duration such as 500ms, 10s or 1m30s")
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


_FILTER_FIELDS = {
    "RequestHeaderModifier": "requestHeaderModifier",
    "ResponseHeaderModifier": "responseHeaderModifier",
    "RequestRedirect": "requestRedirect",
    "URLRewrite": "urlRewrite",
}


def _read_filters(items: list[Fields], unsupported: list[str], where: str) -> Filters | None:
    """The filters this proxy implements; the names of the others go to `unsupported`."""
    filters = Filters()
    seen: set[str] = set()
    for item in items:
        kind = item.required_text("type")
        field = _FILTER_FIELDS.get(kind)
        if field is None:
            unsupported.append(f"{where} {kind}")
            continue
        config = item.child(field)
        if config is None:
            raise item.error(field, f"missing (a {kind} filter needs it)")
        if kind in seen:
            raise item.error("type", f"{kind} given twice")
        seen.add(kind)
        if kind == "RequestHeaderModifier":
            filters = dataclasses.replace(filters, request_headers=_read_header_edit(config))
        elif kind == "ResponseHeaderModifier":
            filters = dataclasses.replace(filters, response_headers=_read_header_edit(config))
        elif kind == "RequestRedirect":
            filters = dataclasses.replace(filters, redirect=_read_redirect(config))
        else:
            rewrite = Rewrite(_hostname(config), _read_path_change(config))
            filters = dataclasses.replace(filters, rewrite=rewrite)
    if filters.redirect is not None and filters.rewrite is not None:
        raise items[0].error(None, "RequestRedirect and URLRewrite cannot be combined")
    return filters if seen else None


def _uses_prefix_rewrite(filters: Filters) -> bool:
    changes = [
        part.path for part in (filters.redirect, filters.rewrite) if part is not None and part.path
    ]
    return any(change.prefix is not None for change in changes)


# Header names a filter may not touch: framing and hop-by-hop ones (the proxy frames every
# message itself; letting a route set them would reopen what request smuggling needs) and the
# proxy's own additions. Host changes through URLRewrite's hostname.
_RESERVED_HEADERS = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te",
    "trailer", "proxy-connection", "x-forwarded-for", "x-forwarded-host", "x-forwarded-port",
    "x-forwarded-proto", "x-real-ip", "x-request-id",
})  # fmt: skip
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")
_HEADER_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")


def _read_header_edit(config: Fields) -> HeaderEdit:
    def pairs(key: str) -> tuple[tuple[str, str], ...]:
        found = []
        for item in config.children(key):
            name = _header_name(item, item.required_text("name"))
            value = item.text("value") or ""
            if _HEADER_VALUE.fullmatch(value) is None:
                raise item.error("value", "holds a control character")
            found.append((name, value))
        return tuple(found)

    removed = tuple(_header_name(config, name).lower() for name in config.texts("remove"))
    return HeaderEdit(set=pairs("set"), add=pairs("add"), remove=removed)


def _header_name(where: Fields, name: str) -> str:
    if _HEADER_NAME.fullmatch(name) is None:
        raise where.error("name", f"{name!r} is not a header name")
    if name.lower() in _RESERVED_HEADERS:
        raise where.error("name", f"{name!r} is set by the proxy itself and cannot be changed")
    return name


_REDIRECT_CODES = (301, 302, 303, 307, 308)


def _read_redirect(config: Fields) -> Redirect:
    scheme = config.text("scheme")
    if scheme is not None and scheme not in ("http", "https"):
        raise config.error("scheme", f"{scheme!r} is not http or https")
    status = config.number("statusCode") or 302
    if status not in _REDIRECT_CODES:
        raise config.error("statusCode", f"{status} is not one of {_REDIRECT_CODES}")
    return Redirect(
        scheme=scheme,
        hostname=_hostname(config),
        port=config.port("port"),
        path=_read_path_change(config),
        status=status,
        listener_port=0,
    )


def _hostname(config: Fields) -> str | None:
    """A filter's hostname: a precise one, no wildcard."""
    hostname = _optional_host(config, "hostname")
    if hostname is not None and hostname.startswith("*"):
        raise config.error("hostname", f"{hostname!r}: a wildcard cannot be a request's host")
    return hostname


def _optional_host(fields: Fields, key: str) -> str | None:
    text = fields.text(key)
    return _host_name(fields, key, text) if text else None


def _host_name(fields: Fields, key: str, text: str) -> str:
    """A hostname as the CRDs allow it: a DNS name, or `*.` and one (lower-cased)."""
    try:
        return parse_server_name(text)
    except ValueError as error:
        raise fields.error(key, str(error)) from None


def _read_path_change(config: Fields) -> PathChange | None:
    path = config.child("path")
    if path is None:
        return None
    kind = path.required_text("type")
    if kind == "ReplaceFullPath":
        return PathChange(full=path.text("replaceFullPath") or "/")
    if kind == "ReplacePrefixMatch":
        return PathChange(prefix=path.text("replacePrefixMatch") or "")
    raise path.error("type", f"{kind!r} is not ReplaceFullPath or ReplacePrefixMatch")


def _read_match(match: Fields) -> RouteMatch:
    path_fields = match.child("path")
    path = PathMatch("PathPrefix", "/")
    if path_fields is not None:
        path = PathMatch(path_fields.text("type") or "PathPrefix", path_fields.text("value") or "/")
    if path.type not in PATH_MATCH_TYPES:
        raise match.error("path.type", f"{path.type!r} is not {', '.join(PATH_MATCH_TYPES)}")
    if path.type != "RegularExpression" and not path.value.startswith("/"):
        raise match.error("path.value", f"{path.value!r} does not start with /")
    headers = _first_of_each(
        [_read_value_match(item, lower=True) for item in match.children("headers")]
    )
    query = _first_of_each(
        [_read_value_match(item, lower=False) for item in match.children("queryParams")]
    )
    method = match.text("method")
    conditions = None
    if method is not None or headers or query:
        conditions = RequestMatch(method, headers, query)
    return RouteMatch(path, conditions)


def _read_value_match(item: Fields, *, lower: bool) -> ValueMatch:
    kind = item.text("type") or "Exact"
    if kind not in _VALUE_MATCH_TYPES:
        raise item.error("type", f"{kind!r} is not Exact or RegularExpression")
    name = item.required_text("name")
    value = item.text("value")
    if value is None:
        raise item.error("value", "missing")
    return ValueMatch(name.lower() if lower else name, value, regex=kind == "RegularExpression")


def _first_of_each(matches: list[ValueMatch]) -> tuple[ValueMatch, ...]:
    """Only the first condition on a name counts (the specification's rule for repeats)."""
    seen: dict[str, ValueMatch] = {}
    for match in matches:
        seen.setdefault(match.name, match)
    return tuple(seen.values())


def _read_backend(ref: Fields, namespace: str) -> BackendRef:
    weight = ref.number("weight")
    if weight is not None and not 0 <= weight <= 1_000_000:
        raise ref.error("weight", f"{weight} is not 0-1000000")
    return BackendRef(
        group=ref.text("group") or "",
        kind=ref.text("kind") or "Service",
        namespace=ref.text("namespace") or namespace,
        name=ref.required_text("name"),
        port=ref.port("port"),
        weight=1 if weight is None else weight,
    )


def read_reference_grant(fields: Fields, namespace: str) -> ReferenceGrant:
    spec = _spec(fields)
    sources = tuple(
        (item.text("group") or "", item.required_text("kind"), item.required_text("namespace"))
        for item in spec.children("from")
    )
    targets = tuple(
        (item.text("group") or "", item.required_text("kind"), item.text("name"))
        for item in spec.children("to")
    )
    return ReferenceGrant(namespace, sources, targets)


def _spec(fields: Fields) -> Fields:
    spec = fields.child("spec")
    if spec is None:
        raise fields.error("spec", "missing")
    return spec
