"""The YAML fixtures of tests/fixtures/translate, read as the manifests source would read them,
and how the translate tests look into the snapshots they give."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from proxy.control.translate import TranslateOptions, translate
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
