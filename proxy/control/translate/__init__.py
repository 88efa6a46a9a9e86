"""Kubernetes objects → `Snapshot`: DESIGN §5, with ingress-nginx's rules where it is silent.

Pure: plain dicts (parsed YAML/JSON, or API objects) in, an immutable snapshot out. An object
that cannot be used at all raises `ManifestError`; anything else ignored or questionable becomes
one line in `Snapshot.warnings`. The same objects always give an equal snapshot, in any order.

The steps: read and type-check the objects (`_read_world`), pick the Ingresses of our class in
ingress-nginx's processing order, merge the affinity settings of every Ingress sharing a backend
(compat §2), resolve each backend's endpoints, then lay out the routes per host the way
ingress-nginx lays out its nginx servers and locations. TLS (certificates for SNI, redirects)
is in `proxy.control.translate.tls`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from proxy.control.translate.annotations import (
    IngressSettings,
    parse_annotations,
    parse_server_name,
)
from proxy.control.translate.tls import (
    IngressTls,
    TlsEntry,
    TlsSecret,
    certificates,
    with_redirects,
)
from proxy.core.affinity import Cluster, build_cluster
from proxy.core.model import Affinity, AffinityMode, Endpoint, PathType, UpstreamPolicy
from proxy.core.routing import Route, Snapshot

KubeObject = Mapping[str, Any]

_API_VERSIONS = {
    "Ingress": "networking.k8s.io/v1",
    "IngressClass": "networking.k8s.io/v1",
    "Service": "v1",
    "EndpointSlice": "discovery.k8s.io/v1",
    "Endpoints": "v1",
    "Secret": "v1",
}
_CLUSTER_SCOPED = frozenset({"IngressClass"})
_DEFAULT_NAMESPACE = "default"  # where `kubectl apply` puts an object that names none
_LEGACY_CLASS = "kubernetes.io/ingress.class"
_SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_PATH_TYPES = ("Exact", "Prefix", "ImplementationSpecific")
_ROOT = "/"
_GO_ZERO_TIME = datetime.min.replace(tzinfo=UTC)  # an object without creationTimestamp
# Characters that make a path a regex to nginx; `.` is left out, it is common in plain paths.
_REGEX_CHARS = re.compile(r"[\\^$|?*+()\[\]{}]")


class ManifestError(ValueError):
    """An object that cannot be used at all. The message starts with `object_ref(obj) + ":"`
    (or `object N:`, its position, for what is not an object at all), then names the field."""


@dataclass(frozen=True, slots=True)
class TranslateOptions:
    ingress_class: str = "sticky"
    endpoints_api: Literal["endpointslices", "endpoints"] = "endpointslices"
    upstream: UpstreamPolicy = field(default_factory=UpstreamPolicy)  # overridden per Ingress

    def __post_init__(self) -> None:
        if self.endpoints_api not in ("endpointslices", "endpoints"):
            raise ValueError(f"endpoints_api {self.endpoints_api!r}: endpointslices or endpoints")


def object_ref(obj: KubeObject) -> str:
    """How messages name an object: `Ingress shop/web`, or `IngressClass sticky` (cluster-scoped).

    Works on any input, however broken, since it names objects in the errors about them.
    """
    kind = obj.get("kind") if isinstance(obj, Mapping) else None
    metadata = obj.get("metadata") if isinstance(obj, Mapping) else None
    if not isinstance(metadata, Mapping):
        metadata = {}
    kind_text = kind if isinstance(kind, str) and kind else "object"
    name = metadata.get("name")
    name_text = name if isinstance(name, str) and name else "(no name)"
    namespace = metadata.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        if kind_text in _CLUSTER_SCOPED or kind_text not in _API_VERSIONS:
            return f"{kind_text} {name_text}"
        namespace = _DEFAULT_NAMESPACE
    return f"{kind_text} {namespace}/{name_text}"


def translate(objects: Iterable[KubeObject], options: TranslateOptions) -> Snapshot:
    """The routing snapshot for `objects` (the whole world); ManifestError for unusable ones."""
    warnings: list[str] = []
    world = _read_world(objects, options, warnings)
    ingresses = _processing_order(
        ingress for ingress in world.ingresses.values() if _selected(ingress, options.ingress_class)
    )
    settings: dict[str, IngressSettings] = {}
    for ingress in ingresses:
        settings[ingress.ref] = parse_annotations(ingress.annotations, options.upstream)
        warnings.extend(f"{ingress.ref}: {line}" for line in settings[ingress.ref].warnings)
    entries = _entries(ingresses, settings, warnings)
    backends = _merge_backends(ingresses, entries, settings, warnings)
    clusters = {name: _build_cluster(plan, world, warnings) for name, plan in backends.items()}
    layout = _Layout(clusters, settings, warnings)
    default_route = layout.add_default_backends(ingresses)
    layout.add_paths(entries)
    layout.add_server_roots(ingresses)
    layout.add_aliases(ingresses)
    routes = layout.routes()
    _check_routes(routes, default_route, clusters, warnings)
    certs, tls_hosts = certificates((i.tls for i in ingresses), world.secrets, warnings)
    if default_route is not None:
        default_route = with_redirects(default_route, settings, tls_hosts)
    return Snapshot(
        routes=tuple(with_redirects(route, settings, tls_hosts) for route in routes),
        default_route=default_route,
        warnings=tuple(sorted(set(warnings))),
        certificates=certs,
    )


# --- reading objects ---------------------------------------------------------------------------


class _Fields:
    """One mapping inside an object, read with the type checks the API server would have made."""

    __slots__ = ("_data", "_path", "_ref")

    def __init__(self, ref: str, path: str, data: Mapping[str, Any]) -> None:
        self._ref = ref
        self._path = path
        self._data = data

    def error(self, key: str | None, problem: str) -> ManifestError:
        where = ".".join(part for part in (self._path, key) if part)
        return ManifestError(
            f"{self._ref}: {where}: {problem}" if where else f"{self._ref}: {problem}"
        )

    def _get(self, key: str, types: tuple[type, ...], expected: str) -> Any:
        value = self._data.get(key)
        if value is None or (isinstance(value, types) and not _is_bool_for_int(value, types)):
            return value
        raise self.error(key, f"{_show(value)} is not {expected}")

    def text(self, key: str) -> str | None:
        value: str | None = self._get(key, (str,), "a string")
        return value

    def required_text(self, key: str) -> str:
        value = self.text(key)
        if not value:
            raise self.error(key, "missing")
        return value

    def number(self, key: str) -> int | None:
        value: int | None = self._get(key, (int,), "an integer")
        return value

    def port(self, key: str) -> int | None:
        value = self.number(key)
        if value is not None and not 1 <= value <= 65535:
            raise self.error(key, f"{value} is not a port (1-65535)")
        return value

    def flag(self, key: str) -> bool | None:
        value: bool | None = self._get(key, (bool,), "true or false")
        return value

    def number_or_text(self, key: str) -> int | str | None:
        value: int | str | None = self._get(key, (int, str), "a number or a name")
        return value

    def child(self, key: str) -> _Fields | None:
        value = self._get(key, (Mapping,), "a mapping")
        return None if value is None else _Fields(self._ref, self._where(key), value)

    def children(self, key: str) -> list[_Fields]:
        """The mappings in list `key` (absent or null: none)."""
        items: list[Any] = self._get(key, (list,), "a list") or []
        where = self._where(key)
        found = []
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise self.error(f"{key}[{index}]", f"{_show(item)} is not a mapping")
            found.append(_Fields(self._ref, f"{where}[{index}]", item))
        return found

    def texts(self, key: str) -> list[str]:
        items: list[Any] = self._get(key, (list,), "a list") or []
        for index, item in enumerate(items):
            if not isinstance(item, str):
                raise self.error(f"{key}[{index}]", f"{_show(item)} is not a string")
        return items

    def string_map(self, key: str) -> dict[str, str]:
        """Labels or annotations. Unquoted YAML numbers and booleans count as their text."""
        values: Mapping[Any, Any] = self._get(key, (Mapping,), "a mapping") or {}
        found: dict[str, str] = {}
        for name, value in values.items():
            if isinstance(value, bool):
                found[str(name)] = "true" if value else "false"
            elif value is None or isinstance(value, (str, int, float)):
                found[str(name)] = "" if value is None else str(value)
            else:
                raise self.error(f"{key}[{name!r}]", f"{_show(value)} is not a string")
        return found

    def timestamp(self, key: str) -> datetime | None:
        value: str | datetime | None = self._get(key, (str, datetime), "a timestamp")
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise self.error(key, f"{value!r} is not an RFC 3339 timestamp") from None
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)  # the API server writes UTC
        return value

    def _where(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key


def _is_bool_for_int(value: Any, types: tuple[type, ...]) -> bool:
    """`True` is an int to Python, never to the API server."""
    return isinstance(value, bool) and bool not in types


def _show(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


@dataclass(frozen=True, slots=True)
class _Backend:
    """An Ingress service backend: the Service port as written (number or name)."""

    namespace: str
    service: str
    port: int | str

    @property
    def cluster_name(self) -> str:
        """ingress-nginx's backend name (compat §2), which the affinity hashes are salted with."""
        return f"{self.namespace}-{self.service}-{self.port}"


@dataclass(frozen=True, slots=True)
class _Path:
    host: str | None
    path: str
    path_type: str  # as written: Exact, Prefix or ImplementationSpecific
    backend: _Backend | None  # None: a resource backend


@dataclass(frozen=True, slots=True)
class _Ingress:
    namespace: str
    name: str
    ref: str
    created: datetime | None
    class_name: str | None
    legacy_class: str | None
    annotations: Mapping[str, str]
    hosts: tuple[str | None, ...]  # one per rule, None for a rule without host
    paths: tuple[_Path, ...]
    default_backend: _Backend | None
    tls: IngressTls


@dataclass(frozen=True, slots=True)
class _ServicePort:
    name: str
    port: int
    target_port: int | str
    protocol: str


@dataclass(frozen=True, slots=True)
class _Service:
    ref: str
    external_name: bool
    ports: tuple[_ServicePort, ...]


@dataclass(frozen=True, slots=True)
class _NamedPort:
    """A port of an EndpointSlice or of an Endpoints subset."""

    name: str
    port: int | None
    protocol: str


@dataclass(frozen=True, slots=True)
class _Member:
    address: str
    pod: str | None
    draining: bool


@dataclass(frozen=True, slots=True)
class _Group:
    """Addresses sharing one port list: an EndpointSlice, or one subset of legacy Endpoints."""

    members: tuple[_Member, ...]
    ports: tuple[_NamedPort, ...]
    trusts_target_port: bool  # slices only: ingress-nginx falls back to a numeric targetPort


@dataclass(frozen=True, slots=True)
class _EndpointSource:
    """An EndpointSlice or a legacy Endpoints object, and the Service it belongs to."""

    service: tuple[str, str]  # (namespace, name)
    groups: tuple[_Group, ...]
    fqdn: bool = False  # an FQDN slice, which is not supported


@dataclass
class _World:
    ingresses: dict[str, _Ingress] = field(default_factory=dict)  # by ref
    secrets: dict[tuple[str, str], TlsSecret] = field(default_factory=dict)  # TLS ones only
    services: dict[tuple[str, str], _Service] = field(default_factory=dict)
    sources: dict[str, _EndpointSource] = field(default_factory=dict)  # by ref
    by_service: dict[tuple[str, str], list[tuple[str, _EndpointSource]]] = field(
        default_factory=dict
    )  # (ref, source), filled once every object is read

    def index_sources(self) -> None:
        for ref, source in self.sources.items():
            self.by_service.setdefault(source.service, []).append((ref, source))

    def groups(self, service: tuple[str, str]) -> list[_Group]:
        return [group for _, source in self.by_service.get(service, ()) for group in source.groups]

    def fqdn_slices(self, service: tuple[str, str]) -> list[str]:
        return [ref for ref, source in self.by_service.get(service, ()) if source.fqdn]


def _read_world(
    objects: Iterable[KubeObject], options: TranslateOptions, warnings: list[str]
) -> _World:
    world = _World()
    seen: set[str] = set()
    for number, obj in enumerate(_flatten(objects), start=1):
        fields, metadata, kind, key = _identify(obj, number)
        api_version = _API_VERSIONS.get(kind)
        if api_version is None:
            continue  # not an object routing depends on
        ref = object_ref(obj)
        if obj["apiVersion"] != api_version:
            warnings.append(f"{ref}: apiVersion {obj['apiVersion']} is not supported; ignored")
            continue
        if ref in seen:
            warnings.append(f"{ref}: given more than once; the last one is used")
        seen.add(ref)
        if kind == "Ingress":
            world.ingresses[ref] = _read_ingress(fields, metadata, ref, key, warnings)
        elif kind == "Service":
            world.services[key] = _read_service(fields, ref)
        elif kind == "EndpointSlice" and options.endpoints_api == "endpointslices":
            source = _read_slice(fields, metadata, key[0])
            if source is not None:
                world.sources[ref] = source
        elif kind == "Endpoints" and options.endpoints_api == "endpoints":
            world.sources[ref] = _EndpointSource(key, _read_endpoints(fields))
        elif kind == "Secret":
            secret = _read_tls_secret(fields)
            if secret is not None:
                world.secrets[key] = secret
        # IngressClass objects are accepted and not needed: --ingress-class selects by name;
        # the endpoints kind not asked for is not read at all.
    world.index_sources()
    return world


def _flatten(objects: Iterable[KubeObject]) -> Iterator[Any]:
    for obj in objects:
        if isinstance(obj, Mapping) and obj.get("kind") == "List":
            items = obj.get("items")
            if not isinstance(items, list):
                raise ManifestError(f"{object_ref(obj)}: items: {_show(items)} is not a list")
            yield from _flatten(items)
        else:
            yield obj


def _identify(obj: Any, number: int) -> tuple[_Fields, _Fields, str, tuple[str, str]]:
    """(fields, metadata, kind, (namespace, name)) of object `number`; ManifestError if it is
    not a Kubernetes object at all."""
    if not isinstance(obj, Mapping):
        raise ManifestError(f"object {number}: {_show(obj)} is not a Kubernetes object")
    fields = _Fields(object_ref(obj), "", obj)
    kind = fields.required_text("kind")
    fields.required_text("apiVersion")
    metadata = fields.child("metadata")
    if metadata is None:
        raise fields.error("metadata", "missing")
    name = metadata.required_text("name")
    return fields, metadata, kind, (metadata.text("namespace") or _DEFAULT_NAMESPACE, name)


def _read_ingress(
    fields: _Fields, metadata: _Fields, ref: str, key: tuple[str, str], warnings: list[str]
) -> _Ingress:
    namespace, name = key
    annotations = metadata.string_map("annotations")
    spec = fields.child("spec") or _Fields(ref, "spec", {})
    hosts: list[str | None] = []
    paths: list[_Path] = []
    for rule in spec.children("rules"):
        host_text = rule.text("host")
        try:
            host = parse_server_name(host_text) if host_text else None
        except ValueError as error:
            raise rule.error("host", str(error)) from None
        hosts.append(host)
        http = rule.child("http")
        for path in http.children("paths") if http else ():
            paths.append(_read_path(path, namespace, host))
    tls = tuple(
        TlsEntry(
            hosts=tuple(_tls_host(entry, text) for text in entry.texts("hosts")),
            secret=entry.text("secretName"),
        )
        for entry in spec.children("tls")
    )
    default_fields = spec.child("defaultBackend")
    default = _read_backend(default_fields, namespace) if default_fields else None
    if default_fields and default is None:
        warnings.append(f"{ref}: defaultBackend: resource backends are not supported; ignored")
    return _Ingress(
        namespace=namespace,
        name=name,
        ref=ref,
        created=metadata.timestamp("creationTimestamp"),
        class_name=spec.text("ingressClassName"),
        legacy_class=annotations.get(_LEGACY_CLASS),
        annotations=annotations,
        hosts=tuple(hosts),
        paths=tuple(paths),
        default_backend=default,
        tls=IngressTls(ref, namespace, tuple(h for h in hosts if h is not None), tls),
    )


def _tls_host(entry: _Fields, text: str) -> str:
    try:
        return parse_server_name(text)
    except ValueError as error:
        raise entry.error("hosts", str(error)) from None


def _read_tls_secret(fields: _Fields) -> TlsSecret | None:
    """The chain and key of a `kubernetes.io/tls` Secret (base64 `data`, or `stringData` as
    written by hand); None for other Secret types, which routing never needs."""
    if fields.text("type") != "kubernetes.io/tls":
        return None
    plain = fields.string_map("stringData")
    encoded = fields.string_map("data")
    values: dict[str, bytes] = {}
    for name in ("tls.crt", "tls.key"):
        if name in plain:
            values[name] = plain[name].encode()
        elif name in encoded:
            try:
                values[name] = base64.b64decode(encoded[name], validate=True)
            except binascii.Error:
                raise fields.error(f"data.{name}", "is not base64") from None
        else:
            raise fields.error(f"data.{name}", "missing (a kubernetes.io/tls Secret needs it)")
    return TlsSecret(values["tls.crt"], values["tls.key"])


def _read_path(path: _Fields, namespace: str, host: str | None) -> _Path:
    text = path.text("path") or _ROOT  # compat §8.1: an empty path is "/"
    if not text.startswith("/"):
        raise path.error("path", f"{text!r} does not start with /")
    path_type = path.text("pathType")
    if path_type is None:
        raise path.error("pathType", "missing (Exact, Prefix or ImplementationSpecific)")
    if path_type not in _PATH_TYPES:
        raise path.error(
            "pathType", f"{path_type!r} is not Exact, Prefix or ImplementationSpecific"
        )
    backend = path.child("backend")
    if backend is None:
        raise path.error("backend", "missing")
    return _Path(host, text, path_type, _read_backend(backend, namespace))


def _read_backend(backend: _Fields, namespace: str) -> _Backend | None:
    """The service backend; None for a `resource` backend, which cannot be proxied to."""
    service = backend.child("service")
    if service is None:
        if backend.child("resource") is None:
            raise backend.error(None, "needs a service or a resource")
        return None
    port = service.child("port")
    if port is None:
        raise service.error("port", "missing")
    number = port.port("number")
    port_name = port.text("name")
    if (number is None) == (not port_name):
        raise port.error(None, "needs exactly one of number and name")
    return _Backend(namespace, service.required_text("name"), number or port_name or "")


def _read_service(fields: _Fields, ref: str) -> _Service:
    spec = fields.child("spec") or _Fields(ref, "spec", {})
    ports = []
    for port in spec.children("ports"):
        number = port.port("port")
        if number is None:
            raise port.error("port", "missing")
        target = port.number_or_text("targetPort")
        ports.append(
            _ServicePort(
                name=port.text("name") or "",
                port=number,
                target_port=number if target is None else target,  # the API server's default
                protocol=port.text("protocol") or "TCP",
            )
        )
    return _Service(ref, spec.text("type") == "ExternalName", tuple(ports))


def _read_slice(fields: _Fields, metadata: _Fields, namespace: str) -> _EndpointSource | None:
    """None for a slice without the Service label: slices join by that label only (k8s-api b.6)."""
    members: list[_Member] = []
    for endpoint in fields.children("endpoints"):
        draining = _draining(endpoint.child("conditions"))
        if draining is None:
            continue
        pod = _pod_name(endpoint.child("targetRef"))
        members.extend(_Member(address, pod, draining) for address in endpoint.texts("addresses"))
    ports = tuple(_named_port(port, required=False) for port in fields.children("ports"))
    fqdn = fields.required_text("addressType") == "FQDN"
    service = metadata.string_map("labels").get(_SERVICE_NAME_LABEL)
    if not service:
        return None
    if fqdn:
        return _EndpointSource((namespace, service), (), fqdn=True)
    return _EndpointSource((namespace, service), (_Group(tuple(members), ports, True),))


def _draining(conditions: _Fields | None) -> bool | None:
    """False: in rotation; True: draining (DESIGN §4); None: excluded. Nil rules: k8s-api b.6."""
    if conditions is None:
        return False
    ready = conditions.flag("ready")
    ready = True if ready is None else ready
    serving = conditions.flag("serving")
    serving = ready if serving is None else serving
    terminating = bool(conditions.flag("terminating"))
    if ready:
        return False
    if serving and terminating:
        return True
    return None


def _pod_name(target: _Fields | None) -> str | None:
    if target is None or target.text("kind") != "Pod":
        return None
    return target.text("name")


def _named_port(port: _Fields, *, required: bool) -> _NamedPort:
    number = port.port("port")
    if required and number is None:
        raise port.error("port", "missing")
    return _NamedPort(port.text("name") or "", number, port.text("protocol") or "TCP")


def _read_endpoints(fields: _Fields) -> tuple[_Group, ...]:
    """Legacy Endpoints: `addresses` are ready; `notReadyAddresses` are left out (DESIGN §5)."""
    groups = []
    for subset in fields.children("subsets"):
        members = []
        for address in subset.children("addresses"):
            ip = address.required_text("ip")
            members.append(_Member(ip, _pod_name(address.child("targetRef")), draining=False))
        subset.children("notReadyAddresses")  # type-checked only
        ports = tuple(_named_port(port, required=True) for port in subset.children("ports"))
        groups.append(_Group(tuple(members), ports, trusts_target_port=False))
    return tuple(groups)


# --- which Ingresses, in which order -----------------------------------------------------------


def _selected(ingress: _Ingress, ingress_class: str) -> bool:
    """Ours: of our class by `spec.ingressClassName`, else by the legacy annotation, or of none.

    The class name wins over the annotation when both are set, as in ingress-nginx's store.
    """
    if ingress.class_name is not None:
        return ingress.class_name == ingress_class
    if ingress.legacy_class is not None:
        return ingress.legacy_class == ingress_class
    return True


def _processing_order(ingresses: Iterable[_Ingress]) -> list[_Ingress]:
    """ingress-nginx's order (store.sortIngressSlice), which "first" and "last" mean in compat §2:
    oldest `creationTimestamp` first; equal ones, and objects without one (manifest files), by
    "namespace/name" *descending*. Followed exactly: it decides which Ingress's cookie name a
    shared backend uses, and so whether migrated sessions keep their pod."""
    by_name = sorted(ingresses, key=lambda i: f"{i.namespace}/{i.name}", reverse=True)
    return sorted(by_name, key=lambda i: i.created or _GO_ZERO_TIME)  # stable: ties keep by_name


# --- Ingress paths and the backends they share --------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    """One Ingress path with its final path type."""

    ingress: _Ingress
    host: str | None
    path: str
    path_type: PathType
    backend: _Backend


def _entries(
    ingresses: list[_Ingress], settings: Mapping[str, IngressSettings], warnings: list[str]
) -> list[_Entry]:
    # use-regex is per Ingress here (DESIGN §5); in ingress-nginx it turns every path of the host
    # into a regex, so a path on such a host that looks like a regex but is not one is flagged.
    regex_hosts: dict[str | None, str] = {}
    for ingress in ingresses:
        if settings[ingress.ref].use_regex:
            for host in ingress.hosts:
                regex_hosts.setdefault(host, ingress.ref)
    entries = []
    for ingress in ingresses:
        use_regex = settings[ingress.ref].use_regex
        for path in ingress.paths:
            where = f"{ingress.ref}: path {path.path!r}"
            if path.backend is None:
                warnings.append(f"{where}: resource backends are not supported; path skipped")
                continue
            path_type = _path_type(path.path_type, use_regex)
            if path_type is PathType.REGEX:
                try:
                    re.compile(path.path, re.IGNORECASE)
                except re.error as error:
                    warnings.append(f"{where} is not a valid regular expression ({error}); skipped")
                    continue
            elif path.host in regex_hosts and _REGEX_CHARS.search(path.path):
                warnings.append(
                    f"{where} is matched as {path_type.value} here, but ingress-nginx reads it as"
                    f" a regex: {regex_hosts[path.host]} sets use-regex on the same host"
                )
            entries.append(_Entry(ingress, path.host, path.path, path_type, path.backend))
    return entries


def _path_type(written: str, use_regex: bool) -> PathType:
    if written == "Exact":
        return PathType.EXACT
    if written == "ImplementationSpecific" and use_regex:
        return PathType.REGEX
    return PathType.PREFIX  # Prefix, and ImplementationSpecific as ingress-nginx reads it


@dataclass
class _BackendPlan:
    """Everything the Ingresses say about one backend (cluster), in processing order."""

    backend: _Backend
    users: list[_Ingress] = field(default_factory=list)
    # compat §8.1: host (None: rules without host) -> the paths of affinity Ingresses there
    locations: dict[str | None, set[str]] = field(default_factory=dict)
    affinity: Affinity | None = None


def _merge_backends(
    ingresses: list[_Ingress],
    entries: list[_Entry],
    settings: Mapping[str, IngressSettings],
    warnings: list[str],
) -> dict[str, _BackendPlan]:
    """One plan per backend name, with ingress-nginx's affinity merge (compat §2): affinity is on
    if any Ingress path to it has `affinity: cookie`; the mode is the first one set; the cookie
    settings are the last affinity Ingress's; the affinity locations collect all of them."""
    plans: dict[str, _BackendPlan] = {}
    for ingress in ingresses:
        if ingress.default_backend is not None:
            backend = ingress.default_backend
            plans.setdefault(backend.cluster_name, _BackendPlan(backend))
    for entry in entries:
        plan = plans.setdefault(entry.backend.cluster_name, _BackendPlan(entry.backend))
        if not plan.users or plan.users[-1] is not entry.ingress:  # entries come per Ingress
            plan.users.append(entry.ingress)
        if settings[entry.ingress.ref].affinity:
            plan.locations.setdefault(entry.host, set()).add(entry.path)
    for plan in plans.values():
        _merge_affinity(plan, settings, warnings)
    return plans


def _merge_affinity(
    plan: _BackendPlan, settings: Mapping[str, IngressSettings], warnings: list[str]
) -> None:
    with_affinity = [ingress for ingress in plan.users if settings[ingress.ref].affinity]
    if not with_affinity:
        return
    name = plan.backend.cluster_name
    order = "ingress-nginx's order: oldest first, then by namespace/name descending"
    # ingress-nginx takes the mode from any Ingress of the backend, with affinity or not.
    modes = [(ingress, settings[ingress.ref].mode) for ingress in plan.users]
    set_modes = [(ingress, mode) for ingress, mode in modes if mode is not None]
    mode = set_modes[0][1] if set_modes else AffinityMode.BALANCED
    for ingress, own in set_modes:
        if own is not mode:
            warnings.append(
                f"{ingress.ref}: affinity-mode {own} does not apply to backend {name}:"
                f" {set_modes[0][0].ref} sets {mode} first ({order})"
            )
    cookie_setter = with_affinity[-1]
    cookie = settings[cookie_setter.ref].cookie
    plan.affinity = Affinity(mode=mode, cookie=cookie)
    for ingress in with_affinity:
        if settings[ingress.ref].cookie != cookie:
            warnings.append(
                f"{ingress.ref}: its session-cookie-* settings do not apply to backend {name}:"
                f" those of {cookie_setter.ref}, processed last, do ({order})"
            )


# --- endpoints ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _BuiltCluster:
    cluster: Cluster
    locations: Mapping[str | None, set[str]]  # see _BackendPlan
    problem: str | None  # why the cluster has no endpoints at all, if it is a setup problem


def _build_cluster(plan: _BackendPlan, world: _World, warnings: list[str]) -> _BuiltCluster:
    endpoints, problem = _endpoints(plan.backend, world, warnings)
    cluster = build_cluster(plan.backend.cluster_name, endpoints, plan.affinity)
    return _BuiltCluster(cluster, plan.locations, problem)


def _endpoints(
    backend: _Backend, world: _World, warnings: list[str]
) -> tuple[list[Endpoint], str | None]:
    """The endpoints of a backend, sorted; or none and the reason (the data plane answers 503)."""
    key = (backend.namespace, backend.service)
    name = f"service {backend.namespace}/{backend.service}"
    service = world.services.get(key)
    if service is None:
        return [], f"{name} not found"
    if service.external_name:
        return [], f"{name} is of type ExternalName, which is not supported"
    port = _service_port(service, backend.port)
    if port is None:
        return [], f"{name} has no port {backend.port!r}"
    for ref in world.fqdn_slices(key):
        warnings.append(f"{ref}: addressType FQDN is not supported; its endpoints are skipped")
    found = {
        Endpoint(member.address, dial_port, member.pod, member.draining)
        for group in world.groups(key)
        for dial_port in _dial_ports(group, port)
        for member in group.members
    }
    # Ready before draining for the same address: the cluster keeps the first copy of a node.
    return sorted(found, key=lambda e: (e.address, e.port, e.draining, e.pod or "")), None


def _service_port(service: _Service, backend_port: int | str) -> _ServicePort | None:
    """The first Service port whose number, targetPort or name is the Ingress's port.

    ingress-nginx's loose match (controller.serviceEndpoints), kept so the same Ingress finds
    the same endpoints: port 8080 also finds `{port: 80, targetPort: 8080}`.
    """
    wanted = str(backend_port)
    for port in service.ports:
        if wanted in (str(port.port), str(port.target_port), port.name):
            return port
    return None


def _dial_ports(group: _Group, service_port: _ServicePort) -> set[int]:
    """The port numbers to dial for `service_port` in one slice or subset (k8s-api b.6).

    As ingress-nginx (controller/endpointslices.go, endpoints.go): TCP ports only; the one named
    like the Service port, or every one for an unnamed Service port. Slices also fall back to a
    numeric targetPort when no name matches or they list no ports (ingress-nginx#7390).
    """
    target = service_port.target_port
    fallback = target if group.trusts_target_port and isinstance(target, int) else None
    if not group.ports:
        return {fallback} if fallback else set()
    ports = set()
    for port in group.ports:
        if port.protocol != "TCP" or port.port is None:
            continue
        if not service_port.name or port.name == service_port.name:
            ports.add(port.port)
        elif fallback:
            ports.add(fallback)
    return ports


# --- routes ------------------------------------------------------------------------------------

_RouteKey = tuple[str | None, str, PathType]


class _Layout:
    """Routes laid out as ingress-nginx lays out nginx servers (hosts) and locations (paths):
    the first Ingress to claim a (host, path, type) has it; later ones are warned about."""

    def __init__(
        self,
        clusters: Mapping[str, _BuiltCluster],
        settings: Mapping[str, IngressSettings],
        warnings: list[str],
    ) -> None:
        self._clusters = clusters
        self._settings = settings
        self._warnings = warnings
        self._routes: dict[_RouteKey, Route] = {}
        self._claimed: dict[_RouteKey, str] = {}  # which Ingress has each location

    def add_default_backends(self, ingresses: list[_Ingress]) -> Route | None:
        """The catch-all default route: the first Ingress with a defaultBackend and no rules.

        Like ingress-nginx's `_` server root, it takes "/" of rule-less hosts before any path.
        """
        default: Route | None = None
        for ingress in ingresses:
            if ingress.default_backend is None or ingress.hosts:
                continue
            if default is not None:
                self._warnings.append(
                    f"{ingress.ref}: defaultBackend ignored: Ingress {default.namespace}/"
                    f"{default.ingress} already gives the catch-all default backend"
                )
                continue
            default = self._route(ingress, None, _ROOT, PathType.PREFIX, ingress.default_backend)
            self._claimed[(None, _ROOT, PathType.PREFIX)] = ingress.ref
        return default

    def add_paths(self, entries: list[_Entry]) -> None:
        for entry in entries:
            key = (entry.host, entry.path, entry.path_type)
            owner = self._claimed.get(key)
            if owner is not None:
                self._warnings.append(
                    f"{entry.ingress.ref}: {_location(key)} is already routed by {owner}; ignored"
                )
                continue
            self._claimed[key] = entry.ingress.ref
            route = self._route(entry.ingress, *key, entry.backend)
            self._routes[key] = route

    def add_server_roots(self, ingresses: list[_Ingress]) -> None:
        """A host's "/" goes to the defaultBackend of the first Ingress with a rule for it,
        unless a path has "/" (ingress-nginx: the server's root location)."""
        first: dict[str, _Ingress] = {}
        for ingress in ingresses:
            for host in ingress.hosts:
                if host is not None:
                    first.setdefault(host, ingress)
        for host, ingress in first.items():
            key = (host, _ROOT, PathType.PREFIX)
            if ingress.default_backend is not None and key not in self._claimed:
                self._claimed[key] = ingress.ref
                self._routes[key] = self._route(ingress, *key, ingress.default_backend)

    def add_aliases(self, ingresses: list[_Ingress]) -> None:
        """server-alias: the first Ingress to set aliases for a host has them; an alias that is a
        host of its own is dropped. An alias serves every path of its host (compat §8.1)."""
        hosts = {host for ingress in ingresses for host in ingress.hosts if host is not None}
        setters: dict[str, _Ingress] = {}
        for ingress in ingresses:
            if not self._settings[ingress.ref].aliases:
                continue
            for host in dict.fromkeys(ingress.hosts):
                if host is None:
                    self._warnings.append(
                        f"{ingress.ref}: server-alias has no effect on a rule without host"
                    )
                    continue
                setter = setters.setdefault(host, ingress)
                if setter is not ingress:
                    self._warnings.append(
                        f"{ingress.ref}: server-alias for {host} ignored: {setter.ref} set it"
                    )
        alias_hosts: dict[str, str] = {}
        for host, setter in sorted(setters.items()):
            for alias in self._settings[setter.ref].aliases:
                other = alias_hosts.get(alias)
                if alias in hosts:
                    if alias != host:
                        self._warnings.append(
                            f"{setter.ref}: server-alias {alias} ignored: it is a host of its own"
                        )
                elif other is not None:
                    self._warnings.append(
                        f"{setter.ref}: server-alias {alias} for {host} ignored:"
                        f" it is an alias of {other} already"
                    )
                else:
                    alias_hosts[alias] = host
        for (host, path, path_type), route in list(self._routes.items()):
            for alias, aliased in alias_hosts.items():
                if aliased == host:
                    self._routes[(alias, path, path_type)] = dataclasses.replace(route, host=alias)

    def routes(self) -> tuple[Route, ...]:
        return tuple(
            sorted(
                self._routes.values(),
                key=lambda r: (r.host is None, r.host or "", r.path, r.path_type.value),
            )
        )

    def _route(
        self,
        ingress: _Ingress,
        host: str | None,
        path: str,
        path_type: PathType,
        backend: _Backend,
    ) -> Route:
        built = self._clusters[backend.cluster_name]
        affinity = built.cluster.affinity
        cookie_path = affinity.cookie.path if affinity is not None else None
        return Route(
            host=host,
            path=path,
            path_type=path_type,
            cluster=built.cluster,
            sets_cookie=_is_affinity_location(built.locations, host, path),
            cookie_path=cookie_path or path,
            upstream=self._settings[ingress.ref].upstream,
            namespace=ingress.namespace,
            ingress=ingress.name,
            service=backend.service,
        )


def _is_affinity_location(
    locations: Mapping[str | None, set[str]], host: str | None, path: str
) -> bool:
    """compat §8.1: the paths of the request's host; only for a host with no entries at all, those
    of the `*.` wildcard of its parent domain. A route's host stands for the request's: an exact
    host, a wildcard (its own entry, as no exact server took the request), or None (`_`)."""
    paths = locations.get(host)
    if paths is None and host is not None and "." in host and not host.startswith("*."):
        paths = locations.get("*." + host.split(".", 1)[1])
    return paths is not None and path in paths


def _location(key: _RouteKey) -> str:
    host, path, path_type = key
    return f"{path_type.value} path {path!r} of {host or 'every host'}"


def _check_routes(
    routes: tuple[Route, ...],
    default_route: Route | None,
    clusters: Mapping[str, _BuiltCluster],
    warnings: list[str],
) -> None:
    """Warnings about what routes will do: answer 503, or set cookies with a regex Path."""
    for route in (*routes, *([default_route] if default_route else [])):
        ref = f"Ingress {route.namespace}/{route.ingress}"
        problem = clusters[route.cluster.name].problem
        if problem is not None:
            what = "the default backend" if route is default_route else f"path {route.path}"
            warnings.append(f"{ref}: {problem}; {what} answers 503")
        affinity = route.cluster.affinity
        if (
            route.path_type is PathType.REGEX
            and route.sets_cookie
            and affinity is not None
            and affinity.cookie.path is None
        ):
            warnings.append(
                f"{ref}: path {route.path!r} uses use-regex without session-cookie-path;"
                f" cookies get Path={route.path}"
            )
