"""limit-rate and limit-rate-after through a real proxy (docs/behaviour.md, "Response rate"):
ingress-nginx's e2e case (test/e2e/annotations/limitrate.go), named after the Go test, then what
the pace does to answers of either framing, and that other routes keep their full speed (told by
bytes received, not by times)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from proxy.app.runtime import ProxyServer
from proxy.core.routing import Route
from proxy.core.send_rate import SendRate
from tests.integration.cluster import (
    Pods,
    endpoint_slice,
    ingress,
    path,
    reload_after,
    rule,
    service,
    web_app,
    write_manifest,
)
from tests.integration.conftest import StartManifestProxy
from tests.integration.harness import Upstream, pattern, url
from tests.integration.test_access_control import serve

MIB = 1024 * 1024


def routes(server: ProxyServer) -> list[Route]:
    return list(server.publisher.current.routes)


async def download(server: ProxyServer, target: str, host: str = "app.test") -> bytes:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url(server, target), headers={"Host": host}) as response,
    ):
        assert response.status == 200
        return await response.read()


async def test_check_limit_rate_annotation(
    pod: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """The Go test checks that nginx.conf gets `limit_rate 1k;`, then `limit_rate 90k;` after the
    Ingress changes; here, the route's pace, in bytes a second."""
    server = await serve(tmp_path, manifest_proxy, pods, proxy_buffering="on", limit_rate="1")
    assert [route.send_rate for route in routes(server)] == [SendRate(1024, 0)]
    assert not [line for line in server.publisher.current.warnings if "limit-rate" in line]
    manifest = tmp_path / "cluster.yaml"
    change = web_app(pods.started, proxy_buffering="on", limit_rate="90")
    assert await reload_after(server, lambda: write_manifest(manifest, change)) == "success"
    assert [route.send_rate for route in routes(server)] == [SendRate(90 * 1024, 0)]


async def test_limit_rate_after_then_the_rate(
    pod: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """1 MiB at 256 KB/s after 256 KB at full speed: the other 768 KB take about 3 s (each
    tenth of a second sends its share; the last share goes at about 2.9 s), and every byte
    arrives in order."""
    server = await serve(tmp_path, manifest_proxy, pods, limit_rate="256", limit_rate_after="256")
    loop = asyncio.get_running_loop()
    for framing in ("", "&chunked"):
        started = loop.time()
        body = await download(server, f"/bytes?size={MIB}{framing}")
        elapsed = loop.time() - started
        assert body == pattern(0, MIB)
        assert elapsed >= 2.5, (framing, elapsed)


async def test_other_routes_keep_their_speed(
    pod: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """A throttled download in flight does not slow another Ingress's: the full-speed one is
    whole while the throttled one has not got half of its bytes."""
    manifest = tmp_path / "cluster.yaml"
    write_manifest(
        manifest,
        [
            ingress("slow", rule("slow.test", path("/")), limit_rate="64"),
            ingress("fast", rule("fast.test", path("/"))),
            service(),
            endpoint_slice(pods.started),
        ],
    )
    server = await manifest_proxy(manifest)
    received = 0

    async def throttled() -> None:
        nonlocal received
        async with (
            aiohttp.ClientSession() as session,
            session.get(url(server, f"/bytes?size={MIB}"), headers={"Host": "slow.test"}) as got,
        ):
            async for block in got.content.iter_any():
                received += len(block)

    slow = asyncio.ensure_future(throttled())
    try:
        assert await download(server, f"/bytes?size={4 * MIB}", "fast.test") == pattern(0, 4 * MIB)
        assert received < MIB // 2  # (64 KB/s: 512 KB takes 7 s after the first 64 KB)
    finally:
        slow.cancel()
        await asyncio.gather(slow, return_exceptions=True)


async def test_keep_alive_after_a_throttled_answer(
    pod: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """The connection carries the next request once the throttled answer is done, and a client
    that leaves mid-answer leaves nothing behind that breaks the next one."""
    server = await serve(tmp_path, manifest_proxy, pods, limit_rate="512", limit_rate_after="64")
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            async with session.get(
                url(server, "/bytes?size=200000"), headers={"Host": "app.test"}
            ) as response:
                assert await response.read() == pattern(0, 200000)
        async with session.get(
            url(server, f"/bytes?size={4 * MIB}"), headers={"Host": "app.test"}
        ) as response:
            assert len(await response.content.readexactly(100000)) == 100000
            response.close()  # leave mid-answer
    assert await download(server, "/bytes?size=1000") == pattern(0, 1000)


async def test_limit_rate_garbage_is_ignored(
    pod: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """ingress-nginx takes its default (0: no limit) for a value that is not a number; so does
    limit-rate-after without a rate, which nginx would not use."""
    server = await serve(
        tmp_path, manifest_proxy, pods, limit_rate="fast please", limit_rate_after="10"
    )
    warnings = server.publisher.current.warnings
    assert any("limit-rate: 'fast please' is not a whole number; ignored" in w for w in warnings)
    assert any("limit-rate-after is ignored without" in w for w in warnings)
    assert [route.send_rate for route in routes(server)] == [None]
    assert await download(server, f"/bytes?size={MIB}") == pattern(0, MIB)
