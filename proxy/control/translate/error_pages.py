"""custom-http-errors, disable-proxy-intercept-errors and default-backend: the annotations' values,
and each Ingress's `ErrorPages` once the default backend's Service and endpoints are known
(docs/behaviour.md, "Custom error pages").

As ingress-nginx (annotations customhttperrors and defaultbackend; controller.createUpstreams):
the default backend is a Service of the Ingress's namespace, dialled on its first port, and it
counts only with a ready endpoint; without one, error pages come from the built-in default
backend, a 404.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from proxy.control.translate.annotations import IngressSettings
from proxy.control.translate.endpoints import endpoints_of
from proxy.control.translate.ingresses import Backend, Ingress
from proxy.control.translate.world import World
from proxy.core.affinity import Cluster, build_cluster
from proxy.core.routing import ErrorPages, Route


@dataclass(frozen=True, slots=True)
class ErrorSetup:
    """One Ingress's error handling, before it is laid on each of its routes."""

    codes: frozenset[int]
    intercept: bool  # not disable-proxy-intercept-errors
    backend: Cluster | None  # the default backend's, when it has a ready endpoint
    service: str  # the default backend's Service name ("" without one)

    def applied(self, route: Route, port: int | str, stands_in: bool) -> Route:
        """`route` (of a Service port `port`) with these error pages; `stands_in`: its own
        Service has no ready endpoint, so the default backend serves it."""
        about = (
            (b"X-Namespace", route.namespace.encode()),
            (b"X-Ingress-Name", route.ingress.encode()),
            (b"X-Service-Name", route.service.encode()),
            (b"X-Service-Port", str(port).encode()),
        )
        backend = None
        if self.backend is not None:
            # the error location's proxy_pass is plain http:// with the server's defaults
            backend = dataclasses.replace(
                route, cluster=self.backend, sets_cookie=False, service=self.service,
                upstream=dataclasses.replace(route.upstream, tls=None), filters=None, cors=None,
                access=None, canary=None, canary_policy=None, errors=None, response_headers=None,
                response_edits=None,
            )  # fmt: skip
        stands_in = stands_in and self.backend is not None
        pages = ErrorPages(
            codes=self.codes,
            intercepted=self.codes if self.intercept else frozenset(),
            backend=backend,
            about=about,
            stands_in=stands_in,
        )
        if stands_in:
            assert self.backend is not None
            # (spoken to as the location's own backend would be: with backend-protocol HTTPS,
            # over TLS, as nginx's proxy_pass there keeps its scheme)
            return dataclasses.replace(route, cluster=self.backend, sets_cookie=False, errors=pages)
        if not self.codes:
            return route  # a default backend only stands in for a Service without endpoints
        return dataclasses.replace(route, errors=pages)


def error_setups(
    ingresses: list[Ingress],
    settings: Mapping[str, IngressSettings],
    world: World,
    warnings: list[str],
) -> dict[str, ErrorSetup]:
    """Each Ingress's setup, by ref, for those with custom-http-errors or default-backend; one
    cluster per default backend Service, named as ingress-nginx names its upstream."""
    setups: dict[str, ErrorSetup] = {}
    clusters: dict[tuple[str, str], Cluster | None] = {}
    for ingress in ingresses:
        own = settings[ingress.ref]
        service = own.default_backend
        if service is None and not own.error_codes:
            continue
        cluster = None
        if service is not None:
            key = (ingress.namespace, service)
            if key not in clusters:
                clusters[key] = _default_backend(ingress, service, world, warnings)
            cluster = clusters[key]
        setups[ingress.ref] = ErrorSetup(
            own.error_codes, own.intercept_errors, cluster, service or ""
        )
    return setups


def _default_backend(
    ingress: Ingress, name: str, world: World, warnings: list[str]
) -> Cluster | None:
    where = f"{ingress.ref}: default-backend {ingress.namespace}/{name}"
    found = world.services.get((ingress.namespace, name))
    if found is None or not found.ports:
        why = "not found" if found is None else "has no ports"
        warnings.append(f"{where} {why}; error pages are the built-in 404")
        return None
    backend = Backend(ingress.namespace, name, found.ports[0].port)
    endpoints, problem = endpoints_of(backend, world, warnings)
    cluster = build_cluster(f"custom-default-backend-{ingress.namespace}-{name}", endpoints, None)
    if not cluster.balancer.ready:
        warnings.append(
            f"{where}: {problem or 'no ready endpoint'}; error pages are the built-in 404"
        )
        return None
    return cluster
