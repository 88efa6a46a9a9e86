"""Each backend's endpoints: the Service port its Ingress names, the addresses and ports of that
Service's slices (or Endpoints) to dial, and the Cluster built from them. A backend without any
says why, so that its routes can be warned about (the data plane answers 503)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from proxy.control.translate.backends import BackendPlan
from proxy.control.translate.ingresses import Backend
from proxy.control.translate.services import Group, Service, ServicePort
from proxy.control.translate.world import World
from proxy.core.affinity import Cluster, build_cluster
from proxy.core.model import Endpoint


@dataclass(frozen=True, slots=True)
class BuiltCluster:
    cluster: Cluster
    locations: Mapping[str | None, set[str]]  # see BackendPlan
    problem: str | None  # why the cluster has no endpoints at all, if it is a setup problem


def build_backend_cluster(plan: BackendPlan, world: World, warnings: list[str]) -> BuiltCluster:
    endpoint = (
        _cluster_ip_endpoint(plan.backend, world, warnings) if plan.service_upstream else None
    )
    if endpoint is not None:
        endpoints, problem = [endpoint], None
    else:
        endpoints, problem = endpoints_of(plan.backend, world, warnings)
    cluster = build_cluster(plan.backend.cluster_name, endpoints, plan.affinity, plan.balancing)
    return BuiltCluster(cluster, plan.locations, problem)


def endpoints_of(
    backend: Backend, world: World, warnings: list[str], *, by_name_only: bool = False
) -> tuple[list[Endpoint], str | None]:
    """The endpoints of a backend, sorted; or none and the reason (the data plane answers 503)."""
    key = (backend.namespace, backend.service)
    name = f"service {backend.namespace}/{backend.service}"
    service = world.services.get(key)
    if service is None:
        return [], f"{name} not found"
    if service.external_name:
        return [], f"{name} is of type ExternalName, which is not supported"
    port = _service_port(service, backend.port)
    if port is None:
        return [], f"{name} has no port {backend.port!r}"
    for ref in world.fqdn_slices(key):
        warnings.append(f"{ref}: addressType FQDN is not supported; its endpoints are skipped")
    found = {
        Endpoint(member.address, dial_port, member.pod, member.draining)
        for group in world.groups(key)
        for dial_port in _dial_ports(group, port, by_name_only)
        for member in group.members
    }
    # Ready before draining for the same address: the cluster keeps the first copy of a node.
    return sorted(found, key=lambda e: (e.address, e.port, e.draining, e.pod or "")), None


def _cluster_ip_endpoint(backend: Backend, world: World, warnings: list[str]) -> Endpoint | None:
    """service-upstream: the Service's cluster IP and port as the one endpoint, so the cluster's
    own proxying (kube-proxy) picks the pod (docs/behaviour.md, "service-upstream"). As
    ingress-nginx (controller.getServiceClusterEndpoint): a numeric Ingress port is dialled as
    written, a named one is looked up among the Service's port names; without a cluster IP
    (headless, ExternalName, not found) the pods' endpoints are used after all."""
    service = world.services.get((backend.namespace, backend.service))
    name = f"service {backend.namespace}/{backend.service}"
    if service is None:
        return None  # endpoints_of says why there are none
    port: int | None = backend.port if isinstance(backend.port, int) else None
    if port is None:
        port = next((p.port for p in service.ports if p.name == backend.port), None)
    if service.cluster_ip in ("", "None"):
        problem = "it has no cluster IP"
    elif port is None:
        problem = f"it has no port named {backend.port!r}"
    else:
        return Endpoint(service.cluster_ip, port)
    warnings.append(f"{name}: service-upstream cannot be used: {problem}; its endpoints are used")
    return None


def _service_port(service: Service, backend_port: int | str) -> ServicePort | None:
    """The first Service port whose number, targetPort or name is the Ingress's port.

    ingress-nginx's loose match (controller.serviceEndpoints), kept so the same Ingress finds
    the same endpoints: port 8080 also finds `{port: 80, targetPort: 8080}`.
    """
    wanted = str(backend_port)
    for port in service.ports:
        if wanted in (str(port.port), str(port.target_port), port.name):
            return port
    return None


def _dial_ports(group: Group, service_port: ServicePort, by_name_only: bool) -> set[int]:
    """The port numbers to dial for `service_port` in one slice or subset
    (docs/behaviour.md, "Services and endpoints").

    As ingress-nginx (controller/endpointslices.go, endpoints.go): TCP ports only; the one named
    like the Service port, or every one for an unnamed Service port. Slices also fall back to a
    numeric targetPort when no name matches or they list no ports (ingress-nginx#7390); a
    Gateway API backend (`by_name_only`) takes the fallback only for a slice without ports, since
    in a slice of several ports every other port's name "does not match".
    """
    target = service_port.target_port
    fallback = target if group.trusts_target_port and isinstance(target, int) else None
    if not group.ports:
        return {fallback} if fallback else set()
    ports = set()
    for port in group.ports:
        if port.protocol != "TCP" or port.port is None:
            continue
        if not service_port.name or port.name == service_port.name:
            ports.add(port.port)
        elif fallback and not by_name_only:
            ports.add(fallback)
    return ports
