"""The pure parts of the Kubernetes source: which changes matter, the status address, and
translation that leaves out an object it cannot use."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.control.sources.kubernetes.reflector import same_meaning
from proxy.control.sources.kubernetes.source import translate_cluster
from proxy.control.sources.kubernetes.status import (
    current_addresses,
    served_ingresses,
    service_addresses,
)
from proxy.control.translate import ManifestError, TranslateOptions
from tests.unit.kube_fixtures import load

SLICE: dict[str, Any] = {
    "kind": "EndpointSlice",
    "metadata": {
        "name": "web-1",
        "resourceVersion": "10",
        "managedFields": [{"manager": "kube-controller-manager"}],
        "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2025-06-03T17:42Z"},
    },
    "endpoints": [{"addresses": ["10.0.0.1"]}],
}


def changed(**metadata: Any) -> dict[str, Any]:
    return {**SLICE, "metadata": {**SLICE["metadata"], **metadata}}


def test_bookkeeping_changes_do_not_matter_for_routing() -> None:
    assert same_meaning(SLICE, changed(resourceVersion="11", generation=3, managedFields=[]))
    trigger = {"endpoints.kubernetes.io/last-change-trigger-time": "2025-06-03T18:00Z"}
    assert same_meaning(SLICE, changed(annotations=trigger))
    assert not same_meaning(SLICE, changed(annotations={"x": "y"}))
    assert not same_meaning(SLICE, {**SLICE, "endpoints": None})
    assert not same_meaning(SLICE, None)
    assert same_meaning(None, None)


@pytest.mark.parametrize(
    ("service", "addresses"),
    [
        ({"spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10"}}, [{"ip": "10.96.0.10"}]),
        ({"spec": {"clusterIP": "None"}}, []),
        ({"spec": {"type": "NodePort", "clusterIP": "10.96.0.10"}}, [{"ip": "10.96.0.10"}]),
        (
            {"spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "externalIPs": ["1.2.3.4"]}},
            [{"ip": "1.2.3.4"}],
        ),
        (
            {"spec": {"type": "ExternalName", "externalName": "lb.example.com"}},
            [{"hostname": "lb.example.com"}],
        ),
        (
            {
                "spec": {
                    "type": "LoadBalancer",
                    "clusterIP": "10.96.0.10",
                    "externalIPs": ["2001:db8::1"],
                },
                "status": {
                    "loadBalancer": {
                        "ingress": [
                            {"hostname": "a.elb.example.com"},
                            {"ip": "203.0.113.10"},
                            {"ip": "203.0.113.10"},
                        ]
                    }
                },
            },
            [{"hostname": "a.elb.example.com"}, {"ip": "2001:db8::1"}, {"ip": "203.0.113.10"}],
        ),
        ({"spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {}}}, []),
    ],
)
def test_status_addresses_as_ingress_nginx_reads_the_service(
    service: dict[str, Any], addresses: list[dict[str, str]]
) -> None:
    assert service_addresses(service) == addresses


def test_served_ingresses_are_those_with_routes() -> None:
    snapshot = translate_cluster(load("seed"), TranslateOptions())
    assert served_ingresses(snapshot) == {
        (route.namespace, route.ingress) for route in snapshot.routes
    }
    assert served_ingresses(snapshot)


def test_current_addresses_ignore_ports() -> None:
    ingress = {
        "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4", "ports": [{"port": 80}]}]}}
    }
    assert current_addresses(ingress) == [{"ip": "1.2.3.4"}]
    assert current_addresses({"status": {"loadBalancer": {}}}) == []


def test_an_object_translation_cannot_use_is_left_out_with_a_warning() -> None:
    objects = load("seed")
    broken = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "broken", "namespace": "default"},
        "spec": {
            "rules": [
                {
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Sometimes",
                                "backend": {"service": {"name": "x", "port": {"number": 80}}},
                            }
                        ]
                    }
                }
            ]
        },
    }
    good = translate_cluster(objects, TranslateOptions())
    snapshot = translate_cluster([broken, *objects], TranslateOptions())
    assert snapshot.routes == good.routes
    (warning,) = set(snapshot.warnings) - set(good.warnings)
    assert warning.startswith("Ingress default/broken: ")
    assert warning.endswith("; the object is ignored")


def test_an_error_naming_no_object_is_raised() -> None:
    with pytest.raises(ManifestError):
        translate_cluster(["not an object"], TranslateOptions())  # type: ignore[list-item]
