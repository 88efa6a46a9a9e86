"""k8s/canary/ next to the walkthrough's sticky Ingress (k8s/examples/ingress.yaml), through a
real proxy to real pods: the issue's "behaves as it would under ingress-nginx, sessions
included" (docs/ingress-nginx-compat.md, "Canaries")."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import aiohttp

from proxy.app.runtime import ProxyServer
from proxy.core.cookies import backend_key
from tests.integration.cluster import (
    Pods,
    endpoint_slice,
    get,
    reload_after,
    service,
    write_manifest,
)
from tests.integration.conftest import StartManifestProxy
from tests.integration.harness import url

K8S = Path(__file__).resolve().parents[2] / "k8s"
HOST = "sticky.info"


async def visit(server: ProxyServer, visitors: int) -> list[tuple[str, str]]:
    """(pod, cookie `key`) of each of `visitors` first requests, no cookie sent."""
    seen = []
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        for _ in range(visitors):
            async with session.get(url(server), headers={"Host": HOST}) as response:
                assert response.status == 200
                name = (await response.json())["name"]
                cookie = response.cookies["key"]
                assert cookie["max-age"] == "60"  # the walkthrough's, on either side
                seen.append((name, cookie.value))
    return seen


async def test_the_canary_example_keeps_every_session_on_its_side(
    pods: Pods, manifest_proxy: StartManifestProxy, tmp_path: Path
) -> None:
    main_pods = await pods.start(3)
    (canary_pod,) = await pods.start(1)
    canary_text = (K8S / "canary" / "ingress.yaml").read_text()
    canary_file = tmp_path / "canary.yaml"
    canary_file.write_text(canary_text)
    write_manifest(
        tmp_path / "pods.yaml",
        [
            service("sticky-d", port=8080),
            service("sticky-canary", port=8080),
            endpoint_slice(main_pods, service_name="sticky-d"),
            endpoint_slice([canary_pod], service_name="sticky-canary"),
        ],
    )
    server = await manifest_proxy(
        K8S / "examples" / "ingress.yaml", canary_file, tmp_path / "pods.yaml"
    )

    # 300 new visitors at weight 20: 60 ± 7 on the canary
    sessions = await visit(server, 300)
    sides = Counter(name == canary_pod.name for name, _ in sessions)
    assert 25 <= sides[True] <= 100, sides
    for name, value in sessions:
        owner = "default-sticky-canary-8080" if name == canary_pod.name else "default-sticky-d-8080"
        assert value.endswith("|" + backend_key(owner))
    kept = [s for s in sessions if s[0] == canary_pod.name][:10]
    kept += [s for s in sessions if s[0] != canary_pod.name][:20]

    async def sessions_hold() -> None:
        for name, value in kept:
            for _ in range(5):
                answer = await get(server, host=HOST, cookie=f"key={value}")
                assert answer.pod == name
                assert answer.set_cookies == ()  # a cookie that resolves is never re-issued

    await sessions_hold()
    for weight in ("100", "0"):
        changed = canary_text.replace('canary-weight: "20"', f'canary-weight: "{weight}"')
        assert changed != canary_text
        assert await reload_after(server, lambda c=changed: canary_file.write_text(c)) == "success"  # type: ignore[misc]
        await sessions_hold()  # neither side's sessions follow the weight
        fresh = {name for name, _ in await visit(server, 20)}
        assert (fresh == {canary_pod.name}) is (weight == "100"), fresh
    # the header still picks a side for a visitor without a cookie
    forced = await get(server, host=HOST, headers={"X-Canary": "always"})
    assert forced.pod == canary_pod.name
