"""Scaling by editing the EndpointSlice file, as a Deployment scaling would change the real one:
sessions move exactly as ingress-nginx's ring and persistent map move them, and no further."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from proxy.app.runtime import ProxyServer
from tests.integration.cluster import (
    Answer,
    Pods,
    get,
    reload_after,
    web_app,
    write_manifest,
)
from tests.integration.conftest import StartManifestProxy
from tests.integration.harness import Upstream

COOKIE = "INGRESSCOOKIE"
SESSIONS = 200


Sessions = list[tuple[str, str]]  # (cookie as `name=value`, the pod its first request reached)


async def new_sessions(server: ProxyServer, count: int) -> Sessions:
    """`count` fresh sessions (persistent mode gives sessions on one pod the same cookie)."""
    sessions = []
    for _ in range(count):
        answer = await get(server)
        assert answer.status == 200 and answer.pod is not None
        sessions.append((f"{COOKIE}={answer.value(COOKIE)}", answer.pod))
    return sessions


async def replay(server: ProxyServer, sessions: Sessions) -> list[Answer]:
    return [await get(server, cookie=cookie) for cookie, _ in sessions]


def names(pods: Sequence[Upstream]) -> set[str]:
    return {pod.name for pod in pods}


async def serving(
    manifest_proxy: StartManifestProxy, manifest: Path, pods: Sequence[Upstream], mode: str
) -> ProxyServer:
    write_manifest(manifest, web_app(pods, affinity="cookie", affinity_mode=mode))
    return await manifest_proxy(manifest)


async def scale(server: ProxyServer, manifest: Path, pods: Sequence[Upstream], mode: str) -> None:
    objects = web_app(pods, affinity="cookie", affinity_mode=mode)
    assert await reload_after(server, lambda: write_manifest(manifest, objects)) == "success"


async def test_persistent_keeps_a_session_on_its_pod_while_10_pods_are_added(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    first = await pods.start(3)
    server = await serving(manifest_proxy, manifest, first, "persistent")
    sessions = await new_sessions(server, 20)
    await scale(server, manifest, [*first, *await pods.start(10)], "persistent")
    after = await replay(server, sessions)
    assert [(a.pod, a.set_cookies) for a in after] == [(pod, ()) for _, pod in sessions]


async def test_no_endpoints_is_503_and_endpoints_coming_back_serve_again(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    (pod,) = await pods.start(1)
    server = await serving(manifest_proxy, manifest, [pod], "balanced")
    await scale(server, manifest, [], "balanced")
    answer = await get(server)
    assert (answer.status, answer.set_cookies) == (503, ())
    await scale(server, manifest, [pod], "balanced")
    assert (await get(server)).status == 200


@pytest.mark.parametrize("mode", ["persistent", "balanced"])
async def test_brand_new_pods_take_over_every_session(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy, mode: str
) -> None:
    """persistent: a new pod and a new cookie; balanced: the ring maps the key to a new pod
    and the cookie stays."""
    server = await serving(manifest_proxy, manifest, await pods.start(3), mode)
    sessions = await new_sessions(server, 10)
    new = await pods.start(3)
    await scale(server, manifest, new, mode)
    for (cookie, _), answer in zip(sessions, await replay(server, sessions), strict=True):
        assert answer.pod in names(new), cookie
        if mode == "balanced":
            assert answer.set_cookies == ()
            continue
        new_cookie = f"{COOKIE}={answer.value(COOKIE)}"
        assert new_cookie != cookie
        again = await get(server, cookie=new_cookie)  # and the new cookie sticks
        assert (again.pod, again.set_cookies) == (answer.pod, ())


async def test_balanced_3_to_6_moves_about_half_and_only_onto_new_pods(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    # 1,000 sessions: the share that moves is the new pods' share of the ring (random with the
    # pods' ports) plus sampling noise; with 200 the 35-65% bound was about 3.5 sigma away.
    count = 1000
    old = await pods.start(3)
    server = await serving(manifest_proxy, manifest, old, "balanced")
    sessions = await new_sessions(server, count)
    assert len(dict(sessions)) == count, "every balanced session has its own key"
    assert {pod for _, pod in sessions} == names(old)
    new = await pods.start(3)
    await scale(server, manifest, [*old, *new], "balanced")
    after = await replay(server, sessions)
    moved = [a.pod for (_, pod), a in zip(sessions, after, strict=True) if a.pod != pod]
    assert set(moved) <= names(new)
    assert all(answer.set_cookies == () for answer in after)
    assert 0.35 <= len(moved) / count <= 0.65, len(moved)


async def test_balanced_6_to_3_moves_only_the_sessions_of_removed_pods(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    everyone = await pods.start(6)
    kept, removed = everyone[:3], everyone[3:]
    server = await serving(manifest_proxy, manifest, everyone, "balanced")
    sessions = await new_sessions(server, SESSIONS)
    await scale(server, manifest, kept, "balanced")
    after = await replay(server, sessions)
    for (cookie, pod), answer in zip(sessions, after, strict=True):
        assert answer.pod == pod if pod in names(kept) else answer.pod in names(kept), cookie
        assert answer.set_cookies == ()
    assert any(pod in names(removed) for _, pod in sessions)


@pytest.mark.parametrize("mode", ["balanced", "persistent"])
async def test_two_proxies_on_the_same_files_route_100_cookies_identically(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy, mode: str
) -> None:
    write_manifest(manifest, web_app(await pods.start(5), affinity="cookie", affinity_mode=mode))
    one, two = await manifest_proxy(manifest), await manifest_proxy(manifest)
    sessions = await new_sessions(one, 50) + await new_sessions(two, 50)
    for server in (one, two):
        assert [answer.pod for answer in await replay(server, sessions)] == [
            pod for _, pod in sessions
        ]
    assert len({pod for _, pod in sessions}) == 5


@pytest.mark.parametrize("mode", ["balanced", "persistent"])
async def test_a_draining_pod_keeps_its_sessions_and_gets_no_new_ones(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy, mode: str
) -> None:
    everyone = await pods.start(3)
    leaving, staying = everyone[0], everyone[1:]
    server = await serving(manifest_proxy, manifest, everyone, mode)
    sessions = await new_sessions(server, 60)
    pinned = {cookie for cookie, pod in sessions if pod == leaving.name}
    assert pinned

    objects = web_app(staying, draining=[leaving], affinity="cookie", affinity_mode=mode)
    assert await reload_after(server, lambda: write_manifest(manifest, objects)) == "success"
    after = await replay(server, sessions)
    assert [(a.pod, a.set_cookies) for a in after] == [(pod, ()) for _, pod in sessions]
    fresh = {pod for _, pod in await new_sessions(server, 60)}
    assert fresh == names(staying)

    # Gone from the slice: its sessions move; persistent ones with a new cookie.
    await scale(server, manifest, staying, mode)
    for cookie in pinned:
        answer = await get(server, cookie=cookie)
        assert answer.pod in names(staying)
        assert bool(answer.set_cookies) is (mode == "persistent")
