"""Outlier ejection on an HTTPRoute with session persistence: a session whose pod is ejected
gets a new token for another pod at once (docs/behaviour.md, "Outlier ejection")."""

from __future__ import annotations

from pathlib import Path

from proxy.core.model import UpstreamPolicy
from tests.gateway.test_sessions import KEY, get, token_of, world
from tests.integration.cluster import Pods, write_manifest
from tests.integration.conftest import StartManifestProxy

EJECT_AT_ONCE = UpstreamPolicy(eject_after_failures=1, eject_seconds=60.0)


async def test_a_session_on_an_ejected_pod_moves_without_a_failed_try(
    pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    three = await pods.start(3)
    manifest = tmp_path / "world.yaml"
    write_manifest(manifest, world({"sessionName": "SID"}, {"web": three}, {"web": 1}))
    server = await manifest_proxy(manifest, session_key=KEY, upstream=EJECT_AT_ONCE)
    first, answer = await get(server)
    tokens = [token_of(answer, "SID")]
    while len(tokens) < 2:  # a second session on the same pod
        pod, answer = await get(server)
        if pod == first:
            tokens.append(token_of(answer, "SID"))
    victim = next(p for p in three if p.name == first)
    await victim.stop()
    registry = server.metrics.registry
    connect_errors = {"reason": "connect"}
    # the first session's try fails, which ejects the pod; its retry moves it (as without
    # ejection: a failed try always starts a new session here)
    pod, answer = await get(server, {"Cookie": f"SID={tokens[0]}"})
    assert pod != first and token_of(answer, "SID") != tokens[0]
    assert registry.get_sample_value("sticky_proxy_upstream_errors_total", connect_errors) == 1
    # the second goes elsewhere straight away, with a new token it then keeps
    pod, answer = await get(server, {"Cookie": f"SID={tokens[1]}"})
    new = token_of(answer, "SID")
    assert pod != first and new != tokens[1]
    assert registry.get_sample_value("sticky_proxy_upstream_errors_total", connect_errors) == 1
    again, answer = await get(server, {"Cookie": f"SID={new}"})
    assert again == pod and "Set-Cookie" not in answer.headers
