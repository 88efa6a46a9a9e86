"""Each backend's endpoints through its Service: EndpointSlices, legacy Endpoints, the ports
to dial and the warnings when there are none (translate.services and translate.endpoints)."""

from __future__ import annotations

import pytest

from tests.unit.kube_fixtures import endpoints, find, snapshot_of, warned


@pytest.mark.parametrize(
    ("path", "cluster", "expected"),
    [
        # port number 80 -> ServicePort http -> slice port named http (8080), never metrics
        ("/number", "shop-numbered-80", ["10.0.0.1:8080 @numbered-1"]),
        # port name http -> named targetPort: two numbers for one name, three slices merged, the
        # address that two slices list is ready (its ready copy wins), 10.0.1.9 only draining
        (
            "/name",
            "shop-named-http",
            [
                "10.0.1.1:8080 @named-1",
                "10.0.1.2:8080 @named-2",
                "10.0.1.3:8081 @named-3",
                "10.0.1.9:8080 (draining) @named-9",
            ],
        ),
        # endpoints: null adds nothing; ports: null dials the numeric targetPort
        ("/nulls", "shop-nulls-80", ["10.0.2.1:8080"]),
        # nil conditions are ready; serving+terminating drains; the rest is out; UDP ports ignored
        (
            "/conditions",
            "shop-conditions-80",
            [
                "10.0.3.1:8080",
                "10.0.3.2:8080",
                "10.0.3.3:8080",
                "10.0.3.5:8080 (draining)",
                "10.0.3.8:8080",
                "[fd00::8]:8080",
            ],
        ),
        # ingress-nginx also finds a Service port by its targetPort; the name keeps 8080
        ("/loose", "shop-numbered-8080", ["10.0.0.1:8080 @numbered-1"]),
        ("/missing", "shop-missing-80", []),
        ("/external", "shop-external-80", []),
        ("/no-port", "shop-numbered-81", []),
        ("/fqdn", "shop-fqdn-80", []),
        ("/other-namespace", "shop-elsewhere-80", []),
    ],
)
def test_endpoint_resolution(path: str, cluster: str, expected: list[str]) -> None:
    route = find(snapshot_of("endpoints"), "shop.example.com", path)
    assert route.cluster.name == cluster
    assert endpoints(route) == expected
    assert route.cluster.affinity is None
    assert not route.sets_cookie


@pytest.mark.parametrize(
    "fragments",
    [
        ("Ingress shop/ports: service shop/missing not found; path /missing answers 503",),
        ("Ingress shop/ports: service shop/external is of type ExternalName", "/external answers"),
        ("Ingress shop/ports: service shop/numbered has no port 81; path /no-port answers 503",),
        ("EndpointSlice shop/fqdn-aaaaa: addressType FQDN is not supported",),
        ("service shop/elsewhere not found; path /other-namespace answers 503",),
    ],
)
def test_endpoint_warnings(fragments: tuple[str, ...]) -> None:
    assert warned(snapshot_of("endpoints"), *fragments)


def test_endpoint_warnings_are_only_these() -> None:
    assert len(snapshot_of("endpoints").warnings) == 5


def test_shared_cluster_object() -> None:
    """Every path to one namespace/service/port shares one Cluster (and its balancer)."""
    snapshot = snapshot_of("endpoints")
    numbered = [r.cluster for r in snapshot.routes if r.cluster.name == "shop-numbered-80"]
    snapshot = snapshot_of("shared_backend")
    shared = [r.cluster for r in snapshot.routes if r.cluster.name == "default-shared-80"]
    assert len(numbered) == 1
    assert len(shared) == 5
    assert all(cluster is shared[0] for cluster in shared)


@pytest.mark.parametrize(
    ("endpoints_api", "expected"),
    [
        # addresses ready, notReadyAddresses out, the port by the Service port's name, per subset
        ("endpoints", ["10.1.0.1:8080 @app-1", "10.1.0.2:8080 @app-2", "10.1.0.4:8081"]),
        ("endpointslices", ["10.1.9.9:8080"]),
    ],
)
def test_legacy_endpoints(endpoints_api: str, expected: list[str]) -> None:
    snapshot = snapshot_of("legacy_endpoints", endpoints_api=endpoints_api)
    assert endpoints(find(snapshot, "legacy.example.com", "/")) == expected
    assert snapshot.warnings == ()
