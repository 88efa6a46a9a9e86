"""The `--kubernetes` source: the routes the cluster's Ingresses, Services and endpoints make,
and its Gateway API objects where the cluster has them.

A reflector per resource keeps that resource's objects current. Nothing is published until every
Ingress resource has completed its first list, so the first snapshot is never partial (and
`/readyz` stays 503 until then, e.g. while RBAC forbids one of them). The optional ones (the
Gateway API kinds and Namespaces) are waited for only until the server has answered for them:
CRDs not installed (404) or RBAC that does not cover them (403) leave them out, and they join
the routes when they appear. After that, every change rebuilds the snapshot from all the objects
(never a delta); changes arriving together (a rollout, a namespace deleted) are gathered for
`coalesce` seconds into one rebuild, and the publisher skips a rebuild that routes exactly like
the last. Each rebuild also tells the status writers: the Ingress addresses (--publish-service)
and the Gateway API status (always).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from proxy.control.sources.kubernetes.auth import Credentials
from proxy.control.sources.kubernetes.backoff import Backoff
from proxy.control.sources.kubernetes.client import ApiError, KubeClient
from proxy.control.sources.kubernetes.config import ClusterAccess
from proxy.control.sources.kubernetes.gateway_status import GatewayObjects
from proxy.control.sources.kubernetes.gateway_writer import GatewayStatusWriter
from proxy.control.sources.kubernetes.reflector import Key, Obj, Reflector, WatchTuning, list_all
from proxy.control.sources.kubernetes.resources import (
    ALL_RESOURCES,
    AUTH_SECRETS,
    CONFIG_MAPS,
    ENDPOINT_SLICES,
    ENDPOINTS,
    GATEWAY_CLASSES,
    GATEWAY_RESOURCES,
    GATEWAYS,
    HTTP_ROUTES,
    INGRESS_CLASSES,
    INGRESSES,
    NAMESPACES,
    RESTART_REASONS,
    SECRETS,
    SERVICES,
    Resource,
)
from proxy.control.sources.kubernetes.status import (
    LoadBalancerIngress,
    StatusWriter,
    service_addresses,
)
from proxy.control.sources.source import SnapshotSink
from proxy.control.translate import (
    KubeObject,
    ManifestError,
    TranslateOptions,
    object_ref,
    translate,
)
from proxy.control.translate.basic_auth import named_secrets
from proxy.control.translate.custom_headers import named_config_maps
from proxy.core.routing import Snapshot

log = logging.getLogger("sticky_proxy.kubernetes")

# Seconds to gather changes into one rebuild: a rollout's events arrive within milliseconds of
# each other, and a user will not notice 50 ms.
COALESCE = 0.05


def watched_resources(
    options: TranslateOptions, tls: bool = False, namespace: str | None = None
) -> tuple[Resource, ...]:
    """What routing depends on; Secrets (kubernetes.io/tls and Opaque) only when there is a TLS
    listener to serve them (reading Secrets needs RBAC that a plain-HTTP deployment should not
    have to grant; proxy-ssl-secret needs it too, docs/behaviour.md "Upstream TLS"), else only
    the Opaque ones an Ingress names as auth-secret, if RBAC allows (docs/behaviour.md
    "Startup"). Scoped to one namespace, only that Namespace's labels matter (routes come
    from it alone)."""
    endpoints = ENDPOINTS if options.endpoints_api == "endpoints" else ENDPOINT_SLICES
    gateway = tuple(
        replace(r, field_selector=f"metadata.name={namespace}")
        if r is NAMESPACES and namespace is not None
        else r
        for r in GATEWAY_RESOURCES
    )
    return (
        INGRESSES, INGRESS_CLASSES, SERVICES, endpoints, *(SECRETS if tls else (AUTH_SECRETS,)),
        CONFIG_MAPS, *gateway,
    )  # fmt: skip


def _only_named_config_maps(routing: list[Reflector]) -> None:
    """A ConfigMap's change rebuilds the routes only when an Ingress's custom-headers names it:
    clusters hold many ConfigMaps, some rewritten every few seconds (controllers' status)."""
    config_maps, ingresses = (
        next(r for r in routing if r.resource is resource) for resource in (CONFIG_MAPS, INGRESSES)
    )
    config_maps.matters = lambda key: key in named_config_maps(ingresses.objects.values())


def translate_cluster(objects: Sequence[KubeObject], options: TranslateOptions) -> Snapshot:
    """`translate`, leaving out objects it cannot use at all: in a cluster one broken object must
    not hold every other change back. Each one left out is a warning of the snapshot.

    Raises ManifestError only when the error names no object (which would be a translation bug).
    """
    skipped: list[str] = []
    remaining = list(objects)
    while True:
        try:
            snapshot = translate(remaining, options)
        except ManifestError as error:
            message = str(error)
            culprit = next(
                (i for i, obj in enumerate(remaining) if message.startswith(object_ref(obj) + ":")),
                None,
            )
            if culprit is None:
                raise
            del remaining[culprit]
            skipped.append(f"{message}; the object is ignored")
            continue
        if not skipped:
            return snapshot
        return replace(snapshot, warnings=tuple(sorted({*snapshot.warnings, *skipped})))


async def list_snapshot(
    access: ClusterAccess, options: TranslateOptions, namespace: str | None
) -> Snapshot:
    """The routes the cluster makes now, from one list of each resource (`sticky-proxy routes`).

    Raises KubeError or CredentialError when a list fails, KubeConfigError for unusable TLS files.
    """
    credentials = Credentials(access)
    credentials.static_context()
    resources = watched_resources(options, namespace=namespace)
    first = [resource for resource in resources if not resource.named_data]
    async with KubeClient(access, credentials) as client:
        lists = await asyncio.gather(
            *(_list_once(client, resource, namespace) for resource in first)
        )
        # then the Secrets, keeping whole those the Ingresses name as auth-secret
        named = named_secrets(lists[first.index(INGRESSES)][0])
        lists.extend(
            await asyncio.gather(
                *(
                    _list_once(client, resource, namespace, named.__contains__)
                    for resource in resources
                    if resource.named_data
                )
            )
        )
    objects = [obj for items, _ in lists for obj in items]
    snapshot = await asyncio.to_thread(translate_cluster, objects, options)
    left_out = [warning for _, warning in lists if warning]
    if not left_out:
        return snapshot
    return replace(snapshot, warnings=tuple(sorted({*snapshot.warnings, *left_out})))


async def _list_once(
    client: KubeClient,
    resource: Resource,
    namespace: str | None,
    named: Callable[[Key], bool] | None = None,
) -> tuple[list[Obj], str | None]:
    """The objects of one resource, and a warning when an optional one was refused (403); an
    optional one the server does not serve (404 under each of its versions) has none."""
    page_size = WatchTuning().page_size
    keep = {} if named is None else {"named": named}
    if not resource.optional:
        return (await list_all(client, resource, namespace, page_size, **keep))[0], None
    for version in (resource.version, *resource.older_versions):
        try:
            items, _ = await list_all(client, replace(resource, version=version), namespace,
                                      page_size, **keep)  # fmt: skip
        except ApiError as error:
            if error.code == 404:
                continue
            if error.code == 403:
                return [], f"{resource.qualified}: not listed ({error}); left out"
            raise
        return items, None
    return [], None


class RestartCounts(Protocol):
    """Where the source counts its watches' restarts (the proxy's metrics)."""

    def count_watch_restarts_from_zero(self, labels: Iterable[tuple[str, str]]) -> None: ...
    def count_watch_restart(self, resource: str, reason: str) -> None: ...


@dataclass
class KubernetesSource:
    access: ClusterAccess
    options: TranslateOptions
    restarts: RestartCounts
    namespace: str | None = None  # None: every namespace
    publish_service: Key | None = None  # (namespace, name) of the Service in front of the proxy
    tls: bool = False  # watch Secrets for the TLS listener (and proxy-ssl-secret)
    tuning: WatchTuning = field(default_factory=WatchTuning)
    coalesce: float = COALESCE
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        # every resource the source may watch, by every reason, from 0: a fixed set of series
        self.restarts.count_watch_restarts_from_zero(
            (resource.series, reason) for resource in ALL_RESOURCES for reason in RESTART_REASONS
        )

    async def run(self, sink: SnapshotSink) -> None:
        credentials = Credentials(self.access)
        credentials.static_context()  # unusable TLS files: SourceError, exit code 2
        changed = asyncio.Event()
        async with KubeClient(self.access, credentials) as client:
            routing = [
                self._reflector(client, resource, self.namespace)
                for resource in watched_resources(self.options, self.tls, self.namespace)
                if not resource.named_data
            ]
            routing.extend(self._secret_reflectors(client, routing))
            for reflector in routing:
                reflector.on_change(changed.set)
            _only_named_config_maps(routing)
            status = self._status_writer(client, routing)
            reflectors = [*routing]
            if status is not None:
                if status.reflector not in routing:
                    reflectors.append(status.reflector)
                for reflector in reflectors:
                    reflector.on_change(status.writer.objects_changed)
            gateway = self._gateway_writer(client, routing, status)
            log.info("kubernetes: %s, API server %s; watching %s", self.access.origin,
                     self.access.server, ", ".join(r.name for r in routing))  # fmt: skip
            async with asyncio.TaskGroup() as tasks:
                for reflector in reflectors:
                    tasks.create_task(reflector.run())
                if status is not None:
                    tasks.create_task(status.writer.run())
                tasks.create_task(gateway.writer.run())
                tasks.create_task(self._publish(sink, routing, changed, status, gateway))

    def _reflector(
        self,
        client: KubeClient,
        resource: Resource,
        namespace: str | None,
        named: SecretNames | None = None,
    ) -> Reflector:
        return Reflector(
            client,
            resource,
            namespace,
            count_restart=self.restarts.count_watch_restart,
            tuning=self.tuning,
            rng=self.rng,
            named=named,
            after=named.ingresses.synced if named is not None else None,
        )

    def _secret_reflectors(self, client: KubeClient, routing: list[Reflector]) -> list[Reflector]:
        """The Secret watches, keeping whole the Secrets the Ingresses name as auth-secret; each
        lists first once the Ingresses are listed, and again when the names change."""
        ingresses = next(r for r in routing if r.resource is INGRESSES)
        named = SecretNames(ingresses)
        named.secrets = [
            self._reflector(client, resource, self.namespace, named)
            for resource in watched_resources(self.options, self.tls, self.namespace)
            if resource.named_data
        ]
        ingresses.on_change(named.ingresses_changed)
        return named.secrets

    def _status_writer(self, client: KubeClient, routing: list[Reflector]) -> _Status | None:
        if self.publish_service is None:
            return None
        services, ingresses = (
            next(r for r in routing if r.resource is resource) for resource in (SERVICES, INGRESSES)
        )
        namespace = self.publish_service[0]
        if self.namespace is not None and namespace != self.namespace:
            # The proxy's own Service lives outside the namespace it serves: watch that one too.
            services = self._reflector(client, SERVICES, namespace)
        writer = StatusWriter(
            client,
            self.publish_service,
            services=lambda: services.objects,
            ingresses=lambda: ingresses.objects,
            backoff=Backoff(self.tuning.backoff_base, self.tuning.backoff_cap, self.rng),
        )
        return _Status(writer, services)

    def _gateway_writer(
        self, client: KubeClient, routing: list[Reflector], status: _Status | None
    ) -> _GatewayStatus:
        """The Gateway API status writer: conditions always, addresses with --publish-service."""
        by_plural = {r.resource.plural: r for r in routing}
        classes, gateways, routes = (
            by_plural[r.plural] for r in (GATEWAY_CLASSES, GATEWAYS, HTTP_ROUTES)
        )

        def objects() -> GatewayObjects:
            return GatewayObjects(classes.objects, gateways.objects, routes.objects)

        def addresses() -> list[LoadBalancerIngress] | None:
            if status is None or self.publish_service is None:
                return None  # not ours to write: Gateways keep whatever addresses they have
            service = status.reflector.objects.get(self.publish_service)
            return service_addresses(service) if service is not None else None

        writer = GatewayStatusWriter(
            client,
            self.options.gateway_controller,
            objects,
            addresses,
            Backoff(self.tuning.backoff_base, self.tuning.backoff_cap, self.rng),
        )
        for reflector in (classes, gateways, routes):
            reflector.on_change(writer.objects_changed, status=True)
        if status is not None:
            status.reflector.on_change(writer.objects_changed)
        gateway = [by_plural[r.plural] for r in GATEWAY_RESOURCES]
        return _GatewayStatus(writer, gateway)

    async def _publish(
        self,
        sink: SnapshotSink,
        reflectors: list[Reflector],
        changed: asyncio.Event,
        status: _Status | None,
        gateway: _GatewayStatus,
    ) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self._first_lists(reflectors, started)
        held_back = False  # whether the log says that Gateway API status waits for a list
        while True:
            changed.clear()  # a change from now on, even during translation, rebuilds again
            began = loop.time()
            # Whether the Gateway API objects are all there: status written from a partial view
            # (HTTPRoutes listed, their Gateways not yet) would take accepted routes back.
            complete = all(reflector.known for reflector in gateway.reflectors)
            objects = [obj for reflector in reflectors for obj in reflector.objects.values()]
            try:
                snapshot = await asyncio.to_thread(translate_cluster, objects, self.options)
            except ManifestError as error:
                sink.reject(str(error))
            else:
                sink.publish(snapshot, loop.time() - began)
                if status is not None:
                    status.writer.routes_changed(snapshot)
                if complete:
                    gateway.writer.routes_changed(snapshot)
                    held_back = False
                elif snapshot.statuses and not held_back:
                    held_back = True
                    missing = ", ".join(r.name for r in gateway.reflectors if not r.known)
                    log.warning("Gateway API status not written until %s can be listed", missing)
            ended = loop.time()
            await changed.wait()
            await asyncio.sleep(rebuild_pause(self.coalesce, ended - began, loop.time() - ended))

    async def _first_lists(self, reflectors: Sequence[Reflector], started: float) -> None:
        """Until every required resource is listed and every optional one settled (listed, not
        served, or forbidden), or `optional_wait` has passed for the optional ones."""
        loop = asyncio.get_running_loop()
        for reflector in reflectors:
            if not reflector.resource.optional:
                await reflector.synced.wait()
        try:
            async with asyncio.timeout_at(started + self.tuning.optional_wait):
                for reflector in reflectors:
                    await reflector.settled.wait()
        except TimeoutError:
            waiting = ", ".join(r.name for r in reflectors if not r.settled.is_set())
            log.warning("kubernetes: %s not listed yet; serving without them until they are",
                        waiting)  # fmt: skip
        absent = [r.name for r in reflectors if r.absent]
        log.info("kubernetes: every resource listed in %.2f s%s", loop.time() - started,
                 f" (not served: {', '.join(absent)})" if absent else "")  # fmt: skip


def rebuild_pause(coalesce: float, took: float, since: float) -> float:
    """How long to gather changes before the next rebuild, which `since` seconds ago ended one
    that `took` seconds. At least `coalesce`; after a long rebuild (a large cluster), until as
    long has passed as it took: under constant churn rebuilding then takes at most about half
    of the time, and the event loop keeps the rest (20,000 endpoints: 0.3-0.5 s a rebuild)."""
    return max(coalesce, took - since)


class SecretNames:
    """The Secrets the Ingresses name as auth-secret, kept current from the Ingress watch: the
    Secret watches keep every key of these, and list again when they change."""

    def __init__(self, ingresses: Reflector) -> None:
        self.ingresses = ingresses
        self.names: frozenset[Key] = frozenset()
        self.secrets: list[Reflector] = []

    def __call__(self, key: Key) -> bool:
        return key in self.names

    def ingresses_changed(self) -> None:
        names = named_secrets(self.ingresses.objects.values())
        if names != self.names:
            # (a Secret named anew was held without its users; one no longer named, with them)
            self.names = names
            for reflector in self.secrets:
                reflector.relist()


@dataclass(frozen=True, slots=True)
class _Status:
    writer: StatusWriter
    reflector: Reflector  # the one that sees the publish Service


@dataclass(frozen=True, slots=True)
class _GatewayStatus:
    writer: GatewayStatusWriter
    reflectors: list[Reflector]  # the Gateway API kinds and Namespaces
