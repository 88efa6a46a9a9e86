"""Routing tables for tests that need many clusters: one host and balanced affinity each."""

from __future__ import annotations

from collections.abc import Sequence

from proxy.core.affinity import build_cluster
from proxy.core.model import Affinity, Endpoint, PathType, UpstreamPolicy
from proxy.core.routing import Route, Snapshot


def affinity_table(names: Sequence[str], endpoints: int, subnet: int = 8) -> Snapshot:
    """A route `<name>.example` → cluster `name` of `endpoints` endpoints (10.<subnet>.<i>.<j>)."""
    routes = tuple(
        Route(
            host=f"{name}.example",
            path="/",
            path_type=PathType.PREFIX,
            cluster=build_cluster(
                name, [Endpoint(f"10.{subnet}.{i}.{j}", 80) for j in range(1, endpoints + 1)],
                Affinity(),
            ),
            sets_cookie=True,
            cookie_path="/",
            upstream=UpstreamPolicy(),
        )
        for i, name in enumerate(names)
    )  # fmt: skip
    return Snapshot(routes=routes)
