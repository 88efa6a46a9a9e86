"""The routes, laid out per host the way ingress-nginx lays out its nginx servers and locations:
default backends, Ingress paths, each host's root, server aliases; then the warnings about what
the finished routes will do (answer 503, or set cookies with a regex Path)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from proxy.control.translate.annotations import IngressSettings
from proxy.control.translate.backends import PathEntry
from proxy.control.translate.basic_auth import NO_AUTH_LOCATIONS
from proxy.control.translate.endpoints import BuiltCluster
from proxy.control.translate.error_pages import ErrorSetup
from proxy.control.translate.ingresses import ROOT, Backend, Ingress
from proxy.control.translate.rewrite_annotations import APP_ROOT_CODE, WWW_CODE
from proxy.core.affinity import build_cluster
from proxy.core.filters import Filters
from proxy.core.model import PathType
from proxy.core.rewrites import FixedRedirect
from proxy.core.routing import Route

_RouteKey = tuple[str | None, str, PathType]


class Layout:
    """Routes laid out as ingress-nginx lays out nginx servers (hosts) and locations (paths):
    the first Ingress to claim a (host, path, type) has it; later ones are warned about."""

    def __init__(
        self,
        clusters: Mapping[str, BuiltCluster],
        settings: Mapping[str, IngressSettings],
        warnings: list[str],
        errors: Mapping[str, ErrorSetup] | None = None,
    ) -> None:
        self._clusters = clusters
        self._errors = errors or {}  # by Ingress ref (docs/behaviour.md, "Custom error pages")
        self._settings = settings
        self._warnings = warnings
        self._routes: dict[_RouteKey, Route] = {}
        self._claimed: dict[_RouteKey, str] = {}  # which Ingress has each location

    def add_default_backends(self, ingresses: list[Ingress]) -> Route | None:
        """The catch-all default route: the first Ingress with a defaultBackend and no rules.

        Like ingress-nginx's `_` server root, it takes "/" of rule-less hosts before any path.
        """
        default: Route | None = None
        for ingress in ingresses:
            if ingress.default_backend is None or ingress.hosts:
                continue
            if default is not None:
                self._warnings.append(
                    f"{ingress.ref}: defaultBackend ignored: Ingress {default.namespace}/"
                    f"{default.ingress} already gives the catch-all default backend"
                )
                continue
            default = self._route(ingress, None, ROOT, PathType.PREFIX, ingress.default_backend)
            self._claimed[(None, ROOT, PathType.PREFIX)] = ingress.ref
        return default

    def add_paths(self, entries: list[PathEntry]) -> None:
        for entry in entries:
            key = (entry.host, entry.path, entry.path_type)
            owner = self._claimed.get(key)
            if owner is not None:
                self._warnings.append(
                    f"{entry.ingress.ref}: {_location(key)} is already routed by {owner}; ignored"
                )
                continue
            self._claimed[key] = entry.ingress.ref
            route = self._route(entry.ingress, *key, entry.backend)
            self._routes[key] = route

    def add_server_roots(self, ingresses: list[Ingress]) -> None:
        """A host's "/" goes to the defaultBackend of the first Ingress with a rule for it,
        unless a path has "/" (ingress-nginx: the server's root location)."""
        first: dict[str, Ingress] = {}
        for ingress in ingresses:
            for host in ingress.hosts:
                if host is not None:
                    first.setdefault(host, ingress)
        for host, ingress in first.items():
            key = (host, ROOT, PathType.PREFIX)
            if ingress.default_backend is not None and key not in self._claimed:
                self._claimed[key] = ingress.ref
                self._routes[key] = self._route(ingress, *key, ingress.default_backend)

    def add_app_roots(self, ingresses: list[Ingress]) -> None:
        """app-root: nginx.tmpl puts `if ($uri = /) { return 302 ... }` in the server, ahead of
        every location, so "/" of each host of such an Ingress redirects, whichever location
        would have taken it; an exact "/" route does that here. The first Ingress to set one
        for a host has it (docs/behaviour.md, "Rewrites and redirects")."""
        setters: dict[str | None, Ingress] = {}
        for ingress in ingresses:
            rewrites = self._settings[ingress.ref].rewrites
            if rewrites is None or rewrites.app_root is None:
                continue
            backend = ingress.default_backend or next(
                (path.backend for path in ingress.paths if path.backend is not None), None
            )
            for host in dict.fromkeys(ingress.hosts):
                setter = setters.setdefault(host, ingress)
                if setter is not ingress:
                    self._warnings.append(
                        f"{ingress.ref}: app-root for {host or 'every host'} ignored:"
                        f" {setter.ref} set it"
                    )
                elif backend is not None:
                    key = (host, ROOT, PathType.EXACT)
                    redirect = FixedRedirect(rewrites.app_root, APP_ROOT_CODE, on_own_host=True)
                    route = self._route(ingress, *key, backend)
                    self._routes[key] = dataclasses.replace(
                        route, filters=Filters(fixed_redirect=redirect), sets_cookie=False
                    )

    def add_www_redirects(self, ingresses: list[Ingress]) -> None:
        """from-to-www-redirect: a host's other name (with or without `www.`) answers every
        request with a 308 to the host, unless it is a host of its own (ingress-nginx's
        BuildRedirects; docs/behaviour.md, "Rewrites and redirects")."""
        hosts = {host for ingress in ingresses for host in ingress.hosts if host is not None}
        for ingress in ingresses:
            rewrites = self._settings[ingress.ref].rewrites
            if rewrites is None or not rewrites.from_to_www:
                continue
            for host in dict.fromkeys(ingress.hosts):
                if host is None or host.startswith("*."):
                    continue
                other = host.removeprefix("www.") if host.startswith("www.") else f"www.{host}"
                key = (other, ROOT, PathType.PREFIX)
                if other in hosts:
                    self._warnings.append(
                        f"{ingress.ref}: from-to-www-redirect from {other} to {host} ignored:"
                        f" {other} is a host of its own"
                    )
                    continue
                route = self._routes.get((host, ROOT, PathType.PREFIX)) or next(
                    (r for k, r in self._routes.items() if k[0] == host), None
                )
                if key in self._routes or route is None:
                    continue  # (another Ingress of the host made the redirect already)
                redirect = FixedRedirect(host, WWW_CODE, to_host=True)
                self._routes[key] = dataclasses.replace(
                    route, host=other, path=ROOT, path_type=PathType.PREFIX,
                    filters=Filters(fixed_redirect=redirect), sets_cookie=False, canary=None,
                    canary_policy=None,
                )  # fmt: skip

    def add_aliases(self, ingresses: list[Ingress]) -> None:
        """server-alias: the first Ingress to set aliases for a host has them; an alias that is a
        host of its own is dropped. An alias serves every path of its host
        (docs/behaviour.md, "Hosts and paths")."""
        hosts = {host for ingress in ingresses for host in ingress.hosts if host is not None}
        setters: dict[str, Ingress] = {}
        for ingress in ingresses:
            if not self._settings[ingress.ref].aliases:
                continue
            for host in dict.fromkeys(ingress.hosts):
                if host is None:
                    self._warnings.append(
                        f"{ingress.ref}: server-alias has no effect on a rule without host"
                    )
                    continue
                setter = setters.setdefault(host, ingress)
                if setter is not ingress:
                    self._warnings.append(
                        f"{ingress.ref}: server-alias for {host} ignored: {setter.ref} set it"
                    )
        alias_hosts: dict[str, str] = {}
        for host, setter in sorted(setters.items()):
            for alias in self._settings[setter.ref].aliases:
                other = alias_hosts.get(alias)
                if alias in hosts:
                    if alias != host:
                        self._warnings.append(
                            f"{setter.ref}: server-alias {alias} ignored: it is a host of its own"
                        )
                elif other is not None:
                    self._warnings.append(
                        f"{setter.ref}: server-alias {alias} for {host} ignored:"
                        f" it is an alias of {other} already"
                    )
                else:
                    alias_hosts[alias] = host
        for (host, path, path_type), route in list(self._routes.items()):
            for alias, aliased in alias_hosts.items():
                if aliased == host:
                    self._routes[(alias, path, path_type)] = dataclasses.replace(route, host=alias)

    def routes(self) -> tuple[Route, ...]:
        return tuple(
            sorted(
                self._routes.values(),
                key=lambda r: (r.host is None, r.host or "", r.path, r.path_type.value),
            )
        )

    def _route(
        self,
        ingress: Ingress,
        host: str | None,
        path: str,
        path_type: PathType,
        backend: Backend,
    ) -> Route:
        built = self._clusters[backend.cluster_name]
        cluster = built.cluster
        if self._settings[ingress.ref].denied is not None:
            # ingress-nginx's denied location answers 503; a cluster of its own, without
            # endpoints, does that here and leaves the backend's cluster to its other routes
            cluster = build_cluster(f"{cluster.name} (denied)", (), None)
        affinity = cluster.affinity
        cookie_path = affinity.cookie.path if affinity is not None else None
        rewrites = self._settings[ingress.ref].rewrites
        limits = self._settings[ingress.ref].limits
        route = Route(
            host=host,
            path=path,
            path_type=path_type,
            cluster=cluster,
            sets_cookie=_is_affinity_location(built.locations, host, path),
            cookie_path=cookie_path or path,
            upstream=self._settings[ingress.ref].upstream,
            namespace=ingress.namespace,
            ingress=ingress.name,
            service=backend.service,
            filters=rewrites.filters(path) if rewrites is not None else None,
            cors=self._settings[ingress.ref].cors,
            access=self._settings[ingress.ref].access,
            # every path of the Ingress counts in its zones, as ingress-nginx names them after it
            limits=None if limits is None else dataclasses.replace(limits, zone=ingress.ref),
            send_rate=self._settings[ingress.ref].send_rate,
            mirror=self._settings[ingress.ref].mirror,
            external_auth=self._settings[ingress.ref].external_auth,
            response_headers=self._settings[ingress.ref].response_headers,
            response_edits=self._settings[ingress.ref].response_edits,
            satisfy_any=self._settings[ingress.ref].satisfy_any,
            basic_auth=None
            if path.startswith(NO_AUTH_LOCATIONS)
            else self._settings[ingress.ref].basic_auth,
        )
        setup = self._errors.get(ingress.ref)
        if setup is None:
            return route
        # a default-backend serves a location whose Service has no ready endpoint (but a
        # denied one still answers 503)
        stands_in = not built.cluster.balancer.ready and self._settings[ingress.ref].denied is None
        return setup.applied(route, backend.port, stands_in)


def _is_affinity_location(
    locations: Mapping[str | None, set[str]], host: str | None, path: str
) -> bool:
    """The paths of the request's host; only for a host with no entries at all, those of the `*.`
    wildcard of its parent domain (docs/ingress-nginx-compat.md, "Affinity locations"). A
    route's host stands for the request's: an exact host, a wildcard (its own entry, as no exact
    server took the request), or None (`_`)."""
    paths = locations.get(host)
    if paths is None and host is not None and "." in host and not host.startswith("*."):
        paths = locations.get("*." + host.split(".", 1)[1])
    return paths is not None and path in paths


def _location(key: _RouteKey) -> str:
    host, path, path_type = key
    return f"{path_type.value} path {path!r} of {host or 'every host'}"


def check_routes(
    routes: tuple[Route, ...],
    default_route: Route | None,
    clusters: Mapping[str, BuiltCluster],
    warnings: list[str],
) -> None:
    """Warnings about what routes will do: answer 503, or set cookies with a regex Path."""
    for route in (*routes, *([default_route] if default_route else [])):
        ref = f"Ingress {route.namespace}/{route.ingress}"
        built = clusters.get(route.cluster.name)  # None: denied, and warned about
        problem = built.problem if built is not None else None
        if problem is not None:
            what = "the default backend" if route is default_route else f"path {route.path}"
            warnings.append(f"{ref}: {problem}; {what} answers 503")
        affinity = route.cluster.affinity
        if (
            route.path_type is PathType.REGEX
            and route.sets_cookie
            and affinity is not None
            and affinity.cookie.path is None
        ):
            warnings.append(
                f"{ref}: path {route.path!r} uses use-regex without session-cookie-path;"
                f" cookies get Path={route.path}"
            )
