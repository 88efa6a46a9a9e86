"""Rate and connection limits through a real proxy from manifest files: ingress-nginx's e2e
cases (test/e2e/annotations/limitconnections.go, limitrate.go), each named after the Go test it
mirrors, and clients that try to get past a limit
(docs/behaviour.md, "Rate and connection limits"). Rates are per minute, so no test depends on
how fast the machine is: one request per minute takes 62.5 s to drain from a bucket."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from proxy.app.runtime import ProxyServer
from tests.integration.cluster import Pods, ingress, path, rule, until, web_app, write_manifest
from tests.integration.conftest import StartManifestProxy
from tests.integration.harness import Upstream, url
from tests.integration.test_access_control import FORWARDED_HEADERS, serve


async def status(
    server: ProxyServer, target: str = "/", client: str = "127.0.0.1", **headers: str
) -> int:
    sent = {"Host": "app.test", **{name.replace("_", "-"): v for name, v in headers.items()}}
    connector = aiohttp.TCPConnector(local_addr=(client, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(url(server, target), headers=sent) as response,
    ):
        await response.read()
        return response.status


async def statuses(server: ProxyServer, count: int, **headers: str) -> list[int]:
    return [await status(server, **headers) for _ in range(count)]


async def test_should_limit_connections(
    pod: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """20 requests at once from one address, 8 allowed: 8 answered 200, 12 refused 503. The Go
    test holds them with a slow echo for 10 s; here the pod holds its answers until released."""
    server = await serve(tmp_path, manifest_proxy, pods, limit_connections="8")
    tasks = [asyncio.ensure_future(status(server, "/stream")) for _ in range(20)]
    await until(lambda: sum(task.done() for task in tasks) == 12, "12 requests refused")
    await until(lambda: pods.started[0].requests == 8, "the other 8 at the pod, held")
    assert sum(task.done() for task in tasks) == 12
    pods.started[0].release.set()
    results = await asyncio.gather(*tasks)
    assert results.count(200) == 8
    assert results.count(503) == 12


async def test_a_request_stops_counting_when_its_client_goes_away(
    pod: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """The hostile case for limit-connections: slots held by clients that hang up are given
    back, so the limit cannot be used up for good."""
    server = await serve(tmp_path, manifest_proxy, pods, limit_connections="2")
    held = [asyncio.ensure_future(status(server, "/stream")) for _ in range(2)]
    await until(lambda: pods.started[0].requests == 2, "two held requests at the pod")
    assert await status(server) == 503
    for task in held:
        task.cancel()  # the client closes its connection mid-answer
    await asyncio.gather(*held, return_exceptions=True)
    await until(lambda: server.ctx is not None and server.ctx.limiter.tracked() == 0, "release")
    assert await statuses(server, 3) == [200, 200, 200]  # one at a time: never over 2


async def test_limit_rpm_refuses_past_the_burst(
    pod: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """limit-rpm 1 with a burst multiplier of 2: a new client has the request and a burst of
    2, so three pass at once and the rest of the minute is refused, 503 by default."""
    server = await serve(tmp_path, manifest_proxy, pods, limit_rpm="1", limit_burst_multiplier="2")
    assert await statuses(server, 5) == [200, 200, 200, 503, 503]
    assert pods.started[0].requests == 3  # refused requests never reach the pod


async def test_limit_req_status_code_sets_the_refusal_status(
    pod: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    manifest = tmp_path / "cluster.yaml"
    write_manifest(manifest, web_app(pods.started, limit_rpm="1", limit_burst_multiplier="1"))
    server = await manifest_proxy(manifest, limit_req_status=429)
    assert await statuses(server, 3) == [200, 200, 429]


async def test_clients_are_limited_by_their_forwarded_address(
    pod: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """With use-forwarded-headers the client is the address the trusted proxy names: each has
    its own bucket, and limit-allowlist exempts by that address too."""
    server = await serve(
        tmp_path,
        manifest_proxy,
        pods,
        FORWARDED_HEADERS,
        limit_rpm="1",
        limit_burst_multiplier="1",
        limit_allowlist="10.0.0.0/8",
    )
    assert await statuses(server, 3, X_Forwarded_For="198.51.100.1") == [200, 200, 503]
    assert await statuses(server, 3, X_Forwarded_For="198.51.100.2") == [200, 200, 503]
    assert await statuses(server, 5, X_Forwarded_For="10.1.2.3") == [200] * 5


async def test_forwarded_headers_do_not_move_the_client_without_use_forwarded_headers(
    pod: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """The hostile case: a client rotating X-Forwarded-For, or naming an allowlisted address,
    is still the one address it connects from."""
    server = await serve(
        tmp_path,
        manifest_proxy,
        pods,
        limit_rpm="1",
        limit_burst_multiplier="1",
        limit_whitelist="10.0.0.0/8",
    )
    results = [await status(server, X_Forwarded_For=f"198.51.100.{n}") for n in range(3)]
    assert results == [200, 200, 503]
    assert await status(server, X_Forwarded_For="10.1.2.3", X_Real_IP="10.1.2.3") == 503
    assert await status(server, client="127.0.0.9") == 200  # another address: its own bucket


async def test_the_paths_of_one_ingress_share_its_limits(
    pod: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """ingress-nginx names the zones after the Ingress: a client's requests to all its paths
    count together; another Ingress's limits are its own."""
    manifest = tmp_path / "cluster.yaml"
    limited = {"limit_rpm": "1", "limit_burst_multiplier": "1"}
    objects = web_app(pods.started, rule("app.test", path("/a"), path("/b")), **limited)
    objects.append(ingress("other", rule("app.test", path("/c")), **limited))
    write_manifest(manifest, objects)
    server = await manifest_proxy(manifest)
    assert [await status(server, target) for target in ("/a", "/b", "/a", "/b")] == [
        200,
        200,
        503,
        503,
    ]
    assert [await status(server, "/c") for _ in range(3)] == [200, 200, 503]


async def test_an_invalid_limit_answers_503_instead_of_serving_without_it(
    pod: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server = await serve(tmp_path, manifest_proxy, pods, limit_rps="lots")
    assert await statuses(server, 2) == [503, 503]
    assert pods.started[0].requests == 0


async def test_a_websocket_counts_until_it_closes(
    pod: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """nginx's limit_conn counts an upgraded request until the connection ends."""
    server = await serve(tmp_path, manifest_proxy, pods, limit_connections="1")
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url(server, "/ws"), headers={"Host": "app.test"}) as ws,
    ):
        await ws.send_str("hello")
        assert (await ws.receive_str()) == "pod-2:hello"
        assert await status(server) == 503
    await until(lambda: server.ctx is not None and server.ctx.limiter.tracked() == 0, "release")
    assert await status(server) == 200
