"""The `--backend URL` source: a fixed list of endpoints, one cluster for every host and path."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from proxy.control.sources.source import SnapshotSink
from proxy.core.affinity import build_cluster
from proxy.core.model import Affinity, Endpoint, PathType, UpstreamPolicy
from proxy.core.routing import Route, Snapshot
from proxy.core.values import parse_host, parse_port

STATIC_CLUSTER = "static"  # --backend's backend name: docs/ingress-nginx-compat.md, "Backend names"


def static_backends(urls: Sequence[str]) -> tuple[Endpoint, ...]:
    """The endpoints behind `urls`; ValueError naming the first URL that is not http://host[:port]."""
    endpoints: list[Endpoint] = []
    for url in urls:
        endpoint = parse_backend_url(url)
        if endpoint in endpoints:
            raise ValueError(f"{url!r}: the same endpoint is given twice")
        endpoints.append(endpoint)
    return tuple(endpoints)


def parse_backend_url(url: str) -> Endpoint:
    """`http://host[:port][/]`: the proxy forwards the request path as is, so no path of its own."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() != "http":
        raise ValueError(f"{url!r}: only http://host[:port] URLs are supported")
    authority, _, path = rest.partition("/")
    if path or "?" in rest or "#" in rest:
        raise ValueError(
            f"{url!r}: a path, query or fragment is not supported (http://host[:port])"
        )
    if "@" in authority:
        raise ValueError(f"{url!r}: user info is not supported (http://host[:port])")
    if authority.endswith("]") or ":" not in authority:
        host, port = authority, "80"
    else:
        host, _, port = authority.rpartition(":")
    try:
        return Endpoint(parse_host(host), parse_port(port, allow_zero=False))
    except ValueError as error:
        raise ValueError(f"{url!r}: {error}") from None


def static_snapshot(
    endpoints: Sequence[Endpoint], affinity: Affinity | None, upstream: UpstreamPolicy
) -> Snapshot:
    """One catch-all route to the `static` cluster, also the default route."""
    cluster = build_cluster(STATIC_CLUSTER, endpoints, affinity)
    route = Route(
        host=None,
        path="/",
        path_type=PathType.PREFIX,
        cluster=cluster,
        sets_cookie=affinity is not None,
        cookie_path=(affinity.cookie.path if affinity else None) or "/",
        upstream=upstream,
    )
    return Snapshot(routes=(route,), default_route=route)


@dataclass(frozen=True, slots=True)
class StaticSource:
    """A source whose world never changes: it publishes one snapshot and is done."""

    snapshot: Snapshot

    async def run(self, sink: SnapshotSink) -> None:
        sink.publish(self.snapshot)
