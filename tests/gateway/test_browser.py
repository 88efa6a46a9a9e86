"""A real headless Chromium holds a session through an HTTPRoute with sessionPersistence, as it
does through the Ingress in tests/integration/test_browser_demo.py: the same three demo
backends, the walkthrough's host, the Gateway and HTTPRoute of k8s/gateway/ served from files."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from proxy.app.runtime import ProxyServer
from proxy.core.model import Endpoint
from tests.integration.browser import Page
from tests.integration.cluster import NAMESPACE, write_manifest
from tests.integration.conftest import StartManifestProxy
from tests.integration.test_browser_demo import (
    BACKENDS,
    browser_executable,
    cookies,
    demo_backends,
    http_url,
    load,
    page,
)

__all__ = ["browser_executable", "demo_backends", "page"]  # fixtures, used by name
GATEWAY_EXAMPLE = Path(__file__).resolve().parents[2] / "k8s" / "gateway"


def service_with(backends: list[Endpoint]) -> list[dict[str, Any]]:
    """Service sticky-d and one slice per demo backend, as k8s/examples/local-demo.yaml has."""
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "sticky-d", "namespace": NAMESPACE},
            "spec": {"ports": [{"name": "http", "port": 8080, "targetPort": "http"}]},
        }
    ]
    for endpoint in backends:
        objects.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"sticky-d-{endpoint.port}",
                    "namespace": NAMESPACE,
                    "labels": {"kubernetes.io/service-name": "sticky-d"},
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": endpoint.port, "protocol": "TCP"}],
                "endpoints": [{"addresses": [endpoint.address], "conditions": {"ready": True}}],
            }
        )
    return objects


async def start(
    manifest_proxy: StartManifestProxy, backends: list[Endpoint], tmp_path: Path, lifetime: str
) -> ProxyServer:
    """The example's HTTPRoute (cookie `key`), with its lifetime changed to `lifetime`."""
    route = (GATEWAY_EXAMPLE / "httproute.yaml").read_text().replace("60s", lifetime)
    (tmp_path / "httproute.yaml").write_text(route)
    write_manifest(tmp_path / "backends.yaml", service_with(backends))
    return await manifest_proxy(
        GATEWAY_EXAMPLE / "gatewayclass.yaml",
        GATEWAY_EXAMPLE / "gateway.yaml",
        tmp_path / "httproute.yaml",
        tmp_path / "backends.yaml",
    )


async def test_a_browser_keeps_its_pod_through_an_http_route_until_the_cookie_expires(
    manifest_proxy: StartManifestProxy, demo_backends: list[Endpoint], page: Page, tmp_path: Path
) -> None:
    server = await start(manifest_proxy, demo_backends, tmp_path, "3s")
    url = http_url(server)
    first = await load(page, url)
    assert first.uuid in BACKENDS
    (cookie,) = await cookies(page, url)
    assert (cookie["name"], cookie["httpOnly"], cookie["path"]) == ("key", True, "/")
    assert cookie["expires"] == pytest.approx(time.time() + 3, abs=1.5)  # Permanent: Max-Age
    for _ in range(5):
        assert await load(page) == first
    assert [c["value"] for c in await cookies(page, url)] == [cookie["value"]]
    await asyncio.sleep(cookie["expires"] - time.time() + 0.5)
    assert await cookies(page, url) == []  # the browser let it go
    await load(page)
    (fresh,) = await cookies(page, url)
    assert fresh["name"] == "key"  # a new session (its pod may be the same one: 1 in 3)


async def test_cleared_cookies_spread_new_sessions_over_the_pods(
    manifest_proxy: StartManifestProxy, demo_backends: list[Endpoint], page: Page, tmp_path: Path
) -> None:
    server = await start(manifest_proxy, demo_backends, tmp_path, "60s")
    url = http_url(server)
    seen = set()
    for _ in range(15):
        await page.call("Network.clearBrowserCookies")
        seen.add((await load(page, url)).uuid)
        (cookie,) = await cookies(page, url)
        assert cookie["name"] == "key"
    assert len(seen) >= 2  # all 15 on one of 3 pods: odds about 1 in 10^6
