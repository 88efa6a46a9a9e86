"""The --backend source: URL validation, and the one-route snapshot it publishes."""

from __future__ import annotations

import pytest

from proxy.control.sources.static import STATIC_CLUSTER, static_backends, static_snapshot
from proxy.core.cookies import CookieSettings
from proxy.core.model import Affinity, AffinityMode, Endpoint, PathType, UpstreamPolicy


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://10.0.0.1:8080", Endpoint("10.0.0.1", 8080)),
        ("http://10.0.0.1:8080/", Endpoint("10.0.0.1", 8080)),
        ("http://backend", Endpoint("backend", 80)),
        ("http://backend/", Endpoint("backend", 80)),
        ("HTTP://backend:1", Endpoint("backend", 1)),
        (
            "http://app.default.svc.cluster.local:65535",
            Endpoint("app.default.svc.cluster.local", 65535),
        ),
        ("http://[::1]:8080", Endpoint("::1", 8080)),
        ("http://[fd00::2]", Endpoint("fd00::2", 80)),
    ],
)
def test_backend_urls_accepted(url: str, expected: Endpoint) -> None:
    assert static_backends([url]) == (expected,)


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("https://backend", "only http://host"),
        ("backend:8080", "only http://host"),
        ("ftp://backend", "only http://host"),
        ("", "only http://host"),
        ("http://backend/app", "a path, query or fragment"),
        ("http://backend//", "a path, query or fragment"),
        ("http://backend?x=1", "a path, query or fragment"),
        ("http://backend:80/?x=1", "a path, query or fragment"),
        ("http://backend#top", "a path, query or fragment"),
        ("http://user:pw@backend", "user info"),
        ("http://backend:0", "is not a port"),
        ("http://backend:65536", "is not a port"),
        ("http://backend:http", "is not a port"),
        ("http://backend:", "is not a port"),
        ("http://", "is not a host name"),
        ("http://:80", "is not a host name"),
        ("http://::1:80", "needs brackets"),
        ("http://[::1", "needs brackets"),
        ("http://[zz]:80", "is not an IPv6 address"),
        ("http://bad_host", "is not a host name"),
    ],
)
def test_backend_urls_refused_naming_the_url(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint) as raised:
        static_backends(["http://fine:1", url])
    assert str(raised.value).startswith(repr(url))


def test_the_same_endpoint_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="'http://a:80': the same endpoint is given twice"):
        static_backends(["http://a", "http://a:80"])


def test_order_is_kept() -> None:
    urls = ["http://b:2", "http://a:1", "http://c:3"]
    assert [e.address for e in static_backends(urls)] == ["b", "a", "c"]


ENDPOINTS = (Endpoint("127.0.0.1", 8001), Endpoint("127.0.0.1", 8002))


def test_snapshot_is_one_catch_all_route_to_the_static_cluster() -> None:
    upstream = UpstreamPolicy(connect_timeout=1.0, next_upstream=frozenset())
    snapshot = static_snapshot(ENDPOINTS, Affinity(), upstream)
    (route,) = snapshot.routes
    assert snapshot.default_route is route
    assert (route.host, route.path, route.path_type) == (None, "/", PathType.PREFIX)
    assert route.sets_cookie
    assert route.cookie_path == "/"
    assert route.upstream == upstream
    assert route.cluster.name == STATIC_CLUSTER == "static"
    assert route.cluster.endpoints == ENDPOINTS
    assert route.cluster.affinity == Affinity()
    assert snapshot.clusters == (route.cluster,)
    assert snapshot.table.match("any.host", "/any/path") is route


def test_snapshot_cookie_path_follows_the_flag() -> None:
    affinity = Affinity(AffinityMode.PERSISTENT, CookieSettings(path="/app"))
    (route,) = static_snapshot(ENDPOINTS, affinity, UpstreamPolicy()).routes
    assert route.cookie_path == "/app"
    assert route.cluster.affinity == affinity


def test_snapshot_without_affinity_sets_no_cookie() -> None:
    (route,) = static_snapshot(ENDPOINTS, None, UpstreamPolicy()).routes
    assert not route.sets_cookie
    assert route.cookie_path == "/"
    assert route.cluster.affinity is None
