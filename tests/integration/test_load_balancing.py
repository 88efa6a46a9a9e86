"""ingress-nginx's own e2e expectations for upstream-hash-by (test/e2e/annotations/
upstreamhashby.go) and load-balance (test/e2e/loadbalance/*.go), each test named after the Go
test it mirrors, run from manifest files through a real proxy to real upstreams."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import aiohttp

from proxy.app.runtime import ProxyServer
from proxy.core.balancing import LoadBalance
from proxy.core.ring import HashRing
from tests.integration.cluster import Pods, by_endpoint, get, web_app, write_manifest
from tests.integration.conftest import StartManifestProxy, StartProxy
from tests.integration.harness import start_upstream, url


async def _pods_reached(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy, **annotations: str
) -> Counter[str | None]:
    """upstreamhashby.go startIngress: 6 pods, 100 requests for `/`, who answered."""
    write_manifest(manifest, web_app(await pods.start(6), **annotations))
    server = await manifest_proxy(manifest)
    answers = [await get(server, "/") for _ in range(100)]
    assert all(answer.status == 200 for answer in answers)
    return Counter(answer.pod for answer in answers)


async def test_should_connect_to_the_same_pod(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    reached = await _pods_reached(pods, manifest, manifest_proxy, upstream_hash_by="$request_uri")
    assert len(reached) == 1


async def test_should_connect_to_the_same_subset_of_pods(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    reached = await _pods_reached(
        pods,
        manifest,
        manifest_proxy,
        upstream_hash_by="$request_uri",
        upstream_hash_by_subset="true",
        upstream_hash_by_subset_size="3",
    )
    assert len(reached) == 3  # 100 draws miss one of 3 members with p < 1e-17


async def test_hash_by_spreads_keys_over_every_pod(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    """Many keys, each always on its own pod, together on all pods in fair shares (a ring of
    160 points per pod keeps every share within about a third of the mean)."""
    write_manifest(manifest, web_app(await pods.start(6), upstream_hash_by="$arg_user"))
    server = await manifest_proxy(manifest)
    first = {}
    for user in range(600):
        first[user] = (await get(server, f"/?user={user}")).pod
    shares = Counter(first.values())
    assert len(shares) == 6
    assert all(50 <= count <= 150 for count in shares.values()), shares
    for user in range(0, 600, 60):
        assert (await get(server, f"/?user={user}&other=1")).pod == first[user]


async def _answered_by(server: ProxyServer, target: str, headers: dict[str, str]) -> str | None:
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session,
        session.get(url(server, target), headers={"Host": "app.test", **headers}) as response,
    ):
        if response.status != 200:
            return None
        name: str = (await response.json())["name"]
        return name


async def test_a_header_and_cookie_key_reaches_the_pod_its_text_hashes_to(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    """The key the proxy builds from a real request is the text nginx would build, and it lands
    where the ring (the one tests/fixtures/chash_vectors.json checks) puts that text."""
    started = await pods.start(4)
    write_manifest(manifest, web_app(started, upstream_hash_by="$http_x_user-${cookie_sid}"))
    server = await manifest_proxy(manifest)
    ring = HashRing(pod.endpoint.node for pod in started)
    pod_of = by_endpoint(started)
    for user in range(40):
        headers = {"X-User": f"u{user}", "Cookie": f"theme=dark; sid=s{user * 3}"}
        expected = pod_of[ring.lookup(f"u{user}-s{user * 3}")].name
        assert await _answered_by(server, f"/any/{user}", headers) == expected


async def test_a_hash_by_retry_goes_back_to_the_key_s_pod(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    """As chash.lua: every try of a key goes to its pod, so a key whose pod is down fails (after
    proxy-next-upstream-tries tries) while the other keys are served."""
    started = await pods.start(3)
    write_manifest(manifest, web_app(started, upstream_hash_by="$arg_k"))
    server = await manifest_proxy(manifest)
    ring = HashRing(pod.endpoint.node for pod in started)
    pod_of = by_endpoint(started)
    down = started[0]
    await down.stop()
    owners = {key: pod_of[ring.lookup(str(key))] for key in range(30)}
    assert down in owners.values()  # 30 keys all miss one of 3 pods with p < 1e-5
    for key, owner in owners.items():
        answered = await _answered_by(server, f"/?k={key}", {})
        assert answered == (None if owner is down else owner.name), key


async def test_should_evenly_distribute_requests_with_round_robin_default_algorithm(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    """round_robin.go: one worker, 3 pods, 600 requests: exactly 200 each."""
    write_manifest(manifest, web_app(await pods.start(3)))
    server = await manifest_proxy(manifest)
    reached = Counter([(await get(server, "/")).pod for _ in range(600)])
    assert sorted(reached.values()) == [200, 200, 200], reached


async def test_does_not_fail_requests(
    pods: Pods, manifest: Path, manifest_proxy: StartManifestProxy
) -> None:
    """ewma.go: 3 pods, load-balance ewma, 30 requests, every one answered by a pod."""
    write_manifest(manifest, web_app(await pods.start(3), load_balance="ewma"))
    server = await manifest_proxy(manifest)
    answers = [await get(server, "/") for _ in range(30)]
    assert [answer.status for answer in answers] == [200] * 30
    assert sum(Counter(answer.pod for answer in answers).values()) == 30
    assert None not in {answer.pod for answer in answers}


async def test_should_apply_the_configmap_load_balance_setting(proxy: StartProxy) -> None:
    """configmap.go: the global load-balance (here --load-balance) is ewma. Seen in what EWMA
    does: once a pod answered slowly, the quick ones win every two-way draw against it, where
    round robin would send it a third of the requests."""
    slow, *quick = [await start_upstream(f"pod-{i}") for i in range(3)]
    slow.slow_seconds = 0.3
    try:
        server = await proxy(
            [slow.endpoint, *(pod.endpoint for pod in quick)],
            None,
            load_balance=LoadBalance.EWMA,
        )
        answers = [await get(server, "/slow") for _ in range(30)]
        assert all(answer.status == 200 for answer in answers)
        assert slow.requests <= 2, slow.requests  # before its first answer it scores 0 too
        assert sum(pod.requests for pod in quick) >= 28
    finally:
        for pod in (slow, *quick):
            await pod.stop()
