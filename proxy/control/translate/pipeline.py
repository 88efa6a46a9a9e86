"""`translate`: Kubernetes objects to a routing `Snapshot`, every step in order. What each step
does, and where it lives, is in the package docstring (`proxy.control.translate`)."""

from __future__ import annotations

from collections.abc import Iterable

from proxy.control.translate.annotations import PREFIX, IngressSettings, parse_annotations
from proxy.control.translate.auth_headers import with_auth_headers
from proxy.control.translate.auth_secrets import with_basic_auth
from proxy.control.translate.auth_tls import HostsOf, by_host, client_auth, with_client_auth
from proxy.control.translate.backends import merge_backends, path_entries
from proxy.control.translate.canaries import with_canaries
from proxy.control.translate.coverage import report
from proxy.control.translate.custom_headers import with_response_headers
from proxy.control.translate.endpoints import build_backend_cluster
from proxy.control.translate.error_pages import error_setups
from proxy.control.translate.gateway.build import gateway_routes
from proxy.control.translate.objects import KubeObject
from proxy.control.translate.options import TranslateOptions
from proxy.control.translate.routes import Layout, check_routes
from proxy.control.translate.selection import processing_order, selected
from proxy.control.translate.tls import certificates, with_redirects
from proxy.control.translate.upstream_tls import resolved
from proxy.control.translate.world import read_world
from proxy.core.routing import Snapshot


def translate(objects: Iterable[KubeObject], options: TranslateOptions) -> Snapshot:
    """The routing snapshot for `objects` (the whole world); ManifestError for unusable ones."""
    warnings: list[str] = []
    world = read_world(objects, options, warnings)
    ingresses = processing_order(
        ingress for ingress in world.ingresses.values() if selected(ingress, options.ingress_class)
    )
    settings: dict[str, IngressSettings] = {}
    for ingress in ingresses:
        parsed = parse_annotations(ingress.annotations, options.upstream)
        with_tls = resolved(parsed, ingress.namespace, world.secret_data)
        with_auth = with_auth_headers(
            with_basic_auth(with_tls, ingress.namespace, world.secret_maps),
            ingress.namespace,
            world.config_maps,
        )
        settings[ingress.ref] = with_response_headers(
            with_auth, ingress.namespace, world.config_maps
        )
        warnings.extend(f"{ingress.ref}: {line}" for line in settings[ingress.ref].warnings)
    # Canary Ingresses make no routes of their own; they join the main ones' at the end. With
    # no main Ingress at all there is nothing to join (ingress-nginx: nonCanaryIngressExists).
    ours = ingresses
    canaries = [ingress for ingress in ours if settings[ingress.ref].canary is not None]
    ingresses = [ingress for ingress in ours if settings[ingress.ref].canary is None]
    entries = path_entries(ingresses, settings, warnings)
    backends = merge_backends(ingresses, entries, settings, warnings)
    clusters = {
        name: build_backend_cluster(plan, world, warnings) for name, plan in backends.items()
    }
    errors = error_setups(ingresses, settings, world, warnings)
    layout = Layout(clusters, settings, warnings, errors)
    default_route = layout.add_default_backends(ingresses)
    layout.add_paths(entries)
    layout.add_server_roots(ingresses)
    layout.add_app_roots(ingresses)
    layout.add_www_redirects(ingresses)
    layout.add_aliases(ingresses)
    routes = layout.routes()
    check_routes(routes, default_route, clusters, warnings)
    gateway = gateway_routes(world, options, warnings)
    certs, tls_hosts = certificates((i.tls for i in ingresses), world.secrets, warnings)
    if default_route is not None:
        default_route = with_redirects(default_route, settings, tls_hosts)
    routes = tuple(with_redirects(route, settings, tls_hosts) for route in routes)
    routes, default_route = with_canaries(
        routes, default_route, canaries, settings=settings, world=world, warnings=warnings
    )
    client_auths = by_host(
        (
            HostsOf(ingress.ref, ingress.hosts, settings[ingress.ref].aliases,
                    client_auth(spec, ingress.namespace, world.secret_maps))
            for ingress in ingresses
            if (spec := settings[ingress.ref].auth_tls) is not None
        ),
        warnings,
    )  # fmt: skip
    if client_auths:
        routes = tuple(with_client_auth(route, client_auths) for route in routes)
        if default_route is not None:
            default_route = with_client_auth(default_route, client_auths)
    return Snapshot(
        routes=(*routes, *gateway.routes),
        default_route=default_route,
        warnings=tuple(sorted(set(warnings))),
        certificates=(*certs, *gateway.certificates),
        statuses=tuple(gateway.statuses),
        client_auths=tuple(client_auths.items()),
        annotations=tuple(
            (ingress.ref, lines)
            for ingress in ours
            if (lines := report(ingress.annotations, PREFIX))
        ),
    )
