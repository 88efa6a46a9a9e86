"""Process-wide settings and the command they belong to: parsed from the command line once,
then immutable."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from proxy.control.translate.options import (
    DEFAULT_GATEWAY_CONTROLLER,
    DEFAULT_INGRESS_CLASS,
    EndpointsApi,
)
from proxy.core.access import RealIp
from proxy.core.balancing import LoadBalance
from proxy.core.model import Affinity, Endpoint, TlsCertificate, UpstreamPolicy
from proxy.core.values import Address
from proxy.dataplane.context import (
    CLIENT_BODY_TIMEOUT,
    CLIENT_HEADER_TIMEOUT,
    HTTPS_PORT,
    LIMIT_STATUS,
    MAX_CONNECTIONS,
)

# The TLS listener of --manifests and --kubernetes when --tls-listen is not given (bound only once
# a certificate loads: see ServeSettings.tls_on_demand).
DEFAULT_TLS_LISTEN = Address("0.0.0.0", 8443)


@dataclass(frozen=True, slots=True)
class KubernetesSettings:
    """--kubernetes: which cluster (a kubeconfig, else the pod's service account), what of it."""

    kubeconfig: Path | None = None  # None: $KUBECONFIG, the service account, ~/.kube/config
    context: str | None = None
    namespace: str | None = None  # None: every namespace
    # (namespace, name) of the proxy's own Service: its address goes in the served Ingresses.
    publish_service: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class ServeSettings:
    listen: Address = Address("0.0.0.0", 8080)
    metrics_listen: Address | None = Address("0.0.0.0", 10254)  # None: no admin listener
    # TLS termination: None, no TLS listener (the CLI opens one on 0.0.0.0:8443 when there can
    # be certificates: a default one, or Ingress TLS from manifests or the API).
    tls_listen: Address | None = None
    # True: tls_listen is bound only once a published table holds a certificate, not at start
    # (the CLI's default port when no --tls-cert is given: a port nobody asked for stays free).
    tls_on_demand: bool = False
    tls_default: TlsCertificate | None = None  # --tls-cert/--tls-key, loaded and checked
    https_port: int = HTTPS_PORT  # where ssl-redirect sends plain-HTTP clients
    workers: int = 1
    # Where the workers make the directory they share files in (None: a temporary directory,
    # else /dev/shm: see workers.py).
    state_dir: Path | None = None
    # One of several worker processes sharing the listening ports (SO_REUSEPORT): see workers.py
    reuse_port: bool = False
    log_level: str = "info"
    access_log: str = "off"
    # --ingress-nginx-metrics: ingress-nginx's series too (docs/behaviour.md, "Metrics")
    ingress_nginx_metrics: bool = False
    client_header_timeout: float = CLIENT_HEADER_TIMEOUT
    client_body_timeout: float = CLIENT_BODY_TIMEOUT  # between two reads of a request body
    max_connections: int = MAX_CONNECTIONS  # client connections at once
    # Forward request headers whose names have underscores (ingress-nginx's
    # enable-underscores-in-headers, off by default: they are dropped).
    underscores_in_headers: bool = False
    # --use-forwarded-headers, --proxy-real-ip-cidr and --forwarded-for-header: whose word on
    # the client's address counts (None: the peer's address is the client's)
    real_ip: RealIp | None = None
    # --limit-req-status-code and --limit-conn-status-code: the answers to requests the limit-*
    # annotations refuse (ingress-nginx's ConfigMap keys of the same names)
    limit_req_status: int = LIMIT_STATUS
    limit_conn_status: int = LIMIT_STATUS
    # --load-balance: how clusters without affinity or hash-by spread requests, unless their
    # Ingress's load-balance annotation says otherwise (ingress-nginx's ConfigMap load-balance).
    load_balance: LoadBalance = LoadBalance.ROUND_ROBIN
    shutdown_grace: float = 30.0
    # Defaults for every cluster; Ingress annotations override them per route.
    upstream: UpstreamPolicy = field(default_factory=UpstreamPolicy)
    # --backend source: one cluster named "static" for every host and path.
    backends: tuple[str, ...] = ()
    affinity: Affinity | None = field(default_factory=Affinity)
    # --manifests source: Kubernetes objects in files, and which of them to take.
    manifests: tuple[Path, ...] = ()
    ingress_class: str = DEFAULT_INGRESS_CLASS
    endpoints_api: EndpointsApi = "endpointslices"
    gateway_controller: str = DEFAULT_GATEWAY_CONTROLLER
    # --session-key-file: signs Gateway API session tokens (b"": a random key per start)
    session_key: bytes = field(default=b"", repr=False)
    # --kubernetes source (takes ingress_class and endpoints_api too).
    kubernetes: KubernetesSettings | None = None


@dataclass(frozen=True, slots=True)
class ServeCommand:
    settings: ServeSettings
    endpoints: tuple[Endpoint, ...]  # the --backend source; empty with --manifests


@dataclass(frozen=True, slots=True)
class RoutesCommand:
    manifests: tuple[Path, ...]
    ingress_class: str
    endpoints_api: EndpointsApi
    kubernetes: KubernetesSettings | None = None  # instead of manifests
    gateway_controller: str = DEFAULT_GATEWAY_CONTROLLER


@dataclass(frozen=True, slots=True)
class DemoCommand:
    settings: ServeSettings  # `backends` stays empty: the demo learns their URLs as they start
    replicas: int


Command = ServeCommand | RoutesCommand | DemoCommand
