"""Services and the addresses behind them, as Service, EndpointSlice and legacy Endpoints objects
give them. Which of these addresses and ports a backend dials is decided later, when its endpoints
are resolved."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.control.translate.fields import Fields

_SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str
    port: int
    target_port: int | str
    protocol: str


@dataclass(frozen=True, slots=True)
class Service:
    ref: str
    external_name: bool
    ports: tuple[ServicePort, ...]
    cluster_ip: str = ""  # "" or "None" (headless): none, so service-upstream cannot be used


@dataclass(frozen=True, slots=True)
class _NamedPort:
    """A port of an EndpointSlice or of an Endpoints subset."""

    name: str
    port: int | None
    protocol: str


@dataclass(frozen=True, slots=True)
class _Member:
    address: str
    pod: str | None
    draining: bool


@dataclass(frozen=True, slots=True)
class Group:
    """Addresses sharing one port list: an EndpointSlice, or one subset of legacy Endpoints."""

    members: tuple[_Member, ...]
    ports: tuple[_NamedPort, ...]
    trusts_target_port: bool  # slices only: ingress-nginx falls back to a numeric targetPort


@dataclass(frozen=True, slots=True)
class EndpointSource:
    """An EndpointSlice or a legacy Endpoints object, and the Service it belongs to."""

    service: tuple[str, str]  # (namespace, name)
    groups: tuple[Group, ...]
    fqdn: bool = False  # an FQDN slice, which is not supported


def read_service(fields: Fields, ref: str) -> Service:
    spec = fields.child("spec") or Fields(ref, "spec", {})
    ports = []
    for port in spec.children("ports"):
        number = port.port("port")
        if number is None:
            raise port.error("port", "missing")
        target = port.number_or_text("targetPort")
        ports.append(
            ServicePort(
                name=port.text("name") or "",
                port=number,
                target_port=number if target is None else target,  # the API server's default
                protocol=port.text("protocol") or "TCP",
            )
        )
    external_name = spec.text("type") == "ExternalName"
    return Service(ref, external_name, tuple(ports), spec.text("clusterIP") or "")


def read_slice(fields: Fields, metadata: Fields, namespace: str) -> EndpointSource | None:
    """None for a slice without the Service label: slices join by that label only
    (docs/behaviour.md, "Services and endpoints")."""
    members: list[_Member] = []
    for endpoint in fields.children("endpoints"):
        draining = _draining(endpoint.child("conditions"))
        if draining is None:
            continue
        pod = _pod_name(endpoint.child("targetRef"))
        members.extend(_Member(address, pod, draining) for address in endpoint.texts("addresses"))
    ports = tuple(_named_port(port, required=False) for port in fields.children("ports"))
    fqdn = fields.required_text("addressType") == "FQDN"
    service = metadata.string_map("labels").get(_SERVICE_NAME_LABEL)
    if not service:
        return None
    if fqdn:
        return EndpointSource((namespace, service), (), fqdn=True)
    return EndpointSource((namespace, service), (Group(tuple(members), ports, True),))


def _draining(conditions: Fields | None) -> bool | None:
    """False: in rotation; True: draining; None: excluded. The table, and the rules for absent
    conditions: docs/behaviour.md, "Services and endpoints"."""
    if conditions is None:
        return False
    ready = conditions.flag("ready")
    ready = True if ready is None else ready
    serving = conditions.flag("serving")
    serving = ready if serving is None else serving
    terminating = bool(conditions.flag("terminating"))
    if ready:
        return False
    if serving and terminating:
        return True
    return None


def _pod_name(target: Fields | None) -> str | None:
    if target is None or target.text("kind") != "Pod":
        return None
    return target.text("name")


def _named_port(port: Fields, *, required: bool) -> _NamedPort:
    number = port.port("port")
    if required and number is None:
        raise port.error("port", "missing")
    return _NamedPort(port.text("name") or "", number, port.text("protocol") or "TCP")


def read_endpoints(fields: Fields) -> tuple[Group, ...]:
    """Legacy Endpoints: `addresses` are ready; `notReadyAddresses` are left out
    (docs/behaviour.md, "Services and endpoints")."""
    groups = []
    for subset in fields.children("subsets"):
        members = []
        for address in subset.children("addresses"):
            ip = address.required_text("ip")
            members.append(_Member(ip, _pod_name(address.child("targetRef")), draining=False))
        subset.children("notReadyAddresses")  # type-checked only
        ports = tuple(_named_port(port, required=True) for port in subset.children("ports"))
        groups.append(Group(tuple(members), ports, trusts_target_port=False))
    return tuple(groups)
