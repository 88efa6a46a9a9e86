"""ingress-nginx's custom-headers e2e cases (test/e2e/annotations/customheaders.go), each named
after the Go test it mirrors, from a manifest file through a real proxy to a real upstream; then
ConfigMaps and upstreams that try to break the headers or the framing
(docs/behaviour.md, "Custom response headers")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDictProxy

from proxy.app.runtime import ProxyServer
from tests.integration.cluster import (
    NAMESPACE,
    Obj,
    endpoint_slice,
    ingress,
    reload_after,
    rule,
    service,
    write_manifest,
)
from tests.integration.conftest import StartManifestProxy
from tests.integration.harness import Upstream, start_app, url

HOST = "custom-headers"  # the Go tests' customHeaderHost
REF = f"{NAMESPACE}/custom-headers"


@pytest.fixture
async def pod() -> AsyncIterator[Upstream]:
    """An upstream that answers with a `My-Custom-Header` and an `X-Own` of its own."""

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {"My-Custom-Header": "from the pod", "X-Own": "kept"}
        return web.Response(text=f"host={request.host} body={len(body)}", headers=headers)

    started = await start_app("pod", handler, host="127.0.0.30")
    yield started
    await started.stop()


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return tmp_path / "cluster.yaml"


def config_map(
    data: dict[str, str], name: str = "custom-headers", namespace: str = NAMESPACE
) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def world(pod: Upstream | None, *extra: Obj, **annotations: str) -> list[Obj]:
    """Ingress `custom-headers` (its host, `/` to `web`) and `extra` objects; `pod` behind web
    (None: a Service without endpoints)."""
    return [
        ingress(HOST, rule(HOST), **annotations),
        service("web"),
        endpoint_slice([pod] if pod is not None else []),
        *extra,
    ]


async def serve(
    manifest: Path, manifest_proxy: StartManifestProxy, objects: list[Obj]
) -> ProxyServer:
    write_manifest(manifest, objects)
    return await manifest_proxy(manifest)


async def ask(
    server: ProxyServer, method: str = "GET", data: bytes | None = None
) -> tuple[int, CIMultiDictProxy[str], str]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url(server), headers={"Host": HOST}, data=data) as response,
    ):
        return response.status, response.headers, await response.text()


def warned(server: ProxyServer, fragment: str) -> bool:
    return any(fragment in line for line in server.publisher.current.warnings)


# --- test/e2e/annotations/customheaders.go ------------------------------------------------------


async def test_should_return_status_code_200_when_no_custom_headers_is_configured(
    manifest: Path, manifest_proxy: StartManifestProxy, pod: Upstream
) -> None:
    server = await serve(manifest, manifest_proxy, world(pod))
    status, headers, body = await ask(server)
    assert status == 200
    assert f"host={HOST}" in body
    assert headers.getall("My-Custom-Header") == ["from the pod"]


async def test_should_return_status_code_503_when_custom_headers_is_configured_with_an_invalid_secret(  # noqa: E501
    manifest: Path, manifest_proxy: StartManifestProxy, pod: Upstream
) -> None:
    """The ConfigMap does not exist."""
    server = await serve(manifest, manifest_proxy, world(pod, custom_headers=REF))
    status, _, body = await ask(server)
    assert (status, body) == (503, "503 Service Unavailable\n")
    assert warned(server, f"custom-headers ConfigMap {REF} not found; its paths answer 503")


async def test_should_set_more_set_headers_my_custom_header_42_when_custom_headers_are_set(
    manifest: Path, manifest_proxy: StartManifestProxy, pod: Upstream
) -> None:
    headers = config_map({"My-Custom-Header": "42", "My-Custom-Header-Dollar": "$remote_addr"})
    server = await serve(manifest, manifest_proxy, world(pod, headers, custom_headers=REF))
    status, seen, _ = await ask(server)
    assert status == 200
    assert seen.getall("My-Custom-Header") == ["42"]  # the pod's own is replaced, not repeated
    assert seen.getall("My-Custom-Header-Dollar") == ["$remote_addr"]  # as text, not a variable
    assert seen["X-Own"] == "kept"


# --- hostile cases and the rest of docs/behaviour.md, "Custom response headers" -----------------


async def test_a_header_the_proxy_writes_is_dropped_and_the_framing_holds(
    manifest: Path, manifest_proxy: StartManifestProxy, pod: Upstream
) -> None:
    """A ConfigMap that would lie about the length, end the connection or set a cookie: those
    entries are dropped with a warning, the rest apply, and a keep-alive client reads two
    answers whole on one connection."""
    data = {
        "Content-Length": "1",
        "Transfer-Encoding": "chunked",
        "connection": "close",
        "Set-Cookie": "INGRESSCOOKIE=forged",
        "X-Frame-Options": "DENY",
    }
    objects = world(pod, config_map(data), custom_headers=REF)
    server = await serve(manifest, manifest_proxy, objects)
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            async with session.post(url(server), headers={"Host": HOST}, data=b"x" * 10) as answer:
                assert answer.status == 200
                assert await answer.text() == f"host={HOST} body=10"
                assert answer.headers["X-Frame-Options"] == "DENY"
                assert "Set-Cookie" not in answer.headers
                assert answer.headers.get("Connection", "keep-alive") == "keep-alive"
    for name in ("Content-Length", "Transfer-Encoding", "connection", "Set-Cookie"):
        assert warned(server, f"custom-headers ConfigMap {REF}: {name} is the proxy's own")


@pytest.mark.parametrize(
    "data",
    [
        {"X-Fine": "1", "X-Split": "42\r\nX-Injected: yes"},
        {"X-Fine": "1", "X-Bad Name": "1"},
        {"X-Fine": "1", "X-Empty": ""},
        {"X-Fine": "1", "X-Unicode": "caf\u00e9"},
    ],
)
async def test_an_invalid_entry_denies_the_paths_and_injects_nothing(
    data: dict[str, str], manifest: Path, manifest_proxy: StartManifestProxy, pod: Upstream
) -> None:
    objects = world(pod, config_map(data), custom_headers=REF)
    server = await serve(manifest, manifest_proxy, objects)
    status, headers, _ = await ask(server)
    assert status == 503
    assert "X-Injected" not in headers and "X-Fine" not in headers
    assert warned(server, f"custom-headers ConfigMap {REF}: ")


async def test_a_config_map_of_another_namespace_is_refused(
    manifest: Path, manifest_proxy: StartManifestProxy, pod: Upstream
) -> None:
    other = config_map({"X-Fine": "1"}, namespace="kube-system")
    server = await serve(
        manifest, manifest_proxy, world(pod, other, custom_headers="kube-system/custom-headers")
    )
    assert (await ask(server))[0] == 503
    assert warned(server, "ConfigMaps of other namespaces are not allowed")


async def test_the_proxy_s_own_answers_carry_the_headers(
    manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    """more_set_headers applies to nginx's own answers too: a Service without endpoints."""
    objects = world(None, config_map({"X-Frame-Options": "DENY"}), custom_headers=REF)
    server = await serve(manifest, manifest_proxy, objects)
    status, headers, _ = await ask(server)
    assert (status, headers.getall("X-Frame-Options")) == (503, ["DENY"])


async def test_a_changed_config_map_changes_the_headers(
    manifest: Path, manifest_proxy: StartManifestProxy, pod: Upstream
) -> None:
    objects = world(pod, config_map({"X-Version": "1"}), custom_headers=REF)
    server = await serve(manifest, manifest_proxy, objects)
    assert (await ask(server))[1]["X-Version"] == "1"
    objects = world(pod, config_map({"X-Version": "2"}), custom_headers=REF)
    assert await reload_after(server, lambda: write_manifest(manifest, objects)) == "success"
    assert (await ask(server))[1]["X-Version"] == "2"
    objects = world(pod, custom_headers=REF)  # the ConfigMap is gone
    assert await reload_after(server, lambda: write_manifest(manifest, objects)) == "success"
    assert (await ask(server))[0] == 503


async def test_a_config_map_entry_overrides_a_cors_header_of_its_name(
    manifest: Path, manifest_proxy: StartManifestProxy, pod: Upstream
) -> None:
    """nginx.tmpl sets the CORS headers before the custom ones, both with more_set_headers:
    the ConfigMap's value is the one sent, once, on upstream answers as on the proxy's own."""
    objects = world(
        pod,
        config_map({"Access-Control-Allow-Origin": "https://shop.test"}),
        custom_headers=REF,
        enable_cors="true",
    )
    server = await serve(manifest, manifest_proxy, objects)
    for method in ("GET", "OPTIONS"):
        status, headers, _ = await ask(server, method)
        assert status == (200 if method == "GET" else 204)
        assert headers.getall("Access-Control-Allow-Origin") == ["https://shop.test"]
        assert headers.getall("Access-Control-Max-Age") == ["1728000"]
