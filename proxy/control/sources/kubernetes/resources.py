"""The API resources the source reads, where they live on the API server, and the reasons their
watches restart: together the label values of `sticky_proxy_kubernetes_watch_restarts_total`.

The Gateway API kinds (and Namespaces, read only for them) are optional: a cluster without the
Gateway API CRDs answers 404 for them, and one whose RBAC predates them 403; neither may stop the
proxy from serving Ingresses (the reflector and the source treat them so).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Resource:
    kind: str
    plural: str
    group: str  # "" for the core API
    version: str
    namespaced: bool = True
    field_selector: str = ""  # only objects with these fields, e.g. TLS Secrets and no others
    # Routing works without it: a 404 (CRD not installed) or 403 neither blocks the first table
    # nor readiness, and a 404 is checked again now and then instead of retried with backoff.
    optional: bool = False
    # Served under these versions on older clusters, tried in order when `version` answers 404.
    older_versions: tuple[str, ...] = ()
    # Its status is written by this proxy and never read by translation: a change of the status
    # alone need not rebuild the routes (the status writer still hears of it).
    status_written: bool = False
    # Only these keys of `data` are kept, with the name, namespace and type, and an object holding
    # none of them not at all: a Secret may hold anything, routing reads no more (docs/behaviour.md
    # "Startup", on Secrets).
    keep_data: tuple[str, ...] = ()
    # Secrets: every key of those an Ingress names as auth-secret is kept too (their users), and
    # of no other (docs/behaviour.md, "Startup").
    named_data: bool = False
    # The restart metric's label, where another watch of the same plural needs telling apart.
    label: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def series(self) -> str:
        """Its `resource` label in `sticky_proxy_kubernetes_watch_restarts_total`."""
        return self.label or self.plural

    @property
    def qualified(self) -> str:
        """How RBAC and the API server's messages name it: `endpointslices.discovery.k8s.io`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def collection(self, namespace: str | None = None) -> str:
        """The URL path of the collection: every namespace, or one."""
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace is not None and self.namespaced:
            return f"{root}/namespaces/{namespace}/{self.plural}"
        return f"{root}/{self.plural}"

    def item(self, namespace: str, name: str, subresource: str = "") -> str:
        path = f"{self.collection(namespace)}/{name}"
        return f"{path}/{subresource}" if subresource else path


INGRESSES = Resource("Ingress", "ingresses", "networking.k8s.io", "v1")
INGRESS_CLASSES = Resource("IngressClass", "ingressclasses", "networking.k8s.io", "v1", False)
SERVICES = Resource("Service", "services", "", "v1")
ENDPOINT_SLICES = Resource("EndpointSlice", "endpointslices", "discovery.k8s.io", "v1")
ENDPOINTS = Resource("Endpoints", "endpoints", "", "v1")
# What routing reads of a Secret: Ingress spec.tls and proxy-ssl-secret.
SECRET_KEYS = ("ca.crt", "tls.crt", "tls.key")
# Secrets of the two types that can hold those keys, one watch each (a field selector cannot ask
# for either of two types); the server filters, so no other type is read. kubernetes.io/tls ones
# serve certificates; Opaque ones the CA-only Secrets that type cannot be (it requires tls.key).
TLS_SECRETS = Resource(
    "Secret", "secrets", "", "v1", field_selector="type=kubernetes.io/tls", keep_data=SECRET_KEYS,
    named_data=True,
)  # fmt: skip
OPAQUE_SECRETS = Resource(
    "Secret", "secrets", "", "v1", field_selector="type=Opaque", keep_data=SECRET_KEYS,
    label="secrets-opaque", named_data=True,
)  # fmt: skip
SECRETS = (TLS_SECRETS, OPAQUE_SECRETS)
# custom-headers ConfigMaps (docs/behaviour.md, "Custom response headers"); optional, so that a
# deployment whose RBAC predates them still serves, without those headers
CONFIG_MAPS = Resource("ConfigMap", "configmaps", "", "v1", optional=True)
# Without a TLS listener: only the Opaque Secrets Ingresses name as auth-secret, and optional, so
# that a deployment whose RBAC grants no Secrets still serves (those Ingresses' paths answer 503).
AUTH_SECRETS = Resource(
    "Secret", "secrets", "", "v1", field_selector="type=Opaque", label="secrets-opaque",
    named_data=True, optional=True,
)  # fmt: skip

GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_CLASSES = Resource(
    "GatewayClass", "gatewayclasses", GATEWAY_GROUP, "v1", False, optional=True, status_written=True
)
GATEWAYS = Resource("Gateway", "gateways", GATEWAY_GROUP, "v1", optional=True, status_written=True)
HTTP_ROUTES = Resource(
    "HTTPRoute", "httproutes", GATEWAY_GROUP, "v1", optional=True, status_written=True
)
# v1 where the installed Gateway API serves it (recent releases), else v1beta1 (older ones):
# v1 first, so that a release that stops serving v1beta1 changes nothing here.
REFERENCE_GRANTS = Resource(
    "ReferenceGrant", "referencegrants", GATEWAY_GROUP, "v1", optional=True,
    older_versions=("v1beta1",),
)  # fmt: skip
# Their labels, for Gateway listeners whose allowedRoutes select namespaces by label.
NAMESPACES = Resource("Namespace", "namespaces", "", "v1", False, optional=True)
GATEWAY_RESOURCES = (GATEWAY_CLASSES, GATEWAYS, HTTP_ROUTES, REFERENCE_GRANTS, NAMESPACES)

ALL_RESOURCES = (
    INGRESSES,
    INGRESS_CLASSES,
    SERVICES,
    ENDPOINT_SLICES,
    ENDPOINTS,
    *SECRETS,
    CONFIG_MAPS,
    *GATEWAY_RESOURCES,
)

# Watch restarts are counted by these reasons (the metric's label values).
RESTART_REASONS = (
    "closed",  # the server ended the watch (its timeoutSeconds); resumed
    "expired",  # 410 Gone: relisted
    "dropped",  # the connection failed or broke mid-stream
    "stalled",  # nothing received for the inactivity timeout
    "throttled",  # 429 Too Many Requests
    "unauthorized",  # 401 after renewing the credentials, or no credentials at all
    "forbidden",  # 403: RBAC does not allow the verb
    "error",  # any other error status or ERROR event
)
