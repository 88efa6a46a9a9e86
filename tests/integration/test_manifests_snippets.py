"""Snippet annotations through a real proxy: ingress-nginx's e2e cases for a controller whose
administrator disabled snippets (test/e2e/annotations/snippet.go, serversnippet.go), each named
after the Go test it mirrors (those for snippets an administrator allows have no counterpart:
snippets are never run here). There is no nginx here, so every snippet is refused that way: the
Ingress is served without it, and the warnings say so
(docs/ingress-nginx-compat.md, "Snippets")."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from proxy.app.runtime import ProxyServer
from tests.integration.cluster import Pods, rule, web_app, write_manifest
from tests.integration.conftest import StartManifestProxy
from tests.integration.harness import url

REFUSED = (
    "is not supported (refused, there is no nginx here; move what it does into annotations or"
    " the application); ignored"
)


async def serve(
    host: str, tmp_path: Path, manifest_proxy: StartManifestProxy, pods: Pods, **annotations: str
) -> ProxyServer:
    await pods.start(1)
    manifest = tmp_path / "cluster.yaml"
    write_manifest(manifest, web_app(pods.started, rule(host), **annotations))
    return await manifest_proxy(manifest)


async def headers_of(server: ProxyServer, host: str) -> tuple[int, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url(server), headers={"Host": host}) as response,
    ):
        return response.status, dict(response.headers)


def warnings_of(server: ProxyServer) -> tuple[str, ...]:
    return server.publisher.current.warnings


async def test_drops_snippet_more_set_header_in_all_locations_if_disabled_by_admin(
    tmp_path: Path, manifest_proxy: StartManifestProxy, pods: Pods
) -> None:
    host = "noconfigurationsnippet.foo.com"
    server = await serve(
        host, tmp_path, manifest_proxy, pods, configuration_snippet='more_set_headers "Foo1: Bar1";'
    )
    status, headers = await headers_of(server, host)
    assert status == 200
    assert "Foo1" not in headers
    assert (
        "Ingress default/web: nginx.ingress.kubernetes.io/configuration-snippet " + REFUSED
    ) in warnings_of(server)


async def test_drops_server_snippet_if_disabled_by_the_administrator(
    tmp_path: Path, manifest_proxy: StartManifestProxy, pods: Pods
) -> None:
    host = "noserversnippet.foo.com"
    snippet = """
        more_set_headers "Foo: Bar";
        more_set_headers "Xpto: Lalala";"""
    server = await serve(host, tmp_path, manifest_proxy, pods, server_snippet=snippet)
    status, headers = await headers_of(server, host)
    assert status == 200
    assert "Foo" not in headers and "Xpto" not in headers
    assert (
        "Ingress default/web: nginx.ingress.kubernetes.io/server-snippet " + REFUSED
    ) in warnings_of(server)


@pytest.mark.parametrize(
    "annotation", ["auth_snippet", "stream_snippet", "modsecurity_snippet", "configuration_snippet"]
)
@pytest.mark.parametrize("snippet", ["deny all; return 403;", ""])
async def test_an_empty_or_any_snippet_leaves_the_ingress_served(
    annotation: str, snippet: str, tmp_path: Path, manifest_proxy: StartManifestProxy, pods: Pods
) -> None:
    """Hostile and harmless alike: a snippet that would `return 403` or `deny all` in nginx
    changes nothing here, and neither does an empty one."""
    server = await serve("app.test", tmp_path, manifest_proxy, pods, **{annotation: snippet})
    assert (await headers_of(server, "app.test"))[0] == 200
    name = annotation.replace("_", "-")
    assert f"Ingress default/web: nginx.ingress.kubernetes.io/{name} {REFUSED}" in warnings_of(
        server
    )
