"""`--publish-service NAMESPACE/NAME`: the proxy's address in the status of the Ingresses it serves.

What ingress-nginx does, so `kubectl get ingress` shows an ADDRESS: the address is read from the
Service in front of the proxy (its load balancer's IPs or hostnames, else its cluster IP) and
written into `status.loadBalancer.ingress` of every Ingress that has routes, only where it
differs, so the writes cause no churn.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from proxy.control.sources.kubernetes.backoff import Backoff
from proxy.control.sources.kubernetes.client import ApiError, KubeClient, KubeError
from proxy.control.sources.kubernetes.exec_plugin import CredentialError
from proxy.control.sources.kubernetes.reflector import Key, Obj
from proxy.control.sources.kubernetes.resources import INGRESSES
from proxy.core.routing import Snapshot

log = logging.getLogger("sticky_proxy.kubernetes")

LoadBalancerIngress = dict[str, str]  # {"ip": ...} or {"hostname": ...}


async def write_when_wanted(
    wanted: asyncio.Event, write: Callable[[], Awaitable[None]], backoff: Backoff, what: str
) -> None:
    """Runs `write` each time `wanted` is set, for ever; a write the API server refuses is
    logged (as `what` not written) and tried again after the backoff's delay."""
    while True:
        await wanted.wait()
        wanted.clear()
        try:
            await write()
        except (KubeError, CredentialError) as error:
            log.warning("%s not written: %s; retrying", what, error)
            retry_after = error.retry_after if isinstance(error, ApiError) else None
            await asyncio.sleep(backoff.next_delay(retry_after))
            wanted.set()
        else:
            backoff.reset()


def service_addresses(service: Mapping[str, Any]) -> list[LoadBalancerIngress]:
    """The addresses a Service is reached at, as ingress-nginx reads them for Ingress status."""
    spec = service.get("spec") or {}
    kind = spec.get("type") or "ClusterIP"
    addresses: list[str] = []
    if kind == "ExternalName":
        addresses = [spec.get("externalName") or ""]
    elif kind == "LoadBalancer":
        for entry in ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ():
            addresses.append(entry.get("ip") or entry.get("hostname") or "")
        addresses.extend(spec.get("externalIPs") or ())
    elif kind == "NodePort" and spec.get("externalIPs"):
        addresses = list(spec["externalIPs"])
    elif spec.get("clusterIP") not in (None, "", "None"):
        addresses = [spec["clusterIP"]]
    return sorted(
        (_load_balancer_entry(address) for address in set(addresses) if address),
        key=lambda entry: (entry.get("ip", ""), entry.get("hostname", "")),
    )


def _load_balancer_entry(address: str) -> LoadBalancerIngress:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return {"hostname": address}
    return {"ip": address}


def served_ingresses(snapshot: Snapshot) -> set[Key]:
    """The Ingresses that have routes in `snapshot`: of our class, and usable."""
    routes = [*snapshot.routes, *([snapshot.default_route] if snapshot.default_route else [])]
    return {(route.namespace, route.ingress) for route in routes if route.ingress}


def current_addresses(ingress: Mapping[str, Any]) -> list[LoadBalancerIngress]:
    entries = ((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ()
    return [
        {key: entry[key] for key in ("ip", "hostname") if entry.get(key)}
        for entry in entries
        if isinstance(entry, Mapping)
    ]


class StatusWriter:
    """Writes the publish Service's addresses into served Ingresses, after every routing change
    and every change of that Service; a refused write is retried with backoff."""

    def __init__(
        self,
        client: KubeClient,
        service: Key,
        services: Callable[[], Mapping[Key, Obj]],
        ingresses: Callable[[], Mapping[Key, Obj]],
        backoff: Backoff,
    ) -> None:
        self._client = client
        self._service = service
        self._services = services
        self._ingresses = ingresses
        self._backoff = backoff
        self._snapshot: Snapshot | None = None
        self._wanted = asyncio.Event()
        self._missing_logged = False
        # What was written to each Ingress, and the resourceVersion it had then: until the watch
        # delivers the written version, the cached object still shows the old status.
        self._written: dict[Key, tuple[list[LoadBalancerIngress], str]] = {}

    def routes_changed(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._wanted.set()

    def objects_changed(self) -> None:
        if self._snapshot is not None:
            self._wanted.set()

    async def run(self) -> None:
        await write_when_wanted(self._wanted, self._write, self._backoff, "Ingress status")

    async def _write(self) -> None:
        if self._snapshot is None:
            return
        service = self._services().get(self._service)
        if service is None:
            if not self._missing_logged:
                log.warning("--publish-service %s/%s: no such Service; status not written",
                            *self._service)  # fmt: skip
                self._missing_logged = True
            return
        self._missing_logged = False
        wanted = service_addresses(service)
        ingresses = self._ingresses()
        for key in sorted(served_ingresses(self._snapshot)):
            ingress = ingresses.get(key)
            if ingress is None or current_addresses(ingress) == wanted:
                continue
            version = str((ingress.get("metadata") or {}).get("resourceVersion") or "")
            if self._written.get(key) == (wanted, version):
                continue  # written already; the watch has not brought it back yet
            namespace, name = key
            await self._client.merge_patch(
                INGRESSES.item(namespace, name, "status"),
                {"status": {"loadBalancer": {"ingress": wanted}}},
            )
            self._written[key] = (wanted, version)
            shown = ", ".join(value for entry in wanted for value in entry.values())
            log.info("Ingress %s/%s: status address %s", namespace, name, shown or "(none)")
