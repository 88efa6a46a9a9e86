"""Kubernetes objects as translation takes them in: plain mappings (parsed YAML or JSON, or API
objects), the kinds and API versions routing depends on, how messages name an object, and the
error for one that cannot be used at all."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

KubeObject = Mapping[str, Any]

# The apiVersions read for each kind (the first is the one the API serves by default)
API_VERSIONS: dict[str, tuple[str, ...]] = {
    "Ingress": ("networking.k8s.io/v1",),
    "IngressClass": ("networking.k8s.io/v1",),
    "Service": ("v1",),
    "EndpointSlice": ("discovery.k8s.io/v1",),
    "Endpoints": ("v1",),
    "Secret": ("v1",),
    "ConfigMap": ("v1",),  # custom-headers
    "Namespace": ("v1",),
    "GatewayClass": ("gateway.networking.k8s.io/v1",),
    "Gateway": ("gateway.networking.k8s.io/v1",),
    "HTTPRoute": ("gateway.networking.k8s.io/v1",),
    # v1 since Gateway API 1.5; v1beta1 is still served
    "ReferenceGrant": ("gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"),
}
_CLUSTER_SCOPED = frozenset({"IngressClass", "GatewayClass", "Namespace"})
DEFAULT_NAMESPACE = "default"  # where `kubectl apply` puts an object that names none


class ManifestError(ValueError):
    """An object that cannot be used at all. The message starts with `object_ref(obj) + ":"`
    (or `object N:`, its position, for what is not an object at all), then names the field."""


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
        if kind_text in _CLUSTER_SCOPED or kind_text not in API_VERSIONS:
            return f"{kind_text} {name_text}"
        namespace = DEFAULT_NAMESPACE
    return f"{kind_text} {namespace}/{name_text}"
