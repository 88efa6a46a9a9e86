"""Every object at once, read by kind into a `World`: the Ingresses, TLS Secrets, Services and
endpoint sources that the later steps look up. Kinds routing does not depend on are passed over;
an unsupported apiVersion or an object given twice is a warning."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from proxy.control.translate.fields import Fields, show_value
from proxy.control.translate.gateway.resources import (
    Gateway,
    GatewayClass,
    HTTPRoute,
    ReferenceGrant,
    read_gateway,
    read_gateway_class,
    read_http_route,
    read_reference_grant,
)
from proxy.control.translate.ingresses import Ingress, read_ingress
from proxy.control.translate.objects import (
    API_VERSIONS,
    DEFAULT_NAMESPACE,
    KubeObject,
    ManifestError,
    object_ref,
)
from proxy.control.translate.options import TranslateOptions
from proxy.control.translate.proxy_ssl import SecretData
from proxy.control.translate.services import (
    EndpointSource,
    Group,
    Service,
    read_endpoints,
    read_service,
    read_slice,
)
from proxy.control.translate.tls import TlsSecret


@dataclass
class World:
    ingresses: dict[str, Ingress] = field(default_factory=dict)  # by ref
    # every Secret with tls.crt and tls.key, for Ingress spec.tls and Gateway listeners
    secrets: dict[tuple[str, str], TlsSecret] = field(default_factory=dict)
    # every Secret's ca.crt, tls.crt and tls.key, for proxy-ssl-secret
    secret_data: dict[tuple[str, str], SecretData] = field(default_factory=dict)
    # every Secret's keys, for auth-secret (of the API's Secrets, only what the source keeps)
    secret_maps: dict[tuple[str, str], dict[str, bytes]] = field(default_factory=dict)
    services: dict[tuple[str, str], Service] = field(default_factory=dict)
    sources: dict[str, EndpointSource] = field(default_factory=dict)  # by ref
    by_service: dict[tuple[str, str], list[tuple[str, EndpointSource]]] = field(
        default_factory=dict
    )  # (ref, source), filled once every object is read
    gateway_classes: dict[str, GatewayClass] = field(default_factory=dict)
    gateways: dict[str, Gateway] = field(default_factory=dict)  # by ref
    http_routes: dict[str, HTTPRoute] = field(default_factory=dict)  # by ref
    reference_grants: list[ReferenceGrant] = field(default_factory=list)
    namespace_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    config_maps: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)  # their data

    def index_sources(self) -> None:
        for ref, source in self.sources.items():
            self.by_service.setdefault(source.service, []).append((ref, source))

    def groups(self, service: tuple[str, str]) -> list[Group]:
        return [group for _, source in self.by_service.get(service, ()) for group in source.groups]

    def fqdn_slices(self, service: tuple[str, str]) -> list[str]:
        return [ref for ref, source in self.by_service.get(service, ()) if source.fqdn]


def read_world(
    objects: Iterable[KubeObject], options: TranslateOptions, warnings: list[str]
) -> World:
    world = World()
    seen: set[str] = set()
    for number, obj in enumerate(_flatten(objects), start=1):
        fields, kind = _kind(obj, number)
        api_versions = API_VERSIONS.get(kind)
        if api_versions is None:
            # Not an object routing depends on (a Deployment, or a kustomization.yaml, which
            # has no metadata), however incomplete.
            continue
        metadata, key = _identify(fields)
        ref = object_ref(obj)
        if obj["apiVersion"] not in api_versions:
            warnings.append(f"{ref}: apiVersion {obj['apiVersion']} is not supported; ignored")
            continue
        if ref in seen:
            warnings.append(f"{ref}: given more than once; the last one is used")
        seen.add(ref)
        if kind == "Ingress":
            world.ingresses[ref] = read_ingress(fields, metadata, ref, key, warnings)
        elif kind == "Service":
            world.services[key] = read_service(fields, ref)
        elif kind == "EndpointSlice" and options.endpoints_api == "endpointslices":
            source = read_slice(fields, metadata, key[0])
            if source is not None:
                world.sources[ref] = source
        elif kind == "Endpoints" and options.endpoints_api == "endpoints":
            world.sources[ref] = EndpointSource(key, read_endpoints(fields))
        elif kind == "Secret":
            secret = _read_tls_secret(fields)
            if secret is not None:
                world.secrets[key] = secret
            world.secret_data[key] = _read_secret_data(fields)
            world.secret_maps[key] = _read_secret_map(fields)
        elif kind == "ConfigMap":
            world.config_maps[key] = fields.string_map("data")
        elif kind in _GATEWAY_KINDS:
            _read_gateway_kind(world, kind, fields, metadata, ref=ref, key=key)
        # IngressClass objects are accepted and not needed: --ingress-class selects by name;
        # the endpoints kind not asked for is not read at all.
    world.index_sources()
    return world


_GATEWAY_KINDS = frozenset({"GatewayClass", "Gateway", "HTTPRoute", "ReferenceGrant", "Namespace"})


def _read_gateway_kind(
    world: World, kind: str, fields: Fields, metadata: Fields, *, ref: str, key: tuple[str, str]
) -> None:
    if kind == "GatewayClass":
        generation = metadata.number("generation") or 0
        world.gateway_classes[key[1]] = read_gateway_class(fields, key[1], generation)
    elif kind == "Gateway":
        world.gateways[ref] = read_gateway(fields, metadata, ref, key)
    elif kind == "HTTPRoute":
        world.http_routes[ref] = read_http_route(fields, metadata, ref, key)
    elif kind == "ReferenceGrant":
        world.reference_grants.append(read_reference_grant(fields, key[0]))
    else:  # Namespace: its labels, for listeners that select route namespaces by label
        world.namespace_labels[key[1]] = metadata.string_map("labels")


def _flatten(objects: Iterable[KubeObject]) -> Iterator[Any]:
    for obj in objects:
        if isinstance(obj, Mapping) and obj.get("kind") == "List":
            items = obj.get("items")
            if not isinstance(items, list):
                raise ManifestError(f"{object_ref(obj)}: items: {show_value(items)} is not a list")
            yield from _flatten(items)
        else:
            yield obj


def _kind(obj: Any, number: int) -> tuple[Fields, str]:
    """The fields and kind of object `number`; ManifestError if it is not an object at all."""
    if not isinstance(obj, Mapping):
        raise ManifestError(f"object {number}: {show_value(obj)} is not a Kubernetes object")
    fields = Fields(object_ref(obj), "", obj)
    kind = fields.required_text("kind")
    fields.required_text("apiVersion")
    return fields, kind


def _identify(fields: Fields) -> tuple[Fields, tuple[str, str]]:
    """(metadata, (namespace, name)) of an object routing reads."""
    metadata = fields.child("metadata")
    if metadata is None:
        raise fields.error("metadata", "missing")
    name = metadata.required_text("name")
    return metadata, (metadata.text("namespace") or DEFAULT_NAMESPACE, name)


def _read_secret_data(fields: Fields) -> SecretData:
    values = [_secret_value(fields, name) for name in ("ca.crt", "tls.crt", "tls.key")]
    return SecretData(*values)


def _read_secret_map(fields: Fields) -> dict[str, bytes]:
    """Every key of a Secret (`stringData` over `data`); a value that is not base64 is left out
    (a key that auth-secret needs is then missing, and its Ingress's paths answer 503)."""
    values: dict[str, bytes] = {}
    for name, encoded in fields.string_map("data").items():
        try:
            values[name] = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            continue
    values.update((name, plain.encode()) for name, plain in fields.string_map("stringData").items())
    return values


def _secret_value(fields: Fields, name: str) -> bytes | None:
    """One key of a Secret: `stringData` as written by hand, else base64 `data`."""
    plain = fields.string_map("stringData").get(name)
    if plain is not None:
        return plain.encode()
    encoded = fields.string_map("data").get(name)
    if encoded is None:
        return None
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise fields.error(f"data.{name}", "is not base64") from None


def _read_tls_secret(fields: Fields) -> TlsSecret | None:
    """The chain and key of a Secret (base64 `data`, or `stringData` as written by hand): of any
    type that holds both, as ingress-nginx reads them (docs/behaviour.md "TLS and redirects");
    None for one that does not, unless it is a `kubernetes.io/tls` one, which must."""
    chain, key = (_secret_value(fields, name) for name in ("tls.crt", "tls.key"))
    if chain is not None and key is not None:
        return TlsSecret(chain, key)
    if fields.text("type") != "kubernetes.io/tls":
        return None
    name = "tls.crt" if chain is None else "tls.key"
    raise fields.error(f"data.{name}", "missing (a kubernetes.io/tls Secret needs it)")
