"""Ingress objects read into `Ingress`: the class, the rules (hosts, paths and their service
backends), the default backend and the TLS entries, each field type-checked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from proxy.control.translate.annotations import parse_server_name
from proxy.control.translate.fields import Fields
from proxy.control.translate.tls import IngressTls, TlsEntry

_LEGACY_CLASS = "kubernetes.io/ingress.class"
_PATH_TYPES = ("Exact", "Prefix", "ImplementationSpecific")
ROOT = "/"


@dataclass(frozen=True, slots=True)
class Backend:
    """An Ingress service backend: the Service port as written (number or name)."""

    namespace: str
    service: str
    port: int | str

    @property
    def cluster_name(self) -> str:
        """ingress-nginx's backend name, which the affinity hashes are salted with
        (docs/ingress-nginx-compat.md, "Backend names")."""
        return f"{self.namespace}-{self.service}-{self.port}"


@dataclass(frozen=True, slots=True)
class _Path:
    host: str | None
    path: str
    path_type: str  # as written: Exact, Prefix or ImplementationSpecific
    backend: Backend | None  # None: a resource backend


@dataclass(frozen=True, slots=True)
class Ingress:
    namespace: str
    name: str
    ref: str
    created: datetime | None
    class_name: str | None
    legacy_class: str | None
    annotations: Mapping[str, str]
    hosts: tuple[str | None, ...]  # one per rule, None for a rule without host
    paths: tuple[_Path, ...]
    default_backend: Backend | None
    tls: IngressTls


def read_ingress(
    fields: Fields, metadata: Fields, ref: str, key: tuple[str, str], warnings: list[str]
) -> Ingress:
    namespace, name = key
    annotations = metadata.string_map("annotations")
    spec = fields.child("spec") or Fields(ref, "spec", {})
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
    return Ingress(
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


def _tls_host(entry: Fields, text: str) -> str:
    try:
        return parse_server_name(text)
    except ValueError as error:
        raise entry.error("hosts", str(error)) from None


def _read_path(path: Fields, namespace: str, host: str | None) -> _Path:
    text = path.text("path") or ROOT  # empty: "/" (docs/behaviour.md, "Hosts and paths")
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


def _read_backend(backend: Fields, namespace: str) -> Backend | None:
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
    return Backend(namespace, service.required_text("name"), number or port_name or "")
