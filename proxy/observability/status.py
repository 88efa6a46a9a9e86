"""`/status`: the routing table with each endpoint's traffic, as JSON (the `/` page draws it).

Routes name their cluster; clusters list their endpoints with state, requests, new sessions,
estimated active sessions and ejections (docs/behaviour.md, "Outlier ejection"). Counts are what
`/metrics` says, so with workers they are the sum: `ejected` is how many workers eject it now.
"""

from __future__ import annotations

from typing import Any

from proxy.core.balancing import balancing_text
from proxy.core.routing import Snapshot
from proxy.system import build

Totals = dict[tuple[str, str], dict[str, float]]


def status(snapshot: Snapshot | None, totals: Totals) -> dict[str, Any]:
    running = {"version": build.version(), "compiled": build.compiled()}
    if snapshot is None:
        return {"ready": False, "build": running, "routes": [], "clusters": []}
    routes = list(snapshot.routes)
    default = snapshot.default_route
    if default is not None and all(route is not default for route in routes):
        routes.append(default)
    return {
        "ready": True,
        "build": running,
        "routes": [
            {
                "host": route.host or "*",
                "path": route.path,
                "type": route.path_type.value,
                "ingress": f"{route.namespace}/{route.ingress}" if route.ingress else None,
                "cluster": route.cluster.name,
                "sets_cookie": route.set_cookie is not None,
                "canary": route.canary.cluster.name if route.canary is not None else None,
            }
            for route in routes
        ],
        "clusters": [
            {
                "name": cluster.name,
                "affinity": cluster.affinity.mode.value if cluster.affinity else None,
                "cookie": cluster.affinity.cookie.name if cluster.affinity else None,
                "balancing": None if cluster.affinity else balancing_text(cluster.balancing),
                "endpoints": [
                    {
                        "endpoint": endpoint.label,
                        "address": endpoint.node,
                        "pod": endpoint.pod,
                        "state": "draining" if endpoint.draining else "ready",
                        "requests": int(counts.get("requests", 0)),
                        "new_sessions": int(counts.get("new_sessions", 0)),
                        "active_sessions": int(counts.get("active_sessions", 0)),
                        "ejected": int(counts.get("ejected", 0)),
                        "ejections": int(counts.get("ejections", 0)),
                    }
                    for endpoint in cluster.endpoints
                    for counts in [totals.get((cluster.name, endpoint.label), {})]
                ],
            }
            for cluster in snapshot.clusters
        ],
    }
