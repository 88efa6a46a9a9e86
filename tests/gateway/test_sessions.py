"""GEP-1619 session persistence through a real proxy to real pods: the seed's client loop
through an HTTPRoute, replicas that agree, lifetimes, forged tokens, header sessions, weight-0
backends and endpoints that go away (docs/gateway-api.md, "Session persistence")."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from proxy.app.runtime import ProxyServer
from tests.integration.cluster import (
    NAMESPACE,
    Pods,
    endpoint_slice,
    reload_after,
    service,
    write_manifest,
)
from tests.integration.conftest import StartManifestProxy
from tests.integration.harness import Upstream, connect, url

Obj = dict[str, Any]
KEY = b"k" * 32  # what --session-key-file gives every replica
GATEWAY = [
    {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": "sticky-proxy"},
        "spec": {"controllerName": "sticky-proxy.io/gateway-controller"},
    },
    {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {
            "gatewayClassName": "sticky-proxy",
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
        },
    },
]


def http_route(persistence: Obj, *backends: tuple[str, int]) -> Obj:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "app", "namespace": NAMESPACE},
        "spec": {
            "parentRefs": [{"name": "web"}],
            "hostnames": ["app.test"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [
                        {"name": name, "port": 80, "weight": weight} for name, weight in backends
                    ],
                    "sessionPersistence": persistence,
                }
            ],
        },
    }


def world(
    persistence: Obj, groups: dict[str, list[Upstream]], weights: dict[str, int]
) -> list[Obj]:
    objects = [*GATEWAY, http_route(persistence, *weights.items())]
    for name, pods in groups.items():
        objects += [service(name), endpoint_slice(pods, service_name=name)]
    return objects


async def get(
    server: ProxyServer, headers: dict[str, str] | None = None
) -> tuple[str, aiohttp.ClientResponse]:
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session,
        session.get(url(server, "/"), headers={"Host": "app.test", **(headers or {})}) as answer,
    ):
        body = await answer.json()
        return body["name"], answer


def token_of(answer: aiohttp.ClientResponse, name: str) -> str:
    (cookie,) = [c for c in answer.headers.getall("Set-Cookie", ()) if c.startswith(name + "=")]
    return cookie.split(";")[0].removeprefix(name + "=")


async def start(
    manifest_proxy: StartManifestProxy, tmp_path: Path, objects: list[Obj], name: str = "world"
) -> tuple[ProxyServer, Path]:
    manifest = tmp_path / f"{name}.yaml"
    write_manifest(manifest, objects)
    return await manifest_proxy(manifest, session_key=KEY), manifest


async def test_the_seed_client_loop_keeps_one_pod_through_an_http_route(
    pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    five = await pods.start(5)
    server, _ = await start(
        manifest_proxy, tmp_path, world({"sessionName": "SID"}, {"web": five}, {"web": 1})
    )
    first, answer = await get(server)
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("SID=") and "; Path=/; HttpOnly" in cookie
    assert "Max-Age" not in cookie and "Expires" not in cookie  # a Session cookie
    token = token_of(answer, "SID")
    assert "127.0.0" not in token  # names the pod without its address
    for _ in range(20):
        pod, again = await get(server, {"Cookie": f"SID={token}"})
        assert pod == first
        assert "Set-Cookie" not in again.headers
    assert len({(await get(server))[0] for _ in range(30)}) > 1  # new sessions spread
    registry = server.metrics.registry
    outcomes = {
        outcome: registry.get_sample_value(
            "sticky_proxy_affinity_decisions_total", {"outcome": outcome}
        )
        for outcome in ("new", "sticky")
    }
    assert outcomes == {"new": 31.0, "sticky": 20.0}


async def test_replicas_agree_on_tokens(
    pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    three = await pods.start(3)
    objects = world({"sessionName": "SID"}, {"web": three}, {"web": 1})
    one, _ = await start(manifest_proxy, tmp_path, objects, "one")
    two, _ = await start(manifest_proxy, tmp_path, objects, "two")
    for _ in range(5):
        pod, answer = await get(one)
        token = token_of(answer, "SID")
        assert (await get(two, {"Cookie": f"SID={token}"}))[0] == pod


async def test_generated_names_are_the_same_everywhere(
    pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    two = await pods.start(2)
    objects = world({}, {"web": two}, {"web": 1})
    one, _ = await start(manifest_proxy, tmp_path, objects, "one")
    other, _ = await start(manifest_proxy, tmp_path, objects, "two")
    names = set()
    for server in (one, other):
        _, answer = await get(server)
        names.add(answer.headers["Set-Cookie"].split("=")[0])
    (name,) = names
    assert name.startswith("sp-")


async def test_permanent_cookies_carry_the_absolute_timeout(
    pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    (pod,) = await pods.start(1)
    persistence = {
        "sessionName": "SID",
        "absoluteTimeout": "1h",
        "cookieConfig": {"lifetimeType": "Permanent"},
    }
    server, _ = await start(
        manifest_proxy, tmp_path, world(persistence, {"web": [pod]}, {"web": 1})
    )
    _, answer = await get(server)
    cookie = answer.headers["Set-Cookie"]
    assert "; Expires=" in cookie and "; Max-Age=3600;" in cookie
    assert "." not in token_of(answer, "SID")  # the browser enforces it: no signed time


async def test_session_cookies_with_a_timeout_are_enforced_and_cannot_be_forged(
    pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    three = await pods.start(3)
    persistence = {"sessionName": "SID", "absoluteTimeout": "1s"}
    server, _ = await start(
        manifest_proxy, tmp_path, world(persistence, {"web": three}, {"web": 1})
    )
    pod, answer = await get(server)
    token = token_of(answer, "SID")
    key, issued, mac = token.split(".")
    assert (await get(server, {"Cookie": f"SID={token}"}))[0] == pod
    forged = f"{key}.{int(issued, 16) + 3600:x}.{mac}"  # a later issue time, same signature
    _, again = await get(server, {"Cookie": f"SID={forged}"})
    assert token_of(again, "SID") != forged  # a new session, with a new cookie
    _, again = await get(server, {"Cookie": f"SID={key}"})  # the bare key: unsigned
    assert token_of(again, "SID")
    await asyncio.sleep(1.1)
    _, expired = await get(server, {"Cookie": f"SID={token}"})
    assert token_of(expired, "SID") != token


async def test_header_sessions(
    pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    five = await pods.start(5)
    persistence = {"sessionName": "X-Session", "type": "Header"}
    server, _ = await start(manifest_proxy, tmp_path, world(persistence, {"web": five}, {"web": 1}))
    first, answer = await get(server)
    token = answer.headers["X-Session"]
    assert "Set-Cookie" not in answer.headers
    for _ in range(10):
        pod, again = await get(server, {"X-Session": token})
        assert pod == first and "X-Session" not in again.headers


async def test_weight_zero_backends_keep_their_sessions(
    pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    old, new = await pods.start(1), await pods.start(1)
    groups = {"old": old, "new": new}
    persistence = {"sessionName": "SID"}
    server, manifest = await start(
        manifest_proxy, tmp_path, world(persistence, groups, {"old": 1, "new": 0})
    )
    pod, answer = await get(server)
    assert pod == old[0].name
    token = token_of(answer, "SID")
    shifted = world(persistence, groups, {"old": 0, "new": 1})
    assert await reload_after(server, lambda: write_manifest(manifest, shifted)) == "success"
    assert (await get(server, {"Cookie": f"SID={token}"}))[0] == old[0].name
    assert {(await get(server))[0] for _ in range(10)} == {new[0].name}  # new ones follow weights


SID = {"sessionName": "SID"}


async def one_session_of_two_pods(
    pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> tuple[ProxyServer, Path, Upstream, Upstream, str]:
    """Two pods behind the route and a session on one: (server, manifest, the session's pod,
    the other pod, the session's token)."""
    two = await pods.start(2)
    server, manifest = await start(manifest_proxy, tmp_path, world(SID, {"web": two}, {"web": 1}))
    name, answer = await get(server)
    (pinned,) = [p for p in two if p.name == name]
    (other,) = [p for p in two if p.name != name]
    return server, manifest, pinned, other, token_of(answer, "SID")


async def test_a_removed_endpoint_starts_a_new_session(
    pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server, manifest, _, other, token = await one_session_of_two_pods(
        pods, tmp_path, manifest_proxy
    )
    smaller = world(SID, {"web": [other]}, {"web": 1})
    assert await reload_after(server, lambda: write_manifest(manifest, smaller)) == "success"
    moved, again = await get(server, {"Cookie": f"SID={token}"})
    assert moved == other.name
    assert token_of(again, "SID") != token


async def test_a_draining_endpoint_keeps_its_sessions(
    pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    server, manifest, pinned, other, token = await one_session_of_two_pods(
        pods, tmp_path, manifest_proxy
    )
    objects = [*GATEWAY, http_route(SID, ("web", 1)), service("web"),
               endpoint_slice([other], service_name="web", draining=[pinned])]  # fmt: skip
    assert await reload_after(server, lambda: write_manifest(manifest, objects)) == "success"
    kept, again = await get(server, {"Cookie": f"SID={token}"})
    assert kept == pinned.name and "Set-Cookie" not in again.headers
    assert {(await get(server))[0] for _ in range(10)} == {other.name}


async def test_a_websocket_upgrade_keeps_its_headers_on_a_session_route(
    pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    """A new session's 101 carries the token and the Connection and Upgrade headers alike."""
    (pod,) = await pods.start(1)
    persistence = {"sessionName": "X-Session", "type": "Header"}
    server, _ = await start(
        manifest_proxy, tmp_path, world(persistence, {"web": [pod]}, {"web": 1})
    )
    reader, writer = await connect(server)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    try:
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
    lines = head.decode().lower().split("\r\n")
    assert lines[0].startswith("http/1.1 101 ")
    assert "connection: upgrade" in lines
    assert "upgrade: websocket" in lines
    assert any(line.startswith("x-session: ") for line in lines)  # the new session's token
