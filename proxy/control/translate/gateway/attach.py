"""Which listeners of our Gateways each HTTPRoute attaches to, under which hostnames, and the
conditions that say so (docs/gateway-api.md, "Attaching routes").

A parentRef to a Gateway of another controller, or to one that does not exist, is not ours to
judge: it gets no status from us. For our Gateways the checks run in the specification's order:
sectionName and port pick the listeners (else NoMatchingParent), `allowedRoutes` must let the
route's namespace and kind in (else NotAllowedByListeners), and the hostnames must intersect
(else NoMatchingListenerHostname).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from proxy.control.translate.gateway.resources import (
    GROUP,
    Gateway,
    HTTPRoute,
    Listener,
    ParentRef,
)
from proxy.core.model import Condition


@dataclass(frozen=True, slots=True)
class Attachment:
    """One route's standing on one parentRef to our Gateway."""

    parent: ParentRef
    gateway: Gateway
    # (listener, hostnames) for every listener it attaches to; a hostname None is any host
    listeners: tuple[tuple[Listener, tuple[str | None, ...]], ...]
    accepted: Condition


def attach(
    route: HTTPRoute, gateways: Mapping[tuple[str, str], Gateway], labels: NamespaceLabels
) -> list[Attachment]:
    """The route's attachments to our `gateways` (by namespace and name), one per parentRef
    that names one of them."""
    found = []
    for parent in route.parent_refs:
        if (parent.group, parent.kind) != (GROUP, "Gateway"):
            continue
        gateway = gateways.get((parent.namespace, parent.name))
        if gateway is None:
            continue
        found.append(_attach_one(route, parent, gateway, labels))
    return found


class NamespaceLabels:
    """The labels of each Namespace given, for `allowedRoutes.namespaces.from: Selector`."""

    def __init__(self, labels: Mapping[str, Mapping[str, str]]) -> None:
        self._labels = labels

    def of(self, namespace: str) -> dict[str, str]:
        found = dict(self._labels.get(namespace, {}))
        # Kubernetes labels every namespace with its own name (since 1.22).
        found.setdefault("kubernetes.io/metadata.name", namespace)
        return found


def _attach_one(
    route: HTTPRoute, parent: ParentRef, gateway: Gateway, labels: NamespaceLabels
) -> Attachment:
    listeners = [
        listener
        for listener in gateway.listeners
        if parent.section in (None, listener.name) and parent.port in (None, listener.port)
    ]
    if not listeners:
        return _refused(parent, gateway, "NoMatchingParent", "no listener matches")
    allowed = [listener for listener in listeners if _allows(listener, gateway, route, labels)]
    if not allowed:
        return _refused(
            parent, gateway, "NotAllowedByListeners",
            "no listener allows routes of this kind from this namespace",
        )  # fmt: skip
    attached = []
    for listener in allowed:
        hostnames = effective_hostnames(listener.hostname, route.hostnames)
        if hostnames:
            attached.append((listener, hostnames))
    if not attached:
        return _refused(
            parent, gateway, "NoMatchingListenerHostname",
            "no hostname of the route matches a listener's",
        )  # fmt: skip
    return Attachment(parent, gateway, tuple(attached), Condition("Accepted", True, "Accepted"))


def _refused(parent: ParentRef, gateway: Gateway, reason: str, message: str) -> Attachment:
    return Attachment(parent, gateway, (), Condition("Accepted", False, reason, message))


def _allows(
    listener: Listener, gateway: Gateway, route: HTTPRoute, labels: NamespaceLabels
) -> bool:
    if not listener.routes_http:
        return False
    if listener.kinds is not None and (GROUP, "HTTPRoute") not in listener.kinds:
        return False
    source = listener.namespaces_from
    if source == "All":
        return True
    if source == "Same":
        return route.namespace == gateway.namespace
    if source == "Selector" and listener.selector is not None:
        return listener.selector.accepts(labels.of(route.namespace))
    return False


def effective_hostnames(listener: str | None, route: tuple[str, ...]) -> tuple[str | None, ...]:
    """The hosts a route answers on a listener: the intersection of their hostnames, where a
    `*.` wildcard stands for one or more labels; () when they do not intersect."""
    if not route:
        return (listener,)
    if listener is None:
        return route
    found = [host for name in route if (host := _intersect(listener, name)) is not None]
    return tuple(dict.fromkeys(found))


def _intersect(listener: str, route: str) -> str | None:
    if listener == route:
        return route
    listener_wild = listener.startswith("*.")
    route_wild = route.startswith("*.")
    if listener_wild and route.endswith(listener[1:]):
        return route  # the route's name (or narrower wildcard) lies inside the listener's
    if route_wild and listener.endswith(route[1:]):
        return listener
    return None
