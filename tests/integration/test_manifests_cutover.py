"""Cut-over from ingress-nginx: cookies it issued for Service `web` port 80 in `default` (its
backend `default-web-80`) keep their sessions behind sticky-proxy, with no new Set-Cookie.

What is verified, honestly: the vector sets (tests/fixtures/*_vectors.json, produced by
the real ingress-nginx Lua) use pod addresses such as 10.244.0.5:8080 that a test cannot listen
on. So each test first checks that the rule it applies (the CRC-32 ring, the md5 key) reproduces
the vectors on their own nodes, then applies the same rule to pods on 127.0.0.x and checks over
real sockets that the proxy, configured by manifest files, routes the vector's cookie values
(keys and backend key taken verbatim from the vectors) exactly there. The backend name enters
only the persistent key and the cookie's second part, and both are checked against the vectors.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from proxy.core.ring import HashRing
from tests.integration.cluster import Pods, by_endpoint, get, web_app, write_manifest
from tests.integration.conftest import StartManifestProxy

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BACKEND = "default-web-80"  # Service web, port 80, namespace default, as ingress-nginx names it


def vector_set(file: str, label: str) -> dict[str, Any]:
    sets: list[dict[str, Any]] = json.loads((FIXTURES / file).read_text())["sets"]
    (found,) = [s for s in sets if s["label"] == label]
    assert found["backend_name"] == BACKEND
    return found


async def test_balanced_cookies_from_ingress_nginx_keep_their_pod(
    pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    vectors = vector_set("chash_vectors.json", "n3")
    vector_ring = HashRing(e["node"] for e in vectors["endpoints"])
    for case in vectors["cases"]:
        assert vector_ring.lookup(case["key"]) == case["endpoint"]

    three = await pods.start(3)
    manifest = tmp_path / "cluster.yaml"
    write_manifest(manifest, web_app(three, affinity="cookie", affinity_mode="balanced"))
    server = await manifest_proxy(manifest)
    ring = HashRing(by_endpoint(three))
    expected = by_endpoint(three)
    for case in vectors["cases"]:
        cookie = f"INGRESSCOOKIE={case['key']}|{vectors['backend_key']}"
        answer = await get(server, cookie=cookie)
        assert (answer.pod, answer.set_cookies) == (
            expected[ring.lookup(case["key"])].name,
            (),
        ), case
    # A legacy value without the backend part routes the same way (ingress-nginx ignores it).
    legacy = vectors["cases"][0]["key"]
    answer = await get(server, cookie=f"INGRESSCOOKIE={legacy}")
    assert (answer.pod, answer.set_cookies) == (expected[ring.lookup(legacy)].name, ())


async def test_persistent_cookies_from_ingress_nginx_keep_their_pod(
    pods: Pods, tmp_path: Path, manifest_proxy: StartManifestProxy
) -> None:
    vectors = vector_set("persistent_vectors.json", "n3")

    def key(node: str) -> str:
        return hashlib.md5((BACKEND + node).encode()).hexdigest()

    for entry in vectors["map"]:
        assert key(entry["node"]) == entry["key"]

    three = await pods.start(3)
    manifest = tmp_path / "cluster.yaml"
    write_manifest(manifest, web_app(three, affinity="cookie", affinity_mode="persistent"))
    server = await manifest_proxy(manifest)
    for node, pod in by_endpoint(three).items():
        answer = await get(server, cookie=f"INGRESSCOOKIE={key(node)}|{vectors['backend_key']}")
        assert (answer.pod, answer.set_cookies) == (pod.name, ()), node

    # The vector's misses (keys of no endpoint here) are new sessions, as in ingress-nginx, and
    # the new cookie carries the backend key ingress-nginx would write for default-web-80.
    misses = [lookup["key"] for lookup in vectors["lookups"] if lookup["endpoint"] is None]
    assert misses
    key_of_pod = {pod.name: key(node) for node, pod in by_endpoint(three).items()}
    for miss in misses:
        answer = await get(server, cookie=f"INGRESSCOOKIE={miss}")
        assert answer.pod is not None, miss
        assert answer.value("INGRESSCOOKIE") == f"{key_of_pod[answer.pod]}|{vectors['backend_key']}"
