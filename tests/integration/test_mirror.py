"""mirror-target, mirror-host and mirror-request-body through a real proxy
(docs/behaviour.md, "Mirroring"): ingress-nginx's e2e cases (test/e2e/annotations/mirror.go),
each named after the Go test it mirrors, then bodies copied intact, targets that are slow or
dead (the client's answers do not change), targets that are not URLs, and a target that is the
proxy itself."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from proxy.app.runtime import ProxyServer
from proxy.core.mirror import MIRRORED
from proxy.dataplane.mirror import MAX_IN_FLIGHT, Mirrors
from tests.integration.cluster import Pods, reload_after, until, web_app, write_manifest
from tests.integration.conftest import StartManifestProxy
from tests.integration.harness import (
    Recorded,
    RecordingUpstream,
    Upstream,
    pattern,
    start_recording_upstream,
    url,
)
from tests.integration.test_access_control import serve


@pytest.fixture
async def target() -> AsyncIterator[RecordingUpstream]:
    recorder = await start_recording_upstream()
    yield recorder
    await recorder.stop()


def mirrors(server: ProxyServer) -> Mirrors:
    assert server.ctx is not None
    return server.ctx.mirrors


async def request(
    server: ProxyServer, target: str = "/", method: str = "GET", body: object = None
) -> tuple[int, int, str]:
    """The status, the body size the pod saw, and the pod's name."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, url(server, target), headers={"Host": "app.test"}, data=body
        ) as response,
    ):
        echoed = await response.json()
        return response.status, echoed["body_size"], echoed["name"]


async def copies(recorder: RecordingUpstream, count: int) -> list[Recorded]:
    await until(lambda: len(recorder.requests) >= count, f"{count} copies at the mirror target")
    return recorder.requests


def header(recorded: Recorded, name: bytes) -> bytes | None:
    values = [value for key, value in recorded.headers if key == name]
    return values[0] if values else None


async def test_should_set_mirror_target_to_http_localhost_mirror(
    pod: Upstream,
    pods: Pods,
    target: RecordingUpstream,
    tmp_path: Path,
    manifest_proxy: StartManifestProxy,
) -> None:
    """The Go test checks nginx.conf for `mirror "/_mirror-<uid>"; mirror_request_body on;`;
    here the copy: the target's path with the request's query, Host from the target (without
    its port, as Go's url.Hostname()), the client's headers, none of the proxy's own."""
    server = await serve(
        tmp_path, manifest_proxy, pods, mirror_target=f"http://localhost:{target.port}/mirror"
    )
    assert await request(server, "/foo?a=1") == (200, 0, pod.name)
    (copy,) = await copies(target, 1)
    assert copy.request_line == b"GET /mirror?a=1 HTTP/1.1"
    assert header(copy, b"host") == b"localhost"
    assert header(copy, MIRRORED.lower().encode()) == b"1"
    assert header(copy, b"x-forwarded-proto") is None  # (the proxy's, for the upstream only)
    assert await until(lambda: mirrors(server).sent == 1, "the copy answered") >= 0


async def test_should_set_mirror_target_to_https_test_env_com_request_uri(
    pod: Upstream,
    pods: Pods,
    target: RecordingUpstream,
    tmp_path: Path,
    manifest_proxy: StartManifestProxy,
) -> None:
    """With a variable the target is expanded and used whole, as nginx's proxy_pass with
    variables: `/$request_uri` makes the path start with two slashes, as ingress-nginx's own
    example does (its issue 11432). Plain HTTP here: the target is a local server."""
    server = await serve(
        tmp_path,
        manifest_proxy,
        pods,
        mirror_target=f"http://127.0.0.1:{target.port}/$request_uri",
        mirror_host="test.env.com",
    )
    assert (await request(server, "/foo/bar?x=1&y=2"))[0] == 200
    (copy,) = await copies(target, 1)
    assert copy.request_line == b"GET //foo/bar?x=1&y=2 HTTP/1.1"
    assert header(copy, b"host") == b"test.env.com"


async def test_should_disable_mirror_request_body(
    pod: Upstream,
    pods: Pods,
    target: RecordingUpstream,
    tmp_path: Path,
    manifest_proxy: StartManifestProxy,
) -> None:
    server = await serve(
        tmp_path,
        manifest_proxy,
        pods,
        mirror_target=f"http://127.0.0.1:{target.port}/mirror",
        mirror_request_body="off",
    )
    assert await request(server, "/", "POST", b"secret" * 1000) == (200, 6000, pod.name)
    (copy,) = await copies(target, 1)
    assert copy.request_line == b"POST /mirror HTTP/1.1"
    assert copy.body == b""


async def test_the_body_is_mirrored_intact(
    pod: Upstream,
    pods: Pods,
    target: RecordingUpstream,
    tmp_path: Path,
    manifest_proxy: StartManifestProxy,
) -> None:
    """With a length and chunked: the copy has every byte in order, with a length."""
    server = await serve(
        tmp_path, manifest_proxy, pods, mirror_target=f"http://127.0.0.1:{target.port}/copy"
    )
    body = pattern(0, 300_000)

    async def chunks() -> AsyncIterator[bytes]:
        for offset in range(0, len(body), 7_000):
            yield body[offset : offset + 7_000]

    assert await request(server, "/upload", "PUT", body) == (200, len(body), pod.name)
    assert await request(server, "/upload", "PUT", chunks()) == (200, len(body), pod.name)
    first, second = await copies(target, 2)
    for copy in (first, second):
        assert copy.request_line == b"PUT /copy HTTP/1.1"
        assert copy.body == body
        assert header(copy, b"content-length") == str(len(body)).encode()
        assert header(copy, b"transfer-encoding") is None


async def test_slow_and_dead_targets_do_not_hold_the_client(
    pod: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """A target where nothing listens fails each copy; the client's answers are the pod's. A
    target that never answers holds at most MAX_IN_FLIGHT copies; past that they are dropped
    and counted, and every client answer is the pod's, on one keep-alive connection."""
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # read nothing, answer nothing

    slow = await asyncio.start_server(silent, "127.0.0.1", 0)
    slow_port = slow.sockets[0].getsockname()[1]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]  # (closed again: nothing listens there)
    try:
        server = await serve(
            tmp_path, manifest_proxy, pods, mirror_target=f"http://127.0.0.1:{dead_port}/"
        )
        for _ in range(3):
            assert await request(server) == (200, 0, pod.name)
        await until(lambda: mirrors(server).failed == 3, "three failed copies")
        manifest = tmp_path / "cluster.yaml"
        slowed = web_app(pods.started, mirror_target=f"http://127.0.0.1:{slow_port}/")
        assert await reload_after(server, lambda: write_manifest(manifest, slowed)) == "success"
        count = MAX_IN_FLIGHT + 6
        async with aiohttp.ClientSession() as session:
            for _ in range(count):
                async with session.get(url(server), headers={"Host": "app.test"}) as response:
                    assert (await response.json())["name"] == pod.name
        await until(lambda: len(held) >= MAX_IN_FLIGHT, "the copies at the slow target")
        assert mirrors(server).in_flight == MAX_IN_FLIGHT
        assert mirrors(server).dropped == count - MAX_IN_FLIGHT
        registry = server.metrics.registry
        counted = {
            result: registry.get_sample_value(
                "sticky_proxy_mirror_copies_total", {"result": result}
            )
            for result in ("answered", "failed", "dropped")
        }
        assert counted == {"answered": 0, "failed": 3, "dropped": count - MAX_IN_FLIGHT}
    finally:
        for writer in held:
            writer.close()
        slow.close()
        await slow.wait_closed()


@pytest.mark.parametrize(
    "case",
    [
        ("not-a-url", "is not an http or https URL"),
        ("ftp://127.0.0.1/x", "is not an http or https URL"),
        ("http://$host/x", "invalid url host"),
        ("http://127.0.0.1/$nonsense", "$nonsense is not a variable known here"),
        ("http://127.0.0.1/a b%", "holds characters ingress-nginx refuses"),
    ],
)
async def test_a_target_that_is_not_a_url_mirrors_nothing(
    case: tuple[str, str],
    pod: Upstream,
    pods: Pods,
    tmp_path: Path,
    manifest_proxy: StartManifestProxy,
) -> None:
    value, why = case
    server = await serve(tmp_path, manifest_proxy, pods, mirror_target=value)
    warnings = server.publisher.current.warnings
    assert any("mirror-target" in line and why in line for line in warnings), warnings
    assert [route.mirror for route in server.publisher.current.routes] == [None]
    assert await request(server) == (200, 0, pod.name)
    assert mirrors(server).sent + mirrors(server).failed + mirrors(server).dropped == 0


async def test_a_target_on_the_proxy_itself_gets_one_copy(
    pod: Upstream, pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """ingress-nginx would mirror the copy again when it comes back, and that copy's copy, for
    ever; here a copy carries a mark and is not mirrored again: the pod sees the request and
    one copy of it."""
    server = await serve(tmp_path, manifest_proxy, pods)
    assert server.address is not None
    manifest = tmp_path / "cluster.yaml"
    looped = web_app(
        pods.started, mirror_target=f"http://{server.address}/looped", mirror_host="app.test"
    )
    assert await reload_after(server, lambda: write_manifest(manifest, looped)) == "success"
    before = pod.requests
    assert await request(server, "/first") == (200, 0, pod.name)
    await until(lambda: mirrors(server).sent == 1, "the copy answered")
    assert mirrors(server).in_flight == 0  # (none made when the copy came back)
    assert pod.requests - before == 2
