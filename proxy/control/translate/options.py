"""What a caller chooses about translation: the ingress class to serve, which endpoints API to
read, and the upstream defaults that each Ingress's annotations may override."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from proxy.core.model import UpstreamPolicy

# Where endpoints come from: EndpointSlices, or the legacy Endpoints API (--endpoints-api).
EndpointsApi = Literal["endpointslices", "endpoints"]
DEFAULT_INGRESS_CLASS = "sticky"
# The GatewayClass spec.controllerName whose Gateways are ours (--gateway-controller).
DEFAULT_GATEWAY_CONTROLLER = "sticky-proxy.io/gateway-controller"


@dataclass(frozen=True, slots=True)
class TranslateOptions:
    ingress_class: str = DEFAULT_INGRESS_CLASS
    endpoints_api: EndpointsApi = "endpointslices"
    upstream: UpstreamPolicy = field(default_factory=UpstreamPolicy)  # overridden per Ingress
    gateway_controller: str = DEFAULT_GATEWAY_CONTROLLER
    # signs Gateway API session tokens whose lifetime the proxy enforces; every replica needs the
    # same (--session-key-file); empty: a random one per process
    session_key: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if self.endpoints_api not in get_args(EndpointsApi):
            raise ValueError(f"endpoints_api {self.endpoints_api!r}: endpointslices or endpoints")
