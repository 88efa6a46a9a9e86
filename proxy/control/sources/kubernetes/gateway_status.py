"""What the status of each Gateway API object of ours should say: the conditions translation
reached (`Snapshot.statuses`) laid out as the Gateway API's status fields, against the object as
the API server holds it, so that only what differs is written.

Ours are the GatewayClasses with our controllerName, their Gateways, and the entries of an
HTTPRoute's `status.parents` with our controllerName; entries of other controllers are kept as
they are, in their order. Conditions follow `metav1.Condition`: `observedGeneration` is the
generation translation read, and `lastTransitionTime` stays what it was unless the condition's
status changed. Every field the CRDs would default is written out, so what is read back compares
equal to what was written and nothing is written twice. An object whose generation is newer than
the one translation read is left for the next table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from proxy.control.sources.kubernetes.reflector import Key, Obj
from proxy.control.sources.kubernetes.resources import (
    GATEWAY_CLASSES,
    GATEWAY_GROUP,
    GATEWAYS,
    HTTP_ROUTES,
    Resource,
)
from proxy.control.sources.kubernetes.status import LoadBalancerIngress
from proxy.core.model import Condition, ObjectStatus

# The CRDs' limits: a condition message's length, and an HTTPRoute's parent statuses.
MESSAGE_LIMIT = 32768
PARENTS_LIMIT = 32
_ROUTE_PROTOCOLS = ("HTTP", "HTTPS")
_HTTP_ROUTE = {"group": GATEWAY_GROUP, "kind": "HTTPRoute"}


@dataclass(frozen=True, slots=True)
class GatewayObjects:
    """The Gateway API objects as the API server holds them, by (namespace, name)."""

    classes: Mapping[Key, Obj]
    gateways: Mapping[Key, Obj]
    routes: Mapping[Key, Obj]


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """The status fields to set on one object; each replaces the field whole."""

    resource: Resource
    key: Key
    status: Obj
    version: str  # the object's resourceVersion the update was computed from
    # Other controllers write into the same field (an HTTPRoute's parents): the write must not
    # land on a version they changed meanwhile, which the server refuses with 409 Conflict.
    guarded: bool = False

    @property
    def ref(self) -> str:
        """How logs name the object: `HTTPRoute shop/web`, `GatewayClass sticky-proxy`."""
        namespace, name = self.key
        return f"{self.resource.kind} {namespace + '/' if namespace else ''}{name}"

    def patch(self) -> Obj:
        """The merge patch for the status subresource."""
        body: Obj = {"status": self.status}
        if self.guarded:
            body["metadata"] = {"resourceVersion": self.version}
        return body


def rfc3339(moment: datetime) -> str:
    """A `metav1.Time`: UTC, whole seconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def plan_updates(
    statuses: Sequence[ObjectStatus],
    objects: GatewayObjects,
    controller: str,
    addresses: Sequence[LoadBalancerIngress] | None,
    now: str,
) -> list[StatusUpdate]:
    """The writes that bring every object of ours to `statuses`: GatewayClasses, then Gateways,
    then HTTPRoutes (those that lost our parents too). `addresses` None: Gateway addresses are
    not ours to write (no --publish-service, or its Service is not there)."""
    grouped: dict[tuple[str, str, str], list[ObjectStatus]] = {}
    for status in statuses:
        grouped.setdefault((status.kind, status.namespace, status.name), []).append(status)
    updates: list[StatusUpdate | None] = []
    for (kind, _, name), found in grouped.items():
        if kind == "GatewayClass" and (obj := objects.classes.get(("", name))) is not None:
            updates.append(_class_update(("", name), obj, found, now))
    for (kind, namespace, name), found in grouped.items():
        if kind == "Gateway" and (obj := objects.gateways.get((namespace, name))) is not None:
            updates.append(_gateway_update((namespace, name), obj, found, addresses, now))
    for key, obj in sorted(objects.routes.items()):
        found = grouped.get(("HTTPRoute", *key), [])
        updates.append(_route_update(key, obj, found, controller, now))
    return [update for update in updates if update is not None]


def without_times(value: Any) -> Any:
    """`value` with every lastTransitionTime left out: what an update means, whenever made."""
    if isinstance(value, Mapping):
        return {k: without_times(v) for k, v in value.items() if k != "lastTransitionTime"}
    if isinstance(value, list):
        return [without_times(item) for item in value]
    return value


def _class_update(key: Key, obj: Obj, found: list[ObjectStatus], now: str) -> StatusUpdate | None:
    own = next((s for s in found if not s.parent), None)
    if own is None or _newer(obj, own):
        return None
    current = _mapping(obj.get("status"))
    generation = own.generation or _generation(obj)
    wanted = {"conditions": conditions(own.conditions, generation, current.get("conditions"), now)}
    return _update(GATEWAY_CLASSES, key, obj, current, wanted)


def _gateway_update(
    key: Key,
    obj: Obj,
    found: list[ObjectStatus],
    addresses: Sequence[LoadBalancerIngress] | None,
    now: str,
) -> StatusUpdate | None:
    own = next((s for s in found if not s.parent), None)
    if own is None or _newer(obj, own):
        return None
    current = _mapping(obj.get("status"))
    generation = own.generation or _generation(obj)
    specs = {
        str(item.get("name")): item
        for item in _list(_mapping(obj.get("spec")).get("listeners"))
        if isinstance(item, Mapping)
    }
    before = {str(item.get("name")): _mapping(item) for item in _list(current.get("listeners"))}
    listeners = []
    for status in found:
        if not status.parent.startswith("listener "):
            continue
        name = status.parent.removeprefix("listener ")
        listeners.append(
            {
                "name": name,
                "supportedKinds": supported_kinds(specs.get(name)),
                "attachedRoutes": status.attached_routes or 0,
                "conditions": conditions(
                    status.conditions,
                    status.generation or generation,
                    before.get(name, {}).get("conditions"),
                    now,
                ),
            }
        )
    wanted: Obj = {
        "conditions": conditions(own.conditions, generation, current.get("conditions"), now),
        "listeners": listeners,
    }
    if addresses is not None:
        wanted["addresses"] = [_gateway_address(entry) for entry in addresses]
    return _update(GATEWAYS, key, obj, current, wanted)


def supported_kinds(listener: Mapping[str, Any] | None) -> list[Obj]:
    """The route kinds a listener takes that this proxy serves: HTTPRoute on HTTP and HTTPS
    listeners, unless their `allowedRoutes.kinds` leave it out; none on other protocols."""
    if listener is None or listener.get("protocol") not in _ROUTE_PROTOCOLS:
        return []
    kinds = _list(_mapping(listener.get("allowedRoutes")).get("kinds"))
    if not kinds:
        return [dict(_HTTP_ROUTE)]
    named = {
        (item.get("group", GATEWAY_GROUP), item.get("kind"))
        for item in kinds
        if isinstance(item, Mapping)
    }
    return [dict(_HTTP_ROUTE)] if (GATEWAY_GROUP, "HTTPRoute") in named else []


def _gateway_address(entry: LoadBalancerIngress) -> Obj:
    if "ip" in entry:
        return {"type": "IPAddress", "value": entry["ip"]}
    return {"type": "Hostname", "value": entry["hostname"]}


def _route_update(
    key: Key, obj: Obj, found: list[ObjectStatus], controller: str, now: str
) -> StatusUpdate | None:
    """Our entries of `status.parents`, one per parentRef to one of our Gateways (none when the
    route no longer names one), after the other controllers' entries."""
    if any(_newer(obj, status) for status in found):
        return None
    current = _mapping(obj.get("status"))
    parents = _list(current.get("parents"))
    ours = [_mapping(p) for p in parents if _mapping(p).get("controllerName") == controller]
    others = [p for p in parents if _mapping(p).get("controllerName") != controller]
    namespace = key[0]
    written = _list(_mapping(obj.get("spec")).get("parentRefs"))
    wanted = []
    for status in found:
        gateway_namespace, _, gateway_name = status.parent.removeprefix("Gateway ").partition("/")
        target = (gateway_namespace, gateway_name, status.section, status.port)
        previous = next(
            (p.get("conditions") for p in ours if _names(p.get("parentRef"), namespace) == target),
            None,
        )
        wanted.append(
            {
                "parentRef": _parent_ref(written, namespace, target),
                "controllerName": controller,
                "conditions": conditions(
                    status.conditions, status.generation or _generation(obj), previous, now
                ),
            }
        )
    wanted = wanted[: max(0, PARENTS_LIMIT - len(others))]
    if ours == wanted:
        return None
    version = _version(obj)
    return StatusUpdate(HTTP_ROUTES, key, {"parents": [*others, *wanted]}, version, guarded=True)


def _names(ref: Any, namespace: str) -> tuple[str, str, str | None, int | None] | None:
    """(namespace, name, sectionName, port) a parentRef names, when it names a Gateway."""
    ref = _mapping(ref)
    if (ref.get("group", GATEWAY_GROUP), ref.get("kind", "Gateway")) != (GATEWAY_GROUP, "Gateway"):
        return None
    port = ref.get("port")
    return (
        str(ref.get("namespace") or namespace),
        str(ref.get("name") or ""),
        ref.get("sectionName") or None,
        port if isinstance(port, int) else None,
    )


def _parent_ref(
    written: list[Any], namespace: str, target: tuple[str, str, str | None, int | None]
) -> Obj:
    """The parentRef as the route's spec writes it (namespace given or not), with the group and
    kind the CRD defaults written out."""
    spelled = next((_mapping(r) for r in written if _names(r, namespace) == target), None)
    gateway_namespace, name, section, port = target
    ref: Obj = {"group": GATEWAY_GROUP, "kind": "Gateway"}
    if spelled is None or spelled.get("namespace"):
        ref["namespace"] = gateway_namespace
    ref["name"] = name
    if section is not None:
        ref["sectionName"] = section
    if port is not None:
        ref["port"] = port
    return ref


def conditions(wanted: Iterable[Condition], generation: int, previous: Any, now: str) -> list[Obj]:
    """`wanted` as metav1 conditions; a condition whose status is what it was keeps its
    lastTransitionTime, any other gets `now`."""
    before = {item.get("type"): item for item in _list(previous) if isinstance(item, Mapping)}
    found = []
    for condition in wanted:
        status = "True" if condition.status else "False"
        old = before.get(condition.type)
        since = old.get("lastTransitionTime") if old is not None else None
        if old is None or old.get("status") != status or not isinstance(since, str) or not since:
            since = now
        found.append(
            {
                "type": condition.type,
                "status": status,
                "reason": condition.reason,
                "message": condition.message[:MESSAGE_LIMIT],
                "observedGeneration": generation,
                "lastTransitionTime": since,
            }
        )
    return found


def _update(
    resource: Resource, key: Key, obj: Obj, current: Mapping[str, Any], wanted: Obj
) -> StatusUpdate | None:
    if all(current.get(field) == value for field, value in wanted.items()):
        return None
    return StatusUpdate(resource, key, wanted, _version(obj))


def _newer(obj: Obj, status: ObjectStatus) -> bool:
    """Whether the object changed since the table was built: its status waits for the next
    table (written now, it would describe the old spec in terms of the new one)."""
    return 0 < status.generation < _generation(obj)


def _generation(obj: Obj) -> int:
    generation = _mapping(obj.get("metadata")).get("generation")
    return generation if isinstance(generation, int) else 0


def _version(obj: Obj) -> str:
    return str(_mapping(obj.get("metadata")).get("resourceVersion") or "")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
