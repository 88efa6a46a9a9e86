"""What a caller chooses about translation: the ingress class to serve, which endpoints API to
read, and the upstream defaults that each Ingress's annotations may override."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from proxy.core.model import UpstreamPolicy


@dataclass(frozen=True, slots=True)
class TranslateOptions:
    ingress_class: str = "sticky"
    endpoints_api: Literal["endpointslices", "endpoints"] = "endpointslices"
    upstream: UpstreamPolicy = field(default_factory=UpstreamPolicy)  # overridden per Ingress

    def __post_init__(self) -> None:
        if self.endpoints_api not in ("endpointslices", "endpoints"):
            raise ValueError(f"endpoints_api {self.endpoints_api!r}: endpointslices or endpoints")
