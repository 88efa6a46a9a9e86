"""custom-headers ConfigMaps from the API server: watched like the other objects, so a change or
a deletion reaches the answers; and a cluster whose RBAC does not let the proxy read ConfigMaps
still serves; and only the ConfigMaps Ingresses name rebuild the routes when they change
(docs/behaviour.md, "Custom response headers", "Kubernetes API")."""

from __future__ import annotations

import aiohttp

from proxy.app.runtime import ProxyServer
from proxy.control.sources.kubernetes.resources import CONFIG_MAPS
from proxy.control.translate.custom_headers import named_config_maps
from tests.integration.cluster import ANNOTATION, NAMESPACE, Pods, until, web_app
from tests.integration.harness import url
from tests.integration.kubernetes.conftest import StartKubeProxy, StartReflector
from tests.integration.test_manifests_custom_headers import config_map
from tests.kube_fake.server import FakeApiServer

REF = f"{NAMESPACE}/custom-headers"


async def header(server: ProxyServer) -> tuple[int, str | None]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url(server), headers={"Host": "app.test"}) as response,
    ):
        return response.status, response.headers.get("X-Version")


def headers_served(server: ProxyServer) -> bytes | None:
    """The custom header lines the proxy's route sets now; None: none (or no route yet)."""
    snapshot = server.publisher.current
    routes = snapshot.routes if snapshot is not None else ()
    found = routes[0].response_headers if routes else None
    return found.lines if found is not None else None


async def test_a_config_map_is_watched_through_change_and_deletion(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods
) -> None:
    for obj in (*web_app(await pods.start(1), custom_headers=REF), config_map({"X-Version": "1"})):
        fake.apply(obj)
    server, _ = await kube_proxy()
    await until(server.ready, "ready")
    assert headers_served(server) == b"X-Version: 1\r\n"
    assert await header(server) == (200, "1")
    fake.apply(config_map({"X-Version": "2"}))
    await until(lambda: headers_served(server) == b"X-Version: 2\r\n", "the changed ConfigMap")
    assert await header(server) == (200, "2")
    fake.delete(config_map({}))
    await until(lambda: headers_served(server) is None, "the ConfigMap deleted")
    assert await header(server) == (503, None)


async def test_without_rbac_for_config_maps_the_proxy_still_serves(
    fake: FakeApiServer, kube_proxy: StartKubeProxy, pods: Pods
) -> None:
    for obj in web_app(await pods.start(1)):
        fake.apply(obj)
    fake.forbid("configmaps", "list")
    server, _ = await kube_proxy()
    await until(server.ready, "ready without ConfigMaps")
    assert await header(server) == (200, None)


async def test_only_a_named_config_map_s_change_rebuilds_the_routes(
    fake: FakeApiServer, reflect: StartReflector
) -> None:
    """Clusters hold many ConfigMaps, some rewritten every few seconds: a watch event on one no
    Ingress names is kept, and rebuilds nothing. (Events arrive in order: once the named one's
    change is counted, the other one's was seen before it.)"""
    state = await reflect(CONFIG_MAPS)
    state.reflector.matters = lambda key: key == (NAMESPACE, "custom-headers")
    before = state.changes
    fake.apply(config_map({"X-Version": "1"}, name="controller-status"))
    fake.apply(config_map({"X-Version": "1"}))
    await until(lambda: state.names() == {"controller-status", "custom-headers"}, "both held")
    await until(lambda: state.changes == before + 1, "the named one's change")
    fake.apply(config_map({"X-Version": "2"}, name="controller-status"))
    fake.delete(config_map({}))
    await until(lambda: state.names() == {"controller-status"}, "the named one deleted")
    assert state.changes == before + 2


def test_the_config_maps_ingresses_name() -> None:
    named = named_config_maps(
        [
            {"metadata": {"annotations": {f"{ANNOTATION}custom-headers": " shop/headers "}}},
            {"metadata": {"annotations": {f"{ANNOTATION}custom-headers": "no-namespace"}}},
            {"metadata": {"annotations": {f"{ANNOTATION}other": "a/b"}}},
            {"metadata": {"annotations": {f"{ANNOTATION}auth-proxy-set-headers": "shop/auth"}}},
            {"metadata": {}},
        ]
    )
    assert named == {("shop", "headers"), ("shop", "auth")}
