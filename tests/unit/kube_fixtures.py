"""The YAML fixtures of tests/fixtures/translate, read as the manifests source would read them,
and how the translate tests look into the snapshots they give."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from proxy.control.translate import TranslateOptions, translate
from proxy.control.translate.annotations import PREFIX, IngressSettings, parse_annotations
from proxy.core.model import UpstreamPolicy
from proxy.core.routing import Route, Snapshot

FIXTURES = Path(__file__).parent.parent / "fixtures" / "translate"


def load(name: str) -> list[Any]:
    with (FIXTURES / f"{name}.yaml").open() as file:
        return [document for document in yaml.safe_load_all(file) if document is not None]


def snapshot_of(name: str, **options: Any) -> Snapshot:
    return translate(load(name), TranslateOptions(**options))


def find(snapshot: Snapshot, host: str | None, path: str, path_type: str = "Prefix") -> Route:
    for route in snapshot.routes:
        if (route.host, route.path, route.path_type.value) == (host, path, path_type):
            return route
    raise AssertionError(f"no route {host} {path} {path_type} in {summary(snapshot)}")


def summary(snapshot: Snapshot) -> list[tuple[Any, ...]]:
    """(host, path, path type, cluster, sets cookie, cookie path) of every route, in order."""
    return [
        (r.host, r.path, r.path_type.value, r.cluster.name, r.sets_cookie, r.cookie_path)
        for r in snapshot.routes
    ]


def endpoints(route: Route) -> list[str]:
    """`node` of each endpoint, `node (draining)` for draining ones, `@pod` when known."""
    return [
        e.node + (" (draining)" if e.draining else "") + (f" @{e.pod}" if e.pod else "")
        for e in route.cluster.endpoints
    ]


def warned(snapshot: Snapshot, *fragments: str) -> bool:
    """Whether one warning line contains every fragment."""
    return any(all(f in line for f in fragments) for line in snapshot.warnings)


def annotations_of(**annotations: str) -> dict[str, str]:
    """ingress-nginx annotations, each named without its prefix and with `_` for `-`."""
    return {PREFIX + name.replace("_", "-"): value for name, value in annotations.items()}


def parsed(**annotations: str) -> IngressSettings:
    """One Ingress's settings from annotations named as `annotations_of` names them."""
    return parse_annotations(annotations_of(**annotations), UpstreamPolicy())


def ingress_object(
    name: str,
    host: str | None,
    *paths: tuple[str, str],
    namespace: str = "default",
    created: str | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Ingress `name` of class sticky with one rule for `host` (None: without host): each
    (path, service) a Prefix path to the Service's port 80, by default `/` to `web`."""
    backends = [
        {
            "path": path,
            "pathType": "Prefix",
            "backend": {"service": {"name": service, "port": {"number": 80}}},
        }
        for path, service in paths or (("/", "web"),)
    ]
    rule: dict[str, Any] = {"http": {"paths": backends}}
    if host is not None:
        rule["host"] = host
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    metadata["annotations"] = annotations or {}
    if created is not None:
        metadata["creationTimestamp"] = created
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata,
        "spec": {"ingressClassName": "sticky", "rules": [rule]},
    }
