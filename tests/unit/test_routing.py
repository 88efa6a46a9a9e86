"""Route matching (docs/behaviour.md, "Route precedence"): hosts, path types, fallback."""

from __future__ import annotations

import pytest

from proxy.core.affinity import build_cluster
from proxy.core.model import PathType
from proxy.core.routing import Route, Snapshot

CLUSTER = build_cluster("default-web-80", [], None)


def route(host: str | None, path: str, path_type: PathType = PathType.PREFIX) -> Route:
    return Route(host, path, path_type, CLUSTER, False, path, ingress=f"{host}{path}{path_type}")


ROUTES = (
    route("shop.test", "/"),
    route("shop.test", "/api"),
    route("shop.test", "/api/v1/"),
    route("shop.test", "/api", PathType.EXACT),
    route("*.wild.test", "/"),
    route("exact.wild.test", "/only"),
    route("re.test", "/items/[0-9]+", PathType.REGEX),
    route("re.test", "/ITEMS/new", PathType.PREFIX),
    route(None, "/any"),
)
DEFAULT = route(None, "/", PathType.PREFIX)


@pytest.mark.parametrize(
    ("host", "path", "expected"),
    [
        ("shop.test", "/", "shop.test/Prefix"),
        ("shop.test", "/api", "shop.test/apiExact"),  # Exact beats Prefix
        ("shop.test", "/api/", "shop.test/apiPrefix"),
        ("shop.test", "/api/x", "shop.test/apiPrefix"),
        ("shop.test", "/apix", "shop.test/Prefix"),  # element-wise: /api does not cover /apix
        ("shop.test", "/api/v1", "shop.test/api/v1/Prefix"),  # trailing slash ignored
        ("shop.test", "/api/v1/users", "shop.test/api/v1/Prefix"),  # longest wins
        ("a.wild.test", "/x", "*.wild.test/Prefix"),
        ("a.b.wild.test", "/any/x", "None/anyPrefix"),  # one label only: to no-host rules
        ("a.b.wild.test", "/y", "default"),
        ("wild.test", "/", "default"),
        ("exact.wild.test", "/only/x", "exact.wild.test/onlyPrefix"),
        ("exact.wild.test", "/other", None),  # its own server block: 404, no wildcard, no default
        ("re.test", "/items/42", "re.test/items/[0-9]+Regex"),
        ("re.test", "/Items/42/more", "re.test/items/[0-9]+Regex"),  # anchored at start, any case
        ("re.test", "/x/items/42", None),
        ("other.test", "/any/thing", "None/anyPrefix"),
        ("other.test", "/else", "default"),
        ("", "/else", "default"),
    ],
)
def test_match(host: str, path: str, expected: str | None) -> None:
    table = Snapshot(ROUTES, DEFAULT).table
    found = table.match(host, path)
    name = None if found is None else ("default" if found is DEFAULT else found.ingress)
    assert name == expected


def test_without_a_default_route_unmatched_is_none() -> None:
    assert Snapshot(ROUTES).table.match("other.test", "/else") is None
