"""Which Ingresses are ours (by class), and the order ingress-nginx processes them in, which
decides every "first" and "last" of the later steps."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from proxy.control.translate.ingresses import Ingress

_GO_ZERO_TIME = datetime.min.replace(tzinfo=UTC)  # an object without creationTimestamp


def selected(ingress: Ingress, ingress_class: str) -> bool:
    """Ours: of our class by `spec.ingressClassName`, else by the legacy annotation, or of none.

    The class name wins over the annotation when both are set, as in ingress-nginx's store.
    """
    if ingress.class_name is not None:
        return ingress.class_name == ingress_class
    if ingress.legacy_class is not None:
        return ingress.legacy_class == ingress_class
    return True


def processing_order(ingresses: Iterable[Ingress]) -> list[Ingress]:
    """ingress-nginx's order (store.sortIngressSlice; docs/behaviour.md, "Which Ingresses"):
    oldest `creationTimestamp` first; equal ones, and objects without one (manifest files), by
    "namespace/name" *descending*. Followed exactly: it decides which Ingress's cookie name a
    shared backend uses, and so whether migrated sessions keep their pod."""
    by_name = sorted(ingresses, key=lambda i: f"{i.namespace}/{i.name}", reverse=True)
    return sorted(by_name, key=lambda i: i.created or _GO_ZERO_TIME)  # stable: ties keep by_name
