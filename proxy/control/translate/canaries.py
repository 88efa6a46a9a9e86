"""Canary Ingresses merged into the main ones, as ingress-nginx merges them
(docs/ingress-nginx-compat.md, "Canaries").

A canary Ingress makes no routes of its own. Each of its paths finds the main route of the same
host, path and type, and its backend becomes the *alternative* of that route's backend; every
route of that backend, on any host, then carries the canary (ingress-nginx keeps alternatives
per backend, not per location). A backend takes one alternative, the first merged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from proxy.control.translate.annotations import IngressSettings
from proxy.control.translate.backends import BackendPlan, path_type_of
from proxy.control.translate.endpoints import build_backend_cluster
from proxy.control.translate.ingresses import ROOT, Backend, Ingress
from proxy.control.translate.world import World
from proxy.core.affinity import Cluster
from proxy.core.canary import CanaryPolicy
from proxy.core.model import PathType
from proxy.core.routing import Route


@dataclass(frozen=True, slots=True)
class _Alternative:
    ingress: Ingress
    backend: Backend
    policy: CanaryPolicy
    sticky: bool  # affinity-canary-behavior is not legacy: the main backend's affinity applies


def with_canaries(
    routes: tuple[Route, ...],
    default_route: Route | None,
    canaries: Sequence[Ingress],
    *,
    settings: dict[str, IngressSettings],
    world: World,
    warnings: list[str],
) -> tuple[tuple[Route, ...], Route | None]:
    """`routes` and `default_route` with the canaries of `canaries` (in processing order)."""
    if not canaries:
        return routes, default_route
    main_backends = {route.cluster.name for route in routes}
    if default_route is not None:
        main_backends.add(default_route.cluster.name)
    alternatives: dict[str, _Alternative] = {}  # main backend name -> its canary
    for ingress in canaries:
        own = settings[ingress.ref]
        assert own.canary is not None
        for backend, locations in _wanted_locations(ingress, own, routes, default_route, warnings):
            name = backend.cluster_name
            if name in main_backends:
                warnings.append(
                    f"{ingress.ref}: canary backend {name} is the backend of a main Ingress;"
                    " ignored"
                )
                continue
            if not locations:
                warnings.append(
                    f"{ingress.ref}: no main Ingress route has the host, path and type of"
                    f" canary backend {name}; ignored"
                )
                continue
            for main in locations:
                taken = alternatives.get(main.cluster.name)
                if taken is None:
                    alternatives[main.cluster.name] = _Alternative(
                        ingress, backend, own.canary, own.canary_sticky
                    )
                elif taken.backend != backend:
                    warnings.append(
                        f"{ingress.ref}: backend {main.cluster.name} already has canary"
                        f" {taken.backend.cluster_name} from {taken.ingress.ref}; ignored"
                    )
    built: dict[tuple[str, str], Cluster] = {}

    def canaried(route: Route) -> Route:
        alternative = alternatives.get(route.cluster.name)
        if alternative is None:
            return route
        affinity = route.cluster.affinity if alternative.sticky else None
        name = alternative.backend.cluster_name
        key = (name, route.cluster.name)
        cluster = built.get(key)
        if cluster is None:
            # the canary Ingress's own backend settings (ingress-nginx's createUpstreams)
            own = settings[alternative.ingress.ref]
            plan = BackendPlan(
                alternative.backend,
                affinity=affinity,
                balancing=own.balancing,
                service_upstream=own.service_upstream,
            )
            made = build_backend_cluster(plan, world, warnings)
            if made.problem is not None:
                warnings.append(
                    f"{alternative.ingress.ref}: {made.problem}; requests sent to canary {name}"
                    " answer 503"
                )
            cluster = built[key] = made.cluster
        canary = dataclasses.replace(
            route,
            cluster=cluster,
            namespace=alternative.ingress.namespace,
            ingress=alternative.ingress.name,
            service=alternative.backend.service,
        )
        return dataclasses.replace(route, canary=canary, canary_policy=alternative.policy)

    return (
        tuple(canaried(route) for route in routes),
        canaried(default_route) if default_route is not None else None,
    )


def _wanted_locations(
    ingress: Ingress,
    own: IngressSettings,
    routes: tuple[Route, ...],
    default_route: Route | None,
    warnings: list[str],
) -> list[tuple[Backend, list[Route]]]:
    """Each backend of a canary Ingress with the main routes it joins: a path's are those of
    the same host, path and type; a defaultBackend's, every route of the rules without host and
    the default backend."""
    hosts = {route.host for route in routes}
    found: list[tuple[Backend, list[Route]]] = []
    if ingress.default_backend is not None:
        catch_all = [route for route in routes if route.host is None]
        if default_route is not None:
            catch_all.append(default_route)
        found.append((ingress.default_backend, catch_all))
    for path in ingress.paths:
        if path.backend is None:
            continue
        if path.host is not None and path.host not in hosts:
            warnings.append(
                f"{ingress.ref}: canary path {path.path!r}: no main Ingress has host"
                f" {path.host}; ignored"
            )
            continue
        path_type = path_type_of(path.path_type, own.use_regex)
        found.append(
            (
                path.backend,
                [r for r in routes if _same_location(r, path.host, path.path, path_type)],
            )
        )
    return found


def _same_location(route: Route, host: str | None, path: str, path_type: PathType) -> bool:
    return (
        route.host == host
        and route.path == (path or ROOT)
        and route.path_type is path_type
        and not route.invalid_backend
    )
